/**
 * Running a LinuxKit kernel + initrd under qemu-system-x86_64, and choosing the accelerator.
 *
 * KVM cannot be trusted just because /dev/kvm opens: on some hosts KVM_RUN hangs for ever
 * (and `accel=kvm:tcg` does not fall back, it hangs too). So probeAccel boots a real guest: a
 * 512-byte boot sector that writes to qemu's isa-debug-exit port, under KVM, in a child with a
 * deadline. Only if qemu then exits with the debug-exit status is KVM used.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { fileIdentityWithDevice } from '../util/lru.js';
import { drivesVirtioMmio, readHostTscKhz } from './microvm.js';
import { pvhKernelFile } from './pvh.js';

export type Accel = 'kvm' | 'tcg';

export const DEFAULT_QEMU = 'qemu-system-x86_64';

/**
 * Two vCPUs where the host has two cores: under TCG each vCPU is a host thread, so the guest's
 * boot work overlaps (initramfs unpacking, containers), and an SMP kernel skips patching out
 * every lock prefix, as a uniprocessor one does at boot (~0.3 s under TCG). Measured: minimal
 * reaches power-off ~0.4 s sooner.
 */
export const DEFAULT_CPUS = Math.min(2, os.availableParallelism());
const QEMU_PACKAGE = 'qemu-system-x86';

/** The port and value the probe's boot sector writes; qemu then exits with (value << 1) | 1. */
const DEBUG_EXIT_PORT = 0xf4;
const DEBUG_EXIT_VALUE = 0x01;
const DEBUG_EXIT_STATUS = (DEBUG_EXIT_VALUE << 1) | 1;

/**
 * A BIOS boot sector (loaded at 0000:7c00, real mode):
 *   b0 01     mov al, 1
 *   e6 f4     out 0xf4, al      ; isa-debug-exit: qemu exits with status 3
 *   f4        hlt
 *   eb fd     jmp -3            ; back to hlt, should the write not end qemu
 * zero padding, and the 55 aa signature at offset 510.
 */
export function probeBootSector(): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from([0xb0, DEBUG_EXIT_VALUE, 0xe6, DEBUG_EXIT_PORT, 0xf4, 0xeb, 0xfd]).copy(b, 0);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** The path of `cmd` on PATH (or cmd itself if it names a file), or undefined. */
async function findExecutable(cmd: string): Promise<string | undefined> {
  const candidates = cmd.includes('/')
    ? [cmd]
    : (process.env.PATH ?? '')
        .split(':')
        .filter(Boolean)
        .map((d) => path.join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, fsConstants.X_OK);
      if ((await stat(c)).isFile()) return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function requireQemu(qemu: string): Promise<string> {
  const found = await findExecutable(qemu);
  if (!found) throw new UserError(`${qemu} not found: install it with \`apt-get install ${QEMU_PACKAGE}\``);
  return found;
}

function cpuArgs(accel: Accel): string[] {
  // -cpu host only exists with KVM; TCG's default model boots the Debian kernel fine.
  return accel === 'kvm' ? ['-cpu', 'host'] : [];
}

/** Kill a child (its pid only) and wait until it is gone. */
function killAndWait(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/**
 * Does a guest run to completion under `accel`? Boots the probe boot sector in a child qemu,
 * killed (by its pid) after timeoutMs; true only if it exits with the debug-exit status.
 */
export async function bootProbe(qemu: string, accel: Accel, timeoutMs: number): Promise<boolean> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'linuxkit-accel-'));
  try {
    const disk = path.join(dir, 'boot.img');
    await writeFile(disk, probeBootSector());
    // SeaBIOS cannot read a one-sector disk ("could not read the boot disk"); 1 MiB, sparse, it can.
    await truncate(disk, 1 << 20);
    const args = [
      '-machine',
      `q35,accel=${accel}`,
      ...cpuArgs(accel),
      '-m',
      '16',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-monitor',
      'none',
      '-serial',
      'none',
      '-device',
      `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`,
      '-drive',
      `file=${disk},format=raw,if=ide`,
    ];
    const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        void killAndWait(child).then(() => resolve(null));
      }, timeoutMs);
      child.once('error', () => {
        clearTimeout(timer);
        resolve(null);
      });
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    return code === DEBUG_EXIT_STATUS;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The qemu binary's identity (device, inode, change time, size): an upgraded qemu is a new file.
 * Cheaper than asking it its version, which costs a qemu start (~40 ms) at every run.
 */
