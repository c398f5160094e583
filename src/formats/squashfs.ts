/**
 * squashfs 4.0 writer (the layout of the kernel's fs/squashfs and squashfs-tools), from an
 * FsTree. Little-endian throughout.
 *
 *   superblock (96 bytes at 0)
 *     0 magic "hsqs"   4 inode count   8 mkfs time (SOURCE_DATE_EPOCH, else 0)
 *    12 block size 131072   16 fragment count 0   20 compressor (1 zlib, 6 zstd)
 *    22 block log 17   24 flags   26 id count   28 major 4   30 minor 0
 *    32 root inode ref   40 bytes used   48 id table   56 xattr id table (or ~0)
 *    64 inode table   72 directory table   80 fragment table (~0: none)   88 export table (~0)
 *   data blocks, from 96: each file's data in 128 KiB blocks, each compressed unless that does
 *     not make it smaller (then stored as is, flagged by bit 24 of its size word). No fragments:
 *     a file's tail is a short block of its own. Files with the same content share their blocks.
 *   inode table, directory table: "metadata blocks" = u16 header (stored length | 0x8000 when
 *     stored uncompressed) + up to 8 KiB of data. An inode reference is
 *     (offset of its metadata block from the table start) << 16 | offset inside the block.
 *   inode: type u16, mode u16 (permission bits), uid index u16, gid index u16, mtime u32,
 *     inode number u32, then by type
 *       1 dir: start block u32, nlink u32, listing size + 3 u16, offset u16, parent inode u32
 *       8 ext dir: nlink u32, listing size + 3 u32, start block u32, parent u32, index count u16
 *                  (0), offset u16, xattr index u32  (used for big listings or xattrs)
 *       2 file: first block u32, fragment ~0, offset 0, size u32, block sizes u32[]
 *       9 ext file: first block u64, size u64, sparse 0 u64, nlink u32, fragment ~0, offset 0,
 *                  xattr index u32, block sizes u32[]  (files >= 4 GiB or with xattrs)
 *       3 symlink: nlink u32, target length u32, target (10: the same + xattr index u32)
 *       4 block / 5 char: nlink u32, rdev u32 (11/12: + xattr)   6 fifo: nlink u32 (13: + xattr)
 *   directory listing: runs of a header (count - 1 u32, inode metadata block u32, base inode
 *     number u32) and up to 256 entries (offset in that block u16, inode number - base s16,
 *     basic type u16, name length - 1 u16, name), names in byte order (the kernel's lookup
 *     stops early relying on it)
 *   id table: u32 uids/gids in metadata blocks, then u64 offsets of those blocks (at "id table")
 *   xattr table: per inode, entries (type u16: 0 user, 1 trusted, 2 security; name length u16,
 *     name without the prefix; value length u32, value) in metadata blocks; then the xattr ids
 *     (ref u64, count u32, size u32) in metadata blocks; then at "xattr id table": table start
 *     u64, id count u32, 0 u32, u64 offsets of the id metadata blocks
 *   the image is zero-padded to a multiple of 4 KiB (block devices read in 4 KiB units)
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { dataChunks, type FileData } from '../fs/data.js';
import type { FsEntry, FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';

export type SquashfsCompression = 'gzip' | 'zstd';

export interface SquashfsOptions {
  compression?: SquashfsCompression;
  /** mkfs time (seconds since the epoch): SOURCE_DATE_EPOCH or 0. */
  epoch?: number;
}

const BLOCK_LOG = 17;
const BLOCK_SIZE = 1 << BLOCK_LOG;
const META = 8192;
const INVALID = 0xffffffffffffffffn;
const NO_FRAGMENT = 0xffffffff;
const FLAG_NO_FRAGMENTS = 0x0010;
const FLAG_DUPLICATES = 0x0040;
const FLAG_NO_XATTRS = 0x0200;

type Compress = (b: Uint8Array) => Uint8Array;

function compressor(kind: SquashfsCompression): { id: number; fn: Compress } {
  if (kind === 'gzip') return { id: 1, fn: (b) => zlib.deflateSync(b, { level: 6 }) };
  // Node >= 22.15 has zstd in zlib; Node 20 has none and we ship no zstd compressor.
  const z = zlib as unknown as { zstdCompressSync?: (b: Uint8Array) => Buffer };
  if (kind === 'zstd' && z.zstdCompressSync) return { id: 6, fn: (b) => z.zstdCompressSync!(b) };
  throw new UserError(`squashfs: ${kind} compression is not available in this Node.js (use gzip)`);
}

