/**
 * ISO 9660 (ECMA-119) with Rock Ridge (SUSP 1.12 / RRIP 1.10), Joliet and El Torito, and an
 * isohybrid MBR so the same bytes boot from a CD and from a disk. Everything is in 2048-byte
 * logical blocks (LB); multi-byte numbers are "both-endian" (LE then BE copy) unless noted.
 *
 *   LB 0-15   system area: zero, or the hybrid MBR in its first 512 bytes
 *   LB 16     Primary Volume Descriptor (type 1)
 *             0 type | 1 "CD001" | 6 version 1 | 8 system id (32) | 40 volume id (32)
 *             80 volume space size (LB, both32) | 120 set size | 124 seq no | 128 LB size (both16)
 *             132 path table bytes (both32) | 140 L path table LB (LE32) | 148 M table LB (BE32)
 *             156 root directory record (34) | 190.. ids (128 each) | 813 creation date (17)
 *             830 modification | 847 expiration | 864 effective | 881 structure version 1
 *   LB 17     El Torito Boot Record (type 0): 7 "EL TORITO SPECIFICATION" | 71 catalog LB (LE32)
 *   next      Joliet Supplementary VD (type 2): as the PVD, escape "%/E" (UCS-2 level 3) at 88,
 *             identifiers in UCS-2 big-endian
 *   next      terminator (type 255)
 *   then      path tables (L, M; primary then Joliet): per directory, breadth-first:
 *             0 name len | 1 0 | 2 extent LB | 6 parent's number (16) | 8 name, pad to even
 *   then      directories (primary, then Joliet): directory records, never across an LB end:
 *             0 record len | 1 0 | 2 extent LB | 10 data length | 18 date (7: y-1900 m d h m s tz)
 *             25 flags (2 = directory) | 28 volume seq 1 (both16) | 32 id len | 33 id, pad to
 *             even | system use: SUSP entries ("SP" "CE" "ER" "PX" "TF" "NM" "SL" "PN")
 *   then      SUSP continuation areas (CE), then the boot catalog and file data
 *
 * Primary names are upper-case level-2 identifiers (NAME.EXT;1, at most 30 characters), made
 * unique per directory; the real names live in Rock Ridge NM (and Joliet, up to 64 UCS-2 units).
 * Files with the same data object share one extent, except boot images (patched per copy).
 *
 * El Torito catalog (one LB of 32-byte entries): validation entry (header 1, platform, id,
 * checksum making the 16-bit word sum 0, 55 AA), the default entry (88 = bootable, media 0 =
 * no emulation, load segment 0, count of 512-byte sectors to load, image LB), then for a second
 * platform a section header (91 = last, platform EF = UEFI, 1 entry) and its entry.
 * A BIOS image may get a boot info table at offset 8: PVD LB, image LB, image length, and the
 * 32-bit LE word sum of the image from offset 64 (isolinux needs it).
 *
 * isohybrid MBR: 432 bytes of boot code (syslinux's isohdpfx.bin), at 432 the BIOS image's
 * 512-byte sector number (LE32), at 440 a disk signature, at 446 the partition entries; the
 * image is padded to a whole MiB.
 */
import { Buffer } from 'node:buffer';
import { dataBytes, dataChunks, type FileData, zeroChunks } from '../fs/data.js';
import { byPath, FILE_TYPE_BITS, type FsEntry, type FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { crc32, type MbrPartition, writeMbr } from './partition.js';

const LB = 2048;

export interface IsoBootOptions {
  /** Path in the tree of the BIOS no-emulation boot image (e.g. isolinux/isolinux.bin). */
  bios?: string;
  /** Write a boot info table into the BIOS image (isolinux needs it). Default true. */
  bootInfoTable?: boolean;
  /** 512-byte sectors the BIOS loads from the image; default 4 (as mkisofs). */
  loadSectors?: number;
  /** Path in the tree of a FAT image for the UEFI El Torito entry (e.g. boot/efi.img). */
  efi?: string;
  /** Where the boot catalog appears in the tree; default boot.catalog. */
  catalog?: string;
}

export interface IsoOptions {
  /** Volume label, up to 32 printable ASCII characters (kept as given, e.g. "cidata"). */
  volumeId: string;
  /** Seconds since the epoch for the volume descriptors' dates; default 0 (= unset). */
  mtime?: number;
  /** Default true. */
  rockRidge?: boolean;
  /** Default true. */
  joliet?: boolean;
  boot?: IsoBootOptions;
  /**
   * Make the image a disk too: an MBR (with `mbrCode`, syslinux's isohdpfx.bin, when there is
   * a BIOS image) whose partitions are the whole image and, with an EFI image, an EFI System
   * partition on it. Padded to a whole MiB.
   */
  hybrid?: { mbrCode?: Uint8Array };
}

// ---- small encoders -------------------------------------------------------------------------

function both16(b: Buffer, off: number, v: number): void {
  b.writeUInt16LE(v, off);
  b.writeUInt16BE(v, off + 2);
}
function both32(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v, off);
  b.writeUInt32BE(v, off + 4);
}
function b32(v: number): Buffer {
  const b = Buffer.alloc(8);
  both32(b, 0, v);
  return b;
}

