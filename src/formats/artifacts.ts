/**
 * Output files other than kernel+initrd and the bootable disks' partition layout: the tar
 * outputs, kernel+squashfs, and the disk wrappers (qcow2, VHD, VMDK, GCE, AWS, Azure) around a
 * raw disk image. Names and contents follow upstream LinuxKit (moby/build/output.go, build.go):
 *
 *   tar-kernel-initrd  NAME-initrd.tar: kernel, initrd.img, cmdline (0644)
 *   tar                NAME.tar: boot/ (0755), boot/cmdline, boot/kernel, then the whole root
 *   docker             NAME.docker: the same plus a Dockerfile (FROM scratch, COPY . ./,
 *                      ENTRYPOINT the init), a `docker build -` context / `docker import` tar
 *   kernel+squashfs    NAME-kernel, NAME-squashfs.img (the root without boot/), NAME-cmdline,
 *                      and NAME-initrd.img: our kernel has squashfs and virtio_blk as modules,
 *                      so a small initramfs loads them and switches to the squashfs root
 *   gcp                NAME.img.tar.gz: disk.raw in an old-GNU sparse tar, gzipped, as GCE's
 *                      import documents (`tar --format=oldgnu -Sczf`)
 *
 * Old GNU sparse member (type 'S'; GNU tar's "oldgnu" format, magic "ustar  \0"):
 *   header: the usual name/mode/uid/gid/mtime/chksum/typeflag; size = bytes stored;
 *     386: 4 sparse entries (offset 12 + length 12, octal), 482: isextended, 483: real size
 *   extension blocks while isextended: 21 entries (504 bytes), 504: isextended
 *   then the stored chunks back to back, padded to 512. A file ending in a hole ends its map
 *   with (real size, 0).
 */
import { Buffer } from 'node:buffer';
import path from 'node:path';
import { dataBytes, dataChunks, dataSlice, type FileData } from '../fs/data.js';
import { type FsEntry, FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { gzipChunks } from './compress.js';
import { encodeQcow2 } from './qcow2.js';
import { dataBlocks, ExtentWriter, type SparseImage } from './sparse.js';
import { tarChunks } from './tar.js';
import { encodeAzureVhd, encodeDynamicVhd, encodeFixedVhd } from './vhd.js';
import { encodeVmdk } from './vmdk.js';

const utf8 = (s: string) => Buffer.from(s, 'utf8');

/**
 * NAME-initrd.tar: what kernel+initrd writes, as one tar (upstream's member names), in pieces
 * (the initrd read as it is reached when it is a file on disk).
 */
export function kernelInitrdTarChunks(
  kernel: Uint8Array,
  initrd: FileData,
  cmdline: string,
  mtime: number,
): Generator<Uint8Array> {
  const f = (path: string, data: FileData): FsEntry => ({
    path,
    kind: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime,
    data,
  });
  const members = [f('kernel', kernel), f('initrd.img', initrd)];
  if (cmdline) members.push(f('cmdline', utf8(cmdline)));
  return tarChunks(members);
}

/** The command a `docker build` of NAME.docker runs: our init (see pkg/init/init). */
const DOCKERFILE = 'FROM scratch\n\nCOPY . ./\n\nENTRYPOINT ["/init"]\n';

/**
 * NAME.tar / NAME.docker: the root file system with the kernel and cmdline under boot/, in
 * pieces, the files' data read as it is reached (see tarChunks).
 */
export function rootfsTarChunks(
  root: FsTree,
  kernel: Uint8Array | undefined,
  cmdline: string,
  mtime: number,
  docker = false,
): Generator<Uint8Array> {
  const head: FsEntry[] = [];
  const base = { uid: 0, gid: 0, mtime };
  if (kernel) {
    head.push({ ...base, path: 'boot', kind: 'dir', mode: 0o755 });
    head.push({ ...base, path: 'boot/cmdline', kind: 'file', mode: 0o644, data: utf8(cmdline) });
    head.push({ ...base, path: 'boot/kernel', kind: 'file', mode: 0o644, data: kernel });
  }
  const rest = root
    .entries()
    .filter((e) => !(kernel && (e.path === 'boot' || e.path === 'boot/cmdline' || e.path === 'boot/kernel')));
  const tail: FsEntry[] = docker
    ? [{ ...base, path: 'Dockerfile', kind: 'file', mode: 0o644, data: utf8(DOCKERFILE) }]
    : [];
  return tarChunks([...head, ...rest, ...tail]);
}

/** Modules the kernel+squashfs initramfs loads (those the kernel image has), with their deps. */
const INITRD_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'sd_mod', 'squashfs', 'overlay'];

