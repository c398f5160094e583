/**
 * `npm run bench`: the figures that matter to users, measured the way they experience them
 * (whole CLI processes), as medians with min and max of 5 runs (`--runs N`). `--quick` runs
 * each measurement once (CI runs that so the benchmark never rots). Writes bench/results.json and prints a table.
 *
 * For each example: cold build (empty image cache, Debian .debs already downloaded), warm build
 * (cache populated, outputs removed), the same with `-compress lz4`, no-op rebuild (nothing
 * changed), build after one `files:` entry changed, peak RSS of a warm and of a cold build, initrd size, boot
 * under the accelerator in use (minimal: to `suite PASSED` and to power-off; sshd: until an ssh
 * login with a key given in the YAML succeeds), and the floors over the same uncompressed cpio:
 * `gzip -6` and `lz4 -l -1` (the host tools), and our own in-process gzip, timed alone.
 * Then memory as the image grows: minimal.yml with 256 MB and 1 GB of random data added (64 MB
 * with `--quick`), time and peak RSS of one warm build each.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { gzipParallel } from '../src/formats/compress.js';
import { FORMATS } from '../src/formats/outputs.js';
import { probeAccel, runQemu } from '../src/run/qemu.js';
import { freePort, sshCommand } from '../test/helpers.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'bin', 'linuxkit.js');
const quick = process.argv.includes('--quick');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : quick ? 1 : 5;
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error('--runs takes a whole number of runs');
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
  if (r.status !== 0) throw new Error(`linuxkit ${args.join(' ')} failed:\n${r.stderr}`);
  const kb = Number(r.stderr.trim().split('\n').pop());
  return Number.isFinite(kb) ? kb / 1024 : undefined;
}

interface Growth {
  /** MB of incompressible data added to the image (one `files:` source). */
  addedMb: number;
  seconds: number;
  peakRssMb?: number;
  initrdBytes: number;
  /** Peak RSS of one build that writes every format (ALL_FORMATS), when it was measured. */
  allFormatsPeakRssMb?: number;
}

/**
 * Every output format in one build, but for three whose files clash with another's: vhd
 * (dynamic-vhd writes NAME.vhd too), kernel+iso (iso-bios writes NAME.iso) and kernel+initrd
 * (kernel+squashfs has its own NAME-initrd.img).
 */
const ALL_FORMATS = FORMATS.filter((f) => !['vhd', 'kernel+iso', 'kernel+initrd'].includes(f));

/** Peak RSS of building `yml` in every format (the outputs are removed after). */
function allFormatsRss(yml: string, name: string): number | undefined {
  const out = path.join(WORK, 'out', `${name}-all`);
  rmSync(out, { recursive: true, force: true });
  const peak = peakRssMb([
    'build',
    '-dir',
    out,
    '-name',
    name,
    ...ALL_FORMATS.flatMap((f) => ['-format', f]),
    yml,
  ]);
  rmSync(out, { recursive: true, force: true });
  return peak;
}

/**
 * Memory as the image grows: minimal.yml plus one `files:` source of `mb` MB of random bytes,
 * built warm once (time and peak RSS of the same run).
 */
function growth(example: string, mb: number, allFormats: boolean): Growth {
  const name = `grow${mb}`;
  const out = path.join(WORK, 'out', name);
  const data = path.join(WORK, `${name}.bin`);
  const fd = openSync(data, 'w');
  for (let i = 0; i < mb; i++) writeSync(fd, randomBytes(1 << 20));
  closeSync(fd);
  const base = variant(example, name);
  const yml = base.replace(/\.yml$/, `-${name}.yml`);
  const source = `  - path: var/big\n    source: ${JSON.stringify(data)}\n`;
  writeFileSync(yml, readFileSync(base, 'utf8').replace(/^files:\n/m, `files:\n${source}`));
  rmSync(out, { recursive: true, force: true });
  let peak: number | undefined;
  const seconds = timed(() => {
    peak = peakRssMb(['build', '-dir', out, '-name', name, yml]);
  });
  const initrdBytes = statSync(path.join(out, `${name}-initrd.img`)).size;
  rmSync(out, { recursive: true, force: true });
  const allFormatsPeakRssMb = allFormats ? allFormatsRss(yml, name) : undefined;
  rmSync(data, { force: true });
  return { addedMb: mb, seconds, peakRssMb: peak, initrdBytes, allFormatsPeakRssMb };
}

/** Empty the image cache and everything derived, but keep the downloaded Debian archives. */
function emptyImageCache(): void {
  if (!existsSync(CACHE)) return;
  for (const e of ['blobs', 'index.json', 'oci-layout', 'derived', 'builds', 'debian/resolved'])
    rmSync(path.join(CACHE, e), { recursive: true, force: true });
}

/**
 * The example with its relative @pkg: paths made absolute, plus one `files:` entry we can vary,
 * and our own public key as root's authorized key where the example has one.
 */
