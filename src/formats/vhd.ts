/**
 * VHD (Microsoft Virtual Hard Disk Image Format Specification 1.0), fixed and dynamic, written
 * from a sparse image. All numbers are big-endian.
 *
 *   footer (512 bytes): at the end of a fixed disk; at the start and the end of a dynamic one
 *     0 cookie "conectix"        8 features 2          12 version 0x00010000
 *    16 data offset: 0xffff..ff (fixed) or 512 (dynamic: where the dynamic header is)
 *    24 timestamp: seconds since 2000-01-01 00:00 UTC (from SOURCE_DATE_EPOCH, else 0)
 *    28 creator app "qem2"        32 creator version 0x00050003   36 creator host "Wi2k"
 *    40 original size (u64)      48 current size (u64) 56 geometry: cylinders u16, heads u8,
 *                                                         sectors per track u8 (spec appendix)
 *    60 disk type 2 fixed / 3 dynamic                  64 checksum: ~(sum of footer bytes)
 *    68 unique id (16 bytes, derived from the content) 84 saved state 0, then zeros
 *   "qem2" is what qemu-img writes with force_size (as upstream LinuxKit's vhd/azure outputs
 *   do): it tells readers to take the size from `current size`, not from the CHS geometry,
 *   which cannot express most sizes exactly.
 *
 *   fixed:   the raw disk, then the footer
 *   dynamic: footer copy, dynamic header (1024 bytes at 512), BAT, blocks, footer
 *     dynamic header: 0 cookie "cxsparse", 8 data offset 0xffff..ff, 16 BAT offset (u64),
 *       24 version 0x00010000, 28 max BAT entries, 32 block size (2 MiB), 36 checksum,
 *       40.. parent fields (zero: no parent)
 *     BAT: u32 per block, the sector of its bitmap, 0xffffffff = not allocated (reads zeros);
 *       padded to a sector
 *     block: sector bitmap (512 bytes, 1 bit per sector, all set) then 2 MiB of data
 */
import { Buffer } from 'node:buffer';
import { UserError } from '../util/errors.js';
import { dataBlocks, ExtentWriter, type SparseImage, sparseDigest, sparseImage } from './sparse.js';

const SECTOR = 512;
const BLOCK = 2 * 1024 * 1024;
const VHD_EPOCH = 946684800; // 2000-01-01T00:00:00Z
/** The most a VHD can address: 2040 GiB (the spec's limit for CHS-bearing footers). */
const MAX_SIZE = 65535 * 16 * 255 * SECTOR;

export interface VhdOptions {
  /** Seconds since the Unix epoch for the timestamp field (SOURCE_DATE_EPOCH); default 0. */
  epoch?: number;
}

/** CHS geometry for a size, as the VHD spec's appendix computes it. */
export function vhdGeometry(size: number): { cylinders: number; heads: number; sectors: number } {
  const total = Math.min(Math.floor(size / SECTOR), 65535 * 16 * 255);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.floor((cth + 1023) / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectors: spt };
}

function checksum(b: Uint8Array): number {
  let s = 0;
  for (const x of b) s += x;
  return ~s >>> 0;
}

function footer(size: number, type: 'fixed' | 'dynamic', id: Uint8Array, epoch: number): Buffer {
  const f = Buffer.alloc(SECTOR);
  f.write('conectix', 0, 'latin1');
  f.writeUInt32BE(2, 8);
  f.writeUInt32BE(0x00010000, 12);
  f.writeBigUInt64BE(type === 'fixed' ? 0xffffffffffffffffn : BigInt(SECTOR), 16);
  f.writeUInt32BE(Math.max(0, Math.min(0xffffffff, epoch - VHD_EPOCH)), 24);
  f.write('qem2', 28, 'latin1');
  f.writeUInt32BE(0x00050003, 32);
  f.write('Wi2k', 36, 'latin1');
  f.writeBigUInt64BE(BigInt(size), 40);
  f.writeBigUInt64BE(BigInt(size), 48);
  const g = vhdGeometry(size);
  f.writeUInt16BE(g.cylinders, 56);
  f[58] = g.heads;
  f[59] = g.sectors;
  f.writeUInt32BE(type === 'fixed' ? 2 : 3, 60);
  f.set(id.subarray(0, 16), 68);
  f.writeUInt32BE(checksum(f), 64);
  return f;
}

function checkSize(disk: SparseImage): void {
  if (disk.size % SECTOR !== 0)
    throw new UserError(`a VHD disk size must be a whole number of 512-byte sectors, got ${disk.size}`);
  if (disk.size > MAX_SIZE)
    throw new UserError(`a VHD disk can be at most ${MAX_SIZE} bytes, got ${disk.size}`);
}

/** A fixed VHD: the disk's bytes (holes stay holes) followed by the footer. */
export function encodeFixedVhd(disk: SparseImage, opts: VhdOptions = {}): SparseImage {
  checkSize(disk);
  const f = footer(disk.size, 'fixed', sparseDigest(disk), opts.epoch ?? 0);
  return sparseImage(disk.size + SECTOR, [...disk.extents, { offset: disk.size, data: f }]);
}

/** A dynamic VHD: only the 2 MiB blocks that hold non-zero data are stored. */
export function encodeDynamicVhd(disk: SparseImage, opts: VhdOptions = {}): SparseImage {
  checkSize(disk);
  const f = footer(disk.size, 'dynamic', sparseDigest(disk), opts.epoch ?? 0);
  const entries = Math.ceil(disk.size / BLOCK);
  const batOffset = 3 * SECTOR;
  const bat = Buffer.alloc(Math.ceil((entries * 4) / SECTOR) * SECTOR, 0xff);

  const dyn = Buffer.alloc(1024);
  dyn.write('cxsparse', 0, 'latin1');
  dyn.writeBigUInt64BE(0xffffffffffffffffn, 8);
  dyn.writeBigUInt64BE(BigInt(batOffset), 16);
  dyn.writeUInt32BE(0x00010000, 24);
  dyn.writeUInt32BE(entries, 28);
  dyn.writeUInt32BE(BLOCK, 32);
  dyn.writeUInt32BE(checksum(dyn), 36);

  const out = new ExtentWriter();
  out.put(f);
  out.put(dyn);
  out.put(bat);
  const bitmap = Buffer.alloc(SECTOR, 0xff);
  for (const { index, data } of dataBlocks(disk, BLOCK)) {
    bat.writeUInt32BE(out.pos / SECTOR, index * 4);
    out.put(bitmap);
    // The last block of a disk that is not a multiple of 2 MiB is still stored whole.
    out.put(data);
  }
  out.put(f);
  return sparseImage(out.pos, out.extents);
}

/**
 * Azure's rules for uploaded disks: a fixed VHD whose virtual size is a whole number of MiB.
 * A disk that is not is grown (with zeros) to the next MiB.
 */
export function encodeAzureVhd(disk: SparseImage, opts: VhdOptions = {}): SparseImage {
  const MiB = 1024 * 1024;
  const size = Math.ceil(disk.size / MiB) * MiB;
  return encodeFixedVhd({ size, extents: disk.extents }, opts);
}
