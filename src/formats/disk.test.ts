/**
 * Disk codecs (sparse raw, qcow2, VHD fixed/dynamic/Azure, VMDK) checked with qemu-img: `check`
 * for qcow2, `info` for the format and virtual size, `compare` of every image against the raw.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { dataBytes, FileSlice } from '../fs/data.js';
import { gnuSparseTar } from './artifacts.js';
import { encodeQcow2 } from './qcow2.js';
import { flatten, readAt, type SparseImage, sparseChunks, sparseImage, writeSparseFile } from './sparse.js';
import { encodeAzureVhd, encodeDynamicVhd, encodeFixedVhd, vhdGeometry } from './vhd.js';
import { encodeVmdk } from './vmdk.js';

const MiB = 1024 * 1024;

/** A disk with data at the start, across cluster and 2 MiB block edges, a zero extent, and at the end. */
function sampleDisk(size = 64 * MiB): SparseImage {
  const bytes = (n: number, seed: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff || 1;
    return b;
  };
  return sparseImage(size, [
    { offset: 0, data: bytes(1000, 1) },
    { offset: 65536 - 10, data: bytes(20, 2) },
    { offset: 2 * MiB - 100, data: bytes(300_000, 3) },
    { offset: 10 * MiB, data: new Uint8Array(200_000) },
    { offset: size - 512, data: bytes(512, 4) },
  ]);
}

const info = (file: string, fmt: string) =>
  JSON.parse(runTool('qemu-img', ['info', '--output=json', '-f', fmt, file])) as Record<string, unknown>;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const digestOf = (img: SparseImage) =>
  sha(Buffer.concat(img.extents.flatMap((e) => [Buffer.from(`${e.offset}`), dataBytes(e.data)])));

describe('sparse images', () => {
  test('readAt assembles views and zero gaps; overlaps are refused', () => {
    const img = sparseImage(100, [
      { offset: 10, data: new Uint8Array([1, 2, 3]) },
      { offset: 0, data: new Uint8Array([9]) },
    ]);
    assert.deepEqual([...readAt(img, 0, 14)], [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0]);
    assert.deepEqual([...readAt(img, 11, 2)], [2, 3]);
    assert.throws(() => sparseImage(10, [{ offset: 8, data: new Uint8Array(4) }]), /passes the image size/);
    assert.throws(
      () =>
        sparseImage(10, [
          { offset: 0, data: new Uint8Array(4) },
          { offset: 3, data: new Uint8Array(1) },
        ]),
      /overlap/,
    );
  });

  test('a raw file is written sparse: allocated blocks follow the data, not the size', async () => {
    const dir = tempDir('lk-sparse-');
    const file = path.join(dir, 'disk.raw');
    const disk = sampleDisk(1024 * MiB);
    await writeSparseFile(file, disk);
    const st = statSync(file);
    assert.equal(st.size, 1024 * MiB);
    assert.ok(st.blocks * 512 < 4 * MiB, `1 GiB raw uses ${st.blocks * 512} bytes on disk`);
    const back = readFileSync(file);
    assert.equal(sha(back.subarray(0, 3 * MiB)), sha(readAt(disk, 0, 3 * MiB)));
  });
  test('extents that are slices of a file encode to the same bytes, their clusters kept as slices', async () => {
    const dir = tempDir('lk-sparse-slices-');
    const inMemory = sampleDisk();
    const file = path.join(dir, 'extents');
    writeFileSync(file, Buffer.concat(inMemory.extents.map((e) => dataBytes(e.data))));
    const whole = FileSlice.of(file);
    let at = 0;
    const sliced = sparseImage(
      inMemory.size,
      inMemory.extents.map((e) => {
        at += e.data.length;
        return { offset: e.offset, data: whole.slice(at - e.data.length, at) };
      }),
    );
    const encoders: [string, (d: SparseImage) => SparseImage][] = [
      ['raw', (d) => d],
      ['qcow2', encodeQcow2],
      ['fixed VHD', (d) => encodeFixedVhd(d, { epoch: 1 })],
      ['dynamic VHD', (d) => encodeDynamicVhd(d, { epoch: 1 })],
      ['Azure VHD', (d) => encodeAzureVhd(d, { epoch: 1 })],
      ['VMDK', (d) => encodeVmdk(d, { fileName: 'x.vmdk' })],
    ];
    for (const [name, enc] of encoders)
      assert.equal(sha(flatten(enc(sliced))), sha(flatten(enc(inMemory))), name);
    const tar = (d: SparseImage) => sha(Buffer.concat([...gnuSparseTar('disk.raw', d, 0)]));
    assert.equal(tar(sliced), tar(inMemory), 'gcp tar');
    assert.equal(sha(Buffer.concat([...sparseChunks(sliced)])), sha(flatten(inMemory)), 'sparseChunks');
    // Clusters 32-35 lie inside the 300,000-byte extent: one slice of the file, not four copies.
    const q = encodeQcow2(sliced);
    assert.ok(
      q.extents.some((e) => e.data instanceof FileSlice && e.data.length === 4 * 65536),
      'adjacent clusters from one file are one slice',
    );
    const out = path.join(dir, 'out.qcow2');
    await writeSparseFile(out, q);
    assert.equal(sha(readFileSync(out)), sha(flatten(encodeQcow2(inMemory))), 'written from slices');
  });
});