async function qemuIdentity(qemu: string): Promise<string> {
  return fileIdentityWithDevice(await stat(qemu, { bigint: true }));
}

/** Host state, not image data: kept out of the OCI image-layout cache so the layout stays clean. */
function defaultCacheDir(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'linuxkit');
}

const memo = new Map<string, Promise<Accel>>();

export interface ProbeOptions {
  /** Where the answer is kept between runs (file accel-probe.json); default ~/.cache/linuxkit. */
  cacheDir?: string;
  /** How long the KVM test guest may take before KVM counts as hung. */
  timeoutMs?: number;
}

/**
 * 'kvm' if a KVM guest really runs here, else 'tcg'. LINUXKIT_QEMU_ACCEL=kvm|tcg overrides.
 * The answer is kept for the process, and on disk keyed by the qemu binary, the host kernel and
 * /dev/kvm, so a hanging KVM costs the probe's timeout once, not at every run.
 */
export async function probeAccel(qemu: string = DEFAULT_QEMU, opts: ProbeOptions = {}): Promise<Accel> {
  const forced = process.env.LINUXKIT_QEMU_ACCEL;
  if (forced !== undefined && forced !== '') {
    if (forced !== 'kvm' && forced !== 'tcg')
      throw new UserError(`LINUXKIT_QEMU_ACCEL must be kvm or tcg, not ${JSON.stringify(forced)}`);
    return forced;
  }
  const exe = await requireQemu(qemu);
  let p = memo.get(exe);
  if (!p) {
    p = probeUncached(exe, opts);
    memo.set(exe, p);
  }
  return p;
}

async function probeUncached(qemu: string, opts: ProbeOptions): Promise<Accel> {
  let kvmId: string;
  try {
    await access('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK);
    const s = await stat('/dev/kvm');
    kvmId = `${s.rdev}:${s.ino}`;
  } catch {
    return 'tcg'; // no KVM for us: nothing to probe or remember
  }
  const key = createHash('sha256')
    .update(JSON.stringify([qemu, await qemuIdentity(qemu), os.release(), os.version(), kvmId]))
    .digest('hex');
  const file = path.join(opts.cacheDir ?? defaultCacheDir(), 'accel-probe.json');
  try {
    const saved = JSON.parse(await readFile(file, 'utf8')) as { key?: string; accel?: string };
    if (saved.key === key && (saved.accel === 'kvm' || saved.accel === 'tcg')) return saved.accel;
  } catch {
    // no answer saved yet
  }
  const accel: Accel = (await bootProbe(qemu, 'kvm', opts.timeoutMs ?? 4000)) ? 'kvm' : 'tcg';
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, new TextEncoder().encode(`${JSON.stringify({ key, accel })}\n`));
  } catch {
    // a read-only cache only costs a probe next time
  }
  return accel;
}

/** How the VM's one NIC is attached (as upstream's -networking). */
export type Networking =
  | { mode: 'user' }
  | { mode: 'tap'; ifname: string }
  | { mode: 'bridge'; bridge: string }
  | { mode: 'none' };

/** A host port forwarded to a guest port (user networking only). */
export interface Publish {
  host: number;
  guest: number;
  protocol: 'tcp' | 'udp';
}

/** A disk image file the guest sees as a virtio disk (/dev/vda, /dev/vdb, ... in order). */
export interface Drive {
  path: string;
  /** qemu's format name (raw, qcow2, vpc, vmdk, ...); default raw. */
  format?: string;
  readonly?: boolean;
}