/** A metadata stream (inode, directory, id, xattr tables) cut into 8 KiB compressed blocks. */
class MetaWriter {
  private readonly out: Buffer[] = [];
  private outLen = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** Offsets (from the table start) of every block written. */
  readonly blockStarts: number[] = [];
  constructor(private readonly compress: Compress) {}

  /** Where the next byte goes: [metadata block offset, offset inside it]. */
  get pos(): [number, number] {
    return [this.outLen, this.pendingLen];
  }

  add(b: Uint8Array): [number, number] {
    const at = this.pos;
    this.pending.push(Buffer.from(b.buffer, b.byteOffset, b.length));
    this.pendingLen += b.length;
    while (this.pendingLen >= META) this.flush(META);
    return at;
  }

  private flush(n: number): void {
    const all = Buffer.concat(this.pending);
    const block = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingLen = rest.length;
    const c = this.compress(block);
    const hdr = Buffer.alloc(2);
    const stored = c.length < block.length ? c : block;
    hdr.writeUInt16LE(stored.length | (stored === block ? 0x8000 : 0));
    this.blockStarts.push(this.outLen);
    this.out.push(hdr, Buffer.from(stored));
    this.outLen += 2 + stored.length;
  }

  finish(): Buffer {
    if (this.pendingLen) this.flush(this.pendingLen);
    return Buffer.concat(this.out);
  }
}

const XATTR_PREFIXES: [string, number][] = [
  ['user.', 0],
  ['trusted.', 1],
  ['security.', 2],
];

interface Node {
  entry: FsEntry | undefined; // undefined: the root
  name: Buffer;
  children: Node[];
  ino: number;
  ref?: bigint;
  type?: number; // basic type, for directory entries
}

function buildNodes(tree: FsTree): Node {
  const root: Node = { entry: undefined, name: Buffer.alloc(0), children: [], ino: 0 };
  const byPath = new Map<string, Node>([['', root]]);
  for (const e of tree.entries()) {
    const i = e.path.lastIndexOf('/');
    const parent = byPath.get(i < 0 ? '' : e.path.slice(0, i));
    if (!parent) throw new UserError(`squashfs: ${e.path} has no parent directory`);
    const n: Node = { entry: e, name: Buffer.from(e.path.slice(i + 1)), children: [], ino: 0 };
    parent.children.push(n);
    if (e.kind === 'dir') byPath.set(e.path, n);
  }
  return root;
}

/** A squashfs image of the tree, in memory (see squashfsParts for one made in pieces). */
export function writeSquashfs(tree: FsTree, opts: SquashfsOptions = {}): Buffer {
  const parts = squashfsParts(tree, opts);
  const data = [...parts.data];
  const { head, tail } = parts.finish();
  return Buffer.concat([head, ...data, ...tail]);
}

/** A squashfs image in its three parts, so that its file data need not be in memory. */
export interface SquashfsParts {
  /** The compressed file data blocks, in order, made as they are taken: take them all first. */
  data: Generator<Uint8Array>;
  /** The superblock (the first 96 bytes), and the tables and padding that follow the data. */
  finish(): { head: Buffer; tail: Buffer[] };
}