describe('disk codecs against qemu-img', skipUnless('qemu-img', 'qemu-utils'), () => {
  const dir = tempDir('lk-disk-');
  const raw = path.join(dir, 'disk.raw');
  const disk = sampleDisk();

  test('qcow2: qemu-img check is clean and the content equals the raw disk', async () => {
    await writeSparseFile(raw, disk);
    const q = encodeQcow2(disk);
    const file = path.join(dir, 'disk.qcow2');
    await writeSparseFile(file, q);
    runTool('qemu-img', ['check', '-f', 'qcow2', file]);
    const i = info(file, 'qcow2');
    assert.equal(i['virtual-size'], disk.size);
    assert.match(runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, file]), /identical/);
    // Only clusters with non-zero data are allocated: header, refcounts, L1, one L2, 9 data
    // (clusters 0, 1, 31-36, 1023; the all-zero extent allocates nothing).
    assert.equal(statSync(file).size, (5 + 9) * 65536);
    assert.equal(digestOf(encodeQcow2(sampleDisk())), digestOf(q), 'reproducible');
  });

  test('qcow2: a 4 GiB disk spans several L2 tables', async () => {
    const big = sparseImage(4096 * MiB, [
      { offset: 0, data: new Uint8Array([1]) },
      { offset: 4096 * MiB - 1, data: new Uint8Array([2]) },
    ]);
    const file = path.join(dir, 'big.qcow2');
    await writeSparseFile(file, encodeQcow2(big));
    runTool('qemu-img', ['check', '-f', 'qcow2', file]);
    const out = runTool('qemu-img', ['map', '--output=json', '-f', 'qcow2', file]);
    const data = (JSON.parse(out) as { start: number; length: number; data: boolean }[]).filter(
      (m) => m.data,
    );
    assert.deepEqual(
      data.map((m) => [m.start, m.length]),
      [
        [0, 65536],
        [4096 * MiB - 65536, 65536],
      ],
    );
  });

  for (const [name, enc, fmt, subformat] of [
    ['fixed VHD', (d: SparseImage) => encodeFixedVhd(d, { epoch: 1700000000 }), 'vpc', 'fixed'],
    ['dynamic VHD', (d: SparseImage) => encodeDynamicVhd(d, { epoch: 1700000000 }), 'vpc', 'dynamic'],
    ['VMDK', (d: SparseImage) => encodeVmdk(d, { fileName: 'disk.vmdk' }), 'vmdk', 'monolithicSparse'],
  ] as const) {
    test(`${name}: qemu-img info sees the format and size, compare equals the raw`, async () => {
      await writeSparseFile(raw, disk);
      const img = enc(disk);
      const file = path.join(dir, `disk.${fmt}`);
      await writeSparseFile(file, img);
      const i = info(file, fmt);
      assert.equal(i.format, fmt);
      assert.equal(i['virtual-size'], disk.size);
      if (fmt === 'vmdk') {
        const spec = i['format-specific'] as { data: { 'create-type': string; cid: number } };
        assert.equal(spec.data['create-type'], subformat);
      }
      if (fmt === 'vmdk') runTool('qemu-img', ['check', '-f', 'vmdk', file]);
      assert.match(runTool('qemu-img', ['compare', '-f', 'raw', '-F', fmt, raw, file]), /identical/);
      assert.equal(digestOf(enc(sampleDisk())), digestOf(img), 'reproducible');
    });
  }

  test('VHD footer: cookie, type, timestamp from the epoch, checksum', () => {
    const f = Buffer.from(flatten(encodeFixedVhd(disk, { epoch: 946684800 + 1234 })).subarray(disk.size));
    assert.equal(f.toString('latin1', 0, 8), 'conectix');
    assert.equal(f.readUInt32BE(60), 2);
    assert.equal(f.readUInt32BE(24), 1234);
    let s = 0;
    for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) s += f[i]!;
    assert.equal(f.readUInt32BE(64), ~s >>> 0);
    assert.deepEqual(vhdGeometry(1024 * MiB), { cylinders: 2080, heads: 16, sectors: 63 });
  });

  test('Azure: fixed VHD with the virtual size rounded up to a whole MiB', async () => {
    const odd = sparseImage(5 * MiB + 512, [{ offset: 0, data: new Uint8Array([7]) }]);
    const img = encodeAzureVhd(odd);
    assert.equal(img.size, 6 * MiB + 512);
    const file = path.join(dir, 'azure.vhd');
    await writeSparseFile(file, img);
    const i = info(file, 'vpc');
    assert.equal(i['virtual-size'], 6 * MiB);
    assert.equal(Buffer.from(readAt(img, 6 * MiB, 512)).readUInt32BE(60), 2, 'fixed disk type');
  });
});
