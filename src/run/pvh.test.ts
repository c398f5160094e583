import assert from 'node:assert/strict';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { tempDir } from '../../test/helpers.js';
import { debianCloudKernel } from '../debian/testing.js';
import { lz4Legacy } from '../formats/lz4.js';
import { bzImagePayload, hasPvhNote, pvhElf, pvhKernelFile } from './pvh.js';

/** A 64-bit ELF with one PT_NOTE segment holding `notes` (name, type). */
function elf(notes: [string, number][], filler = 0): Uint8Array {
  const body: number[] = [];
  for (const [name, type] of notes) {
    const n = Buffer.from(`${name}\0`);
    const hdr = Buffer.alloc(12);
    hdr.writeUInt32LE(n.length, 0);
    hdr.writeUInt32LE(4, 4);
    hdr.writeUInt32LE(type, 8);
    body.push(...hdr, ...n, ...Buffer.alloc((4 - (n.length % 4)) % 4), 0, 0, 0x10, 0);
  }
  const e = Buffer.alloc(64 + 56 + body.length + filler, 0x90);
  e.writeUInt32BE(0x7f454c46, 0);
  e[4] = 2; // 64-bit
  e[5] = 1; // little-endian
  e.writeBigUInt64LE(64n, 0x20); // e_phoff
  e.writeUInt16LE(56, 0x36); // e_phentsize
  e.writeUInt16LE(1, 0x38); // e_phnum
  e.writeUInt32LE(4, 64); // PT_NOTE
  e.writeBigUInt64LE(120n, 64 + 8); // p_offset
  e.writeBigUInt64LE(BigInt(body.length), 64 + 32); // p_filesz
  Buffer.from(body).copy(e, 120);
  return e;
}

/** A bzImage shell: setup header fields only, then the payload and its uncompressed size. */
function bzImage(vmlinux: Uint8Array, compress: (d: Uint8Array) => Uint8Array, setupSects = 3): Buffer {
  const payload = Buffer.concat([compress(vmlinux), Buffer.alloc(4)]);
  payload.writeUInt32LE(vmlinux.length, payload.length - 4);
  const setup = (setupSects + 1) * 512;
  const offset = 0x1234; // where the payload sits inside the protected-mode part
  const b = Buffer.alloc(setup + offset + payload.length);
  b[0x1f1] = setupSects;
  b.writeUInt32LE(0x53726448, 0x202); // "HdrS"
  b.writeUInt16LE(0x020f, 0x206); // boot protocol 2.15
  b.writeUInt32LE(offset, 0x248);
  b.writeUInt32LE(payload.length, 0x24c);
  payload.copy(b, setup + offset);
  return b;
}

describe('PVH kernel', () => {
  const pvhNote: [string, number][] = [
    ['GNU', 3],
    ['Xen', 18],
  ];

  test('finds the Xen PHYS32_ENTRY note, and only that one', () => {
    assert.equal(hasPvhNote(elf(pvhNote)), true);
    assert.equal(hasPvhNote(elf([['Xen', 17]])), false, 'another Xen note');
    assert.equal(hasPvhNote(elf([['Xe', 18]])), false, 'another name');
    assert.equal(hasPvhNote(elf([])), false);
    const e = Buffer.from(elf(pvhNote));
    e[4] = 1; // 32-bit
    assert.equal(hasPvhNote(e), false);
    assert.equal(
      hasPvhNote(Buffer.from('not an ELF at all, not at all, not at all, not at all!!!!!')),
      false,
    );
  });

  test('takes the vmlinux out of an lz4 or gzip bzImage', async () => {
    const vmlinux = elf(pvhNote, 300_000);
    for (const c of [lz4Legacy, (d: Uint8Array) => gzipSync(d)]) {
      const got = await pvhElf(bzImage(vmlinux, c));
      assert.ok(got && Buffer.from(got).equals(vmlinux));
    }
    assert.equal(await pvhElf(bzImage(elf([['GNU', 3]]), lz4Legacy)), undefined, 'no PVH entry');
  });

  test('anything else is booted as it is', async () => {
    const good = bzImage(elf(pvhNote), lz4Legacy);
    const noMagic = Buffer.from(good);
    noMagic.writeUInt32LE(0, 0x202);
    assert.equal(bzImagePayload(noMagic), undefined);
    const oldProtocol = Buffer.from(good);
    oldProtocol.writeUInt16LE(0x0206, 0x206);
    assert.equal(bzImagePayload(oldProtocol), undefined);
    const pastEnd = Buffer.from(good);
    pastEnd.writeUInt32LE(good.length, 0x24c);
    assert.equal(bzImagePayload(pastEnd), undefined);
    const corrupt = Buffer.from(good);
    corrupt.fill(0xff, corrupt.length - 40, corrupt.length - 4);
    assert.equal(await pvhElf(corrupt), undefined);
    assert.equal(await pvhElf(bzImage(elf(pvhNote), (d) => d)), undefined, 'uncompressed payload');
  });

  test("Debian's cloud kernel has a PVH entry", { timeout: 600_000 }, async () => {
    const vmlinux = await pvhElf(await readFile((await debianCloudKernel()).vmlinuz));
    assert.ok(vmlinux, 'a PVH vmlinux');
    assert.ok(vmlinux.length > 20_000_000, `${vmlinux.length} bytes`);
  });

  test('the derived kernel is made once per kernel, and only a few are kept', async () => {
    const dir = tempDir('pvh-');
    const cache = path.join(dir, 'cache');
    const kernels = [];
    for (let i = 0; i < 6; i++) {
      const k = path.join(dir, `k${i}`);
      await writeFile(k, bzImage(elf(pvhNote, 1000 + i), lz4Legacy));
      kernels.push(k);
    }
    const first = await pvhKernelFile(kernels[0]!, cache);
    assert.ok(first);
    assert.ok((await readFile(first)).equals(elf(pvhNote, 1000)));
    const made = (await stat(first)).ino;
    await utimes(first, 1, 1);
    assert.equal(await pvhKernelFile(kernels[0]!, cache), first);
    assert.equal((await stat(first)).ino, made, 'not made again');
    assert.ok((await stat(first)).mtimeMs > 1000, 'marked as used');

    const plain = path.join(dir, 'plain');
    await writeFile(plain, bzImage(elf([]), lz4Legacy));
    assert.equal(await pvhKernelFile(plain, cache), undefined);
    assert.equal(await pvhKernelFile(plain, cache), undefined, 'remembered');

    for (const k of kernels.slice(1)) assert.ok(await pvhKernelFile(k, cache));
    const left = (await readdir(path.join(cache, 'pvh'))).filter((n) => n.endsWith('.elf'));
    assert.equal(left.length, 4);
    assert.ok(!left.includes(path.basename(first)), 'the least recently used went first');
  });
});