/** A 7-byte directory record date (UTC). */
function recDate(sec: number): Buffer {
  const d = new Date(Math.max(0, sec) * 1000);
  return Buffer.from([
    Math.min(255, d.getUTCFullYear() - 1900),
    d.getUTCMonth() + 1,
    d.getUTCDate(),
    d.getUTCHours(),
    d.getUTCMinutes(),
    d.getUTCSeconds(),
    0,
  ]);
}

/** A 17-byte volume descriptor date; 0 means "not specified". */
function volDate(sec: number | undefined): Buffer {
  const b = Buffer.alloc(17, 0x30);
  b[16] = 0;
  if (!sec) return b;
  const d = new Date(sec * 1000);
  const p = (n: number, w: number) => String(n).padStart(w, '0');
  b.write(
    `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1, 2)}${p(d.getUTCDate(), 2)}${p(d.getUTCHours(), 2)}${p(d.getUTCMinutes(), 2)}${p(d.getUTCSeconds(), 2)}00`,
    0,
    'latin1',
  );
  return b;
}

function ucs2be(s: string): Buffer {
  const le = Buffer.from(s, 'utf16le');
  return le.swap16();
}

// ---- SUSP / Rock Ridge entries --------------------------------------------------------------

function susp(sig: string, body: Buffer): Buffer {
  if (body.length + 4 > 255) throw new Error(`SUSP ${sig} entry too long`);
  return Buffer.concat([Buffer.from([sig.charCodeAt(0), sig.charCodeAt(1), body.length + 4, 1]), body]);
}

const RRIP_ID = 'RRIP_1991A';
const RRIP_DES = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const RRIP_SRC =
  'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

function erEntry(): Buffer {
  const body = Buffer.concat([
    Buffer.from([RRIP_ID.length, RRIP_DES.length, RRIP_SRC.length, 1]),
    Buffer.from(RRIP_ID + RRIP_DES + RRIP_SRC, 'latin1'),
  ]);
  return susp('ER', body);
}

function pxEntry(e: FsEntry, nlink: number): Buffer {
  return susp(
    'PX',
    Buffer.concat([b32(FILE_TYPE_BITS[e.kind] | (e.mode & 0o7777)), b32(nlink), b32(e.uid), b32(e.gid)]),
  );
}

function tfEntry(mtime: number): Buffer {
  const d = recDate(mtime);
  // modify, access, attributes (ctime): all the entry's mtime
  return susp('TF', Buffer.concat([Buffer.from([0x0e]), d, d, d]));
}

function nmEntries(name: string): Buffer[] {
  const bytes = Buffer.from(name, 'utf8');
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 250) {
    const part = bytes.subarray(i, i + 250);
    const more = i + 250 < bytes.length;
    out.push(susp('NM', Buffer.concat([Buffer.from([more ? 1 : 0]), part])));
  }
  return out;
}

/** SL entries for a symlink target: component records, split over entries of <= 255 bytes. */
function slEntries(target: string): Buffer[] {
  const comps: Buffer[] = [];
  const parts = target.split('/');
  parts.forEach((p, i) => {
    if (i === 0 && p === '' && target.startsWith('/')) {
      comps.push(Buffer.from([0x08, 0])); // root
      return;
    }
    if (p === '' && i > 0) return; // repeated or trailing '/'
    if (p === '.') comps.push(Buffer.from([0x02, 0]));
    else if (p === '..') comps.push(Buffer.from([0x04, 0]));
    else {
      const bytes = Buffer.from(p, 'utf8');
      for (let j = 0; j < bytes.length; j += 248) {
        const chunk = bytes.subarray(j, j + 248);
        comps.push(Buffer.concat([Buffer.from([j + 248 < bytes.length ? 1 : 0, chunk.length]), chunk]));
      }
    }
  });
  const out: Buffer[] = [];
  let cur: Buffer[] = [];
  let len = 0;
  const MAX = 255 - 5;
  for (const c of comps) {
    if (len + c.length > MAX) {
      out.push(Buffer.concat(cur));
      cur = [];
      len = 0;
    }
    cur.push(c);
    len += c.length;
  }
  out.push(Buffer.concat(cur));
  return out.map((body, i) => susp('SL', Buffer.concat([Buffer.from([i < out.length - 1 ? 1 : 0]), body])));
}

