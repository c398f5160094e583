/**
 * LinuxKit output format names -> writers. A writer is a small function from the assembled
 * system (plus disk size and boot loader files) to the files it produces; a file is either
 * bytes or a sparse image (written with holes). All byte files of one build appear atomically.
 *
 * Boot loaders come from package images (pkg/syslinux, pkg/systemd-boot in this repository),
 * resolved by the build like any image: see BOOTLOADERS and loadBootloaders.
 */
import { Buffer } from 'node:buffer';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Assembled } from '../build/assemble.js';
import { dataBytes, dataChunks, type FileData } from '../fs/data.js';
import { FsTree } from '../fs/tree.js';
import { scratchFile, writeFilesAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { sourceDateEpoch } from '../util/reproducible.js';
import {
  type DiskFormat,
  kernelInitrdTarChunks,
  rootfsTarChunks,
  squashfsInitrdTree,
  wrapDisk,
} from './artifacts.js';
import { gzip, type InitrdCompression, initrdStream } from './compress.js';
import { cpioChunks, writeCpio } from './cpio.js';
import { writeFat } from './fat.js';
import { iso9660Chunks } from './iso9660.js';
import { GPT_FIRST_USABLE, GPT_TYPES, stableGuid, writeGpt } from './partition.js';
import { type Extent, type SparseImage, sparseChunks, sparseImage, writeSparseFile } from './sparse.js';
import { squashfsParts } from './squashfs.js';

export interface OutputFile {
  path: string;
  /** Exactly one of data, stream and sparse. */
  data?: Uint8Array;
  /** Bytes made as the file is written (so a big output is never whole in memory). */
  stream?: Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
  sparse?: SparseImage;
}

export interface OutputContext {
  system: Assembled;
  /** DIR/NAME: each writer appends its suffix. */
  prefix: string;
  /** Disk size in bytes for disk formats (`-size`; default 1024 MiB). */
  size: number;
  /** Boot loader package trees by package name (see BOOTLOADERS). */
  boot: Map<string, FsTree>;
  /**
   * The compressed cpio of the root: made once per build into a scratch file (so its size is
   * not memory), shared by the formats that need it.
   */
  initrd(): FileData;
  /**
   * The same as the contents of NAME-initrd.img: read from that scratch file when another
   * format needs the initrd too, else made while the file is written.
   */
  initrdFile(): Pick<OutputFile, 'data' | 'stream'>;
  /**
   * An image that goes inside another (an ISO in a disk, a FAT file system in an ISO), written
   * to a scratch file beside the outputs (deleted once open). Made once per build under `what`:
   * the formats that embed the same image share it.
   */
  scratch(what: string, chunks: () => Iterable<Uint8Array>): Promise<FileData>;
}

export type Writer = (ctx: OutputContext) => OutputFile[] | Promise<OutputFile[]>;

export const DEFAULT_DISK_SIZE = 1024 * 1024 * 1024;
const MIB = 1 << 20;
const utf8 = (s: string) => new TextEncoder().encode(s);

function needKernel(system: Assembled, format: string): Uint8Array {
  if (!system.kernel) throw new UserError(`format ${format} needs a kernel: the YAML has no kernel section`);
  return system.kernel;
}

/** A file from a boot loader package image. */
function bootFile(ctx: OutputContext, pkg: string, file: string): Uint8Array {
  const e = ctx.boot.get(pkg)?.get(file);
  if (e?.kind !== 'file') throw new UserError(`boot loader package ${pkg} has no file /${file}`);
  return dataBytes(e.data);
}

/** A tree of plain root-owned files, dated with the build's epoch (the cmdline is fixed data). */
function fileTree(files: Record<string, FileData>, mtime = 0): FsTree {
  const t = new FsTree();
  for (const [path, data] of Object.entries(files))
    t.set({ path, kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime, data }, { mtime });
  return t;
}

// ---- boot loader configurations and images ---------------------------------------------------

const SYSLINUX = 'syslinux';
const SYSTEMD_BOOT = 'systemd-boot';

function isolinuxCfg(cmdline: string): Uint8Array {
  return utf8(
    [
      'serial 0 115200',
      'default linuxkit',
      'prompt 0',
      'timeout 0',
      'label linuxkit',
      '  kernel /kernel',
      `  append initrd=/initrd.img ${cmdline}`.trimEnd(),
      '',
    ].join('\n'),
  );
}

/** The BIOS-bootable hybrid ISO: isolinux (El Torito, boot info table) and an isohybrid MBR. */
function biosIso(ctx: OutputContext, format: string): Generator<Uint8Array> {
  const tree = fileTree({
    'isolinux/isolinux.bin': bootFile(ctx, SYSLINUX, 'usr/lib/ISOLINUX/isolinux.bin'),
    'isolinux/ldlinux.c32': bootFile(ctx, SYSLINUX, 'usr/lib/syslinux/modules/bios/ldlinux.c32'),
    'isolinux/isolinux.cfg': isolinuxCfg(ctx.system.cmdline),
    kernel: needKernel(ctx.system, format),
    'initrd.img': ctx.initrd(),
  });
  return iso9660Chunks(tree, {
    volumeId: 'LINUXKIT',
    boot: { bios: 'isolinux/isolinux.bin', catalog: 'isolinux/boot.cat' },
    hybrid: { mbrCode: bootFile(ctx, SYSLINUX, 'usr/lib/ISOLINUX/isohdpfx.bin') },
  });
}

/** An EFI System Partition's files: systemd-boot with one entry carrying the YAML's cmdline. */
function espTree(ctx: OutputContext, format: string): FsTree {
  const entry = ['title LinuxKit', 'linux /kernel', 'initrd /initrd.img'];
  if (ctx.system.cmdline.trim()) entry.push(`options ${ctx.system.cmdline.trim()}`);
  return fileTree({
    'EFI/BOOT/BOOTX64.EFI': bootFile(ctx, SYSTEMD_BOOT, 'usr/lib/systemd/boot/efi/systemd-bootx64.efi'),
    'loader/loader.conf': utf8('default linuxkit.conf\ntimeout 0\neditor no\n'),
    'loader/entries/linuxkit.conf': utf8(`${entry.join('\n')}\n`),
    kernel: needKernel(ctx.system, format),
    'initrd.img': ctx.initrd(),
  });
}

/** The UEFI-bootable hybrid ISO: a FAT ESP image as the El Torito EFI entry and an MBR partition. */
async function efiIso(ctx: OutputContext, format: string): Promise<Generator<Uint8Array>> {
  const esp = await ctx.scratch('esp', () =>
    sparseChunks(writeFat(espTree(ctx, format), { label: 'LINUXKIT' })),
  );
  return iso9660Chunks(fileTree({ 'boot/efi.img': esp }), {
    volumeId: 'LINUXKIT',
    boot: { efi: 'boot/efi.img', catalog: 'boot/boot.cat' },
    hybrid: {},
  });
}

/** A disk image of `size` with the given extents and nothing else (the rest are holes). */
function disk(size: number, extents: Extent[]): SparseImage {
  return sparseImage(size, extents);
}

function diskSize(ctx: OutputContext, min: number, format: string): number {
  const size = Math.ceil(ctx.size / MIB) * MIB;
  if (size < min)
    throw new UserError(
      `format ${format} needs a disk of at least ${Math.ceil(min / MIB)} MiB (-size ${Math.ceil(ctx.size / MIB)}M)`,
    );
  return size;
}

/**
 * GPT disk whose one partition (1 MiB to the end) is a FAT ESP with systemd-boot. Exported for
 * the formats that wrap a disk (qcow2-efi, vhd, ...).
 */
export function efiDisk(ctx: OutputContext, format: string): SparseImage {
  const tree = espTree(ctx, format);
  const size = diskSize(ctx, 40 * MIB, format);
  const sectors = size / 512;
  const start = 2048;
  const end = sectors - GPT_FIRST_USABLE; // last usable sector + 1
  const partSectors = Math.floor((end - start) / 2048) * 2048;
  const fat = writeFat(tree, { size: partSectors * 512, label: 'LINUXKIT', partitionStart: start });
  const gpt = writeGpt(
    [
      {
        type: GPT_TYPES.efiSystem,
        guid: stableGuid('linuxkit esp'),
        name: 'EFI System',
        start,
        sectors: partSectors,
      },
    ],
    sectors,
    { diskGuid: stableGuid(`linuxkit disk ${size}`) },
  );
  return disk(size, [
    { offset: 0, data: gpt.head },
    ...fat.extents.map((e) => ({ offset: e.offset + start * 512, data: e.data })),
    { offset: gpt.tailOffset, data: gpt.tail },
  ]);
}

/**
 * BIOS disk: the isohybrid image (MBR with isolinux's loader, partition 1 over the ISO 9660
 * file system) at the start of a disk of `size`; the rest is unpartitioned holes. (Syslinux on
 * a FAT partition, as upstream, needs ldlinux.sys, which Debian ships only inside its installer
 * binary.) Exported for the formats that wrap a disk (qcow2-bios, vhd, ...).
 */
export async function biosDisk(ctx: OutputContext, format: string): Promise<SparseImage> {
  const iso = await ctx.scratch('bios iso', () => biosIso(ctx, format));
  const size = Math.max(diskSize(ctx, 1, format), iso.length);
  return disk(size, [{ offset: 0, data: iso }]);
}

/** The root as a squashfs image, its compressed data made into a scratch file first. */
async function squashfsImage(root: FsTree, scratch: OutputContext['scratch']): Promise<Iterable<Uint8Array>> {
  const parts = squashfsParts(root, { epoch: epoch() });
  const data = await scratch('squashfs data', () => parts.data);
  const { head, tail } = parts.finish();
  return (function* () {
    yield head;
    yield* dataChunks(data);
    yield* tail;
  })();
}

/** SOURCE_DATE_EPOCH or 0: the one timestamp outputs carry. */
const epoch = () => sourceDateEpoch() ?? 0;

/** A raw disk wrapped in a hypervisor or cloud format (see artifacts.ts for names). */
function wrapped(ctx: OutputContext, format: DiskFormat, raw: SparseImage, infix = ''): OutputFile {
  const name = path.basename(ctx.prefix) + infix;
  const out = wrapDisk(format, raw, name, epoch());
  const file = `${ctx.prefix}${infix}${out.suffix}`;
  return out.image ? { path: file, sparse: out.image } : { path: file, stream: out.stream! };
}

// ---- the map -----------------------------------------------------------------------------------

const writers: Record<string, Writer> = {
  'kernel+initrd': ({ system, prefix, initrdFile }) => [
    { path: `${prefix}-kernel`, data: needKernel(system, 'kernel+initrd') },
    { path: `${prefix}-initrd.img`, ...initrdFile() },
    { path: `${prefix}-cmdline`, data: utf8(system.cmdline) },
  ],
  // The root file system as an ISO 9660 (Rock Ridge) image beside the kernel, as upstream.
  'kernel+iso': ({ system, prefix }) => [
    { path: `${prefix}-kernel`, data: needKernel(system, 'kernel+iso') },
    { path: `${prefix}-cmdline`, data: utf8(system.cmdline) },
    { path: `${prefix}.iso`, stream: iso9660Chunks(system.root, { volumeId: 'LINUXKIT', joliet: false }) },
  ],
  'iso-bios': (ctx) => [{ path: `${ctx.prefix}.iso`, stream: biosIso(ctx, 'iso-bios') }],
  'iso-efi': async (ctx) => [{ path: `${ctx.prefix}-efi.iso`, stream: await efiIso(ctx, 'iso-efi') }],
  'iso-efi-initrd': async (ctx) => [
    { path: `${ctx.prefix}-efi-initrd.iso`, stream: await efiIso(ctx, 'iso-efi-initrd') },
  ],
  'raw-bios': async (ctx) => [{ path: `${ctx.prefix}-bios.img`, sparse: await biosDisk(ctx, 'raw-bios') }],
  'raw-efi': (ctx) => [{ path: `${ctx.prefix}-efi.img`, sparse: efiDisk(ctx, 'raw-efi') }],

  'tar-kernel-initrd': ({ system, prefix, initrd }) => [
    {
      path: `${prefix}-initrd.tar`,
      stream: kernelInitrdTarChunks(
        needKernel(system, 'tar-kernel-initrd'),
        initrd(),
        system.cmdline,
        epoch(),
      ),
    },
  ],
  tar: ({ system, prefix }) => [
    { path: `${prefix}.tar`, stream: rootfsTarChunks(system.root, system.kernel, system.cmdline, epoch()) },
  ],
  docker: ({ system, prefix }) => [
    {
      path: `${prefix}.docker`,
      stream: rootfsTarChunks(system.root, system.kernel, system.cmdline, epoch(), true),
    },
  ],
  // Root on squashfs; a small initramfs loads the modules it needs and switches to it.
  'kernel+squashfs': async ({ system, prefix, scratch }) => [
    { path: `${prefix}-kernel`, data: needKernel(system, 'kernel+squashfs') },
    { path: `${prefix}-squashfs.img`, stream: await squashfsImage(system.root, scratch) },
    {
      path: `${prefix}-initrd.img`,
      data: gzip(writeCpio(squashfsInitrdTree(system.root, epoch()).entries()), 6),
    },
    { path: `${prefix}-cmdline`, data: utf8(system.cmdline) },
  ],
  'qcow2-bios': async (ctx) => [wrapped(ctx, 'qcow2', await biosDisk(ctx, 'qcow2-bios'))],
  'qcow2-efi': (ctx) => [wrapped(ctx, 'qcow2', efiDisk(ctx, 'qcow2-efi'), '-efi')],
  vhd: async (ctx) => [wrapped(ctx, 'vhd', await biosDisk(ctx, 'vhd'))],
  'dynamic-vhd': async (ctx) => [wrapped(ctx, 'dynamic-vhd', await biosDisk(ctx, 'dynamic-vhd'))],
  vmdk: async (ctx) => [wrapped(ctx, 'vmdk', await biosDisk(ctx, 'vmdk'))],
  gcp: async (ctx) => [wrapped(ctx, 'gcp', await biosDisk(ctx, 'gcp'))],
  aws: async (ctx) => [wrapped(ctx, 'aws', await biosDisk(ctx, 'aws'))],
  azure: async (ctx) => [wrapped(ctx, 'azure', await biosDisk(ctx, 'azure'))],
};

/**
 * The files each format writes, as suffixes of DIR/NAME, so that two formats that would write
 * one file are refused before any work (a disk image can take minutes). Only NAME-kernel and
 * NAME-cmdline may be shared: every format that writes them writes the same bytes.
 */
const FILES: Record<string, string[]> = {
  'kernel+initrd': ['-kernel', '-initrd.img', '-cmdline'],
  'kernel+iso': ['-kernel', '-cmdline', '.iso'],
  'iso-bios': ['.iso'],
  'iso-efi': ['-efi.iso'],
  'iso-efi-initrd': ['-efi-initrd.iso'],
  'raw-bios': ['-bios.img'],
  'raw-efi': ['-efi.img'],
  'tar-kernel-initrd': ['-initrd.tar'],
  tar: ['.tar'],
  docker: ['.docker'],
  'kernel+squashfs': ['-kernel', '-squashfs.img', '-initrd.img', '-cmdline'],
  'qcow2-bios': ['.qcow2'],
  'qcow2-efi': ['-efi.qcow2'],
  vhd: ['.vhd'],
  'dynamic-vhd': ['.vhd'],
  vmdk: ['.vmdk'],
  gcp: ['.img.tar.gz'],
  aws: ['.raw'],
  azure: ['-azure.vhd'],
};
const SHARED_FILES = new Set(['-kernel', '-cmdline']);

/** The files `formats` write under `prefix` (see FILES), or a UserError naming a clash. */
export function outputFiles(formats: string[], prefix: string): string[] {
  checkFormats(formats);
  const by = new Map<string, string>();
  for (const f of new Set(formats)) {
    for (const suffix of FILES[f]!) {
      const other = by.get(suffix);
      if (other !== undefined && !SHARED_FILES.has(suffix))
        throw new UserError(`formats ${other} and ${f} both write ${prefix}${suffix}: build them separately`);
      by.set(suffix, other ?? f);
    }
  }
  return [...by.keys()].map((suffix) => `${prefix}${suffix}`);
}

/** Boot loader packages each format needs (package directory names under pkg/). */
const BOOTLOADERS: Record<string, string[]> = {
  'iso-bios': [SYSLINUX],
  'raw-bios': [SYSLINUX],
  'iso-efi': [SYSTEMD_BOOT],
  'iso-efi-initrd': [SYSTEMD_BOOT],
  'raw-efi': [SYSTEMD_BOOT],
  'qcow2-bios': [SYSLINUX],
  'qcow2-efi': [SYSTEMD_BOOT],
  vhd: [SYSLINUX],
  'dynamic-vhd': [SYSLINUX],
  vmdk: [SYSLINUX],
  gcp: [SYSLINUX],
  aws: [SYSLINUX],
  azure: [SYSLINUX],
};

/** Where the boot loader package directories are: this repository's pkg/. */
export const BOOTLOADER_PKG_DIR = fileURLToPath(new URL('../../../pkg/', import.meta.url));

export const FORMATS = Object.keys(writers);

export function checkFormats(formats: string[]): void {
  for (const f of formats) {
    if (!writers[f])
      throw new UserError(`unknown output format ${JSON.stringify(f)}; supported: ${FORMATS.join(', ')}`);
  }
}

/** The boot loader package directories `formats` need (absolute paths, for `@pkg:`). */
export function bootloaderPackages(formats: string[]): string[] {
  const names = [...new Set(formats.flatMap((f) => BOOTLOADERS[f] ?? []))].sort();
  return names.map((n) => `${BOOTLOADER_PKG_DIR}${n}`);
}

/**
 * Loads the boot loader trees `formats` need; `tree(dir)` resolves a package directory the way
 * the build resolves `@pkg:DIR` (built and cached on demand, pinned by its tag).
 */
export async function loadBootloaders(
  formats: string[],
  tree: (pkgDir: string) => Promise<FsTree>,
): Promise<Map<string, FsTree>> {
  const out = new Map<string, FsTree>();
  for (const dir of bootloaderPackages(formats))
    out.set(dir.slice(BOOTLOADER_PKG_DIR.length), await tree(dir));
  return out;
}

/** Formats that carry no initrd of the whole root (so none is compressed for them). */
const NO_INITRD = new Set(['kernel+iso', 'tar', 'docker', 'kernel+squashfs']);

export interface WriteOptions {
  size?: number;
  /** How the initrd's cpio is compressed (`-compress`; default gzip). */
  compress?: InitrdCompression;
  /** Where compressed pieces of the initrd are kept for the next build (none: no reuse). */
  pieceCache?: string;
  boot?: Map<string, FsTree>;
  /** Files written with the outputs, at PREFIX + suffix (e.g. the merged SBOM). */
  extra?: { suffix: string; data: Uint8Array }[];
}

/** Runs each format's writer; returns the paths written. */
export async function writeOutputs(
  system: Assembled,
  formats: string[],
  prefix: string,
  opts: WriteOptions = {},
): Promise<string[]> {
  outputFiles(formats, prefix); // a clash is refused here, before any writer runs
  formats = [...new Set(formats)];
  // The compressed cpio streams straight into NAME-initrd.img (compressed on every core as the
  // cpio is written). Formats that put it inside an image read it: it is made up front, into a
  // scratch file beside the outputs.
  const stream = () =>
    initrdStream(cpioChunks(system.root.entries()), opts.compress ?? 'gzip', opts.pieceCache);
  const initrd = formats.some((f) => !NO_INITRD.has(f) && f !== 'kernel+initrd')
    ? await scratchFile(path.dirname(prefix), stream())
    : undefined;
  const scratches = new Map<string, Promise<FileData>>();
  const ctx: OutputContext = {
    system,
    prefix,
    size: opts.size ?? DEFAULT_DISK_SIZE,
    boot: opts.boot ?? new Map(),
    initrd: () => {
      if (!initrd) throw new Error('internal error: a format listed in NO_INITRD asked for the initrd');
      return initrd;
    },
    initrdFile: () => ({ stream: initrd ? dataChunks(initrd) : stream() }),
    scratch: (what, chunks) => {
      const file = scratches.get(what) ?? scratchFile(path.dirname(prefix), chunks());
      scratches.set(what, file);
      return file;
    },
  };
  // Formats may share a file (kernel+initrd and kernel+iso both write NAME-kernel): same bytes
  // are written once; different bytes under one name are an error.
  const seen = new Map<string, OutputFile>();
  const files: OutputFile[] = [];
  const extra = (opts.extra ?? []).map((x) => ({ path: `${prefix}${x.suffix}`, data: x.data }));
  const made: OutputFile[] = [];
  for (const name of formats) made.push(...(await writers[name]!(ctx)));
  for (const f of [...made, ...extra]) {
    const prev = seen.get(f.path);
    if (!prev) {
      seen.set(f.path, f);
      files.push(f);
    } else if (!(prev.data && f.data && Buffer.from(prev.data).equals(f.data)))
      throw new UserError(`two formats write ${f.path}: build them separately`);
  }
  await writeFilesAtomic(
    files.flatMap((f) => {
      const data = f.data ?? f.stream;
      return data ? [{ path: f.path, data }] : [];
    }),
  );
  for (const f of files) if (f.sparse) await writeSparseFile(f.path, f.sparse);
  return files.map((f) => f.path);
}
