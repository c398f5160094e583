/**
 * The boot-test harness: every directory test/cases/NNN_group/NNN_case/ holds a LinuxKit YAML
 * (test.yml) and what must come true when it boots (case.yml):
 *
 *   labels: [slow, uefi]          # LINUXKIT_E2E_SKIP_LABELS=slow,uefi leaves those out
 *   timeout: 240                  # seconds for the boot, default 300
 *   format: iso-bios              # the build output to boot (default kernel+initrd)
 *   run:                          # `linuxkit run qemu` settings (src/run/vm.ts RunVmOptions)
 *     mem: 512
 *     cpus: 1
 *     uefi: true
 *     disks: ["size=64M", "size=32M,format=raw"]
 *     networking: none            # default: user when publish/http/ssh are used, else none
 *     data: "user data"           # or dataJson: {...} (written as JSON)
 *   publish: [80, 8080]           # guest TCP ports; the harness picks free host ports
 *   console:                      # lines that must appear (substring, or /regex/)
 *     - linuxkit test suite PASSED
 *   absent: [FAILED]              # must not appear (default: "suite FAILED")
 *   exit: 0                       # qemu's exit status (0: the guest powered off); `running`
 *                                 # when the checks below end the case with the VM still up
 *   http:                         # after every console line appeared: GET and check
 *     - { port: 80, path: /check.sh, status: 200, contains: "suite PASSED" }
 *   ssh:                          # commands over ssh (needs an sshd in the image)
 *     - { port: 22, user: root, command: "uname -r", contains: "6.1" }
 *
 * A case builds test.yml with the shared test cache, boots it with the console captured, and
 * fails with the console's tail; a failed case keeps its work dir (console.log, the state
 * dir, the build) under $TMPDIR/linuxkit-e2e/.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { build } from '../../src/build/build.js';
import type { Publish, QemuResult } from '../../src/run/qemu.js';
import { parseNetworking } from '../../src/run/qemu.js';
import { parseDisk, runVm } from '../../src/run/vm.js';
import { freePort } from '../helpers.js';

const pattern = z.string().min(1);
const CaseSchema = z.strictObject({
  labels: z.array(z.string()).default([]),
  timeout: z.number().positive().default(300),
  format: z.string().default('kernel+initrd'),
  run: z
    .strictObject({
      mem: z.number().int().positive().optional(),
      cpus: z.number().int().positive().optional(),
      uefi: z.boolean().optional(),
      disks: z.array(z.string()).optional(),
      networking: z.string().optional(),
      data: z.string().optional(),
      dataJson: z.unknown().optional(),
    })
    .default({}),
  publish: z.array(z.number().int().min(1).max(65535)).default([]),
  console: z.array(pattern).default([]),
  absent: z.array(pattern).default(['suite FAILED']),
  exit: z.union([z.number().int(), z.literal('running')]).default(0),
  http: z
    .array(
      z.strictObject({
        port: z.number().int(),
        path: z.string().default('/'),
        status: z.number().int().default(200),
        contains: z.string().optional(),
      }),
    )
    .default([]),
  ssh: z
    .array(
      z.strictObject({
        port: z.number().int().default(22),
        user: z.string().default('root'),
        command: z.string(),
        contains: z.string().optional(),
      }),
    )
    .default([]),
});
export type CaseSpec = z.infer<typeof CaseSchema>;

export interface Case {
  /** NNN_group/NNN_case */
  id: string;
  dir: string;
  yaml: string;
  spec: CaseSpec;
}

/** The cases under root whose id matches `filter` (a substring or /regex/), sorted by id. */
export function discoverCases(root: string, filter?: string): Case[] {
  const out: Case[] = [];
  const dirs = (d: string) =>
    readdirSync(d, { withFileTypes: true })
      .filter((e) => e.isDirectory() && /^\d{3}_/.test(e.name))
      .map((e) => e.name)
      .sort();
  for (const g of dirs(root)) {
    for (const c of dirs(path.join(root, g))) {
      const dir = path.join(root, g, c);
      const id = `${g}/${c}`;
      if (filter && !matches(id, filter)) continue;
      const caseFile = path.join(dir, 'case.yml');
      const spec = CaseSchema.parse(
        existsSync(caseFile) ? (parse(readFileSync(caseFile, 'utf8')) ?? {}) : {},
      );
      out.push({ id, dir, yaml: path.join(dir, 'test.yml'), spec });
    }
  }
  return out;
}

function matches(text: string, pat: string): boolean {
  const re = /^\/(.*)\/([a-z]*)$/.exec(pat);
  return re ? new RegExp(re[1]!, re[2]).test(text) : text.includes(pat);
}

/** How many VMs may boot at once: cores, and memory at ~1.5x each VM's RAM; LINUXKIT_E2E_JOBS overrides. */
export function parallelVms(memMB = 1024): number {
  const forced = Number(process.env.LINUXKIT_E2E_JOBS);
  if (forced > 0) return forced;
  const byMem = Math.floor(os.freemem() / (memMB * 1.5 * 1024 * 1024));
  return Math.max(1, Math.min(os.availableParallelism(), byMem));
}

/** Where cases work; a failed case's dir stays. LINUXKIT_E2E_WORK moves it. */
export const WORK_ROOT = process.env.LINUXKIT_E2E_WORK ?? path.join(os.tmpdir(), 'linuxkit-e2e');