/**
 * PN as mkisofs/libisofs write it: high 0, low the glibc dev_t (major << 8 | minor); Linux reads
 * that back as (major, minor) too.
 */
function pnEntry(e: FsEntry): Buffer {
  const maj = e.devmajor ?? 0;
  const min = e.devminor ?? 0;
  const low = ((maj & 0xfff) << 8) | (min & 0xff) | ((min & 0xfff00) << 12);
  return susp('PN', Buffer.concat([b32(0), b32(low >>> 0)]));
}

// ---- the plan -------------------------------------------------------------------------------

interface Node {
  entry: FsEntry;
  name: string;
  parent: Node | undefined;
  children: Node[];
  isoId: Buffer;
  jolietId: Buffer;
  /** directories */
  lba: number;
  size: number;
  jlba: number;
  jsize: number;
  num: number;
  jnum: number;
  /** files */
  extent: number;
  length: number;
}

/** A SUSP continuation area: entries placed at block/offset once laid out. */
interface Chunk {
  parts: (Buffer | Chunk)[];
  len: number;
  block: number;
  offset: number;
}

interface Rec {
  node: Node;
  kind: 'self' | 'parent' | 'child';
  id: Buffer;
  su: (Buffer | Chunk)[];
  len: number;
}

const CE_LEN = 28;

/** Splits SUSP entries into those inside the record and continuation chunks (chained by CE). */
function placeSusp(
  entries: Buffer[],
  room: number,
  chunks: Chunk[],
): { su: (Buffer | Chunk)[]; len: number } {
  const total = entries.reduce((n, e) => n + e.length, 0);
  if (total <= room) return { su: entries, len: total };
  const su: (Buffer | Chunk)[] = [];
  let len = 0;
  let i = 0;
  while (i < entries.length && len + entries[i]!.length <= room - CE_LEN) len += entries[i++]!.length;
  su.push(...entries.slice(0, i));
  let head: Chunk = { parts: [], len: 0, block: 0, offset: 0 };
  su.push(head);
  len += CE_LEN;
  chunks.push(head);
  while (i < entries.length) {
    const e = entries[i]!;
    const rest = entries.slice(i).reduce((n, x) => n + x.length, 0);
    if (head.len + rest > LB && head.len + e.length > LB - CE_LEN) {
      const next: Chunk = { parts: [], len: 0, block: 0, offset: 0 };
      head.parts.push(next);
      head.len += CE_LEN;
      chunks.push(next);
      head = next;
    }
    head.parts.push(e);
    head.len += e.length;
    i++;
  }
  return { su, len };
}

function ceEntry(c: Chunk): Buffer {
  return susp('CE', Buffer.concat([b32(c.block), b32(c.offset), b32(c.len)]));
}

// ---- names ----------------------------------------------------------------------------------

function isoBaseName(name: string, isDir: boolean, n: number): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const suffix = n ? `_${n}` : '';
  if (isDir) return clean(name).slice(0, 31 - suffix.length) + suffix;
  const dot = name.lastIndexOf('.');
  let base = dot > 0 ? name.slice(0, dot) : name;
  const ext = dot > 0 ? clean(name.slice(dot + 1)).slice(0, 8) : '';
  base = clean(base);
  if (base === '' && ext === '') base = '_';
  base = base.slice(0, 30 - ext.length - suffix.length) + suffix;
  return `${base}.${ext};1`;
}

function jolietName(name: string, n: number): string {
  // Joliet forbids * / : ; ? \ and needs BMP characters; at most 64 UCS-2 units.
  const s = [...name].map((c) => (/[*/:;?\\]/.test(c) || c.codePointAt(0)! > 0xffff ? '_' : c)).join('');
  const suffix = n ? `_${n}` : '';
  if (s.length + suffix.length <= 64) return s + suffix;
  // Too long: cut the stem, keep a short extension.
  const dot = s.lastIndexOf('.');
  const ext = dot > 0 && s.length - dot <= 10 ? s.slice(dot) : '';
  return s.slice(0, 64 - suffix.length - ext.length) + suffix + ext;
}

