/** Shared by the end-to-end tests: paths, a persistent test cache, and running the CLI. */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/...). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The image cache the tests share. It survives between runs on one machine so repeated runs
 * skip the Debian downloads; a test that needs an empty cache makes its own.
 */
export const TEST_CACHE = process.env.LINUXKIT_TEST_CACHE ?? path.join(os.tmpdir(), 'linuxkit-test-cache');

export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [path.join(REPO, 'bin', 'linuxkit.js'), ...args], {
    cwd: opts.cwd ?? REPO,
    env: { ...process.env, LINUXKIT_CACHE: TEST_CACHE, ...opts.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
