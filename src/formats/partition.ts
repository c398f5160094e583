/**
 * Partition tables: MBR and GPT (UEFI 2.x chapter 5), in 512-byte sectors (LBA).
 *
 * MBR (sector 0):
 *     0 boot code (440; 432 for isohybrid, which keeps a pointer at 432)
 *   440 disk signature (LE32)   444 0 (2)
 *   446 four 16-byte entries:   0 status (80 = active) | 1 CHS first (3) | 4 type | 5 CHS last (3)
 *                               8 first LBA (LE32) | 12 sector count (LE32)
 *   510 55 AA
 *   CHS bytes: head, sector (1-63) | cylinder bits 8-9 << 6, cylinder bits 0-7; past
 *   cylinder 1023 the triple is FE FF FF.
 *
 * GPT (all little-endian):
 *   LBA 0      protective MBR: one entry, type EE, LBA 1 .. min(last, 2^32-1)
 *   LBA 1      header (92 bytes): 0 "EFI PART" | 8 revision 0x00010000 | 12 header size 92
 *              16 header CRC32 (computed with this field 0) | 24 this LBA | 32 other header's LBA
 *              40 first usable LBA | 48 last usable LBA | 56 disk GUID | 72 entries' LBA
 *              80 entry count (128) | 84 entry size (128) | 88 CRC32 of the entry array
 *   LBA 2-33   entries: 0 type GUID | 16 partition GUID | 32 first LBA | 40 last LBA (inclusive)
 *              48 attributes (bit 0 required, bit 2 legacy BIOS bootable) | 56 name (36 UTF-16LE)
 *   end        backup entries (33 sectors before the end), backup header in the last sector
 *   A GUID's text form is written with its first three groups little-endian.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { UserError } from '../util/errors.js';

export const SECTOR = 512;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

const nodeCrc32 = (zlib as unknown as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/**
 * CRC-32 (IEEE 802.3, as GPT and gzip use): zlib's own where Node has it (20.15+), it is ~20x
 * faster. `prev` continues a CRC over earlier bytes (crc32(b, crc32(a)) = crc32(a + b)).
 */
