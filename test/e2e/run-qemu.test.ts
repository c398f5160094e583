/**
 * `linuxkit run qemu` as a process: -detached returns with the VM up and its pid file stops it;
 * SIGTERM during boot leaves no qemu; killing a test run (node --test) at a busy moment leaves
 * no qemu; netboot through `linuxkit serve` boots examples/minimal to suite PASSED.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { build } from '../../src/build/build.js';
import { runQemu } from '../../src/run/qemu.js';
import { serve } from '../../src/run/serve.js';
import { exitWithParent } from '../harness/watchdog.js';
import { cli, REPO, TEST_CACHE, tempDir } from '../helpers.js';
import { hostHas } from '../tools.js';

exitWithParent();
const skip =
  !hostHas('qemu-system-x86_64') && 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';
const out = tempDir('lk-runqemu-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pids of processes whose command line mentions `needle` (our VMs carry their state dir). */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((f) => /^\d+$/.test(f))) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(needle)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids.filter((p) => p !== process.pid);
}

async function until(what: string, f: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));

describe('run qemu processes', { skip, concurrency: true }, () => {
  before(async () => {
    if (skip) return;
    await build({
      file: path.join(REPO, 'examples', 'minimal.yml'),
      formats: ['kernel+initrd'],
      dir: out,
      cacheDir: TEST_CACHE,
    });
    // The same system without power-off: it stays up until stopped. Not quiet: the tests
    // below watch the kernel's own messages.
    const example = readFileSync(path.join(REPO, 'examples', 'minimal.yml'), 'utf8')
      .replaceAll('@pkg:../pkg/', `@pkg:${path.join(REPO, 'pkg')}/`)
      .replace(/(cmdline: "[^"\n]*) quiet/, '$1');
    assert.doesNotMatch(example, /cmdline: .*quiet/);
    await mkdir(path.join(out, 'netboot'), { recursive: true });
    await writeFile(path.join(out, 'netboot', 'minimal.yml'), example);
    await build({
      file: path.join(out, 'netboot', 'minimal.yml'),
      formats: ['kernel+initrd'],
      dir: path.join(out, 'netboot'),
      cacheDir: TEST_CACHE,
    });
    const yml = example.replace(/ {2}- name: poweroff\n.*\n/, '');
    assert.doesNotMatch(yml, /poweroff/);
    await writeFile(path.join(out, 'stays.yml'), yml);
    await build({
      file: path.join(out, 'stays.yml'),
      formats: ['kernel+initrd'],
      dir: out,
      cacheDir: TEST_CACHE,
    });
  });

  test('-detached returns with the VM up; the pid file stops it', { timeout: 300_000 }, async () => {
    const state = path.join(out, 'detached-state');
    const r = cli([
      'run',
      'qemu',
      '-detached',
      '-networking',
      'none',
      '-mem',
      '512',
      '-state',
      state,
      path.join(out, 'stays'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(readFileSync(path.join(state, 'qemu.pid'), 'utf8').trim());
    try {
      assert.equal(Number(r.stdout.trim()), pid);
      assert.ok(alive(pid), 'qemu is running');
      const log = path.join(state, 'console.log');
      await until(
        'suite PASSED in console.log',
        () => readFileSync(log, 'utf8').includes('suite PASSED'),
        240_000,
      );
      assert.ok(alive(pid), 'the VM stays up after boot');
      process.kill(pid, 'SIGTERM');
      await until('qemu to exit', () => !alive(pid), 10_000);
    } finally {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('SIGTERM during boot stops the VM and leaves no qemu', { timeout: 300_000 }, async () => {
    const state = path.join(out, 'sigterm-state');
    const child = spawn(
      process.execPath,
      [
        path.join(REPO, 'bin', 'linuxkit.js'),
        'run',
        'qemu',
        '-networking',
        'none',
        '-mem',
        '512',
        '-state',
        state,
        path.join(out, 'stays'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LINUXKIT_CACHE: TEST_CACHE } },
    );
    let consoleText = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      consoleText += d;
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) =>
      child.once('exit', (c, s) => r([c, s])),
    );
    try {
      await until('the kernel to start', () => consoleText.includes('Linux version'), 120_000);
      assert.ok(processesWith(state).length > 0, 'qemu runs');
      child.kill('SIGTERM');
      const [code, signal] = await exited;
      assert.ok(signal === 'SIGTERM' || (code !== null && code !== 0), `exit ${code} ${signal}`);
      await until('no qemu left', () => processesWith(state).length === 0, 5000);
      assert.doesNotMatch(consoleText, /suite PASSED/, 'stopped before the end of boot');
    } finally {
      child.kill('SIGKILL');
      for (const p of processesWith(state)) process.kill(p, 'SIGKILL');
    }
  });

  test('killing the test runner while a case boots leaves no qemu behind', { timeout: 300_000 }, async () => {
    const work = path.join(out, 'killed-run');
    // A runner of its own, not a subtest of this one (node marks its test processes so).
    const env: NodeJS.ProcessEnv = { ...process.env, LINUXKIT_E2E_WORK: work };
    delete env.NODE_TEST_CONTEXT;
    const runner = spawn(
      process.execPath,
      [
        '--test',
        '--test-name-pattern',
        '010_minimal',
        path.join(REPO, 'dist', 'test', 'e2e', 'cases.test.js'),
      ],
      { stdio: 'ignore', env },
    );
    try {
      await until(
        'a case VM',
        () =>
          processesWith(`${work}/`).some((p) =>
            readFileSync(`/proc/${p}/cmdline`, 'latin1').includes('qemu-system'),
          ),
        240_000,
      );
      runner.kill('SIGKILL');
      await until('every VM of the killed run to go', () => processesWith(`${work}/`).length === 0, 10_000);
    } finally {
      runner.kill('SIGKILL');
      for (const p of processesWith(`${work}/`)) process.kill(p, 'SIGKILL');
    }
  });

  test('netboot: iPXE fetches the script from linuxkit serve and boots to suite PASSED', {
    timeout: 400_000,
  }, async () => {
    const s = await serve({ directory: path.join(out, 'netboot'), host: '127.0.0.1', port: 0 });
    try {
      const lines: string[] = [];
      const r = await runQemu({
        netboot: `http://10.0.2.2:${s.port}/minimal.ipxe`,
        networking: { mode: 'user' },
        mem: 1024,
        console: { onLine: (l) => lines.push(l) },
        timeoutMs: 360_000,
      });
      const log = lines.join('\n');
      assert.match(log, /minimal-initrd\.img/, log.slice(-3000));
      assert.match(log, /linuxkit test suite PASSED/, log.slice(-3000));
      assert.equal(r.code, 0, log.slice(-3000));
    } finally {
      await s.close();
    }
  });
});
