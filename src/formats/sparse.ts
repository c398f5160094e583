/**
 * Sparse images: a disk (or any big file) as the extents that were written over a virtual size.
 * Everything not covered by an extent reads as zeros. Disk codecs (qcow2, VHD, VMDK, raw) take
 * one and give one back, so memory follows the bytes written, never the virtual disk size, and
 * the raw file is written with holes (ftruncate to the size, then positional writes).
 *
 *   SparseImage { size, extents: [{ offset, data }, ...] }   extents sorted, non-overlapping
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export interface Extent {
  offset: number;
  data: Uint8Array;
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

/** `len` bytes at `offset`: a view when one extent covers them, else a zero-filled copy. */
export function readAt(img: SparseImage, offset: number, len: number): Uint8Array {
  let i = firstEndingAfter(img, offset);
  const first = img.extents[i];
  if (first && first.offset <= offset && first.offset + first.data.length >= offset + len)
    return first.data.subarray(offset - first.offset, offset - first.offset + len);
  const out = new Uint8Array(len);
  for (; i < img.extents.length; i++) {
    const e = img.extents[i]!;
    if (e.offset >= offset + len) break;
    const from = Math.max(offset, e.offset);
    const to = Math.min(offset + len, e.offset + e.data.length);
    out.set(e.data.subarray(from - e.offset, to - e.offset), from - offset);
  }
  return out;
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

/**
 * The non-zero blocks of `blockSize` bytes, in order: a block that no extent touches or that
 * only holds zeros is not allocated. The last block is zero-padded to a whole block.
 */
export function* dataBlocks(
  img: SparseImage,
  blockSize: number,
): Generator<{ index: number; data: Uint8Array }> {
  let last = -1;
  for (const e of img.extents) {
    const firstBlock = Math.max(Math.floor(e.offset / blockSize), last + 1);
    const lastBlock = Math.floor((e.offset + e.data.length - 1) / blockSize);
    for (let b = firstBlock; b <= lastBlock; b++) {
      const start = b * blockSize;
      let data = readAt(img, start, Math.min(blockSize, img.size - start));
      if (data.length < blockSize) {
        const padded = new Uint8Array(blockSize);
        padded.set(data);
        data = padded;
      }
      last = b;
      if (!isZero(data)) yield { index: b, data };
    }
  }
}

/** A content digest of the image (size and every non-zero 64 KiB block): for derived ids. */
export function sparseDigest(img: SparseImage): Buffer {
  const h = createHash('sha256');
  const n = Buffer.alloc(16);
  n.writeBigUInt64BE(BigInt(img.size));
  h.update(n);
  for (const { index, data } of dataBlocks(img, 65536)) {
    n.writeBigUInt64BE(BigInt(index), 8);
    h.update(n.subarray(8));
    h.update(data);
  }
  return h.digest();
}

/** Lay chunks one after another from `offset` as extents (headers, tables, clusters). */
export class ExtentWriter {
  readonly extents: Extent[] = [];
  constructor(public pos = 0) {}
  put(data: Uint8Array): number {
    const at = this.pos;
    if (data.length) this.extents.push({ offset: at, data });
    this.pos += data.length;
    return at;
  }
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
      const CHUNK = 1 << 20;
      for (let o = 0; o < e.data.length; o += CHUNK) {
        const piece = e.data.subarray(o, o + CHUNK);
        if (!isZero(piece)) await fh.write(piece, 0, piece.length, e.offset + o);
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
