/**
 * VMDK, monolithicSparse (VMware Virtual Disk Format 1.1, "hosted sparse extent"), written from
 * a sparse image: one file holding header, text descriptor, grain directory, grain tables and
 * the 64 KiB grains that hold non-zero data. Numbers are little-endian; offsets in sectors.
 *
 *   sector 0: SparseExtentHeader (512 bytes)
 *     0 magic "KDMV"          4 version 1            8 flags 1 (valid newline-detection chars)
 *    12 capacity (u64)       20 grainSize 128       28 descriptorOffset 1   36 descriptorSize 20
 *    44 numGTEsPerGT 512     48 rgdOffset 0 (no redundant directory)       56 gdOffset (u64)
 *    64 overHead (u64: sectors before the first grain)  72 uncleanShutdown 0
 *    73 '\n' 74 ' ' 75 '\r' 76 '\n' (line-ending check)  77 compressAlgorithm 0
 *   sector 1..20: the descriptor, text, zero-padded:
 *     version=1, CID (derived from the content, never random), parentCID=ffffffff,
 *     createType="monolithicSparse", one extent line `RW <sectors> SPARSE "<file name>"`,
 *     the DDB (adapter type, CHS geometry)
 *   grain directory: u32 per grain table (sector offset); every table is allocated
 *   grain tables: 512 u32 each (one table covers 32 MiB), sector of the grain or 0 (zeros)
 *   grains from `overHead` on (rounded up to a grain), in guest order
 */
import { Buffer } from 'node:buffer';
import { UserError } from '../util/errors.js';
import { dataBlocks, ExtentWriter, type SparseImage, sparseDigest, sparseImage } from './sparse.js';

const SECTOR = 512;
const GRAIN_SECTORS = 128;
const GRAIN = GRAIN_SECTORS * SECTOR;
const GTES = 512;
const DESC_SECTORS = 20;

export interface VmdkOptions {
  /** The file name the descriptor's extent line names (the .vmdk's own base name). */
  fileName: string;
}

export function encodeVmdk(disk: SparseImage, opts: VmdkOptions): SparseImage {
  if (disk.size % SECTOR !== 0)
    throw new UserError(`a VMDK disk size must be a whole number of 512-byte sectors, got ${disk.size}`);
  if (/["\n]/.test(opts.fileName))
    throw new UserError(`invalid VMDK file name ${JSON.stringify(opts.fileName)}`);
  const capacity = disk.size / SECTOR;
  const tables = Math.max(1, Math.ceil(capacity / (GTES * GRAIN_SECTORS)));
  const gdSectors = Math.ceil((tables * 4) / SECTOR);
  const gdOffset = 1 + DESC_SECTORS;
  const gtOffset = gdOffset + gdSectors;
  const gtSectors = (GTES * 4) / SECTOR;
  const overHead = Math.ceil((gtOffset + tables * gtSectors) / GRAIN_SECTORS) * GRAIN_SECTORS;

  const header = Buffer.alloc(SECTOR);
  header.write('KDMV', 0, 'latin1');
  header.writeUInt32LE(1, 4);
  header.writeUInt32LE(1, 8);
  header.writeBigUInt64LE(BigInt(capacity), 12);
  header.writeBigUInt64LE(BigInt(GRAIN_SECTORS), 20);
  header.writeBigUInt64LE(1n, 28);
  header.writeBigUInt64LE(BigInt(DESC_SECTORS), 36);
  header.writeUInt32LE(GTES, 44);
  header.writeBigUInt64LE(BigInt(gdOffset), 56);
  header.writeBigUInt64LE(BigInt(overHead), 64);
  header.write('\n \r\n', 73, 'latin1');

  const cid = sparseDigest(disk).readUInt32BE(0).toString(16).padStart(8, '0');
  const cyl = Math.min(16383, Math.floor(capacity / (16 * 63)));
  const text = [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid}`,
    'parentCID=ffffffff',
    'createType="monolithicSparse"',
    '',
    '# Extent description',
    `RW ${capacity} SPARSE "${opts.fileName}"`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cyl}"`,
    'ddb.geometry.heads = "16"',
    'ddb.geometry.sectors = "63"',
    'ddb.adapterType = "ide"',
    '',
  ].join('\n');
  const desc = Buffer.alloc(DESC_SECTORS * SECTOR);
  if (Buffer.byteLength(text) > desc.length) throw new UserError('VMDK descriptor too long (file name?)');
  desc.write(text, 0, 'utf8');

  const gd = Buffer.alloc(gdSectors * SECTOR);
  for (let t = 0; t < tables; t++) gd.writeUInt32LE(gtOffset + t * gtSectors, t * 4);
  const gts = Buffer.alloc(tables * gtSectors * SECTOR);

  const out = new ExtentWriter();
  out.put(header);
  out.put(desc);
  out.put(gd);
  out.put(gts);
  out.pos = overHead * SECTOR;
  for (const { index, data } of dataBlocks(disk, GRAIN)) {
    gts.writeUInt32LE(out.pos / SECTOR, index * 4);
    out.put(data);
  }
  return sparseImage(out.pos, out.extents);
}
