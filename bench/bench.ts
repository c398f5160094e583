/**
 * `npm run bench`: the figures that matter to users, measured the way they experience them
 * (whole CLI processes), as medians with min and max. `--quick` runs each measurement once
 * (CI runs that so the benchmark never rots). Writes bench/results.json and prints a table.
 *
 * For each example: cold build (empty image cache, Debian .debs already downloaded), warm build
 * (cache populated, outputs removed), no-op rebuild (nothing changed), build after one `files:`
 * entry changed, peak RSS of a warm build, initrd size, boot to its marker under the
 * accelerator in use, and the floor: `gzip -6` over the same uncompressed cpio.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { probeAccel, runQemu } from '../src/run/qemu.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'bin', 'linuxkit.js');
const quick = process.argv.includes('--quick');
const RUNS = quick ? 1 : 5;
const WORK = path.join(os.tmpdir(), 'linuxkit-bench');
const CACHE = path.join(WORK, 'cache');

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number;
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: s.length };
}

function timed(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...process.env, LINUXKIT_CACHE: CACHE },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`linuxkit ${args.join(' ')} failed:\n${r.stderr}`);
}

/** Peak RSS in MB of one CLI run, from GNU time. */
function peakRssMb(args: string[]): number | undefined {
  if (!existsSync('/usr/bin/time')) return undefined;
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, CLI, ...args], {
    env: { ...process.env, LINUXKIT_CACHE: CACHE },
    encoding: 'utf8',
  });
  const kb = Number(r.stderr.trim().split('\n').pop());
  return Number.isFinite(kb) ? kb / 1024 : undefined;
}

/** Empty the image cache but keep the downloaded Debian archives. */
function emptyImageCache(): void {
  if (!existsSync(CACHE)) return;
  for (const e of ['blobs', 'index.json', 'oci-layout'])
    rmSync(path.join(CACHE, e), { recursive: true, force: true });
}

/** The example with its relative @pkg: paths made absolute, plus one `files:` entry we can vary. */
function variant(example: string, marker: string): string {
  const dir = path.dirname(example);
  const text = readFileSync(example, 'utf8').replace(
    /@pkg:([^"'\s]+)/g,
    (_, p: string) => `@pkg:${path.resolve(dir, p)}`,
  );
  const file = path.join(WORK, `${path.basename(example, '.yml')}-bench.yml`);
  const files = `  - path: etc/bench-marker\n    contents: "${marker}"\n`;
  writeFileSync(
    file,
    /^files:\s*$/m.test(text)
      ? text.replace(/^files:\s*$/m, `files:\n${files}`)
      : `${text}\nfiles:\n${files}`,
  );
  return file;
}

interface Row {
  example: string;
  cold: Stat;
  warm: Stat;
  noop: Stat;
  oneFile: Stat;
  peakRssMb?: number;
  initrdBytes: number;
  cpioBytes: number;
  gzipFloor: Stat;
  boot?: Stat;
  bootMarker: string;
}

async function benchExample(example: string, bootMarker: RegExp): Promise<Row> {
  const name = path.basename(example, '.yml');
  const out = path.join(WORK, 'out', name);
  const yml = variant(example, '0');
  const build = (dir = out) => cli(['build', '-dir', dir, '-name', name, yml]);
  build(); // downloads what is missing, so "cold" below measures an empty image cache only

  const cold: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    emptyImageCache();
    rmSync(out, { recursive: true, force: true });
    cold.push(timed(() => build()));
  }
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rmSync(out, { recursive: true, force: true });
    warm.push(timed(() => build()));
  }
  const noop: number[] = [];
  for (let i = 0; i < RUNS; i++) noop.push(timed(() => build()));
  const oneFile: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    variant(example, String(i + 1));
    oneFile.push(timed(() => build()));
  }
  rmSync(out, { recursive: true, force: true });
  const peak = peakRssMb(['build', '-dir', out, '-name', name, yml]);

  const initrd = path.join(out, `${name}-initrd.img`);
  const cpio = path.join(WORK, `${name}.cpio`);
  writeFileSync(cpio, gunzipSync(readFileSync(initrd)));
  const gzipFloor: number[] = [];
  for (let i = 0; i < RUNS; i++)
    gzipFloor.push(timed(() => execFileSync('sh', ['-c', `gzip -6 -c '${cpio}' > /dev/null`])));

  let boot: Stat | undefined;
  if (existsSync('/usr/bin/qemu-system-x86_64')) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = Date.now();
      let at: number | undefined;
      await runQemu({
        kernel: path.join(out, `${name}-kernel`),
        initrd,
        cmdline: readFileSync(path.join(out, `${name}-cmdline`), 'utf8'),
        console: { onLine: (l) => (at ??= bootMarker.test(l) ? Date.now() : undefined) },
        timeoutMs: 300_000,
      });
      if (at === undefined) throw new Error(`${name}: boot never printed ${bootMarker}`);
      times.push((at - t0) / 1000);
    }
    boot = stat(times);
  }
  return {
    example: path.relative(REPO, example),
    cold: stat(cold),
    warm: stat(warm),
    noop: stat(noop),
    oneFile: stat(oneFile),
    peakRssMb: peak,
    initrdBytes: statSync(initrd).size,
    cpioBytes: statSync(cpio).size,
    gzipFloor: stat(gzipFloor),
    boot,
    bootMarker: bootMarker.source,
  };
}

function fmt(s: Stat | undefined): string {
  if (!s) return '-';
  return s.runs > 1
    ? `${s.median.toFixed(2)} (${s.min.toFixed(2)}-${s.max.toFixed(2)})`
    : s.median.toFixed(2);
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const examples: [string, RegExp][] = [[path.join(REPO, 'examples', 'minimal.yml'), /suite PASSED/]];
  const sshd = path.join(REPO, 'examples', 'sshd.yml');
  if (existsSync(sshd)) examples.push([sshd, /boot complete/]);
  const rows: Row[] = [];
  for (const [ex, marker] of examples) rows.push(await benchExample(ex, marker));
  const accel = await probeAccel();
  const results = { node: process.version, cpus: os.cpus().length, accel, runs: RUNS, rows };
  writeFileSync(path.join(REPO, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const head = [
    'example',
    'cold s',
    'warm s',
    'no-op s',
    '1 file s',
    'gzip -6 floor s',
    'peak RSS MB',
    'initrd MB',
    `boot s (${accel})`,
  ];
  const lines = rows.map((r) =>
    [
      r.example,
      fmt(r.cold),
      fmt(r.warm),
      fmt(r.noop),
      fmt(r.oneFile),
      fmt(r.gzipFloor),
      r.peakRssMb?.toFixed(0) ?? '-',
      (r.initrdBytes / 1e6).toFixed(2),
      fmt(r.boot),
    ].join(' | '),
  );
  process.stdout.write(
    `| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n${lines.map((l) => `| ${l} |`).join('\n')}\n`,
  );
  process.stdout.write(`medians (min-max) of ${RUNS} run(s); wrote bench/results.json\n`);
}

await main();