export function crc32(data: Uint8Array, prev = 0): number {
  if (nodeCrc32) return nodeCrc32(data, prev) >>> 0;
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---- MBR ------------------------------------------------------------------------------------

export interface MbrPartition {
  bootable?: boolean;
  type: number;
  /** First sector. */
  start: number;
  sectors: number;
}

export interface MbrOptions {
  /** Boot code, at most 440 bytes (e.g. syslinux's mbr.bin). */
  code?: Uint8Array;
  diskId?: number;
  /** For the CHS fields; default 255 heads, 63 sectors. */
  geometry?: { heads: number; sectors: number };
}

function chs(lba: number, g: { heads: number; sectors: number }): [number, number, number] {
  const c = Math.floor(lba / (g.heads * g.sectors));
  if (c > 1023) return [0xfe, 0xff, 0xff];
  const h = Math.floor(lba / g.sectors) % g.heads;
  const s = (lba % g.sectors) + 1;
  return [h, s | ((c >> 2) & 0xc0), c & 0xff];
}

/** A 512-byte MBR. */
export function writeMbr(parts: MbrPartition[], opts: MbrOptions = {}): Buffer {
  if (parts.length > 4) throw new UserError('an MBR holds at most 4 partitions');
  const b = Buffer.alloc(SECTOR);
  if (opts.code) {
    if (opts.code.length > 440) throw new UserError('MBR boot code is longer than 440 bytes');
    b.set(opts.code, 0);
  }
  b.writeUInt32LE((opts.diskId ?? 0) >>> 0, 440);
  const g = opts.geometry ?? { heads: 255, sectors: 63 };
  parts.forEach((p, i) => {
    if (p.start > 0xffffffff || p.sectors > 0xffffffff) throw new UserError('MBR partition past 2 TiB');
    const o = 446 + i * 16;
    b[o] = p.bootable ? 0x80 : 0;
    b.set(chs(p.start, g), o + 1);
    b[o + 4] = p.type;
    b.set(chs(p.start + p.sectors - 1, g), o + 5);
    b.writeUInt32LE(p.start, o + 8);
    b.writeUInt32LE(p.sectors, o + 12);
  });
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

// ---- GPT ------------------------------------------------------------------------------------

export const GPT_TYPES = {
  efiSystem: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  linuxData: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  microsoftData: 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7',
  biosBoot: '21686148-6449-6E6F-744E-656564454649',
} as const;

export const GPT_ATTR_LEGACY_BIOS_BOOTABLE = 1n << 2n;

export function guidBytes(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new UserError(`invalid GUID ${JSON.stringify(text)}`);
  const b = Buffer.from(hex, 'hex');
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** A version-4-shaped GUID derived from `seed`: reproducible, unlike a random one. */
export function stableGuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex').toUpperCase();
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export interface GptPartition {
  type: string;
  guid: string;
  name: string;
  /** First sector. */
  start: number;
  sectors: number;
  attributes?: bigint;
}

export interface GptLayout {
  /** Sectors 0-33: protective MBR, primary header, entries. */
  head: Buffer;
  /** The last 33 sectors: backup entries and header. */
  tail: Buffer;
  /** Byte offset of `tail`. */
  tailOffset: number;
}

const ENTRIES = 128;
const ENTRY_SIZE = 128;
const ENTRY_SECTORS = (ENTRIES * ENTRY_SIZE) / SECTOR;
/** First usable sector after the primary table. */
export const GPT_FIRST_USABLE = 2 + ENTRY_SECTORS;

/** GPT for a disk of `totalSectors`; `mbrCode` goes into the protective MBR (e.g. gptmbr.bin). */
export function writeGpt(
  parts: GptPartition[],
  totalSectors: number,
  opts: { diskGuid: string; mbrCode?: Uint8Array },
): GptLayout {
  const last = totalSectors - 1;
  const lastUsable = last - 1 - ENTRY_SECTORS;
  if (parts.length > ENTRIES) throw new UserError(`GPT holds at most ${ENTRIES} partitions`);
  const entries = Buffer.alloc(ENTRIES * ENTRY_SIZE);
  parts.forEach((p, i) => {
    const end = p.start + p.sectors - 1;
    if (p.start < GPT_FIRST_USABLE || end > lastUsable || p.sectors <= 0)
      throw new UserError(`GPT partition ${p.name} (${p.start}+${p.sectors}) is outside the usable sectors`);
    const o = i * ENTRY_SIZE;
    guidBytes(p.type).copy(entries, o);
    guidBytes(p.guid).copy(entries, o + 16);
    entries.writeBigUInt64LE(BigInt(p.start), o + 32);
    entries.writeBigUInt64LE(BigInt(end), o + 40);
    entries.writeBigUInt64LE(p.attributes ?? 0n, o + 48);
    const name = Buffer.from(p.name, 'utf16le');
    if (name.length > 72)
      throw new UserError(`GPT partition name ${JSON.stringify(p.name)} is longer than 36 characters`);
    name.copy(entries, o + 56);
  });
  const entriesCrc = crc32(entries);
  const header = (self: number, other: number, entriesLba: number) => {
    const h = Buffer.alloc(SECTOR);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(BigInt(self), 24);
    h.writeBigUInt64LE(BigInt(other), 32);
    h.writeBigUInt64LE(BigInt(GPT_FIRST_USABLE), 40);
    h.writeBigUInt64LE(BigInt(lastUsable), 48);
    guidBytes(opts.diskGuid).copy(h, 56);
    h.writeBigUInt64LE(BigInt(entriesLba), 72);
    h.writeUInt32LE(ENTRIES, 80);
    h.writeUInt32LE(ENTRY_SIZE, 84);
    h.writeUInt32LE(entriesCrc, 88);
    h.writeUInt32LE(crc32(h.subarray(0, 92)), 16);
    return h;
  };
  const pmbr = writeMbr([{ type: 0xee, start: 1, sectors: Math.min(last, 0xffffffff) }], {
    code: opts.mbrCode,
  });
  // The protective entry's CHS start is 0/0/2 and its end FF FF FF, as the spec asks.
  pmbr.set([0x00, 0x02, 0x00], 447);
  pmbr.set([0xff, 0xff, 0xff], 451);
  const head = Buffer.concat([pmbr, header(1, last, 2), entries]);
  const tail = Buffer.concat([entries, header(last, 1, last - ENTRY_SECTORS)]);
  return { head, tail, tailOffset: (last - ENTRY_SECTORS) * SECTOR };
}