export interface QemuOptions {
  /** Kernel boot: the kernel, its initrd and command line. */
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  /** CD-ROM boot from this ISO (BIOS, or UEFI with `uefi`). */
  iso?: string;
  /** Boot from this disk image (it becomes the first virtio disk). */
  bootDisk?: Drive;
  /** Boot over the network: qemu's iPXE ROM fetches this URL (user networking's bootfile). */
  netboot?: string;
  /** MB, default 1024. */
  mem?: number;
  /** default DEFAULT_CPUS */
  cpus?: number;
  /** default: probeAccel(qemu) */
  accel?: Accel;
  qemu?: string;
  /** 'stdio' (default): the serial console is the terminal (Ctrl-A X quits); or each output line. */
  console?: 'stdio' | { onLine(line: string): void };
  /** Kill the VM after this long; the result then has timedOut set. */
  timeoutMs?: number;
  /** More virtio disks, after the boot disk. */
  disks?: Drive[];
  /** A metadata ISO (the `config` file the metadata package reads), attached read-only last. */
  dataIso?: string;
  /** Default: none, i.e. no NIC at all. */
  networking?: Networking;
  publish?: Publish[];
  /** UEFI firmware: the code image (read-only) and this VM's own writable copy of the vars. */
  uefi?: { code: string; vars?: string };
  /** A copy of the console goes to this file. */
  consoleLog?: string;
  /** qemu writes its pid here. */
  pidFile?: string;
  /** Start the VM in the background (qemu -daemonize; needs pidFile and consoleLog) and return. */
  detached?: boolean;
  /**
   * Under TCG, a kernel boot starts the bzImage's vmlinux through PVH (see pvh.ts): ~0.5 s
   * sooner, without KASLR. Default true; false boots the bzImage as given.
   */
  pvh?: boolean;
  /**
   * A PVH kernel+initrd boot with no disks, data ISO, extra devices or arguments runs on qemu's
   * microvm machine where the guest and host allow it (see microvm.ts): ~0.4 s sooner under
   * TCG. Default true; false keeps q35.
   */
  microvm?: boolean;
  /** Where derived host data (the PVH kernel, the accelerator probe) is kept; default ~/.cache/linuxkit. */
  cacheDir?: string;
  /** A graphical display (qemu's default display and a VGA card) instead of none. */
  gui?: boolean;
  /** More `-device` specs. */
  devices?: string[];
  /** Stops the VM (as a signal to this process would) when aborted. */
  stop?: AbortSignal;
  extraArgs?: string[];
  /** With a captured console: what to type on it (piped to qemu's stdin, the serial input). */
  consoleInput?: NodeJS.ReadableStream;
}

export interface QemuResult {
  /** qemu's exit status (128 + signal number if it died of a signal). */
  code: number;
  /** The guest powered off (or, with -no-reboot, rebooted) and qemu exited 0 by itself. */
  poweredOff: boolean;
  timedOut?: boolean;
  /** With `detached`: the running qemu's pid (also in pidFile). */
  pid?: number;
  /** A kernel boot went through PVH (the kernel qemu was given is the derived vmlinux). */
  pvh?: boolean;
  /** The VM ran on the microvm machine (virtio-mmio devices), not q35. */
  microvm?: boolean;
}

