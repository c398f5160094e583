/**
 * Shared by the tests: paths, a persistent test cache, temp dirs, running the CLI, building and
 * booting a YAML under qemu, reproducibility checks, free ports, ssh and polling.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { build } from '../src/build/build.js';
import type { FsEntry } from '../src/fs/tree.js';
import { readHostTscKhz } from '../src/run/microvm.js';
import { probeAccel, type QemuOptions, type QemuResult, runQemu } from '../src/run/qemu.js';

/** The repository root (tests run from dist/test/...). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The image cache the tests share. It survives between runs on one machine so repeated runs
 * skip the Debian downloads; a test that needs an empty cache makes its own.
 */
export const TEST_CACHE = process.env.LINUXKIT_TEST_CACHE ?? path.join(os.tmpdir(), 'linuxkit-test-cache');

/** The kernel command line examples/NAME.yml gives. */
export function exampleCmdline(name: string): string {
  const doc = parse(readFileSync(path.join(REPO, 'examples', `${name}.yml`), 'utf8')) as {
    kernel: { cmdline: string };
  };
  return doc.kernel.cmdline;
}

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

/** The head of a booted test system's YAML: our kernel (serial console), init, runc, then `init` more. */
export const systemYaml = (...init: string[]) =>
  `kernel:
  image: ${pkgRef('kernel')}
  cmdline: console=ttyS0
init:
${['init', 'runc', ...init].map((n) => `  - ${pkgRef(n)}\n`).join('')}`;

/** Write `yaml` as DIR/NAME.yml and build it as kernel+initrd into DIR with the shared test cache. */
export async function buildYaml(dir: string, name: string, yaml: string): Promise<void> {
  const file = path.join(dir, `${name}.yml`);
  await writeFile(file, yaml);
  await build({ file, formats: ['kernel+initrd'], dir, cacheDir: TEST_CACHE });
}

/** A VM booting DIR/NAME-kernel + initrd: its result, the console lines so far, and whether it still runs. */
export interface BootingVm {
  vm: Promise<QemuResult>;
  lines: string[];
  log(): string;
  alive(): boolean;
}

/**
 * Boot the kernel+initrd that buildYaml made (console=ttyS0), capturing console lines; `qemu`
 * adds or overrides options (timeoutMs, stop, extraArgs, disks, consoleInput...).
 */
export function bootBuilt(dir: string, name: string, qemu: Partial<QemuOptions> = {}): BootingVm {
  const lines: string[] = [];
  let exited = false;
  const vm = runQemu({
    kernel: path.join(dir, `${name}-kernel`),
    initrd: path.join(dir, `${name}-initrd.img`),
    cmdline: 'console=ttyS0',
    console: { onLine: (l) => lines.push(l) },
    ...qemu,
  });
  // Both ways: a rejection is the awaiting caller's to see, not an unhandled one here.
  const done = () => {
    exited = true;
  };
  vm.then(done, done);
  return { vm, lines, log: () => lines.join('\n'), alive: () => !exited };
}

/** buildYaml, then boot it to the end: qemu's exit code and the console log. */
export async function buildAndBoot(
  dir: string,
  name: string,
  yaml: string,
  qemu: Partial<QemuOptions> = {},
): Promise<{ code: number; log: string; result: QemuResult }> {
  await buildYaml(dir, name, yaml);
  const booting = bootBuilt(dir, name, qemu);
  const result = await booting.vm;
  return { code: result.code, log: booting.log(), result };
}

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS.fd';

/**
 * Boot `boot` (an iso, boot disk or kernel) with 1 GiB, under OVMF when `uefi` (with its own
 * writable copy of the UEFI variables in `vmDir`), else SeaBIOS; assert the test suite passed
 * and the guest powered itself off.
 */
export async function assertBootsToSuitePassed(
  vmDir: string,
  boot: QemuOptions,
  uefi = false,
): Promise<QemuResult> {
  mkdirSync(vmDir, { recursive: true });
  let firmware: { code: string; vars: string } | undefined;
  if (uefi) {
    firmware = { code: OVMF_CODE, vars: path.join(vmDir, 'OVMF_VARS.fd') };
    copyFileSync(OVMF_VARS, firmware.vars);
  }
  const lines: string[] = [];
  const r = await runQemu({
    ...boot,
    ...(firmware ? { uefi: firmware } : {}),
    mem: 1024,
    console: { onLine: (l) => lines.push(l) },
    timeoutMs: 480_000,
  });
  const log = lines.join('\n');
  assert.match(log, /suite PASSED/, `console:\n${log}`);
  assert.equal(r.code, 0, `qemu exit ${r.code}; console:\n${log}`);
  assert.ok(r.poweredOff);
  return r;
}