/** A limit on how many cases boot at once, shared by all the cases of one process. */
export class Slots {
  private queue: (() => void)[] = [];
  constructor(private free: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.queue.push(r));
    try {
      return await f();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    }
  }
}

async function httpCheck(port: number, p: string, status: number, contains?: string, deadline = 60_000) {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(5000) });
      const body = await r.text();
      if (r.status === status && (contains === undefined || body.includes(contains))) return;
      last = `status ${r.status}, body ${JSON.stringify(body.slice(0, 200))}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`GET ${p} on published port ${port}: ${last}`);
}

function sshCheck(port: number, user: string, command: string, contains?: string): Promise<void> {
  const args = ['-p', String(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'];
  args.push('-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', `${user}@127.0.0.1`, command);
  return new Promise((resolve, reject) => {
    execFile('ssh', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`ssh ${command}: ${stderr || err.message}`));
      if (contains !== undefined && !stdout.includes(contains))
        return reject(new Error(`ssh ${command}: output lacks ${JSON.stringify(contains)}: ${stdout}`));
      resolve();
    });
  });
}

export interface CaseResult {
  workDir: string;
  log: string;
  result?: QemuResult;
}

/**
 * Build and boot one case; throws (an Error naming the kept work dir, with the console's tail)
 * when an expectation fails.
 */
export async function runCase(c: Case, opts: { cacheDir: string; slots?: Slots }): Promise<CaseResult> {
  const s = c.spec;
  const workDir = path.join(WORK_ROOT, c.id.replace('/', '--'));
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  let deadline = Date.now() + s.timeout * 1000;
  const lines: string[] = [];
  let result: QemuResult | undefined;
  try {
    const { outputs } = await build({
      file: c.yaml,
      formats: [s.format],
      dir: workDir,
      name: 'vm',
      cacheDir: opts.cacheDir,
    });
    // A kernel+initrd build is booted by its prefix, any other by its (one) image file.
    const bootPath = s.format === 'kernel+initrd' ? path.join(workDir, 'vm') : outputs[0]!;
    const run = async () => {
      // The boot's own time limit starts when it gets a slot.
      deadline = Date.now() + s.timeout * 1000;
      const publish: Publish[] = [];
      const hostPort = new Map<number, number>();
      for (const g of new Set([...s.publish, ...s.http.map((h) => h.port), ...s.ssh.map((h) => h.port)])) {
        const host = await freePort();
        hostPort.set(g, host);
        publish.push({ host, guest: g, protocol: 'tcp' });
      }
      const networking = parseNetworking(s.run.networking ?? (publish.length ? 'user' : 'none'));
      const data =
        s.run.dataJson !== undefined
          ? new TextEncoder().encode(JSON.stringify(s.run.dataJson))
          : s.run.data !== undefined
            ? new TextEncoder().encode(s.run.data)
            : undefined;
      // The VM is stopped as soon as the checks are done when exit is `running`.
      const ac = new AbortController();
      const seen = new Set<number>();
      let allSeen!: () => void;
      const allSeenP = new Promise<void>((r) => {
        allSeen = r;
      });
      const want = s.console;
      const check = (l: string) => {
        want.forEach((p, i) => {
          if (!seen.has(i) && matches(l, p)) seen.add(i);
        });
        if (seen.size === want.length) allSeen();
      };
      if (want.length === 0) allSeen();
      const vm = runVm({
        path: bootPath,
        stateDir: path.join(workDir, 'state'),
        mem: s.run.mem ?? 512,
        cpus: s.run.cpus,
        uefi: s.run.uefi,
        disks: (s.run.disks ?? []).map(parseDisk),
        networking,
        publish,
        data,
        console: {
          onLine(l) {
            lines.push(l);
            check(l);
          },
        },
        timeoutMs: Math.max(1000, deadline - Date.now()),
        stop: ac.signal,
      });
      if (s.http.length || s.ssh.length || s.exit === 'running') {
        await Promise.race([allSeenP, vm]);
        for (const h of s.http) await httpCheck(hostPort.get(h.port)!, h.path, h.status, h.contains);
        for (const h of s.ssh) await sshCheck(hostPort.get(h.port)!, h.user, h.command, h.contains);
        if (s.exit === 'running') ac.abort();
      }
      return vm;
    };
    result = await (opts.slots ? opts.slots.run(run) : run());
    const log = lines.join('\n');
    const problems: string[] = [];
    for (const p of s.console)
      if (!lines.some((l) => matches(l, p))) problems.push(`missing console line ${p}`);
    for (const p of s.absent) if (lines.some((l) => matches(l, p))) problems.push(`console shows ${p}`);
    if (result.timedOut) problems.push(`timed out after ${s.timeout} s`);
    else if (s.exit !== 'running' && result.code !== s.exit)
      problems.push(`qemu exit status ${result.code}, expected ${s.exit}`);
    if (problems.length) throw new Error(problems.join('; '));
    await rm(workDir, { recursive: true, force: true });
    return { workDir, log, result };
  } catch (e) {
    await writeFile(path.join(workDir, 'console.log'), `${lines.join('\n')}\n`).catch(() => {});
    const tail = lines.slice(-40).join('\n');
    throw new Error(`${c.id}: ${(e as Error).message}\n(kept ${workDir})\nconsole tail:\n${tail}`);
  }
}