/** `host:guest[/tcp|/udp]` as upstream's -publish. */
export function parsePublish(spec: string): Publish {
  const m = /^(\d+):(\d+)(?:\/(tcp|udp))?$/i.exec(spec.trim());
  const bad = () =>
    new UserError(`-publish ${spec}: expected HOST:GUEST or HOST:GUEST/tcp|udp, ports 1-65535`);
  if (!m) throw bad();
  const [host, guest] = [Number(m[1]), Number(m[2])];
  if (host < 1 || host > 65535 || guest < 1 || guest > 65535) throw bad();
  return { host, guest, protocol: (m[3]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp' };
}

/** `user`, `tap,IFNAME`, `bridge,BRIDGE` or `none` (`default` and empty mean user), as upstream. */
export function parseNetworking(spec: string): Networking {
  const [mode, arg, ...rest] = spec.split(',');
  const need = (what: string) => {
    if (!arg || rest.length) throw new UserError(`-networking ${spec}: expected ${mode},${what}`);
    return arg;
  };
  switch (mode) {
    case '':
    case 'default':
    case 'user':
      if (arg !== undefined) throw new UserError(`-networking ${spec}: user takes no argument`);
      return { mode: 'user' };
    case 'tap':
      return { mode: 'tap', ifname: need('INTERFACE') };
    case 'bridge':
      return { mode: 'bridge', bridge: need('BRIDGE') };
    case 'none':
      return { mode: 'none' };
    default:
      throw new UserError(`-networking ${spec}: the mode must be user, tap,IF, bridge,BR or none`);
  }
}

/** qemu -drive option values must double a comma inside a value. */
const optValue = (s: string) => s.replaceAll(',', ',,');

function driveArgs(d: Drive): string[] {
  const ro = d.readonly ? ',readonly=on' : '';
  return ['-drive', `file=${optValue(d.path)},format=${d.format ?? 'raw'},if=virtio${ro}`];
}

/** qemu's options plus how it starts: the accelerator and, on microvm, the host's TSC frequency in kHz. */
export type MachineOptions = QemuOptions & { accel: Accel; microvmTscKhz?: number };

/** A virtio device's name on this machine: PCI on q35, MMIO on microvm. */
const virtio = (opts: MachineOptions, kind: 'net' | 'rng') =>
  `virtio-${kind}-${opts.microvmTscKhz ? 'device' : 'pci'}`;

function netArgs(opts: MachineOptions): string[] {
  const net = opts.networking ?? { mode: 'none' };
  const publish = opts.publish ?? [];
  if (publish.length && net.mode !== 'user')
    throw new UserError(`-publish needs user networking, not ${net.mode}`);
  if (opts.netboot !== undefined && net.mode !== 'user')
    throw new UserError(`netboot needs user networking, not ${net.mode}`);
  let netdev: string;
  switch (net.mode) {
    case 'none':
      return []; // -nodefaults: no NIC at all
    case 'user':
      netdev = 'user,id=net0';
      for (const p of publish) netdev += `,hostfwd=${p.protocol}::${p.host}-:${p.guest}`;
      if (opts.netboot !== undefined) netdev += `,bootfile=${optValue(opts.netboot)}`;
      break;
    case 'tap':
      netdev = `tap,id=net0,ifname=${optValue(net.ifname)},script=no,downscript=no`;
      break;
    case 'bridge':
      netdev = `bridge,id=net0,br=${optValue(net.bridge)}`;
      break;
  }
  // status=off: the NIC reports no link state, so the guest's driver takes the link as up. With
  // it, the driver sets the carrier off as it registers the NIC and on again from a work item a
  // moment later; the kernel handles link changes at most once a second, so the NIC would come
  // up (IFF_RUNNING, which a DHCP client waits for) a second after the driver loaded: ~0.25 s
  // of idle boot under TCG here, more when the rest of the boot is faster. Without it the two
  // changes are handled as one, at once. (The guest then sees no `set_link` from qemu's monitor
  // and cannot announce itself after a migration: neither is used here.)
  return ['-netdev', netdev, '-device', `${virtio(opts, 'net')},netdev=net0,status=off`];
}

function consoleArgs(opts: QemuOptions): string[] {
  const captured = opts.console !== undefined && opts.console !== 'stdio';
  if (opts.detached) {
    if (!opts.consoleLog || !opts.pidFile)
      throw new UserError('a detached VM needs a console log and a pid file');
    return ['-serial', `file:${opts.consoleLog}`, '-monitor', 'none', '-daemonize'];
  }
  if (opts.consoleLog) {
    // One stdio chardev that also copies everything to the log file.
    const chardev = ['-chardev', `stdio,id=con0,mux=on,signal=off,logfile=${optValue(opts.consoleLog)}`];
    return captured
      ? [...chardev, '-serial', 'chardev:con0', '-monitor', 'none']
      : [...chardev, '-serial', 'chardev:con0', '-mon', 'chardev=con0,mode=readline'];
  }
  // stdio: serial and monitor share the terminal, as -nographic; captured: serial only.
  return captured ? ['-serial', 'stdio', '-monitor', 'none'] : ['-serial', 'mon:stdio'];
}

function bootArgs(opts: MachineOptions): string[] {
  const kinds = [opts.kernel, opts.iso, opts.bootDisk, opts.netboot].filter((k) => k !== undefined);
  if (kinds.length !== 1)
    throw new UserError('give exactly one of a kernel, an ISO, a boot disk or a netboot URL');
  if (opts.kernel !== undefined) {
    // No initrd: a kernel+squashfs boot, the root on the first disk.
    const initrd = opts.initrd !== undefined ? ['-initrd', opts.initrd] : [];
    // microvm: no reference clock to calibrate the TSC against, nor to watch it with (see
    // microvm.ts), so its frequency is given and it is trusted.
    const cmdline = opts.microvmTscKhz
      ? [opts.cmdline?.trim(), `tsc_early_khz=${opts.microvmTscKhz} tsc=reliable`].filter(Boolean).join(' ')
      : (opts.cmdline ?? '');
    return ['-kernel', opts.kernel, ...initrd, '-append', cmdline];
  }
  if (opts.iso !== undefined)
    return ['-drive', `file=${optValue(opts.iso)},format=raw,media=cdrom`, '-boot', 'd'];
  if (opts.bootDisk !== undefined) return driveArgs(opts.bootDisk);
  return ['-boot', 'n'];
}

/** The qemu command line for opts (without the binary). */
export function qemuArgs(opts: MachineOptions): string[] {
  const uefi = opts.uefi
    ? [
        '-drive',
        `if=pflash,format=raw,unit=0,readonly=on,file=${optValue(opts.uefi.code)}`,
        ...(opts.uefi.vars ? ['-drive', `if=pflash,format=raw,unit=1,file=${optValue(opts.uefi.vars)}`] : []),
      ]
    : [];
  return [
    '-machine',
    // microvm: ACPI describes the virtio-mmio devices (Debian's kernel does not read them from
    // its command line, so qemu need not add them there); the RTC gives the guest the date.
    opts.microvmTscKhz
      ? `microvm,accel=${opts.accel},acpi=on,rtc=on,auto-kernel-cmdline=off`
      : `q35,accel=${opts.accel}`,
    ...cpuArgs(opts.accel),
    '-m',
    String(opts.mem ?? 1024),
    '-smp',
    String(opts.cpus ?? DEFAULT_CPUS),
    // No default VGA, NIC, CD-ROM, floppy: only what is asked for.
    '-nodefaults',
    '-no-user-config',
    ...(opts.gui ? ['-vga', 'std'] : ['-display', 'none']),
    ...consoleArgs(opts),
    '-device',
    virtio(opts, 'rng'),
    '-no-reboot',
    ...(opts.pidFile ? ['-pidfile', opts.pidFile] : []),
    ...uefi,
    ...bootArgs(opts),
    ...(opts.disks ?? []).flatMap(driveArgs),
    ...(opts.dataIso ? driveArgs({ path: opts.dataIso, format: 'raw', readonly: true }) : []),
    ...netArgs(opts),
    ...(opts.devices ?? []).flatMap((d) => ['-device', d]),
    ...(opts.extraArgs ?? []),
  ];
}

const SIGNAL_NUMBERS: Record<string, number> = os.constants.signals;

/**
 * setpriv (util-linux) sets the parent-death signal and then execs qemu: if this process dies
 * in any way, even by SIGKILL, the kernel kills qemu too, so no VM outlives its runner.
 */
let pdeathsig: Promise<string | undefined> | undefined;
function deathSignalWrapper(): Promise<string | undefined> {
  pdeathsig ??= findExecutable('setpriv');
  return pdeathsig;
}

async function readable(what: string, f: string): Promise<void> {
  try {
    await access(f, fsConstants.R_OK);
  } catch {
    throw new UserError(`${what} ${f} cannot be read`);
  }
}

/** Start a detached VM: qemu -daemonize returns once the VM runs; its pid is in pidFile. */
async function runDetached(qemu: string, args: string[], pidFile: string): Promise<QemuResult> {
  const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => reject(new UserError(`cannot run ${qemu}: ${e.message}`)));
    child.once('close', (c, s) => resolve(c ?? 128 + (s ? (SIGNAL_NUMBERS[s] ?? 0) : 0)));
  });
  if (code !== 0) throw new UserError(`${qemu} failed (exit status ${code}): ${err.trim()}`);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  return { code: 0, poweredOff: false, pid };
}

