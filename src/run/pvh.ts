/**
 * PVH boot: qemu can start a kernel's ELF image (vmlinux) at its PVH entry point, in 32-bit
 * protected mode with paging off. That skips SeaBIOS's real-mode kernel loader and, above all,
 * the bzImage's own decompressor, which under TCG costs ~0.6 s of every boot. The price is
 * KASLR: the decompressor is what randomises the kernel's address, so a PVH guest's kernel sits
 * at its link address. That is why runQemu takes this path only under TCG (emulation, where
 * boots are for development and tests) and `--no-pvh` turns it off.
 *
 * bzImage layout (Documentation/arch/x86/boot.rst): the setup header's "HdrS" magic at 0x202,
 * setup_sects at 0x1f1 (0 means 4), payload_offset and payload_length (u32 LE) at 0x248 and
 * 0x24c, counted from the end of the real-mode setup code. The payload is the compressed
 * vmlinux followed by its uncompressed size (u32 LE). A vmlinux can be booted this way only if
 * it carries the ELF note Xen/XEN_ELFNOTE_PHYS32_ENTRY (type 18) that names the entry point.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { decompress, sniffCompression } from '../formats/compress.js';
import { writeFileAtomic } from '../util/atomic.js';
import { pruneLeastRecentlyUsed, touch } from '../util/lru.js';

const HDRS = 0x53726448; // "HdrS"
const ELF_MAGIC = 0x7f454c46;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** Setup header version 2.08 added payload_offset/payload_length. */
const MIN_BOOT_PROTOCOL = 0x0208;

/** The compressed payload of a bzImage (without the trailing size), or undefined if b is none. */
export function bzImagePayload(b: Uint8Array): Uint8Array | undefined {
  if (b.length < 0x250) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(0x202, true) !== HDRS || dv.getUint16(0x206, true) < MIN_BOOT_PROTOCOL) return undefined;
  const start = ((b[0x1f1] || 4) + 1) * 512 + dv.getUint32(0x248, true);
  const length = dv.getUint32(0x24c, true);
  if (length < 8 || start + length > b.length) return undefined;
  return b.subarray(start, start + length - 4);
}

/** Does this 64-bit little-endian ELF carry a PVH entry note? */
export function hasPvhNote(e: Uint8Array): boolean {
  if (e.length < 64) return false;
  const dv = new DataView(e.buffer, e.byteOffset, e.byteLength);
  if (dv.getUint32(0, false) !== ELF_MAGIC || e[4] !== 2 || e[5] !== 1) return false;
  const phoff = Number(dv.getBigUint64(0x20, true));
  const phentsize = dv.getUint16(0x36, true);
  const phnum = dv.getUint16(0x38, true);
  if (phentsize < 56 || phoff + phnum * phentsize > e.length) return false;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (dv.getUint32(ph, true) !== PT_NOTE) continue;
    let o = Number(dv.getBigUint64(ph + 8, true));
    const end = Math.min(e.length, o + Number(dv.getBigUint64(ph + 32, true)));
    while (o + 12 <= end) {
      const namesz = dv.getUint32(o, true);
      const descsz = dv.getUint32(o + 4, true);
      const type = dv.getUint32(o + 8, true);
      // "Xen\0": the name, padded to 4 bytes.
      if (namesz === 4 && type === XEN_ELFNOTE_PHYS32_ENTRY && dv.getUint32(o + 12, false) === 0x58656e00)
        return true;
      o += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3);
    }
  }
  return false;
}

/** The PVH-bootable vmlinux inside a bzImage, or undefined (not a bzImage, payload not ours to unpack, no note). */
export async function pvhElf(bzImage: Uint8Array): Promise<Uint8Array | undefined> {
  const payload = bzImagePayload(bzImage);
  if (!payload) return undefined;
  const kind = sniffCompression(payload);
  if (kind !== 'gzip' && kind !== 'xz' && kind !== 'zstd' && kind !== 'lz4-legacy') return undefined;
  let elf: Uint8Array;
  try {
    elf = await decompress(payload);
  } catch {
    return undefined; // a payload we cannot read boots the old way
  }
  return hasPvhNote(elf) ? elf : undefined;
}

/** How many derived kernels the cache keeps (each is the kernel's uncompressed size, ~40 MB). */
const KEEP = 4;

/**
 * The path of a PVH vmlinux for this kernel file, made once and kept in cacheDir/pvh under the
 * sha256 of the kernel; undefined when the kernel cannot boot that way (then boot it as is).
 * A read-only cache dir also means undefined: PVH is only a speed-up.
 */
export async function pvhKernelFile(kernel: string, cacheDir: string): Promise<string | undefined> {
  const bz = await readFile(kernel);
  const dir = path.join(cacheDir, 'pvh');
  const sha = createHash('sha256').update(bz).digest('hex');
  const file = path.join(dir, `${sha}.elf`);
  const none = path.join(dir, `${sha}.none`);
  if (await touch(file)) return file; // made before; now marked as recently used, for pruning
  try {
    await stat(none);
    return undefined; // known not to have a PVH entry
  } catch {
    // not looked at yet
  }
  const elf = await pvhElf(bz);
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(elf ? file : none, elf ?? new Uint8Array());
    if (elf) await prune(dir);
  } catch {
    return undefined;
  }
  return elf ? file : undefined;
}

/** Keep the KEEP most recently used derived kernels. */
async function prune(dir: string): Promise<void> {
  const elfs = (await readdir(dir)).filter((n) => n.endsWith('.elf')).map((n) => path.join(dir, n));
  await pruneLeastRecentlyUsed(elfs, { maxFiles: KEEP });
}
