/**
 * FsTree: the shared currency of the build. Every reader (OCI layer tars, .deb data archives,
 * YAML `files:`) produces one and every writer (cpio, tar, ISO, ...) consumes one.
 *
 * Paths are normalised: relative to the tree's root, no leading or trailing '/', no '.' or '..'
 * components, e.g. `usr/bin/env`. The root itself is implicit (always a 0755 root-owned dir).
 * Hard links are not a kind: a reader turns a hard link into a second `file` entry that shares
 * the same `data` object, and writers may store identical contents once.
 */
import { UserError } from '../util/errors.js';
import type { FileData } from './data.js';

export type EntryKind = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';

export interface FsEntry {
  path: string;
  kind: EntryKind;
  /** Permission bits including setuid/setgid/sticky (0o7777); never the file type bits. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** File contents (kind 'file' only): bytes, or a slice of a file on disk (see data.ts). */
  data?: FileData;
  /** Symlink target, exactly as stored (kind 'symlink' only). */
  target?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, e.g. `security.capability`. */
  xattrs?: Record<string, Uint8Array>;
}

const S_IFMT = 0o170000;
export const FILE_TYPE_BITS: Record<EntryKind, number> = {
  file: 0o100000,
  dir: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
};

export function kindFromMode(mode: number): EntryKind | undefined {
  const t = mode & S_IFMT;
  for (const [k, v] of Object.entries(FILE_TYPE_BITS)) if (v === t) return k as EntryKind;
  return undefined;
}

/**
 * Normalise a path from an archive or the user to the tree's form. Rejects anything that would
 * leave the root ('..' components): archive extraction never escapes its root.
 */
export function normalisePath(p: string, what = 'path'): string {
  const parts: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..')
      throw new UserError(`${what} ${JSON.stringify(p)} leaves the root ('..' is not allowed)`);
    parts.push(part);
  }
  return parts.join('/');
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export interface DirDefaults {
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
}

/** Orders things by path, byte-wise (not by locale), so a parent comes before its children. */
export const byPath = (a: { path: string }, b: { path: string }): number =>
  a.path < b.path ? -1 : a.path > b.path ? 1 : 0;

export class FsTree {
  private readonly map = new Map<string, FsEntry>();

  get size(): number {
    return this.map.size;
  }

  get(path: string): FsEntry | undefined {
    return this.map.get(path);
  }

  has(path: string): boolean {
    return this.map.has(path);
  }

  /**
   * Add or replace an entry. Missing parent directories are created (0755 root:root unless
   * `parents` says otherwise). A parent that exists but is not a directory is an error: we
   * never write through a symlink, which is how a crafted archive would escape its root.
   */
  set(entry: FsEntry, parents: DirDefaults = {}): void {
    const path = normalisePath(entry.path);
    if (path === '') return; // the root is implicit
    this.ensureDir(parentOf(path), parents);
    const old = this.map.get(path);
    if (old && old.kind === 'dir' && entry.kind !== 'dir') this.delete(path);
    this.map.set(path, { ...entry, path });
  }

  /** Make sure `path` is a directory, creating it and its parents as needed. */
  ensureDir(path: string, d: DirDefaults = {}): void {
    if (path === '') return;
    const cur = this.map.get(path);
    if (cur) {
      if (cur.kind === 'dir') return;
      throw new UserError(`cannot create ${path}/...: ${path} is a ${cur.kind}, not a directory`);
    }
    this.ensureDir(parentOf(path), d);
    this.map.set(path, {
      path,
      kind: 'dir',
      mode: d.mode ?? 0o755,
      uid: d.uid ?? 0,
      gid: d.gid ?? 0,
      mtime: d.mtime ?? 0,
    });
  }

  /** Remove an entry and, for a directory, everything below it. */
  delete(path: string): void {
    path = normalisePath(path);
    this.map.delete(path);
    const prefix = `${path}/`;
    for (const k of this.map.keys()) if (k.startsWith(prefix)) this.map.delete(k);
  }

  /** Remove everything below a directory but keep the directory (an opaque whiteout). */
  clearDir(path: string): void {
    const prefix = path === '' ? '' : `${path}/`;
    for (const k of this.map.keys()) if (k.startsWith(prefix) && k !== path) this.map.delete(k);
  }

  /** All entries in a stable order in which every parent precedes its children. */
  entries(): FsEntry[] {
    return [...this.map.values()].sort(byPath);
  }

  /** Copy every entry of `other` under `prefix` (e.g. `containers/onboot/000-x/rootfs`). */
  graft(other: FsTree, prefix: string, parents: DirDefaults = {}): void {
    prefix = normalisePath(prefix);
    this.ensureDir(prefix, parents);
    for (const e of other.entries()) {
      this.set({ ...e, path: prefix === '' ? e.path : `${prefix}/${e.path}` }, parents);
    }
  }

  /** Set every mtime to at most `epoch` (SOURCE_DATE_EPOCH clamping). */
  clampMtimes(epoch: number): void {
    for (const e of this.map.values()) if (e.mtime > epoch) e.mtime = epoch;
  }
}