function variant(example: string, marker: string): string {
  const dir = path.dirname(example);
  const text = readFileSync(example, 'utf8')
    .replace(/@pkg:([^"'\s]+)/g, (_, p: string) => `@pkg:${path.resolve(dir, p)}`)
    .replace(
      /(path: root\/\.ssh\/authorized_keys\n\s+contents: )"[^"]*"/,
      (_, head: string) => `${head}"${pubKey()}"`,
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

const KEY = path.join(WORK, 'id_ed25519');
/** A key pair for the ssh-ready measurement, made once. */
function pubKey(): string {
  if (!existsSync(KEY)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', KEY]);
  return readFileSync(`${KEY}.pub`, 'utf8').trim();
}

/**
 * A connection to `port` on which sshd has sent its banner, with the bytes read so far, or
 * undefined. qemu's port forward accepts a connection before anything listens in the guest, so
 * an ssh client would hang on it until its timeout: ask cheaply first.
 */
function sshBanner(port: number): Promise<{ sock: Socket; head: Buffer } | undefined> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    const done = (head?: Buffer) => {
      sock.removeAllListeners();
      sock.setTimeout(0);
      if (head?.subarray(0, 4).toString() === 'SSH-') return resolve({ sock, head });
      sock.destroy();
      resolve(undefined);
    };
    sock.setTimeout(1000, () => done());
    sock.once('data', (d) => {
      sock.pause();
      done(d);
    });
    sock.once('error', () => done());
    sock.once('close', () => done());
  });
}

/**
 * One ssh login that runs `true`, over the connection that got the banner (through a one-shot
 * local relay): a second connection would cost sshd another start of its per-connection
 * process (~0.3 s under TCG) that a user's first ssh after sshd is up does not pay. Asynchronous:
 * the VM's console must keep draining.
 */
async function sshOk(port: number): Promise<boolean> {
  const got = await sshBanner(port);
  if (!got) return false;
  const relay = createServer((client) => {
    relay.close();
    client.write(got.head);
    client.pipe(got.sock).pipe(client);
    got.sock.resume();
    const end = () => {
      client.destroy();
      got.sock.destroy();
    };
    client.once('error', end).once('close', end);
    got.sock.once('error', end).once('close', end);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const relayPort = (relay.address() as AddressInfo).port;
  try {
    return (await sshCommand(relayPort, KEY, 'true')).code === 0;
  } finally {
    relay.close();
    got.sock.destroy();
  }
}

interface Row {
  example: string;
  cold: Stat;
  warm: Stat;
  warmLz4: Stat;
  noop: Stat;
  oneFile: Stat;
  peakRssMb?: number;
  coldPeakRssMb?: number;
  initrdBytes: number;
  cpioBytes: number;
  gzipFloor: Stat;
  lz4Floor?: Stat;
  /** Our in-process parallel gzip over the same cpio. */
  ourGzip: Stat;
  boot?: Stat;
  bootMarker: string;
  /** minimal: qemu start to qemu's exit after the guest powered off. */
  poweroff?: Stat;
}

async function benchExample(example: string, bootMarker: RegExp | 'ssh'): Promise<Row> {
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
  const warmLz4: number[] = [];
  const lz4Out = path.join(WORK, 'out', `${name}-lz4`);
  for (let i = 0; i < RUNS; i++) {
    rmSync(lz4Out, { recursive: true, force: true });
    warmLz4.push(timed(() => cli(['build', '-compress', 'lz4', '-dir', lz4Out, '-name', name, yml])));
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
  emptyImageCache();
  rmSync(out, { recursive: true, force: true });
  const coldPeak = peakRssMb(['build', '-dir', out, '-name', name, yml]);

  const initrd = path.join(out, `${name}-initrd.img`);
  const cpio = path.join(WORK, `${name}.cpio`);
  writeFileSync(cpio, gunzipSync(readFileSync(initrd)));
  const gzipFloor: number[] = [];
  const lz4Floor: number[] = [];
  const ourGzip: number[] = [];
  const cpioBytes = readFileSync(cpio);
  for (let i = 0; i < RUNS; i++) {
    gzipFloor.push(timed(() => execFileSync('sh', ['-c', `gzip -6 -c '${cpio}' > /dev/null`])));
    if (existsSync('/usr/bin/lz4'))
      lz4Floor.push(timed(() => execFileSync('sh', ['-c', `lz4 -l -1 -c '${cpio}' > /dev/null`])));
    const t0 = process.hrtime.bigint();
    await gzipParallel(cpioBytes, 6);
    ourGzip.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }

  let boot: Stat | undefined;
  let poweroff: Stat | undefined;
  if (existsSync('/usr/bin/qemu-system-x86_64')) {
    const times: number[] = [];
    const offs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const port = await freePort();
      const stop = new AbortController();
      const t0 = Date.now();
      let at: number | undefined;
      const vm = runQemu({
        kernel: path.join(out, `${name}-kernel`),
        initrd,
        cmdline: readFileSync(path.join(out, `${name}-cmdline`), 'utf8'),
        console: {
          onLine: (l) => {
            if (bootMarker !== 'ssh') at ??= bootMarker.test(l) ? Date.now() : undefined;
          },
        },
        ...(bootMarker === 'ssh'
          ? {
              networking: { mode: 'user' as const },
              publish: [{ host: port, guest: 22, protocol: 'tcp' as const }],
            }
          : {}),
        stop: stop.signal,
        timeoutMs: 300_000,
      });
      let exited = false;
      const done = vm.then(() => {
        exited = true;
      });
      if (bootMarker === 'ssh') {
        while (!exited && at === undefined) {
          if (await sshOk(port)) at = Date.now();
          else await new Promise((r) => setTimeout(r, 100));
        }
        stop.abort();
      }
      const r = await vm;
      await done;
      if (at === undefined) throw new Error(`${name}: boot never reached ${bootMarker}`);
      times.push((at - t0) / 1000);
      if (bootMarker !== 'ssh' && r.poweredOff) offs.push((Date.now() - t0) / 1000);
    }
    boot = stat(times);
    if (offs.length) poweroff = stat(offs);
  }
  return {
    example: path.relative(REPO, example),
    cold: stat(cold),
    warm: stat(warm),
    warmLz4: stat(warmLz4),
    noop: stat(noop),
    oneFile: stat(oneFile),
    peakRssMb: peak,
    coldPeakRssMb: coldPeak,
    initrdBytes: statSync(initrd).size,
    cpioBytes: statSync(cpio).size,
    gzipFloor: stat(gzipFloor),
    ...(lz4Floor.length ? { lz4Floor: stat(lz4Floor) } : {}),
    ourGzip: stat(ourGzip),
    boot,
    bootMarker: bootMarker === 'ssh' ? 'ssh login' : bootMarker.source,
    ...(poweroff ? { poweroff } : {}),
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
  const examples: [string, RegExp | 'ssh'][] = [[path.join(REPO, 'examples', 'minimal.yml'), /suite PASSED/]];
  const sshd = path.join(REPO, 'examples', 'sshd.yml');
  if (existsSync(sshd)) examples.push([sshd, 'ssh']);
  const rows: Row[] = [];
  for (const [ex, marker] of examples) rows.push(await benchExample(ex, marker));
  // Every format is built at 0 and 256 MB (64 with --quick), not at 1 GB: that would write
  // ~20 GB of images.
  const grown = (quick ? [64] : [256, 1024]).map((mb) => growth(examples[0]![0], mb, mb <= 256));
  const allFormatsAtZero = allFormatsRss(variant(examples[0]![0], 'all'), 'all');
  const accel = await probeAccel();
  const base = rows[0]!;
  // The first row is the example itself (its warm build above), nothing added.
  const start: Growth = {
    addedMb: 0,
    seconds: base.warm.median,
    peakRssMb: base.peakRssMb,
    initrdBytes: base.initrdBytes,
    allFormatsPeakRssMb: allFormatsAtZero,
  };
  const results = {
    node: process.version,
    cpus: os.cpus().length,
    accel,
    runs: RUNS,
    rows,
    growth: [start, ...grown],
  };
  writeFileSync(path.join(REPO, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const head = [
    'example',
    'cold s',
    'warm s',
    'warm/floor',
    'warm lz4 s',
    'no-op s',
    '1 file s',
    'gzip -6 floor s',
    'our gzip s',
    'lz4 -l floor s',
    'peak RSS MB',
    'cold peak RSS MB',
    'initrd MB',
    `boot s (${accel})`,
    'power-off s',
  ];
  const lines = rows.map((r) =>
    [
      r.example,
      fmt(r.cold),
      fmt(r.warm),
      (r.warm.median / r.gzipFloor.median).toFixed(2),
      fmt(r.warmLz4),
      fmt(r.noop),
      fmt(r.oneFile),
      fmt(r.gzipFloor),
      fmt(r.ourGzip),
      fmt(r.lz4Floor),
      r.peakRssMb?.toFixed(0) ?? '-',
      r.coldPeakRssMb?.toFixed(0) ?? '-',
      (r.initrdBytes / 1e6).toFixed(2),
      `${fmt(r.boot)} (${r.bootMarker})`,
      fmt(r.poweroff),
    ].join(' | '),
  );
  process.stdout.write(
    `| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n${lines.map((l) => `| ${l} |`).join('\n')}\n`,
  );
  const growthLines = [start, ...grown].map(
    (g) =>
      `| ${g.addedMb} | ${g.seconds.toFixed(2)} | ${g.peakRssMb?.toFixed(0) ?? '-'} | ${(g.initrdBytes / 1e6).toFixed(2)} | ${g.allFormatsPeakRssMb?.toFixed(0) ?? '-'} |`,
  );
  process.stdout.write(
    `\nminimal.yml plus one files: source of random bytes (warm build, one run each):\n| MB added | build s | peak RSS MB | initrd MB | peak RSS MB, every format |\n|---|---|---|---|---|\n${growthLines.join('\n')}\n`,
  );
  process.stdout.write(`medians (min-max) of ${RUNS} run(s); wrote bench/results.json\n`);
}

await main();