export async function fileHash(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Build `yml` as `formats` again with the CLI, with a fresh image cache, from another working
 * directory (both under `out`), and assert it gives the same files with the same bytes as `first`.
 */
export async function assertRebuildIdentical(out: string, first: string, yml: string, formats: string[]) {
  const fresh = path.join(out, 'fresh-cache');
  mkdirSync(fresh);
  // Debian downloads are content-addressed (by sha256): sharing them keeps the test off the
  // network; every image and package is still built anew.
  if (existsSync(path.join(TEST_CACHE, 'debian')))
    symlinkSync(path.join(TEST_CACHE, 'debian'), path.join(fresh, 'debian'));
  const cwd = path.join(out, 'elsewhere');
  mkdirSync(cwd);
  const r = cli(['build', '-dir', 'b', ...formats.flatMap((x) => ['-format', x]), yml], {
    cwd,
    env: { LINUXKIT_CACHE: fresh },
  });
  assert.equal(r.code, 0, r.stderr);
  const b = path.join(cwd, 'b');
  const names = readdirSync(first).sort();
  assert.deepEqual(readdirSync(b).sort(), names);
  for (const n of names)
    assert.equal(await fileHash(path.join(b, n)), await fileHash(path.join(first, n)), `${n} differs`);
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** qemu args for a virtio NIC on the user network, host 127.0.0.1:port -> guest's guestPort. */
export function userNet(port?: number, guestPort?: number): string[] {
  const fwd = port !== undefined ? `,hostfwd=tcp:127.0.0.1:${port}-:${guestPort}` : '';
  return ['-netdev', `user,id=n0${fwd}`, '-device', 'virtio-net-pci,netdev=n0'];
}

/**
 * Run one command over ssh as root with `key`, no host key checks, a short connect timeout.
 * Asynchronous on purpose: while a synchronous child runs, this process reads nothing from
 * qemu's console pipe, qemu's serial port then stops taking output and the guest stalls in
 * its console writes (ssh-ready went from ~13 s to ~45 s under a polling loop).
 */
export function sshCommand(
  port: number,
  key: string,
  cmd: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const args = [
    '-i',
    key,
    '-p',
    String(port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=5',
    '-o',
    'LogLevel=ERROR',
    'root@127.0.0.1',
    cmd,
  ];
  return new Promise((resolve) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + String(e) });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A new ed25519 key pair in `dir` (no passphrase): the private key's path and the public key line. */
export async function sshKeyPair(dir: string, comment: string): Promise<{ key: string; pub: string }> {
  const key = path.join(dir, 'id_ed25519');
  const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key]);
  assert.equal(kg.status, 0, String(kg.stderr));
  return { key, pub: readFileSync(`${key}.pub`, 'utf8').trim() };
}

/**
 * Wait until an ssh login on `port` runs a command (asserting it does in time), and print how
 * long that took from `t0` (qemu's start).
 */
export async function waitForSsh(vm: BootingVm, port: number, key: string, t0: number, timeoutMs: number) {
  const first = await waitFor(vm.alive, timeoutMs, async () => {
    const r = await sshCommand(port, key, 'echo ready');
    return r.code === 0 && r.stdout.includes('ready') ? r : undefined;
  });
  assert.ok(first, `ssh never answered; console:\n${vm.log()}`);
  console.log(`# ssh ready ${((Date.now() - t0) / 1000).toFixed(1)} s after qemu start`);
}

/** Poll `probe` every 500 ms until it gives a value, `alive()` turns false, or time runs out. */
export async function waitFor<T>(
  alive: () => boolean,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && alive()) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  return undefined;
}

/**
 * What a kernel+initrd boot's QemuResult.microvm should be for our kernel image (which loads
 * virtio_mmio): true under TCG where the host's TSC frequency is known, else absent (q35).
 */
export async function expectedMicrovm(): Promise<true | undefined> {
  return (await probeAccel()) === 'tcg' && (await readHostTscKhz()) !== undefined ? true : undefined;
}
