/** Shared by the tests: paths, a persistent test cache, temp dirs, and running the CLI. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FsEntry } from '../src/fs/tree.js';

/** The repository root (tests run from dist/test/...). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The image cache the tests share. It survives between runs on one machine so repeated runs
 * skip the Debian downloads; a test that needs an empty cache makes its own.
 */
export const TEST_CACHE = process.env.LINUXKIT_TEST_CACHE ?? path.join(os.tmpdir(), 'linuxkit-test-cache');

/** A YAML-quoted `@pkg:` reference to one of our package directories, by absolute path. */
export const pkgRef = (name: string) => JSON.stringify(`@pkg:${path.join(REPO, 'pkg', name)}`);

export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [path.join(REPO, 'bin', 'linuxkit.js'), ...args], {
    cwd: opts.cwd ?? REPO,
    env: { ...process.env, LINUXKIT_CACHE: TEST_CACHE, ...opts.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * A new directory under the OS temp dir, removed by an `after` hook of the enclosing suite (or
 * of the file, when called at the top level).
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An FsEntry for writer tests: a root-owned 0644 entry with a fixed mtime unless `p` says otherwise. */
export const fsEntry = (p: Partial<FsEntry> & Pick<FsEntry, 'path' | 'kind'>): FsEntry => ({
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: 1700000000,
  ...p,
});
