/**
 * Caches of files that we may remove: a file's mtime says when it was last used (touch), and
 * pruning removes the least recently used first. An entry derived from a file is named by that
 * file's identity (fileIdentity).
 */
import type { BigIntStats } from 'node:fs';
import { rm, stat, utimes } from 'node:fs/promises';

/**
 * A file's identity for naming what is derived from it: inode, change time (ns) and size, in
 * hex. A file written again, even in place, gets a new change time, so it no longer matches.
 */
export function fileIdentity(st: BigIntStats): string {
  return `${st.ino.toString(16)}-${st.ctimeNs.toString(16)}-${st.size.toString(16)}`;
}

/** fileIdentity of a file that may be on any file system: its device number first. */
export function fileIdentityWithDevice(st: BigIntStats): string {
  return `${st.dev.toString(16)}-${fileIdentity(st)}`;
}

/** Mark a file as used now; false if it is not there. */
export async function touch(file: string): Promise<boolean> {
  const now = new Date();
  try {
    await utimes(file, now, now);
    return true;
  } catch {
    return false;
  }
}

export interface PruneLimits {
  /** Keep at most this many files. */
  maxFiles?: number;
  /** Keep at most this many bytes. */
  maxBytes?: number;
  /** Never remove a file used at or after this time (ms since the epoch), whatever the limits. */
  keepSince?: number;
}

/**
 * Remove the least recently used of `files` (oldest mtime first; ties by path) until the rest
 * are within the limits. Returns the bytes removed.
 */
export async function pruneLeastRecentlyUsed(files: string[], limits: PruneLimits): Promise<number> {
  const known: { file: string; size: number; mtime: number }[] = [];
  for (const file of files) {
    const st = await stat(file).catch(() => undefined);
    if (st?.isFile()) known.push({ file, size: st.size, mtime: st.mtimeMs });
  }
  known.sort((a, b) => a.mtime - b.mtime || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  let count = known.length;
  let total = known.reduce((n, f) => n + f.size, 0);
  let removed = 0;
  const over = () =>
    (limits.maxFiles !== undefined && count > limits.maxFiles) ||
    (limits.maxBytes !== undefined && total > limits.maxBytes);
  for (const f of known) {
    if (!over() || (limits.keepSince !== undefined && f.mtime >= limits.keepSince)) break;
    await rm(f.file, { force: true });
    count--;
    total -= f.size;
    removed += f.size;
  }
  return removed;
}
