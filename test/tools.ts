/**
 * Host tools for the unit tests that check our output with the real program (tar, cpio,
 * dpkg-deb, skopeo, ...): whether one is installed, a skip option naming its Debian package
 * when it is not, and running one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

/** Whether `tool` is an executable file in a PATH directory (what `command -v` finds). */
export function hostHas(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    if (!dir) return false;
    const file = path.join(dir, tool);
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/** The node:test option that skips a test or suite, saying what to install, when `tool` is missing. */
export function skipUnless(tool: string, aptPackage: string): { skip: string | false } {
  return { skip: hostHas(tool) ? false : `${tool} not installed (apt-get install ${aptPackage})` };
}

export interface ToolOptions {
  cwd?: string;
  /** Bytes for the tool's stdin (otherwise it reads an empty pipe). */
  input?: Uint8Array;
  timeoutMs?: number;
}

/**
 * Runs a host tool, asserts that it exits 0, and returns its stdout. A fixed locale and time
 * zone keep listings (dates, sort order, messages) the same on every machine.
 */
export function runToolBytes(cmd: string, args: string[], opts: ToolOptions = {}): Buffer {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    input: opts.input,
    timeout: opts.timeoutMs,
    env: { ...process.env, LC_ALL: 'C.UTF-8', TZ: 'UTC' },
    maxBuffer: 1 << 30,
  });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

/** {@link runToolBytes} with stdout as UTF-8 text. */
export function runTool(cmd: string, args: string[], opts: ToolOptions = {}): string {
  return runToolBytes(cmd, args, opts).toString('utf8');
}
