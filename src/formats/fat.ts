/**
 * FAT16 / FAT32 file systems (Microsoft "FAT: General Overview of On-Disk Format" 1.03), with
 * VFAT long names, written from an FsTree as a sparse image (only the used clusters are data).
 * All numbers are little-endian; sectors are 512 bytes.
 *
 *   sector 0  boot sector / BPB:
 *               0 jump (EB xx 90) | 3 OEM name (8) | 11 bytes/sector | 13 sectors/cluster
 *              14 reserved sectors | 16 FAT count (2) | 17 root entries (FAT16: 512, FAT32: 0)
 *              19 total sectors 16-bit (0 if it does not fit) | 21 media F8 | 22 FAT16 sectors/FAT
 *              24 sectors/track | 26 heads | 28 hidden sectors (partition start) | 32 total 32-bit
 *             FAT16: 36 drive 80 | 38 signature 29 | 39 volume id | 43 label (11) | 54 "FAT16   "
 *             FAT32: 36 sectors/FAT | 40 flags | 42 version | 44 root cluster (2) | 48 FSInfo
 *                    sector (1) | 50 backup boot sector (6) | 64 drive 80 | 66 signature 29
 *                    67 volume id | 71 label (11) | 82 "FAT32   "
 *             510 55 AA
 *   FAT32 only: sector 1 FSInfo (0 "RRaA", 484 "rrAa", 488 free clusters, 492 next free,
 *             508 00 00 55 AA); sectors 6-7 a copy of sectors 0-1
 *   then      two FATs: entry 0 = media | ~0, entry 1 = end of chain, then per cluster the next
 *             cluster or end of chain (FFFF / 0FFFFFFF)
 *   FAT16     the root directory: 512 entries of 32 bytes, then the data area (cluster 2 on)
 *   FAT32     the data area; the root directory is a cluster chain starting at cluster 2
 *
 * Directory entry (32 bytes): 0 name (8) | 8 extension (3) | 11 attributes (01 read-only,
 * 08 volume label, 10 directory, 20 archive, 0F long-name part) | 12 0 | 14 create time
 * 16 create date | 18 access date | 20 first cluster high | 22 write time | 24 write date
 * 26 first cluster low | 28 size. A long name precedes its short entry as 13-character UCS-2
 * parts, last part first (sequence number | 40), each carrying the short name's checksum.
 *
 * Every file and directory gets contiguous clusters, in tree order; names that are not plain
 * upper-case 8.3 get a long name and a NAME~N.EXT short name.
 */