/**
 * The TSC frequency to boot this PVH kernel with on microvm, or undefined for q35: when the
 * VM needs only what microvm offers (a kernel+initrd, the console, our NIC and RNG), and the
 * host's TSC frequency and the guest's virtio-mmio driver are known (see microvm.ts).
 */
async function microvmClock(opts: QemuOptions, vmlinux: string): Promise<number | undefined> {
  const needsQ35 =
    opts.microvm === false ||
    opts.initrd === undefined ||
    opts.gui ||
    opts.dataIso !== undefined ||
    !!opts.disks?.length ||
    !!opts.devices?.length ||
    !!opts.extraArgs?.length;
  if (needsQ35) return undefined;
  const tscKhz = await readHostTscKhz();
  if (tscKhz === undefined) return undefined;
  const kernelKey = path.basename(vmlinux, '.elf'); // pvh.ts names it by the kernel's sha256
  const ok = await drivesVirtioMmio(vmlinux, kernelKey, opts.initrd!, opts.cacheDir ?? defaultCacheDir());
  return ok ? tscKhz : undefined;
}

/**
 * Boot the VM and wait for qemu to exit. qemu is killed (by its pid) on timeout, and if this
 * process gets SIGINT, SIGTERM or SIGHUP, or exits, while it runs; where util-linux's setpriv
 * exists, also if this process is killed outright.
 */
