/**
 * From what a user names on `linuxkit run qemu` to a qemu invocation, as upstream's run_qemu.go:
 * the boot kind from PATH (a kernel+initrd or kernel+squashfs prefix, an .iso, else a disk
 * image), the state directory (default PREFIX-state: qemu.pid, console.log, created disks,
 * data.iso, this VM's copy of the UEFI vars), -disk specs (created with qemu-img when missing).
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { metadataIso } from './metadata.js';
import type { Drive, QemuOptions, QemuResult } from './qemu.js';
import { runQemu } from './qemu.js';

export type BootKind = 'kernel' | 'squashfs' | 'iso' | 'disk';

/** One -disk: an existing or new image; a new one needs a size. */
export interface DiskSpec {
  path?: string;
  /** MiB */
  size?: number;
  format?: string;
}

/** `[file=]PATH[,size=N(G|M)][,format=F]`, as upstream's -disk. */
export function parseDisk(spec: string): DiskSpec {
  const d: DiskSpec = {};
  for (const [i, part] of spec.split(',').entries()) {
    const eq = part.indexOf('=');
    const [k, v] = eq < 0 ? ['', part] : [part.slice(0, eq), part.slice(eq + 1)];
    if (k === 'file' || (k === '' && i === 0)) d.path = v;
    else if (k === 'size') {
      const m = /^(\d+)([GgMm]?)$/.exec(v);
      if (!m || Number(m[1]) === 0) throw new UserError(`-disk ${spec}: size must be N, NM or NG, e.g. 512M`);
      d.size = Number(m[1]) * (m[2]?.toUpperCase() === 'G' ? 1024 : 1);
    } else if (k === 'format') {
      if (!/^[a-z0-9]+$/.test(v)) throw new UserError(`-disk ${spec}: bad format ${JSON.stringify(v)}`);
      d.format = v;
    } else throw new UserError(`-disk ${spec}: unknown part ${JSON.stringify(part)}`);
  }
  if (!d.path && d.size === undefined) throw new UserError(`-disk ${spec}: give a file, a size or both`);
  return d;
}

/** qemu's format name for an existing image, from its magic numbers. */
export async function sniffFormat(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    if (head.subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb]))) return 'qcow2';
    if (head.subarray(0, 4).toString('latin1') === 'KDMV') return 'vmdk';
    if (head.subarray(0, 8).toString('latin1') === 'conectix') return 'vpc';
    const size = (await fh.stat()).size;
    if (bytesRead === 512 && size >= 512) {
      const foot = Buffer.alloc(8);
      await fh.read(foot, 0, 8, size - 512);
      if (foot.toString('latin1') === 'conectix') return 'vpc';
    }
    return 'raw';
  } finally {
    await fh.close();
  }
}

/** What PATH names, and the prefix the state dir is named after. `forced` is -kernel/-iso/-squashfs. */
export function bootKindOf(p: string, forced?: BootKind): { kind: BootKind; prefix: string } {
  const prefix = p.replace(/-(kernel|initrd\.img|cmdline|squashfs\.img)$/, '');
  const has = (suffix: string) => existsSync(`${prefix}${suffix}`);
  if (forced === 'kernel' || forced === 'squashfs') return { kind: forced, prefix };
  if (forced === 'iso') return { kind: 'iso', prefix: p.replace(/\.iso$/, '') };
  const isFile = existsSync(p) && statSync(p).isFile();
  if (isFile && p.endsWith('.iso')) return { kind: 'iso', prefix: p.slice(0, -4) };
  if (has('-kernel') && has('-initrd.img')) return { kind: 'kernel', prefix };
  if (has('-kernel') && has('-squashfs.img')) return { kind: 'squashfs', prefix };
  if (isFile) return { kind: 'disk', prefix: p };
  throw new UserError(
    `${p}: not found as a kernel+initrd prefix (${prefix}-kernel, ${prefix}-initrd.img), an ISO or a disk image`,
  );
}

const OVMF_DIR = '/usr/share/OVMF';

export interface RunVmOptions
  extends Omit<
    QemuOptions,
    'kernel' | 'initrd' | 'cmdline' | 'iso' | 'bootDisk' | 'disks' | 'dataIso' | 'uefi'
  > {
  /** What to boot: a kernel+initrd prefix, an ISO, a disk image (see bootKindOf). */
  path: string;
  kind?: BootKind;
  /** Default PREFIX-state. */
  stateDir?: string;
  disks?: DiskSpec[];
  /** User data for the metadata ISO. */
  data?: Uint8Array;
  uefi?: boolean;
  /** UEFI firmware code image (default OVMF_CODE.fd); its vars template sits beside it. */
  fw?: string;
  /** Extra text for a kernel boot's command line. */
  cmdlineExtra?: string;
}