import { Buffer } from 'node:buffer';
import type { FsEntry, FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { type Extent, type SparseImage, sparseImage } from './sparse.js';

const SECTOR = 512;
const MIB = 1 << 20;

export interface FatOptions {
  /** Image size in bytes (a multiple of 512); default: what the tree needs plus some room. */
  size?: number;
  /** Up to 11 characters; default "NO NAME". */
  label?: string;
  /** Volume serial number; default derived from the label. */
  volumeId?: number;
  /** Sector of the disk where this file system starts (BPB hidden sectors). */
  partitionStart?: number;
  /** Force FAT16 or FAT32; default FAT32 from 512 MiB on, else FAT16. */
  fatType?: 16 | 32;
}

export interface FatLayout {
  fatType: 16 | 32;
  sectorsPerCluster: number;
  reservedSectors: number;
  sectorsPerFat: number;
  rootDirSectors: number;
  clusters: number;
  /** Byte offset of cluster 2. */
  dataOffset: number;
}

export interface FatImage extends SparseImage {
  layout: FatLayout;
  /** Each file's first cluster and byte offset, by tree path (for boot loaders that need it). */
  files: Map<string, { cluster: number; offset: number; size: number }>;
}

function layoutFor(totalSectors: number, fatType: 16 | 32): FatLayout {
  const reserved = fatType === 32 ? 32 : 4;
  const rootDirSectors = fatType === 32 ? 0 : (512 * 32) / SECTOR;
  const candidates =
    fatType === 32
      ? [totalSectors * SECTOR <= 8 * 1024 * MIB ? 8 : totalSectors * SECTOR <= 16 * 1024 * MIB ? 16 : 32, 64]
      : [1, 2, 4, 8, 16, 32, 64];
  for (const spc of candidates) {
    // sectors/FAT depends on the cluster count, which depends on sectors/FAT: iterate.
    let fat = 1;
    for (let i = 0; i < 8; i++) {
      const clusters = Math.floor((totalSectors - reserved - rootDirSectors - 2 * fat) / spc);
      const need = Math.ceil(((clusters + 2) * (fatType === 32 ? 4 : 2)) / SECTOR);
      if (need === fat) break;
      fat = need;
    }
    const clusters = Math.floor((totalSectors - reserved - rootDirSectors - 2 * fat) / spc);
    const ok =
      fatType === 32 ? clusters >= 65525 && clusters < 0x0ffffff5 : clusters >= 4085 && clusters <= 65524;
    if (ok)
      return {
        fatType,
        sectorsPerCluster: spc,
        reservedSectors: reserved,
        sectorsPerFat: fat,
        rootDirSectors,
        clusters,
        dataOffset: (reserved + 2 * fat + rootDirSectors) * SECTOR,
      };
  }
  throw new UserError(
    `a FAT${fatType} file system cannot be ${Math.round((totalSectors * SECTOR) / MIB)} MiB (FAT16: 4-2047 MiB, FAT32: 33 MiB and up)`,
  );
}

// ---- names ----------------------------------------------------------------------------------

const SHORT_OK = /^[A-Z0-9!#$%&'()\-@^_`{}~]+$/;

function isPlainShort(name: string): boolean {
  const dot = name.lastIndexOf('.');
  const base = dot < 0 ? name : name.slice(0, dot);
  const ext = dot < 0 ? '' : name.slice(dot + 1);
  return (
    base.length >= 1 &&
    base.length <= 8 &&
    ext.length <= 3 &&
    SHORT_OK.test(base) &&
    (ext === '' || SHORT_OK.test(ext)) &&
    !(dot >= 0 && ext === '')
  );
}

function shortField(base: string, ext: string): Buffer {
  const b = Buffer.alloc(11, 0x20);
  b.write(base, 0, 'latin1');
  b.write(ext, 8, 'latin1');
  if (b[0] === 0xe5) b[0] = 0x05;
  return b;
}

function shortCandidates(name: string, n: number): Buffer {
  const clean = (s: string) =>
    s
      .toUpperCase()
      .replace(/[ .]/g, '')
      .replace(/[^A-Z0-9!#$%&'()\-@^_`{}~]/g, '_');
  const dot = name.lastIndexOf('.');
  const base = clean(dot > 0 ? name.slice(0, dot) : name) || '_';
  const ext = dot > 0 ? clean(name.slice(dot + 1)).slice(0, 3) : '';
  const tail = `~${n}`;
  return shortField(base.slice(0, 8 - tail.length) + tail, ext);
}

function shortChecksum(short: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + short[i]!) & 0xff;
  return sum;
}

function lfnEntries(name: string, short: Buffer): Buffer[] {
  const units: number[] = [];
  for (let i = 0; i < name.length; i++) units.push(name.charCodeAt(i));
  if (units.length > 255)
    throw new UserError(`FAT: name ${JSON.stringify(name)} is longer than 255 characters`);
  if (units.length % 13) units.push(0);
  while (units.length % 13) units.push(0xffff);
  const n = units.length / 13;
  const sum = shortChecksum(short);
  const out: Buffer[] = [];
  for (let k = n; k >= 1; k--) {
    const e = Buffer.alloc(32);
    e[0] = k | (k === n ? 0x40 : 0);
    const part = units.slice((k - 1) * 13, k * 13);
    const put = (off: number, from: number, count: number) => {
      for (let i = 0; i < count; i++) e.writeUInt16LE(part[from + i]!, off + i * 2);
    };
    put(1, 0, 5);
    e[11] = 0x0f;
    e[13] = sum;
    put(14, 5, 6);
    put(28, 11, 2);
    out.push(e);
  }
  return out;
}

const invalidLong = (name: string) =>
  /[\\/:*?"<>|]/.test(name) || [...name].some((c) => c.charCodeAt(0) < 0x20) || /[. ]$/.test(name);

// ---- writer ---------------------------------------------------------------------------------

function fatDateTime(sec: number): { date: number; time: number } {
  const d = new Date(Math.max(sec, 315532800) * 1000); // no FAT date before 1980
  const y = Math.min(d.getUTCFullYear(), 2107) - 1980;
  return {
    date: (y << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1),
  };
}

interface Node {
  entry: FsEntry;
  name: string;
  children: Node[];
  cluster: number;
  clusters: number;
  /** directory contents */
  dirBytes: number;
}

function dirEntry(short: Buffer, attr: number, cluster: number, size: number, mtime: number): Buffer {
  const e = Buffer.alloc(32);
  short.copy(e, 0);
  e[11] = attr;
  const { date, time } = fatDateTime(mtime);
  e.writeUInt16LE(time, 14);
  e.writeUInt16LE(date, 16);
  e.writeUInt16LE(date, 18);
  e.writeUInt16LE(cluster >>> 16, 20);
  e.writeUInt16LE(time, 22);
  e.writeUInt16LE(date, 24);
  e.writeUInt16LE(cluster & 0xffff, 26);
  e.writeUInt32LE(size, 28);
  return e;
}

/** Bytes a tree needs as FAT data (clusters of `clusterBytes`), directories included. */
function dataBytes(tree: FsTree, clusterBytes: number): number {
  let total = clusterBytes; // the root (FAT32) or slack
  const perDir = new Map<string, number>();
  for (const e of tree.entries()) {
    const i = e.path.lastIndexOf('/');
    const parent = i < 0 ? '' : e.path.slice(0, i);
    const name = e.path.slice(i + 1);
    perDir.set(parent, (perDir.get(parent) ?? 2) + 1 + Math.ceil((name.length + 1) / 13));
    if (e.kind === 'file') total += Math.ceil((e.data?.length ?? 0) / clusterBytes) * clusterBytes;
  }
  for (const n of perDir.values()) total += Math.ceil((n * 32) / clusterBytes) * clusterBytes;
  return total;
}

/** The size writeFat picks when none is given: the data plus 10% and 1 MiB, at least 8 MiB. */
export function fatSizeFor(tree: FsTree): number {
  const need = dataBytes(tree, 2048) * 1.1 + MIB + 64 * 1024;
  return Math.max(8 * MIB, Math.ceil(need / MIB) * MIB);
}

/**
 * Writes `tree` (files and directories only: FAT has no symlinks or devices) as a FAT file
 * system. Owners and modes are not kept; a file without write permission is read-only.
 */
export function writeFat(tree: FsTree, opts: FatOptions = {}): FatImage {
  const size = opts.size ?? fatSizeFor(tree);
  if (size % SECTOR) throw new UserError(`FAT size ${size} is not a multiple of 512`);
  const totalSectors = size / SECTOR;
  if (totalSectors > 0xffffffff) throw new UserError('FAT file systems end at 2 TiB');
  const fatType = opts.fatType ?? (size >= 512 * MIB ? 32 : 16);
  const L = layoutFor(totalSectors, fatType);
  const clusterBytes = L.sectorsPerCluster * SECTOR;

  // Tree of nodes.
  const rootEntry: FsEntry = { path: '', kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 };
  const root: Node = { entry: rootEntry, name: '', children: [], cluster: 0, clusters: 0, dirBytes: 0 };
  const byPath = new Map<string, Node>([['', root]]);
  for (const e of tree.entries()) {
    if (e.kind !== 'file' && e.kind !== 'dir')
      throw new UserError(`FAT cannot hold ${e.path}: a ${e.kind} (only files and directories)`);
    const i = e.path.lastIndexOf('/');
    const parent = byPath.get(i < 0 ? '' : e.path.slice(0, i))!;
    const name = e.path.slice(i + 1);
    if (invalidLong(name)) throw new UserError(`FAT cannot hold the name ${JSON.stringify(e.path)}`);
    const n: Node = { entry: e, name, children: [], cluster: 0, clusters: 0, dirBytes: 0 };
    parent.children.push(n);
    byPath.set(e.path, n);
  }

  // Directory contents (entries without clusters yet), then cluster allocation in tree order.
  interface Pending {
    node: Node;
    entries: { lfn: Buffer[]; short: Buffer; child?: Node; attr: number }[];
  }
  const pending: Pending[] = [];
  const visit = (d: Node) => {
    const list: Pending['entries'] = [];
    if (d !== root) {
      list.push({ lfn: [], short: shortField('.', ''), attr: 0x10, child: d });
      list.push({ lfn: [], short: shortField('..', ''), attr: 0x10 });
    } else if (opts.label) {
      list.push({ lfn: [], short: labelField(opts.label), attr: 0x08 });
    }
    const taken = new Set<string>();
    const longTaken = new Set<string>();
    for (const c of d.children) {
      const lower = c.name.toUpperCase();
      if (longTaken.has(lower))
        throw new UserError(`FAT: ${c.entry.path} differs from a sibling only in case`);
      longTaken.add(lower);
      const attr = (c.entry.kind === 'dir' ? 0x10 : 0x20) | (c.entry.mode & 0o222 ? 0 : 0x01);
      if (isPlainShort(c.name)) {
        const dot = c.name.lastIndexOf('.');
        const short =
          dot < 0 ? shortField(c.name, '') : shortField(c.name.slice(0, dot), c.name.slice(dot + 1));
        taken.add(short.toString('latin1'));
        list.push({ lfn: [], short, attr, child: c });
      } else {
        let k = 1;
        let short = shortCandidates(c.name, k);
        while (
          taken.has(short.toString('latin1')) ||
          d.children.some((o) => isPlainShort(o.name) && shortOf(o.name) === short.toString('latin1'))
        )
          short = shortCandidates(c.name, ++k);
        taken.add(short.toString('latin1'));
        list.push({ lfn: lfnEntries(c.name, short), short, attr, child: c });
      }
    }
    d.dirBytes = list.reduce((n, x) => n + 32 * (1 + x.lfn.length), 0);
    pending.push({ node: d, entries: list });
    for (const c of d.children) if (c.entry.kind === 'dir') visit(c);
  };
  visit(root);

  let next = 2;
  const alloc = (bytes: number) => {
    const n = Math.ceil(bytes / clusterBytes);
    const first = n ? next : 0;
    next += n;
    return { first, n };
  };
  const files = new Map<string, { cluster: number; offset: number; size: number }>();
  const order: Node[] = [];
  const place = (d: Node) => {
    if (d !== root || fatType === 32) {
      const a = alloc(Math.max(d.dirBytes, 1));
      d.cluster = a.first;
      d.clusters = a.n;
    }
    for (const c of d.children) {
      if (c.entry.kind === 'file') {
        const a = alloc(c.entry.data?.length ?? 0);
        c.cluster = a.first;
        c.clusters = a.n;
        order.push(c);
        files.set(c.entry.path, {
          cluster: a.first,
          offset: a.first ? L.dataOffset + (a.first - 2) * clusterBytes : 0,
          size: c.entry.data?.length ?? 0,
        });
      }
    }
    for (const c of d.children) if (c.entry.kind === 'dir') place(c);
  };
  place(root);
  const used = next - 2;
  if (used > L.clusters)
    throw new UserError(
      `the files need ${Math.ceil((used * clusterBytes) / MIB)} MiB, more than the ${Math.floor(size / MIB)} MiB FAT file system holds`,
    );
  if (fatType === 16 && root.dirBytes > L.rootDirSectors * SECTOR)
    throw new UserError('FAT16 root directory is full (512 entries)');

  const extents: Extent[] = [];
  const clusterOffset = (c: number) => L.dataOffset + (c - 2) * clusterBytes;

  // Directories.
  for (const p of pending) {
    const buf = Buffer.alloc(
      p.node === root && fatType === 16 ? L.rootDirSectors * SECTOR : p.node.clusters * clusterBytes,
    );
    let off = 0;
    for (const x of p.entries) {
      for (const l of x.lfn) {
        l.copy(buf, off);
        off += 32;
      }
      const isDot = x.short[0] === 0x2e;
      let target = x.child;
      if (isDot && x.short[1] === 0x2e) {
        // '..': the parent's cluster, 0 for the root
        const parentPath = p.node.entry.path.includes('/')
          ? p.node.entry.path.slice(0, p.node.entry.path.lastIndexOf('/'))
          : '';
        const parent = byPath.get(parentPath)!;
        target = parent === root ? undefined : parent;
      }
      const cl = target ? target.cluster : 0;
      const sz = target && target.entry.kind === 'file' ? (target.entry.data?.length ?? 0) : 0;
      dirEntry(x.short, x.attr, cl, sz, (target ?? p.node).entry.mtime).copy(buf, off);
      off += 32;
    }
    const at =
      p.node === root && fatType === 16
        ? (L.reservedSectors + 2 * L.sectorsPerFat) * SECTOR
        : clusterOffset(p.node.cluster);
    extents.push({ offset: at, data: buf });
  }
  // Files.
  for (const f of order)
    if (f.cluster && f.entry.data) extents.push({ offset: clusterOffset(f.cluster), data: f.entry.data });

  // FATs: only the part covering used clusters is non-zero.
  const width = fatType === 32 ? 4 : 2;
  const fat = Buffer.alloc((used + 2) * width);
  const put = (i: number, v: number) =>
    width === 4 ? fat.writeUInt32LE(v >>> 0, i * 4) : fat.writeUInt16LE(v & 0xffff, i * 2);
  const eoc = fatType === 32 ? 0x0fffffff : 0xffff;
  put(0, fatType === 32 ? 0x0ffffff8 : 0xfff8);
  put(1, eoc);
  const chain = (first: number, n: number) => {
    for (let i = 0; i < n; i++) put(first + i, i === n - 1 ? eoc : first + i + 1);
  };
  for (const p of pending) if (p.node.clusters) chain(p.node.cluster, p.node.clusters);
  for (const f of order) if (f.clusters) chain(f.cluster, f.clusters);
  for (let k = 0; k < 2; k++)
    extents.push({ offset: (L.reservedSectors + k * L.sectorsPerFat) * SECTOR, data: fat });

  // Boot sector (and FAT32's FSInfo and backups).
  const reserved = Buffer.alloc((fatType === 32 ? 8 : 1) * SECTOR);
  const bs = bootSector(L, totalSectors, opts);
  bs.copy(reserved, 0);
  if (fatType === 32) {
    const fsinfo = Buffer.alloc(SECTOR);
    fsinfo.writeUInt32LE(0x41615252, 0);
    fsinfo.writeUInt32LE(0x61417272, 484);
    fsinfo.writeUInt32LE(L.clusters - used, 488);
    fsinfo.writeUInt32LE(next, 492);
    fsinfo.writeUInt32LE(0xaa550000, 508);
    fsinfo.copy(reserved, SECTOR);
    bs.copy(reserved, 6 * SECTOR);
    fsinfo.copy(reserved, 7 * SECTOR);
  }
  extents.push({ offset: 0, data: reserved });
  return { ...sparseImage(size, extents), layout: L, files };
}

function shortOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return (dot < 0 ? shortField(name, '') : shortField(name.slice(0, dot), name.slice(dot + 1))).toString(
    'latin1',
  );
}

function labelField(label: string): Buffer {
  if (label.length > 11 || !/^[\x20-\x7e]*$/.test(label))
    throw new UserError(`FAT label ${JSON.stringify(label)} must be at most 11 ASCII characters`);
  return Buffer.from(label.toUpperCase().padEnd(11, ' '), 'latin1');
}

function bootSector(L: FatLayout, totalSectors: number, opts: FatOptions): Buffer {
  const b = Buffer.alloc(SECTOR);
  const fat32 = L.fatType === 32;
  b.set([0xeb, fat32 ? 0x58 : 0x3c, 0x90], 0);
  b.write('LINUXKIT', 3, 'latin1');
  b.writeUInt16LE(SECTOR, 11);
  b[13] = L.sectorsPerCluster;
  b.writeUInt16LE(L.reservedSectors, 14);
  b[16] = 2;
  b.writeUInt16LE(fat32 ? 0 : 512, 17);
  b.writeUInt16LE(totalSectors < 0x10000 ? totalSectors : 0, 19);
  b[21] = 0xf8;
  b.writeUInt16LE(fat32 ? 0 : L.sectorsPerFat, 22);
  b.writeUInt16LE(63, 24);
  b.writeUInt16LE(255, 26);
  b.writeUInt32LE(opts.partitionStart ?? 0, 28);
  b.writeUInt32LE(totalSectors < 0x10000 && !fat32 ? 0 : totalSectors, 32);
  const label = labelField(opts.label ?? 'NO NAME');
  const id = (opts.volumeId ?? labelHash(label)) >>> 0;
  let o = 36;
  if (fat32) {
    b.writeUInt32LE(L.sectorsPerFat, 36);
    b.writeUInt32LE(2, 44);
    b.writeUInt16LE(1, 48);
    b.writeUInt16LE(6, 50);
    o = 64;
  }
  b[o] = 0x80;
  b[o + 2] = 0x29;
  b.writeUInt32LE(id, o + 3);
  label.copy(b, o + 7);
  b.write(fat32 ? 'FAT32   ' : 'FAT16   ', o + 18, 'latin1');
  // Not bootable: int 18h ("no bootable device") if a BIOS tries it.
  b.set([0xcd, 0x18], fat32 ? 90 : 62);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

function labelHash(label: Buffer): number {
  let h = 0x811c9dc5;
  for (const c of label) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h;
}