/**
 * The /init of the kernel+squashfs initramfs: load the modules the root needs, find the
 * squashfs (root= from the command line, else the first virtio/SCSI/IDE disk that mounts),
 * put a tmpfs overlay on it (our init and runc need a writable root), and switch to it.
 */
export const SQUASHFS_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${INITRD_MODULES.join(' ')}; do modprobe -q $m; done
root=
for a in $(cat /proc/cmdline); do case $a in root=*) root=\${a#root=} ;; esac; done
mkdir -p /ro /rw /newroot
i=0
while :; do
  for d in $root /dev/vda /dev/sda /dev/hda; do
    [ -b "$d" ] && mount -t squashfs -o ro "$d" /ro 2>/dev/null && break 2
  done
  i=$((i + 1))
  [ $i -gt 50 ] && { echo "initrd: no squashfs root found (root=$root)"; exec sh; }
  sleep 0.1
done
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/ro,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
umount /proc /sys
umount /dev 2>/dev/null || mount --move /dev /newroot/dev
exec switch_root /newroot /init
`;

/**
 * The kernel+squashfs initramfs tree: busybox and the kernel modules from the system's root,
 * and {@link SQUASHFS_INIT}.
 */
export function squashfsInitrdTree(root: FsTree, mtime: number): FsTree {
  const t = new FsTree();
  const busybox = root.get('bin/busybox');
  if (busybox?.kind !== 'file')
    throw new UserError('format kernel+squashfs needs /bin/busybox in the image (from the init package)');
  const dirs = { mtime };
  t.set({ ...busybox }, dirs);
  // From lib/modules/VERSION: the index files and the closure of INITRD_MODULES in modules.dep.
  const modName = (f: string) =>
    path
      .basename(f)
      .replace(/\.ko(\.xz|\.gz)?$/, '')
      .replace(/-/g, '_');
  for (const e of root.entries()) {
    const m = /^lib\/modules\/[^/]+\/modules\.dep$/.exec(e.path);
    if (!m || e.kind !== 'file') continue;
    const dir = path.dirname(e.path);
    const deps = new Map<string, string[]>();
    for (const line of Buffer.from(dataBytes(e.data)).toString('utf8').split('\n')) {
      const [file, rest] = line.split(':');
      if (file && rest !== undefined) deps.set(file, [file, ...rest.trim().split(/\s+/).filter(Boolean)]);
    }
    const want = new Set<string>();
    for (const [file, files] of deps)
      if (INITRD_MODULES.includes(modName(file))) for (const x of files) want.add(x);
    for (const x of root.entries())
      if (
        x.path.startsWith(`${dir}/`) &&
        (x.kind !== 'file' || !x.path.includes('.ko') || want.has(x.path.slice(dir.length + 1)))
      )
        t.set({ ...x }, dirs);
  }
  for (const d of ['proc', 'sys', 'dev', 'ro', 'rw', 'newroot']) t.ensureDir(d, dirs);
  t.set({ path: 'init', kind: 'file', mode: 0o755, uid: 0, gid: 0, mtime, data: utf8(SQUASHFS_INIT) }, dirs);
  return t;
}

// ---- disks ----------------------------------------------------------------------------------

function octal(b: Buffer, off: number, width: number, n: number): void {
  const s = n.toString(8);
  if (s.length <= width - 1) {
    b.write(s.padStart(width - 1, '0'), off, 'ascii');
    b[off + width - 1] = 0;
    return;
  }
  // GNU base-256 for numbers too big for octal (sizes past 8 GiB).
  b[off] = 0x80;
  let v = BigInt(n);
  for (let i = width - 1; i > 0; i--) {
    b[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * An old-GNU sparse tar holding one file `name` with the image's bytes (holes stay holes), in
 * pieces: the stored runs are read as they are reached.
 */
export function* gnuSparseTar(name: string, img: SparseImage, mtime: number): Generator<Uint8Array> {
  const CHUNK = 4096;
  // Runs of non-zero 4 KiB blocks, merged; their data in order (slices of a file stay slices).
  const runs: [number, number][] = [];
  const stored = new ExtentWriter();
  for (const { index, data } of dataBlocks(img, CHUNK)) {
    const off = index * CHUNK;
    const len = Math.min(CHUNK, img.size - off);
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === off) last[1] += len;
    else runs.push([off, len]);
    stored.put(dataSlice(data, 0, len));
  }
  if (runs.length === 0 || runs[runs.length - 1]![0] + runs[runs.length - 1]![1] < img.size)
    runs.push([img.size, 0]);
  const storedBytes = stored.pos;

  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, storedBytes);
  octal(h, 136, 12, mtime);
  h.write('S', 156, 'ascii');
  h.write('ustar  \0', 257, 'latin1');
  const inHeader = runs.slice(0, 4);
  inHeader.forEach(([o, l], i) => {
    octal(h, 386 + i * 24, 12, o);
    octal(h, 398 + i * 24, 12, l);
  });
  h[482] = runs.length > 4 ? 1 : 0;
  octal(h, 483, 12, img.size);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');

  yield h;
  for (let i = 4; i < runs.length; i += 21) {
    const ext = Buffer.alloc(512);
    runs.slice(i, i + 21).forEach(([o, l], k) => {
      octal(ext, k * 24, 12, o);
      octal(ext, k * 24 + 12, 12, l);
    });
    ext[504] = i + 21 < runs.length ? 1 : 0;
    yield ext;
  }
  for (const e of stored.extents) yield* dataChunks(e.data);
  yield Buffer.alloc((512 - (storedBytes % 512)) % 512);
  yield Buffer.alloc(1024);
}

export type DiskFormat = 'qcow2' | 'vhd' | 'dynamic-vhd' | 'vmdk' | 'gcp' | 'aws' | 'azure';

export interface DiskFile {
  suffix: string;
  /** Written sparse (raw, fixed VHD) or dense, by the caller. */
  image?: SparseImage;
  /** Bytes made as the file is written (gcp's gzipped tar). */
  stream?: AsyncIterable<Uint8Array>;
}

/**
 * Wrap a raw disk image in a cloud or hypervisor format. `name` is the output's base name
 * (for the VMDK descriptor); `epoch` is SOURCE_DATE_EPOCH or 0.
 */
export function wrapDisk(format: DiskFormat, raw: SparseImage, name: string, epoch: number): DiskFile {
  switch (format) {
    case 'qcow2':
      return { suffix: '.qcow2', image: encodeQcow2(raw) };
    case 'vhd':
      return { suffix: '.vhd', image: encodeFixedVhd(raw, { epoch }) };
    case 'dynamic-vhd':
      return { suffix: '.vhd', image: encodeDynamicVhd(raw, { epoch }) };
    case 'azure':
      return { suffix: '-azure.vhd', image: encodeAzureVhd(raw, { epoch }) };
    case 'vmdk':
      return { suffix: '.vmdk', image: encodeVmdk(raw, { fileName: `${name}.vmdk` }) };
    case 'aws':
      return { suffix: '.raw', image: raw };
    case 'gcp':
      return { suffix: '.img.tar.gz', stream: gzipChunks(gnuSparseTar('disk.raw', raw, epoch), 6) };
  }
}