export function squashfsParts(tree: FsTree, opts: SquashfsOptions = {}): SquashfsParts {
  const comp = compressor(opts.compression ?? 'gzip');
  const root = buildNodes(tree);

  // Inode numbers in the order inodes are written (children before their directory).
  let nextIno = 1;
  const number = (n: Node) => {
    n.children.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const c of n.children) number(c);
    n.ino = nextIno++;
  };
  number(root);
  const inodeCount = nextIno - 1;

  // Data blocks: a file's data is read twice (its digest finds duplicates first), a block at a
  // time when it is a slice of a file on disk.
  let dataPos = 96;
  const dedup = new Map<string, { start: number; sizes: number[] }>();
  const blocks = function* (d: FileData) {
    for (const piece of dataChunks(d, BLOCK_SIZE))
      for (let o = 0; o < piece.length; o += BLOCK_SIZE) yield piece.subarray(o, o + BLOCK_SIZE);
  };
  function* writeData(d: FileData): Generator<Uint8Array, { start: number; sizes: number[] }> {
    const h = createHash('sha256');
    for (const b of blocks(d)) h.update(b);
    const key = h.digest('hex');
    const seen = dedup.get(key);
    if (seen) return seen;
    const start = dataPos;
    const sizes: number[] = [];
    for (const block of blocks(d)) {
      const c = comp.fn(block);
      if (c.length < block.length) {
        yield c;
        sizes.push(c.length);
        dataPos += c.length;
      } else {
        yield block;
        sizes.push(block.length | (1 << 24));
        dataPos += block.length;
      }
    }
    const r = { start, sizes };
    dedup.set(key, r);
    return r;
  }

  // uid/gid table.
  const ids: number[] = [];
  const idIndex = (id: number) => {
    let i = ids.indexOf(id);
    if (i < 0) {
      i = ids.push(id) - 1;
      if (ids.length > 65535) throw new UserError('squashfs: more than 65535 distinct uids/gids');
    }
    return i;
  };

  // xattr sets, shared by inodes that have the same ones.
  const xattrMeta = new MetaWriter(comp.fn);
  const xattrIds: Buffer[] = [];
  const xattrSets = new Map<string, number>();
  const xattrIndex = (x: Record<string, Uint8Array> | undefined): number => {
    const names = Object.keys(x ?? {}).sort();
    if (!x || names.length === 0) return NO_FRAGMENT; // ~0: no xattrs
    const parts: Buffer[] = [];
    for (const name of names) {
      const p = XATTR_PREFIXES.find(([pre]) => name.startsWith(pre));
      if (!p)
        throw new UserError(`squashfs: xattr ${name} is not in the user, trusted or security namespace`);
      const n = Buffer.from(name.slice(p[0].length));
      const h = Buffer.alloc(4);
      h.writeUInt16LE(p[1], 0);
      h.writeUInt16LE(n.length, 2);
      const v = Buffer.alloc(4);
      v.writeUInt32LE(x[name]!.length);
      parts.push(h, n, v, Buffer.from(x[name]!));
    }
    const body = Buffer.concat(parts);
    const key = body.toString('base64');
    const seen = xattrSets.get(key);
    if (seen !== undefined) return seen;
    const [blk, off] = xattrMeta.add(body);
    const id = Buffer.alloc(16);
    id.writeBigUInt64LE((BigInt(blk) << 16n) | BigInt(off), 0);
    id.writeUInt32LE(names.length, 8);
    id.writeUInt32LE(body.length, 12);
    const idx = xattrIds.push(id) - 1;
    xattrSets.set(key, idx);
    return idx;
  };

  const inodes = new MetaWriter(comp.fn);
  const dirs = new MetaWriter(comp.fn);

  const header = (type: number, e: FsEntry | undefined, ino: number, extra: number) => {
    const b = Buffer.alloc(16 + extra);
    b.writeUInt16LE(type, 0);
    b.writeUInt16LE((e?.mode ?? 0o755) & 0o7777, 2);
    b.writeUInt16LE(idIndex(e?.uid ?? 0), 4);
    b.writeUInt16LE(idIndex(e?.gid ?? 0), 6);
    b.writeUInt32LE(Math.max(0, Math.min(0xffffffff, e?.mtime ?? opts.epoch ?? 0)), 8);
    b.writeUInt32LE(ino, 12);
    return b;
  };
  const emit = (n: Node, b: Buffer) => {
    const [blk, off] = inodes.add(b);
    n.ref = (BigInt(blk) << 16n) | BigInt(off);
  };

  // Inodes and listings go to the metadata tables as the walk goes; file data is yielded.
  function* writeNode(n: Node, parentIno: number): Generator<Uint8Array, void> {
    const e = n.entry;
    const kind = e?.kind ?? 'dir';
    if (kind === 'dir') {
      for (const c of n.children) yield* writeNode(c, n.ino);
      // The listing, in runs that share an inode metadata block and a base inode number.
      const [dblk, doff] = dirs.pos;
      const parts: Buffer[] = [];
      let i = 0;
      while (i < n.children.length) {
        const first = n.children[i]!;
        const block = Number(first.ref! >> 16n);
        let j = i;
        while (
          j < n.children.length &&
          j - i < 256 &&
          Number(n.children[j]!.ref! >> 16n) === block &&
          Math.abs(n.children[j]!.ino - first.ino) <= 32767
        )
          j++;
        const h = Buffer.alloc(12);
        h.writeUInt32LE(j - i - 1, 0);
        h.writeUInt32LE(block, 4);
        h.writeUInt32LE(first.ino, 8);
        parts.push(h);
        for (const c of n.children.slice(i, j)) {
          const d = Buffer.alloc(8);
          d.writeUInt16LE(Number(c.ref! & 0xffffn), 0);
          d.writeInt16LE(c.ino - first.ino, 2);
          d.writeUInt16LE(c.type!, 4);
          d.writeUInt16LE(c.name.length - 1, 6);
          parts.push(d, c.name);
        }
        i = j;
      }
      const listing = Buffer.concat(parts);
      dirs.add(listing);
      const nlink = 2 + n.children.filter((c) => (c.entry?.kind ?? 'dir') === 'dir').length;
      const xi = xattrIndex(e?.xattrs);
      if (listing.length + 3 > 0xffff || xi !== NO_FRAGMENT) {
        const b = header(8, e, n.ino, 24);
        b.writeUInt32LE(nlink, 16);
        b.writeUInt32LE(listing.length + 3, 20);
        b.writeUInt32LE(dblk, 24);
        b.writeUInt32LE(parentIno, 28);
        b.writeUInt16LE(0, 32);
        b.writeUInt16LE(doff, 34);
        b.writeUInt32LE(xi, 36);
        emit(n, b);
      } else {
        const b = header(1, e, n.ino, 16);
        b.writeUInt32LE(dblk, 16);
        b.writeUInt32LE(nlink, 20);
        b.writeUInt16LE(listing.length + 3, 24);
        b.writeUInt16LE(doff, 26);
        b.writeUInt32LE(parentIno, 28);
        emit(n, b);
      }
      n.type = 1;
      return;
    }
    const ent = e!;
    const xi = xattrIndex(ent.xattrs);
    const ext = xi !== NO_FRAGMENT;
    switch (ent.kind) {
      case 'file': {
        const d = ent.data ?? new Uint8Array(0);
        const { start, sizes } = d.length ? yield* writeData(d) : { start: 0, sizes: [] };
        if (ext || d.length > 0xffffffff || start > 0xffffffff) {
          const b = header(9, ent, n.ino, 40 + sizes.length * 4);
          b.writeBigUInt64LE(BigInt(start), 16);
          b.writeBigUInt64LE(BigInt(d.length), 24);
          b.writeBigUInt64LE(0n, 32);
          b.writeUInt32LE(1, 40);
          b.writeUInt32LE(NO_FRAGMENT, 44);
          b.writeUInt32LE(0, 48);
          b.writeUInt32LE(xi, 52);
          for (const [k, s] of sizes.entries()) b.writeUInt32LE(s, 56 + k * 4);
          emit(n, b);
        } else {
          const b = header(2, ent, n.ino, 16 + sizes.length * 4);
          b.writeUInt32LE(start, 16);
          b.writeUInt32LE(NO_FRAGMENT, 20);
          b.writeUInt32LE(0, 24);
          b.writeUInt32LE(d.length, 28);
          for (const [k, s] of sizes.entries()) b.writeUInt32LE(s, 32 + k * 4);
          emit(n, b);
        }
        n.type = 2;
        return;
      }
      case 'symlink': {
        const t = Buffer.from(ent.target ?? '');
        const b = header(ext ? 10 : 3, ent, n.ino, 8 + t.length + (ext ? 4 : 0));
        b.writeUInt32LE(1, 16);
        b.writeUInt32LE(t.length, 20);
        t.copy(b, 24);
        if (ext) b.writeUInt32LE(xi, 24 + t.length);
        emit(n, b);
        n.type = 3;
        return;
      }
      case 'block':
      case 'char': {
        const type = ent.kind === 'block' ? 4 : 5;
        const b = header(ext ? type + 7 : type, ent, n.ino, ext ? 12 : 8);
        const maj = ent.devmajor ?? 0;
        const min = ent.devminor ?? 0;
        // Linux new_encode_dev: minor low 8 bits, major, then the minor's high bits.
        b.writeUInt32LE(((min & 0xff) | (maj << 8) | ((min & ~0xff) << 12)) >>> 0, 20);
        b.writeUInt32LE(1, 16);
        if (ext) b.writeUInt32LE(xi, 24);
        emit(n, b);
        n.type = type;
        return;
      }
      case 'fifo': {
        const b = header(ext ? 13 : 6, ent, n.ino, ext ? 8 : 4);
        b.writeUInt32LE(1, 16);
        if (ext) b.writeUInt32LE(xi, 20);
        emit(n, b);
        n.type = 6;
        return;
      }
    }
  }
  let walked = false;
  const data = (function* () {
    yield* writeNode(root, inodeCount + 1);
    walked = true;
  })();
  return { data, finish: () => finish(walked) };

  function finish(walked: boolean): { head: Buffer; tail: Buffer[] } {
    if (!walked) throw new Error('internal error: squashfs tables asked for before all the data was made');
    // Tables after the data, in the order the kernel's sanity checks expect.
    const inodeTable = inodes.finish();
    const dirTable = dirs.finish();
    const out: Buffer[] = [];
    let pos = dataPos;
    const put = (b: Buffer) => {
      const at = pos;
      out.push(b);
      pos += b.length;
      return at;
    };
    const inodeStart = put(inodeTable);
    const dirStart = put(dirTable);

    const table = (entries: Buffer) => {
      const m = new MetaWriter(comp.fn);
      m.add(entries);
      const body = m.finish();
      const start = put(body);
      const index = Buffer.alloc(m.blockStarts.length * 8);
      for (const [k, s] of m.blockStarts.entries()) index.writeBigUInt64LE(BigInt(start + s), k * 8);
      return index;
    };
    const idBytes = Buffer.alloc(ids.length * 4);
    for (const [k, id] of ids.entries()) idBytes.writeUInt32LE(id, k * 4);
    const idIndexStart = put(table(idBytes));

    let xattrStart = INVALID;
    if (xattrIds.length) {
      const xtableStart = put(xattrMeta.finish());
      const index = table(Buffer.concat(xattrIds));
      const head = Buffer.alloc(16);
      head.writeBigUInt64LE(BigInt(xtableStart), 0);
      head.writeUInt32LE(xattrIds.length, 8);
      xattrStart = BigInt(put(Buffer.concat([head, index])));
    }
    const bytesUsed = pos;
    put(Buffer.alloc((4096 - (pos % 4096)) % 4096));

    const sb = Buffer.alloc(96);
    sb.write('hsqs', 0, 'latin1');
    sb.writeUInt32LE(inodeCount, 4);
    sb.writeUInt32LE(Math.max(0, Math.min(0xffffffff, opts.epoch ?? 0)), 8);
    sb.writeUInt32LE(BLOCK_SIZE, 12);
    sb.writeUInt32LE(0, 16);
    sb.writeUInt16LE(comp.id, 20);
    sb.writeUInt16LE(BLOCK_LOG, 22);
    sb.writeUInt16LE(FLAG_NO_FRAGMENTS | FLAG_DUPLICATES | (xattrIds.length ? 0 : FLAG_NO_XATTRS), 24);
    sb.writeUInt16LE(ids.length, 26);
    sb.writeUInt16LE(4, 28);
    sb.writeUInt16LE(0, 30);
    sb.writeBigUInt64LE(root.ref!, 32);
    sb.writeBigUInt64LE(BigInt(bytesUsed), 40);
    sb.writeBigUInt64LE(BigInt(idIndexStart), 48);
    sb.writeBigUInt64LE(xattrStart, 56);
    sb.writeBigUInt64LE(BigInt(inodeStart), 64);
    sb.writeBigUInt64LE(BigInt(dirStart), 72);
    sb.writeBigUInt64LE(INVALID, 80);
    sb.writeBigUInt64LE(INVALID, 88);
    return { head: sb, tail: out };
  }
}