export async function runQemu(opts: QemuOptions): Promise<QemuResult> {
  const qemu = await requireQemu(opts.qemu ?? DEFAULT_QEMU);
  if (opts.kernel !== undefined) await readable('kernel', opts.kernel);
  if (opts.initrd !== undefined) await readable('initrd', opts.initrd);
  if (opts.iso !== undefined) await readable('ISO', opts.iso);
  if (opts.bootDisk !== undefined) await readable('disk image', opts.bootDisk.path);
  if (opts.uefi) await readable('UEFI firmware', opts.uefi.code);
  const accel = opts.accel ?? (await probeAccel(qemu, { cacheDir: opts.cacheDir }));
  // OVMF's loader wants the bzImage (its EFI stub), and KVM boots it fast enough to keep KASLR.
  const pvhKernel =
    opts.kernel !== undefined && accel === 'tcg' && opts.pvh !== false && !opts.uefi
      ? await pvhKernelFile(opts.kernel, opts.cacheDir ?? defaultCacheDir())
      : undefined;
  const microvmTscKhz = pvhKernel ? await microvmClock(opts, pvhKernel) : undefined;
  const args = qemuArgs({ ...opts, accel, ...(pvhKernel ? { kernel: pvhKernel } : {}), microvmTscKhz });
  const how = { ...(pvhKernel ? { pvh: true } : {}), ...(microvmTscKhz ? { microvm: true } : {}) };
  if (opts.detached) return { ...(await runDetached(qemu, args, opts.pidFile!)), ...how };
  const onLine = opts.console !== undefined && opts.console !== 'stdio' ? opts.console.onLine : undefined;

  const wrapper = await deathSignalWrapper();
  const [cmd, argv] = wrapper ? [wrapper, ['--pdeathsig', 'KILL', '--', qemu, ...args]] : [qemu, args];
  const stdin = opts.consoleInput ? 'pipe' : 'ignore';
  const child = spawn(cmd, argv, { stdio: onLine ? [stdin, 'pipe', 'pipe'] : 'inherit' });
  if (onLine && opts.consoleInput && child.stdin) {
    child.stdin.on('error', () => {}); // qemu gone: nothing more to type
    opts.consoleInput.pipe(child.stdin);
  }
  let killedByUs = false;
  let timedOut = false;

  const stopChild = () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killedByUs = true;
    // SIGTERM lets qemu restore the terminal; SIGKILL if it does not go.
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    t.unref();
  };
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  let gotSignal: NodeJS.Signals | undefined;
  const signalHandlers: [NodeJS.Signals, () => void][] = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map(
    (sig) => [
      sig,
      () => {
        gotSignal = sig;
        stopChild();
      },
    ],
  );
  for (const [sig, h] of signalHandlers) process.on(sig, h);
  process.on('exit', onExit);

  const lines = (stream: NodeJS.ReadableStream | null) => {
    if (!stream || !onLine) return;
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i = buf.indexOf('\n');
      while (i >= 0) {
        onLine(buf.slice(0, i).replace(/\r$/, ''));
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    });
    stream.on('end', () => {
      if (buf !== '') onLine(buf.replace(/\r$/, ''));
      buf = '';
    });
  };
  lines(child.stdout);
  lines(child.stderr);

  opts.stop?.addEventListener('abort', stopChild, { once: true });
  if (opts.stop?.aborted) stopChild();
  let timer: NodeJS.Timeout | undefined;
  if (opts.timeoutMs !== undefined) {
    timer = setTimeout(() => {
      timedOut = true;
      stopChild();
    }, opts.timeoutMs);
  }

  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new UserError(`cannot run ${qemu}: ${e.message}`)));
      // 'close' (not 'exit'): all console output has been delivered by then.
      child.once('close', (c, s) => resolve(c ?? 128 + (s ? (SIGNAL_NUMBERS[s] ?? 0) : 0)));
    });
    return { code, poweredOff: code === 0 && !killedByUs, ...(timedOut ? { timedOut } : {}), ...how };
  } finally {
    if (timer) clearTimeout(timer);
    opts.stop?.removeEventListener('abort', stopChild);
    for (const [sig, h] of signalHandlers) process.off(sig, h);
    process.off('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) await killAndWait(child);
    // Our handler kept the signal from ending the process: now qemu is gone, let it.
    if (gotSignal && process.listenerCount(gotSignal) === 0) process.kill(process.pid, gotSignal);
  }
}