/** ECMA-119 9.3 order: name part, then extension, each padded with spaces. */
function isoCompare(a: Buffer, b: Buffer): number {
  const split = (x: Buffer) => {
    const s = x.toString('latin1').replace(/;1$/, '');
    const d = s.indexOf('.');
    return d < 0 ? [s, ''] : [s.slice(0, d), s.slice(d + 1)];
  };
  const [an, ae] = split(a);
  const [bn, be] = split(b);
  const cmp = (x: string, y: string) => {
    const w = Math.max(x.length, y.length);
    const px = x.padEnd(w, ' ');
    const py = y.padEnd(w, ' ');
    return px < py ? -1 : px > py ? 1 : 0;
  };
  return cmp(an!, bn!) || cmp(ae!, be!);
}

function validVolumeId(id: string): void {
  if (id.length === 0 || id.length > 32 || !/^[\x20-\x7e]+$/.test(id))
    throw new UserError(`ISO volume id ${JSON.stringify(id)} must be 1-32 printable ASCII characters`);
}

// ---- writer ---------------------------------------------------------------------------------

/** Writes `tree` as an ISO 9660 image (see the layout at the top of this file). */
export function writeIso9660(tree: FsTree, opts: IsoOptions): Buffer {
  return Buffer.concat([...iso9660Chunks(tree, opts)]);
}

const sectors = (bytes: number) => Math.ceil(bytes / LB);

/**
 * writeIso9660's bytes in order, in pieces: the volume's metadata and boot images (in memory),
 * then each file's data as it is read (a slice of a file on disk stays there until then), and
 * the padding. So an image's memory is its metadata, whatever its files weigh.
 */
export function* iso9660Chunks(tree: FsTree, opts: IsoOptions): Generator<Uint8Array> {
  const { head, files, totalBytes } = layoutIso9660(tree, opts);
  yield head;
  let at = head.length;
  for (const { extent, data } of files) {
    if (extent * LB !== at) throw new Error(`internal error: ISO file data out of order at block ${extent}`);
    yield* dataChunks(data);
    at += sectors(data.length) * LB;
    yield* zeroChunks(sectors(data.length) * LB - data.length);
  }
  yield* zeroChunks(totalBytes - at);
}

