/**
 * Sparse images: a disk (or any big file) as the extents that were written over a virtual size.
 * Everything not covered by an extent reads as zeros. Disk codecs (qcow2, VHD, VMDK, raw) take
 * one and give one back, so memory follows the bytes written, never the virtual disk size, and
 * the raw file is written with holes (ftruncate to the size, then positional writes).
 *
 *   SparseImage { size, extents: [{ offset, data }, ...] }   extents sorted, non-overlapping
 *
 * An extent's data is bytes or a slice of a file on disk (an initrd or ISO made into a scratch
 * file): codecs pass slices on as slices, so an image's memory is its metadata, not its data.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { CHUNK, dataBytes, dataChunks, dataSlice, type FileData, FileSlice, zeroChunks } from '../fs/data.js';
import { UserError } from '../util/errors.js';

export interface Extent {
  offset: number;
  data: FileData;
}

export interface SparseImage {
  /** Virtual size in bytes. */
  size: number;
  /** Sorted by offset, non-overlapping, each inside [0, size). */
  extents: Extent[];
}

/** Sort extents and check they neither overlap nor pass the end; empty ones are dropped. */
export function sparseImage(size: number, extents: Extent[]): SparseImage {
  if (!Number.isSafeInteger(size) || size < 0) throw new UserError(`invalid image size ${size}`);
  const sorted = extents.filter((e) => e.data.length > 0).sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const e of sorted) {
    if (e.offset < end) throw new UserError(`image extents overlap at byte ${e.offset}`);
    end = e.offset + e.data.length;
    if (end > size) throw new UserError(`image extent at byte ${e.offset} passes the image size ${size}`);
  }
  return { size, extents: sorted };
}

