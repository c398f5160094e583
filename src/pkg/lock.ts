/**
 * build.lock: the exact Debian packages of a package, so it rebuilds bit for bit later.
 * Written by `linuxkit pkg lock DIR` beside build.yml; when present, `pkg build` installs
 * exactly these files (no dependency resolution, no index needed) and checks each download
 * against the sha256 recorded here, which came from a signed index when the lock was made.
 *
 * Layout (JSON, 2-space indent, final newline, packages sorted by name):
 *   {
 *     "lockVersion": 1,
 *     "debian": "<sha256 of build.yml's debian: section, canonical JSON>",
 *     "packages": [
 *       { "name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64",
 *         "filename": "pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb",
 *         "size": 2757936, "sha256": "..." }, ...
 *     ]
 *   }
 * `debian` ties the lock to the build.yml it was made from: if that section changes, the lock
 * is stale and the build says so rather than silently installing the old set.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PackageInfo } from '../debian/archive.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import type { BuildYml } from './buildyml.js';

export const LOCK_FILE = 'build.lock';

export interface LockedPackage {
  name: string;
  version: string;
  arch: string;
  filename: string;
  size: number;
  sha256: string;
}

export interface BuildLock {
  lockVersion: 1;
  debian: string;
  packages: LockedPackage[];
}

/** JSON with object keys sorted, so the hash does not depend on key order in the YAML. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** What a lock is tied to: build.yml's debian section. */
export function debianInputsHash(yml: BuildYml): string {
  return createHash('sha256')
    .update(canonical(yml.debian ?? null))
    .digest('hex');
}

export function makeLock(yml: BuildYml, debs: PackageInfo[]): BuildLock {
  const packages = debs
    .map(({ name, version, arch, filename, size, sha256 }) => ({
      name,
      version,
      arch,
      filename,
      size,
      sha256,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { lockVersion: 1, debian: debianInputsHash(yml), packages };
}

export function encodeLock(lock: BuildLock): string {
  return `${JSON.stringify(lock, null, 2)}\n`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Parse and check a lock's text; `file` names it in errors. */
export function decodeLock(text: string, file: string): BuildLock {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new UserError(
      `${file}: not valid JSON (${(e as Error).message}); remake it with \`linuxkit pkg lock\``,
    );
  }
  const bad = (what: string) =>
    new UserError(`${file}: ${what}; remake it with \`linuxkit pkg lock ${path.dirname(file)}\``);
  const d = doc as Partial<BuildLock>;
  if (typeof d !== 'object' || d === null || d.lockVersion !== 1) throw bad('not a version 1 build.lock');
  if (typeof d.debian !== 'string' || !HEX64.test(d.debian)) throw bad('"debian" is not a sha256');
  if (!Array.isArray(d.packages)) throw bad('"packages" is not a list');
  for (const [i, p] of d.packages.entries()) {
    const ok =
      typeof p === 'object' &&
      p !== null &&
      typeof p.name === 'string' &&
      typeof p.version === 'string' &&
      typeof p.arch === 'string' &&
      typeof p.filename === 'string' &&
      Number.isSafeInteger(p.size) &&
      typeof p.sha256 === 'string' &&
      HEX64.test(p.sha256);
    if (!ok) throw bad(`packages[${i}] is not {name, version, arch, filename, size, sha256}`);
  }
  return d as BuildLock;
}

/** DIR/build.lock, or undefined when there is none. */
export async function readLock(dir: string): Promise<BuildLock | undefined> {
  const file = path.join(dir, LOCK_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`${file}: cannot read: ${(e as Error).message}`);
  }
  return decodeLock(text, file);
}

export async function writeLock(dir: string, lock: BuildLock): Promise<string> {
  const file = path.join(dir, LOCK_FILE);
  await writeFileAtomic(file, Buffer.from(encodeLock(lock), 'utf8'));
  return file;
}

/** The locked packages as index entries (what the fetcher and the tag need), after checking the lock is current. */
export function lockedPackages(lock: BuildLock, yml: BuildYml, dir: string): PackageInfo[] {
  if (lock.debian !== debianInputsHash(yml)) {
    throw new UserError(
      `${path.join(dir, LOCK_FILE)} was made for another debian: section of build.yml (it changed since): ` +
        `run \`linuxkit pkg lock ${dir}\` to update it`,
    );
  }
  return lock.packages.map((p) => ({ ...p, depends: [], provides: [] }));
}
