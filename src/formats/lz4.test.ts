import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runToolBytes, skipUnless } from '../../test/tools.js';
import { lz4Legacy, lz4LegacyDecode } from './lz4.js';

const MAGIC = [0x02, 0x21, 0x4c, 0x18];
const BLOCK = 8 << 20;
const needLz4 = skipUnless('lz4', 'lz4');

/** Deterministic noise (mulberry32), so a failure reproduces. */
function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    b[i] = (t ^ (t >>> 14)) >>> 24;
  }
  return b;
}

/** Up to `max` bytes of the host's /usr/bin binaries, in name order. */
function hostBinaries(max: number): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  for (const f of readdirSync('/usr/bin').sort()) {
    const st = statSync(join('/usr/bin', f), { throwIfNoEntry: false });
    if (!st?.isFile() || size + st.size > max) continue;
    parts.push(readFileSync(join('/usr/bin', f)));
    size += st.size;
  }
  return Buffer.concat(parts);
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

/**
 * The block sizes of a legacy stream, checking on the way the rules that `lz4 -d` and the
 * kernel do not enforce (their output buffer is a whole 8 MiB block): a block holds at most
 * 8 MiB, its last 5 bytes are literals, its last match starts 12 or more bytes before its end,
 * and every offset is 1..65535 and inside the block.
 */
function checkBlocks(z: Uint8Array): number[] {
  const sizes: number[] = [];
  let pos = 4;
  while (pos < z.length) {
    const size = Buffer.from(z.buffer, z.byteOffset + pos, 4).readUInt32LE(0);
    sizes.push(size);
    const end = pos + 4 + size;
    let ip = pos + 4;
    let out = 0;
    let lastMatchStart = -1;
    let lastLiterals = 0;
    const length = (n: number) => {
      if (n < 15) return n;
      for (let b = 255; b === 255; n += b) b = z[ip++]!;
      return n;
    };
    for (;;) {
      const token = z[ip++]!;
      const lit = length(token >>> 4);
      ip += lit;
      out += lit;
      lastLiterals = lit;
      if (ip >= end) break;
      const offset = z[ip]! | (z[ip + 1]! << 8);
      ip += 2;
      assert.ok(offset >= 1 && offset <= out, `offset ${offset} at output ${out}`);
      lastMatchStart = out;
      out += length(token & 15) + 4;
    }
    assert.equal(ip, end, 'block ends exactly after its last literals');
    assert.ok(out <= BLOCK, `block of ${out} bytes`);
    if (out >= 13) assert.ok(lastLiterals >= 5, `only ${lastLiterals} final literals`);
    if (lastMatchStart >= 0) assert.ok(out - lastMatchStart >= 12, 'last match too close to the end');
    pos = end;
  }
  return sizes;
}

/** Compresses `data`, checks format, determinism and both decoders; returns the stream. */
function roundTrip(data: Uint8Array): Uint8Array {
  const z = lz4Legacy(data);
  assert.deepEqual([...z.subarray(0, 4)], MAGIC);
  assert.ok(same(lz4Legacy(data), z), 'two calls give the same bytes');
  const sizes = checkBlocks(z);
  assert.equal(sizes.length, Math.ceil(data.length / BLOCK));
  assert.ok(same(runToolBytes('lz4', ['-d', '-c'], { input: z }), data), 'lz4 -d gives the input back');
  assert.ok(same(lz4LegacyDecode(z), data), 'lz4LegacyDecode gives the input back');
  return z;
}

describe('lz4Legacy', needLz4, () => {
  it('writes an empty input as the magic alone, like lz4 -l', () => {
    const z = roundTrip(new Uint8Array(0));
    assert.deepEqual(Buffer.from(z), runToolBytes('lz4', ['-l', '-c'], { input: new Uint8Array(0) }));
  });

  it('round-trips tiny inputs (all literals below 13 bytes)', () => {
    assert.equal(roundTrip(Buffer.from('x')).length, 4 + 4 + 2);
    roundTrip(Buffer.from('abcdefghijklm'));
    roundTrip(Buffer.alloc(13, 0x61));
    for (let n = 1; n <= 40; n++) roundTrip(Buffer.alloc(n, 0x61));
  });

  it('round-trips highly repetitive data into a small stream', () => {
    const runs = Buffer.concat([Buffer.alloc(3_000_000), Buffer.from('abc'.repeat(500_000))]);
    const z = roundTrip(runs);
    assert.ok(z.length < runs.length / 200, `${z.length} bytes`);
  });

  it('round-trips incompressible data larger than one block within the bound', () => {
    const noise = randomBytes(BLOCK + 1_000_000, 42);
    const z = roundTrip(noise);
    const sizes = checkBlocks(z);
    assert.equal(sizes.length, 2);
    // The kernel refuses a block larger than LZ4_compressBound(8 MiB).
    assert.ok(sizes[0]! <= BLOCK + Math.floor(BLOCK / 255) + 16, `block of ${sizes[0]}`);
  });

  it('round-trips real binaries about as small as lz4 -l -1', (t) => {
    const bins = hostBinaries(6_000_000);
    assert.ok(bins.length > 1_000_000, 'found binaries in /usr/bin');
    const t0 = performance.now();
    const z = lz4Legacy(bins);
    const ms = performance.now() - t0;
    roundTrip(bins);
    const ref = runToolBytes('lz4', ['-l', '-1', '-c'], { input: bins });
    t.diagnostic(
      `${(bins.length / 1e6).toFixed(1)} MB -> ${z.length} B (lz4 -l -1: ${ref.length} B) in ${ms.toFixed(0)} ms`,
    );
    assert.ok(z.length <= ref.length * 1.03, `${z.length} vs lz4's ${ref.length}`);
    // And the decoder reads the real tool's streams.
    assert.ok(same(lz4LegacyDecode(ref), bins));
  });

  it('splits real data across blocks at exactly 8 MiB', () => {
    const bins = hostBinaries(6_000_000);
    const data = Buffer.concat([bins, bins, randomBytes(1000, 7)]);
    assert.ok(data.length > BLOCK);
    const z = roundTrip(data);
    // The first block is the first 8 MiB on its own: it compresses to the same bytes alone.
    const first = lz4Legacy(data.subarray(0, BLOCK));
    assert.ok(same(z.subarray(0, first.length), first));
  });
});

describe('lz4LegacyDecode', () => {
  it('rejects a stream without the legacy magic or with a cut block', () => {
    assert.throws(() => lz4LegacyDecode(Buffer.from([0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0])), /magic/);
    const z = lz4Legacy(Buffer.from('hello hello hello hello hello'));
    assert.throws(() => lz4LegacyDecode(z.subarray(0, z.length - 3)), /corrupt/);
  });

  it('reads concatenated streams', () => {
    const a = Buffer.from('first stream, first stream, first stream ');
    const b = Buffer.from('second');
    const both = Buffer.concat([lz4Legacy(a), lz4Legacy(b)]);
    assert.equal(Buffer.from(lz4LegacyDecode(both)).toString(), `${a}${b}`);
  });
});