function qemuImg(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', args, (err, _out, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return reject(new UserError('qemu-img not found: install it with `apt-get install qemu-utils`'));
      reject(new UserError(`qemu-img ${args.join(' ')}: ${stderr.trim() || err.message}`));
    });
  });
}

/** Resolve the boot kind, state dir, disks, UEFI vars and metadata ISO into runQemu options. */
export async function prepareVm(o: RunVmOptions): Promise<QemuOptions> {
  const { kind, prefix } = bootKindOf(o.path, o.kind);
  const state = path.resolve(o.stateDir ?? `${prefix}-state`);
  await mkdir(state, { recursive: true });
  const { path: _p, kind: _k, stateDir: _s, disks: _d, data, uefi, fw, cmdlineExtra, ...rest } = o;
  const q: QemuOptions = {
    ...rest,
    pidFile: o.pidFile ?? path.join(state, 'qemu.pid'),
    consoleLog: o.consoleLog ?? path.join(state, 'console.log'),
  };
  const drives: Drive[] = [];
  const cmdline = async () => {
    const f = `${prefix}-cmdline`;
    const base = existsSync(f) ? (await readFile(f, 'utf8')).trim() : '';
    return [base, cmdlineExtra].filter(Boolean).join(' ');
  };
  switch (kind) {
    case 'kernel':
      for (const s of ['-kernel', '-initrd.img'])
        if (!existsSync(prefix + s)) throw new UserError(`${prefix}${s} not found`);
      Object.assign(q, {
        kernel: `${prefix}-kernel`,
        initrd: `${prefix}-initrd.img`,
        cmdline: await cmdline(),
      });
      break;
    case 'squashfs': {
      for (const s of ['-kernel', '-squashfs.img'])
        if (!existsSync(prefix + s)) throw new UserError(`${prefix}${s} not found`);
      const cl = await cmdline();
      Object.assign(q, {
        kernel: `${prefix}-kernel`,
        // Our kernel+squashfs build writes a small initrd that loads the squashfs modules.
        ...(existsSync(`${prefix}-initrd.img`) ? { initrd: `${prefix}-initrd.img` } : {}),
        cmdline: /\broot=/.test(cl) ? cl : `${cl} root=/dev/vda`.trim(),
      });
      drives.push({ path: `${prefix}-squashfs.img`, format: 'raw', readonly: true });
      break;
    }
    case 'iso':
      if (!existsSync(o.path)) throw new UserError(`${o.path} not found`);
      q.iso = o.path;
      break;
    case 'disk':
      q.bootDisk = { path: o.path, format: await sniffFormat(o.path) };
      break;
  }
  for (const [i, d] of (o.disks ?? []).entries()) {
    const file = path.resolve(d.path ?? path.join(state, `disk${i === 0 ? '' : i}.img`));
    if (existsSync(file)) {
      drives.push({ path: file, format: d.format ?? (await sniffFormat(file)) });
      continue;
    }
    if (d.size === undefined) throw new UserError(`disk ${file} does not exist: give a size to create it`);
    const format = d.format ?? 'qcow2';
    await mkdir(path.dirname(file), { recursive: true });
    await qemuImg(['create', '-q', '-f', format, file, `${d.size}M`]);
    drives.push({ path: file, format });
  }
  q.disks = drives;
  if (data !== undefined) {
    const iso = path.join(state, 'data.iso');
    await writeFile(iso, metadataIso(data));
    q.dataIso = iso;
  }
  if (uefi) {
    const code = fw ?? path.join(OVMF_DIR, 'OVMF_CODE.fd');
    if (!existsSync(code))
      throw new UserError(`UEFI firmware ${code} not found: install it with \`apt-get install ovmf\``);
    // The writable vars store is per VM: a private copy in the state dir, kept across runs.
    const template = path.join(path.dirname(code), path.basename(code).replace('CODE', 'VARS'));
    const vars = path.join(state, 'OVMF_VARS.fd');
    if (template !== code && existsSync(template)) {
      if (!existsSync(vars)) await copyFile(template, vars);
      q.uefi = { code, vars };
    } else q.uefi = { code };
  }
  return q;
}

/** prepareVm, then runQemu. */
export async function runVm(o: RunVmOptions): Promise<QemuResult> {
  return runQemu(await prepareVm(o));
}