/** Index of the first extent that ends after `offset`. */
function firstEndingAfter(img: SparseImage, offset: number): number {
  let lo = 0;
  let hi = img.extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const e = img.extents[mid]!;
    if (e.offset + e.data.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The extent that holds all of [offset, offset + len), if one does. */
function covering(img: SparseImage, offset: number, len: number): Extent | undefined {
  const e = img.extents[firstEndingAfter(img, offset)];
  return e && e.offset <= offset && e.offset + e.data.length >= offset + len ? e : undefined;
}

/**
 * `len` bytes at `offset`: a view when one in-memory extent covers them, else a zero-filled copy
 * (slices of files are read).
 */
export function readAt(img: SparseImage, offset: number, len: number): Uint8Array {
  const one = covering(img, offset, len);
  if (one) return dataBytes(dataSlice(one.data, offset - one.offset, offset - one.offset + len));
  const out = new Uint8Array(len);
  for (let i = firstEndingAfter(img, offset); i < img.extents.length; i++) {
    const e = img.extents[i]!;
    if (e.offset >= offset + len) break;
    const from = Math.max(offset, e.offset);
    const to = Math.min(offset + len, e.offset + e.data.length);
    out.set(dataBytes(dataSlice(e.data, from - e.offset, to - e.offset)), from - offset);
  }
  return out;
}

/**
 * Reads slices of files a window at a time: the disk codecs look at every block of 4 KiB to
 * 2 MiB, and one read per block would cost a system call each.
 */
class WindowReader {
  private file: FileSlice['file'] | undefined;
  private start = 0;
  private buf: Uint8Array = new Uint8Array(0);

  read(s: FileSlice, offset: number, len: number): Uint8Array {
    const at = s.offset + offset;
    if (s.file !== this.file || at < this.start || at + len > this.start + this.buf.length) {
      const n = Math.max(len, Math.min(CHUNK, s.offset + s.length - at));
      this.buf = s.file.read(at, n);
      this.file = s.file;
      this.start = at;
    }
    return this.buf.subarray(at - this.start, at - this.start + len);
  }
}

const ZEROS = new Uint8Array(1 << 16);

/** True when every byte is zero (memcmp against a zero buffer: this runs over every written byte). */
export function isZero(b: Uint8Array): boolean {
  for (let o = 0; o < b.length; o += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - o);
    if (Buffer.compare(b.subarray(o, o + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/** A non-zero block of a sparse image (see dataBlocks). */
export interface DataBlock {
  index: number;
  /** The block, to keep: a view of an extent in memory, a slice of a file, or a padded copy. */
  data: FileData;
  /** Its bytes, to look at now: they may be a window that the next block replaces. */
  bytes: Uint8Array;
}

/**
 * The non-zero blocks of `blockSize` bytes, in order: a block that no extent touches or that
 * only holds zeros is not allocated. The last block is zero-padded to a whole block. A block
 * inside one extent is passed on as part of it (a slice stays on disk); every block is read
 * once here to see whether it is zero.
 */
export function* dataBlocks(img: SparseImage, blockSize: number): Generator<DataBlock> {
  const window = new WindowReader();
  let last = -1;
  for (const e of img.extents) {
    const firstBlock = Math.max(Math.floor(e.offset / blockSize), last + 1);
    const lastBlock = Math.floor((e.offset + e.data.length - 1) / blockSize);
    for (let b = firstBlock; b <= lastBlock; b++) {
      const start = b * blockSize;
      const len = Math.min(blockSize, img.size - start);
      last = b;
      const one = len === blockSize ? covering(img, start, len) : undefined;
      if (one) {
        const from = start - one.offset;
        const bytes =
          one.data instanceof FileSlice
            ? window.read(one.data, from, len)
            : one.data.subarray(from, from + len);
        if (!isZero(bytes)) yield { index: b, data: dataSlice(one.data, from, from + len), bytes };
        continue;
      }
      const data = new Uint8Array(blockSize);
      data.set(readAt(img, start, len));
      if (!isZero(data)) yield { index: b, data, bytes: data };
    }
  }
}

/** A content digest of the image (size and every non-zero 64 KiB block): for derived ids. */
export function sparseDigest(img: SparseImage): Buffer {
  const h = createHash('sha256');
  const n = Buffer.alloc(16);
  n.writeBigUInt64BE(BigInt(img.size));
  h.update(n);
  for (const { index, bytes } of dataBlocks(img, 65536)) {
    n.writeBigUInt64BE(BigInt(index), 8);
    h.update(n.subarray(8));
    h.update(bytes);
  }
  return h.digest();
}

/**
 * Lay chunks one after another from `offset` as extents (headers, tables, clusters). A slice
 * that continues the previous one in the same file extends it: a run of clusters from one file
 * is one extent.
 */
export class ExtentWriter {
  readonly extents: Extent[] = [];
  constructor(public pos = 0) {}
  put(data: FileData): number {
    const at = this.pos;
    const prev = this.extents[this.extents.length - 1];
    if (
      data instanceof FileSlice &&
      prev?.data instanceof FileSlice &&
      prev.offset + prev.data.length === at &&
      prev.data.file === data.file &&
      prev.data.offset + prev.data.length === data.offset
    )
      prev.data = new FileSlice(data.file, prev.data.offset, prev.data.length + data.length);
    else if (data.length) this.extents.push({ offset: at, data });
    this.pos += data.length;
    return at;
  }
}

/** The image's bytes in order, holes as zeros, in pieces of at most 1 MiB (to stream a file). */
export function* sparseChunks(img: SparseImage): Generator<Uint8Array> {
  let at = 0;
  for (const e of img.extents) {
    yield* zeroChunks(e.offset - at);
    yield* dataChunks(e.data);
    at = e.offset + e.data.length;
  }
  yield* zeroChunks(img.size - at);
}

/**
 * Write an image as a sparse file, atomically: temp file, ftruncate to the size (holes), the
 * extents at their offsets, fsync, rename. Zero extents are skipped so they stay holes.
 */
export async function writeSparseFile(target: string, img: SparseImage): Promise<void> {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}`);
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.truncate(img.size);
    for (const e of img.extents) {
      let at = e.offset;
      for (const read of dataChunks(e.data)) {
        for (let o = 0; o < read.length; o += CHUNK) {
          const piece = read.subarray(o, o + CHUNK);
          if (!isZero(piece)) await fh.write(piece, 0, piece.length, at + o);
        }
        at += read.length;
      }
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, target);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The whole image as bytes (tests and small images only: this allocates the virtual size). */
export function flatten(img: SparseImage): Uint8Array {
  return readAt(img, 0, img.size);
}