/** The image's first bytes up to the files that stream, those files (by extent) and the total size. */
function layoutIso9660(
  tree: FsTree,
  opts: IsoOptions,
): { head: Buffer; files: { extent: number; data: FileData }[]; totalBytes: number } {
  validVolumeId(opts.volumeId);
  const rr = opts.rockRidge ?? true;
  const joliet = opts.joliet ?? true;
  const boot = opts.boot;
  const hasBoot = !!(boot?.bios || boot?.efi);
  const catalogPath = boot?.catalog ?? 'boot.catalog';

  // Build the node tree (parents precede children in entries()).
  const rootEntry: FsEntry = { path: '', kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: opts.mtime ?? 0 };
  const mkNode = (entry: FsEntry, name: string, parent: Node | undefined): Node => ({
    entry,
    name,
    parent,
    children: [],
    isoId: Buffer.alloc(0),
    jolietId: Buffer.alloc(0),
    lba: 0,
    size: 0,
    jlba: 0,
    jsize: 0,
    num: 0,
    jnum: 0,
    extent: 0,
    length: 0,
  });
  const root = mkNode(rootEntry, '', undefined);
  const nodeByPath = new Map<string, Node>([['', root]]);
  const entries = tree.entries();
  if (hasBoot && tree.has(catalogPath))
    throw new UserError(`the ISO tree already has ${catalogPath}, where the boot catalog goes`);
  if (hasBoot) {
    const cat: FsEntry = {
      path: catalogPath,
      kind: 'file',
      mode: 0o444,
      uid: 0,
      gid: 0,
      mtime: opts.mtime ?? 0,
      data: new Uint8Array(LB),
    };
    entries.push(cat);
    entries.sort(byPath);
  }
  let catalogNode: Node | undefined;
  for (const e of entries) {
    const slash = e.path.lastIndexOf('/');
    const parentPath = slash < 0 ? '' : e.path.slice(0, slash);
    const parent = nodeByPath.get(parentPath);
    if (parent?.entry.kind !== 'dir') throw new UserError(`ISO: ${e.path} has no parent directory`);
    const node = mkNode(e, e.path.slice(slash + 1), parent);
    parent.children.push(node);
    nodeByPath.set(e.path, node);
    if (hasBoot && e.path === catalogPath) catalogNode = node;
  }
  const bootNode = (p: string | undefined, what: string) => {
    if (p === undefined) return undefined;
    const n = nodeByPath.get(p);
    if (n?.entry.kind !== 'file')
      throw new UserError(`ISO ${what} boot image ${p} is not a file in the tree`);
    return n;
  };
  const biosNode = bootNode(boot?.bios, 'BIOS');
  const efiNode = bootNode(boot?.efi, 'EFI');

  // Names, unique per directory, and the directory order.
  const dirs: Node[] = [];
  const queue = [root];
  while (queue.length) {
    const d = queue.shift()!;
    dirs.push(d);
    const taken = new Set<string>();
    const jtaken = new Set<string>();
    for (const c of d.children) {
      const isDir = c.entry.kind === 'dir';
      let n = 0;
      let id = isoBaseName(c.name, isDir, 0);
      while (taken.has(id)) id = isoBaseName(c.name, isDir, ++n);
      taken.add(id);
      c.isoId = Buffer.from(id, 'latin1');
      n = 0;
      let jn = jolietName(c.name, 0);
      while (jtaken.has(jn.toLowerCase())) jn = jolietName(c.name, ++n);
      jtaken.add(jn.toLowerCase());
      c.jolietId = ucs2be(jn);
    }
    d.children.sort((a, b) => isoCompare(a.isoId, b.isoId));
    for (const c of d.children) if (c.entry.kind === 'dir') queue.push(c);
  }
  if (dirs.length > 0xffff) throw new UserError(`ISO: too many directories (${dirs.length}, at most 65535)`);
  dirs.forEach((d, i) => {
    d.num = i + 1;
  });
  // Joliet path table order: breadth-first with children sorted by their UCS-2 names.
  const jdirs: Node[] = [];
  const jq = [root];
  while (jq.length) {
    const d = jq.shift()!;
    jdirs.push(d);
    const sub = d.children
      .filter((c) => c.entry.kind === 'dir')
      .sort((a, b) => Buffer.compare(a.jolietId, b.jolietId));
    jq.push(...sub);
  }
  jdirs.forEach((d, i) => {
    d.jnum = i + 1;
  });

  // Rock Ridge system use per record, and each directory's records.
  const chunks: Chunk[] = [];
  const nlink = (n: Node) =>
    n.entry.kind === 'dir' ? 2 + n.children.filter((c) => c.entry.kind === 'dir').length : 1;
  const rrEntries = (n: Node, kind: Rec['kind']): Buffer[] => {
    if (!rr) return [];
    const out: Buffer[] = [];
    if (kind === 'self' && n === root) out.push(susp('SP', Buffer.from([0xbe, 0xef, 0])));
    const subject = kind === 'parent' ? (n.parent ?? n) : n;
    out.push(pxEntry(subject.entry, nlink(subject)), tfEntry(subject.entry.mtime));
    if (kind === 'child') {
      if (n.entry.kind === 'symlink') out.push(...slEntries(n.entry.target ?? ''));
      if (n.entry.kind === 'char' || n.entry.kind === 'block') out.push(pnEntry(n.entry));
      out.push(...nmEntries(n.name));
    }
    if (kind === 'self' && n === root) out.push(erEntry());
    return out;
  };
  const makeRec = (node: Node, kind: Rec['kind'], id: Buffer, withRr: boolean): Rec => {
    const base = 33 + id.length + (id.length % 2 === 0 ? 1 : 0);
    const placed = withRr ? placeSusp(rrEntries(node, kind), 254 - base, chunks) : { su: [], len: 0 };
    let len = base + placed.len;
    len += len % 2;
    return { node, kind, id, su: placed.su, len };
  };
  const dirRecs = new Map<Node, Rec[]>();
  const jdirRecs = new Map<Node, Rec[]>();
  const sizeOf = (recs: Rec[]) => {
    let off = 0;
    for (const r of recs) {
      if ((off % LB) + r.len > LB) off += LB - (off % LB);
      off += r.len;
    }
    return Math.ceil(off / LB) * LB;
  };
  for (const d of dirs) {
    const recs = [
      makeRec(d, 'self', Buffer.from([0]), true),
      makeRec(d, 'parent', Buffer.from([1]), true),
      ...d.children.map((c) => makeRec(c, 'child', c.isoId, true)),
    ];
    dirRecs.set(d, recs);
    d.size = sizeOf(recs);
  }
  if (joliet) {
    for (const d of jdirs) {
      const kids = [...d.children].sort((a, b) => Buffer.compare(a.jolietId, b.jolietId));
      const recs = [
        makeRec(d, 'self', Buffer.from([0]), false),
        makeRec(d, 'parent', Buffer.from([1]), false),
        ...kids.map((c) => makeRec(c, 'child', c.jolietId, false)),
      ];
      jdirRecs.set(d, recs);
      d.jsize = sizeOf(recs);
    }
  }

  // Path tables.
  const pathTable = (
    list: Node[],
    idOf: (n: Node) => Buffer,
    lbaOf: (n: Node) => number,
    numOf: (n: Node) => number,
    le: boolean,
  ) => {
    const parts: Buffer[] = [];
    for (const d of list) {
      const id = d === root ? Buffer.from([0]) : idOf(d);
      const r = Buffer.alloc(8 + id.length + (id.length % 2));
      r[0] = id.length;
      if (le) {
        r.writeUInt32LE(lbaOf(d), 2);
        r.writeUInt16LE(d === root ? 1 : numOf(d.parent!), 6);
      } else {
        r.writeUInt32BE(lbaOf(d), 2);
        r.writeUInt16BE(d === root ? 1 : numOf(d.parent!), 6);
      }
      id.copy(r, 8);
      parts.push(r);
    }
    return Buffer.concat(parts);
  };
  const ptBytes = pathTable(
    dirs,
    (n) => n.isoId,
    () => 0,
    (n) => n.num,
    true,
  ).length;
  const jptBytes = joliet
    ? pathTable(
        jdirs,
        (n) => n.jolietId,
        () => 0,
        (n) => n.jnum,
        true,
      ).length
    : 0;

  // Lay out: descriptors, path tables, directories, continuation areas, files.
  let next = 16;
  const pvdLba = next++;
  const brLba = hasBoot ? next++ : 0;
  const svdLba = joliet ? next++ : 0;
  const termLba = next++;
  const lPt = next;
  next += sectors(ptBytes);
  const mPt = next;
  next += sectors(ptBytes);
  const jlPt = next;
  next += joliet ? sectors(jptBytes) : 0;
  const jmPt = next;
  next += joliet ? sectors(jptBytes) : 0;
  for (const d of dirs) {
    d.lba = next;
    next += d.size / LB;
  }
  if (joliet) {
    for (const d of jdirs) {
      d.jlba = next;
      next += d.jsize / LB;
    }
  }
  {
    let off = 0;
    const start = next;
    for (const c of chunks) {
      if ((off % LB) + c.len > LB) off += LB - (off % LB);
      c.block = start + Math.floor(off / LB);
      c.offset = off % LB;
      off += c.len;
    }
    next += sectors(off);
  }
  // File extents: boot catalog and boot images first, then the rest in path order.
  const files = entriesInOrder(root).filter((n) => n.entry.kind === 'file');
  const ordered = [
    ...[catalogNode, biosNode, efiNode].filter((n): n is Node => n !== undefined),
    ...files.filter((n) => n !== catalogNode && n !== biosNode && n !== efiNode),
  ];
  const shared = new Map<FileData, number>();
  for (const n of ordered) {
    const data = n.entry.data ?? new Uint8Array(0);
    if (data.length > 0xffffffff) throw new UserError(`ISO: ${n.entry.path} is larger than 4 GiB`);
    n.length = data.length;
    if (data.length === 0) continue;
    const unique = n === biosNode || n === efiNode || n === catalogNode;
    const seen = unique ? undefined : shared.get(data);
    if (seen !== undefined) {
      n.extent = seen;
      continue;
    }
    n.extent = next;
    if (!unique) shared.set(data, next);
    next += sectors(data.length);
  }
  const volumeBlocks = next;
  let totalBytes = volumeBlocks * LB;
  if (opts.hybrid) totalBytes = Math.ceil(totalBytes / (1 << 20)) * (1 << 20);
  // The boot catalog and the BIOS image (small, and patched below) are in memory with the
  // metadata; the other files' data, after them, stream (iso9660Chunks): the EFI image too, a
  // FAT file system that holds the kernel and initrd.
  const inHead = (n: Node) => n === catalogNode || n === biosNode;
  const streamed: { extent: number; data: FileData }[] = [];
  const placed = new Set<number>();
  for (const n of ordered) {
    if (inHead(n) || !n.length || placed.has(n.extent)) continue;
    placed.add(n.extent);
    streamed.push({ extent: n.extent, data: n.entry.data! });
  }
  const out = Buffer.alloc((streamed[0]?.extent ?? volumeBlocks) * LB);

  // Directory records.
  const writeRecs = (recs: Rec[], lba: number, forJoliet: boolean) => {
    let off = lba * LB;
    for (const r of recs) {
      const inBlock = (off - lba * LB) % LB;
      if (inBlock + r.len > LB) off += LB - inBlock;
      const target = r.kind === 'self' ? r.node : r.kind === 'parent' ? (r.node.parent ?? r.node) : r.node;
      const isDir = target.entry.kind === 'dir';
      const extent = isDir ? (forJoliet ? target.jlba : target.lba) : target.extent;
      const length = isDir ? (forJoliet ? target.jsize : target.size) : target.length;
      out[off] = r.len;
      both32(out, off + 2, extent);
      both32(out, off + 10, length);
      recDate(target.entry.mtime).copy(out, off + 18);
      out[off + 25] = isDir ? 2 : 0;
      both16(out, off + 28, 1);
      out[off + 32] = r.id.length;
      r.id.copy(out, off + 33);
      let p = off + 33 + r.id.length + (r.id.length % 2 === 0 ? 1 : 0);
      for (const s of r.su) {
        const b = Buffer.isBuffer(s) ? s : ceEntry(s);
        b.copy(out, p);
        p += b.length;
      }
      off += r.len;
    }
  };
  for (const d of dirs) writeRecs(dirRecs.get(d)!, d.lba, false);
  if (joliet) for (const d of jdirs) writeRecs(jdirRecs.get(d)!, d.jlba, true);
  for (const c of chunks) {
    let p = c.block * LB + c.offset;
    for (const s of c.parts) {
      const b = Buffer.isBuffer(s) ? s : ceEntry(s);
      b.copy(out, p);
      p += b.length;
    }
  }

  // Path tables.
  pathTable(
    dirs,
    (n) => n.isoId,
    (n) => n.lba,
    (n) => n.num,
    true,
  ).copy(out, lPt * LB);
  pathTable(
    dirs,
    (n) => n.isoId,
    (n) => n.lba,
    (n) => n.num,
    false,
  ).copy(out, mPt * LB);
  if (joliet) {
    pathTable(
      jdirs,
      (n) => n.jolietId,
      (n) => n.jlba,
      (n) => n.jnum,
      true,
    ).copy(out, jlPt * LB);
    pathTable(
      jdirs,
      (n) => n.jolietId,
      (n) => n.jlba,
      (n) => n.jnum,
      false,
    ).copy(out, jmPt * LB);
  }

  // The BIOS image's data (the other files stream).
  if (biosNode?.length) out.set(dataBytes(biosNode.entry.data), biosNode.extent * LB);

  // Volume descriptors.
  const vd = (
    lba: number,
    type: number,
    svd: boolean,
    pt: { bytes: number; l: number; m: number },
    rootNode: Node,
  ) => {
    const o = lba * LB;
    out[o] = type;
    out.write('CD001', o + 1, 'latin1');
    out[o + 6] = 1;
    const text = (s: string, off: number, len: number) => {
      if (svd) {
        const b = Buffer.alloc(len);
        for (let i = 0; i + 1 < len; i += 2) b.writeUInt16BE(0x20, i);
        ucs2be(s)
          .subarray(0, len & ~1)
          .copy(b);
        b.copy(out, o + off);
      } else out.write(s.padEnd(len, ' ').slice(0, len), o + off, 'latin1');
    };
    text('LINUX', 8, 32);
    text(opts.volumeId, 40, 32);
    both32(out, o + 80, volumeBlocks);
    if (svd) out.write('%/E', o + 88, 'latin1');
    both16(out, o + 120, 1);
    both16(out, o + 124, 1);
    both16(out, o + 128, LB);
    both32(out, o + 132, pt.bytes);
    out.writeUInt32LE(pt.l, o + 140);
    out.writeUInt32BE(pt.m, o + 148);
    // root directory record (34 bytes)
    const r = o + 156;
    out[r] = 34;
    both32(out, r + 2, svd ? rootNode.jlba : rootNode.lba);
    both32(out, r + 10, svd ? rootNode.jsize : rootNode.size);
    recDate(rootNode.entry.mtime).copy(out, r + 18);
    out[r + 25] = 2;
    both16(out, r + 28, 1);
    out[r + 32] = 1;
    for (const [off, len] of [
      [190, 128],
      [318, 128],
      [446, 128],
      [574, 128],
      [702, 37],
      [739, 37],
      [776, 37],
    ] as const)
      text('', off, len);
    for (const off of [813, 830]) volDate(opts.mtime).copy(out, o + off);
    for (const off of [847, 864]) volDate(undefined).copy(out, o + off);
    out[o + 881] = 1;
  };
  vd(pvdLba, 1, false, { bytes: ptBytes, l: lPt, m: mPt }, root);
  if (joliet) vd(svdLba, 2, true, { bytes: jptBytes, l: jlPt, m: jmPt }, root);
  const term = termLba * LB;
  out[term] = 255;
  out.write('CD001', term + 1, 'latin1');
  out[term + 6] = 1;

  // El Torito.
  if (hasBoot) {
    const o = brLba * LB;
    out[o] = 0;
    out.write('CD001', o + 1, 'latin1');
    out[o + 6] = 1;
    out.write('EL TORITO SPECIFICATION', o + 7, 'latin1');
    out.writeUInt32LE(catalogNode!.extent, o + 71);
    const cat = Buffer.alloc(LB);
    const entry = (off: number, n: Node, count: number) => {
      cat[off] = 0x88;
      cat[off + 1] = 0; // no emulation
      cat.writeUInt16LE(0, off + 2); // load segment: default 0x7c0
      cat.writeUInt16LE(count, off + 6);
      cat.writeUInt32LE(n.extent, off + 8);
    };
    // EDK2 takes a count below 2 as "up to the end of the medium".
    const efiCount = (n: Node) => {
      const s = Math.ceil(n.length / 512);
      return s > 0xffff ? 1 : s;
    };
    cat[0] = 1;
    cat[1] = biosNode ? 0 : 0xef;
    cat[30] = 0x55;
    cat[31] = 0xaa;
    let sum = 0;
    for (let i = 0; i < 32; i += 2) sum = (sum + cat.readUInt16LE(i)) & 0xffff;
    cat.writeUInt16LE((0x10000 - sum) & 0xffff, 28);
    if (biosNode) {
      entry(32, biosNode, boot?.loadSectors ?? 4);
      if (efiNode) {
        cat[64] = 0x91;
        cat[65] = 0xef;
        cat.writeUInt16LE(1, 66);
        entry(96, efiNode, efiCount(efiNode));
      }
    } else if (efiNode) entry(32, efiNode, efiCount(efiNode));
    cat.copy(out, catalogNode!.extent * LB);

    if (biosNode && (boot?.bootInfoTable ?? true)) {
      const at = biosNode.extent * LB;
      if (biosNode.length < 64)
        throw new UserError(`BIOS boot image ${boot?.bios} is too small for a boot info table`);
      let s = 0;
      for (let i = 64; i < biosNode.length; i += 4) {
        const b = (k: number) => (i + k < biosNode.length ? out[at + i + k]! : 0);
        s = (s + (b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24))) >>> 0;
      }
      out.writeUInt32LE(pvdLba, at + 8);
      out.writeUInt32LE(biosNode.extent, at + 12);
      out.writeUInt32LE(biosNode.length, at + 16);
      out.writeUInt32LE(s, at + 20);
      out.fill(0, at + 24, at + 64);
    }
  }

  // Hybrid MBR.
  if (opts.hybrid) {
    const parts: MbrPartition[] = [];
    const all = totalBytes / 512;
    if (efiNode) {
      // Partitions must not overlap (EDK2 rejects such a table): an entry of type 0 (ignored by
      // firmware, but active for BIOSes that want one) up to the ESP, then the ESP.
      parts.push({ bootable: true, type: 0x00, start: 0, sectors: efiNode.extent * 4 });
      parts.push({ type: 0xef, start: efiNode.extent * 4, sectors: Math.ceil(efiNode.length / 512) });
    } else parts.push({ bootable: true, type: 0x17, start: 0, sectors: all });
    const code = opts.hybrid.mbrCode;
    const mbr = writeMbr(parts, {
      code: code?.subarray(0, 432),
      diskId: crc32(out.subarray(pvdLba * LB, pvdLba * LB + LB)),
      geometry: { heads: 64, sectors: 32 },
    });
    mbr.copy(out, 0);
    if (biosNode && code) {
      out.writeUInt32LE(biosNode.extent * 4, 432);
      out.writeUInt32LE(0, 436);
    }
  }
  return { head: out, files: streamed, totalBytes };
}

function entriesInOrder(root: Node): Node[] {
  const out: Node[] = [];
  const walk = (n: Node) => {
    for (const c of n.children) {
      out.push(c);
      if (c.entry.kind === 'dir') walk(c);
    }
  };
  walk(root);
  return out;
}
