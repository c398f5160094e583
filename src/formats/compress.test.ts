import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { tempDir } from '../../test/helpers.js';
import { runToolBytes, skipUnless } from '../../test/tools.js';
import { UserError } from '../util/errors.js';
import {
  collect,
  compressInitrd,
  decompress,
  gzip,
  gzipParallel,
  gzipStream,
  initrdStream,
  pieceEnds,
  prunePieceCache,
  sniffCompression,
} from './compress.js';
import { lz4Legacy } from './lz4.js';

/** Run a host tool as a filter. */
const filter = (cmd: string, args: string[], input: Uint8Array) => runToolBytes(cmd, args, { input });

/** Some compressible but not trivial bytes: text with counters and a little noise. */
function sampleData(n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const line = `line ${i} ${(i * 2654435761) % 1000003} lorem ipsum dolor sit amet ${i % 7 === 0 ? 'x'.repeat(i % 50) : ''}\n`;
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

const data = sampleData(300_000);

describe('decompress', () => {
  it('returns uncompressed data as is', async () => {
    assert.equal(sniffCompression(data), 'none');
    assert.equal(await decompress(data), data);
    assert.deepEqual(await decompress(new Uint8Array(0)), new Uint8Array(0));
  });

  it('reads gzip from the host gzip, multi-member too', skipUnless('gzip', 'gzip'), async () => {
    const gz = filter('gzip', ['-9'], data);
    assert.equal(sniffCompression(gz), 'gzip');
    assert.deepEqual(Buffer.from(await decompress(gz)), data);
    const two = Buffer.concat([
      filter('gzip', [], Buffer.from('first ')),
      filter('gzip', [], Buffer.from('second')),
    ]);
    assert.equal(Buffer.from(await decompress(two)).toString(), 'first second');
    await assert.rejects(decompress(gz.subarray(0, gz.length - 100)), UserError);
  });

  it('reads xz from the host xz, several streams too', skipUnless('xz', 'xz-utils'), async () => {
    const xz = filter('xz', ['-6'], data);
    assert.equal(sniffCompression(xz), 'xz');
    assert.deepEqual(Buffer.from(await decompress(xz)), data);
    const two = Buffer.concat([
      filter('xz', [], Buffer.from('first ')),
      filter('xz', [], Buffer.from('second')),
    ]);
    assert.equal(Buffer.from(await decompress(two)).toString(), 'first second');
    await assert.rejects(decompress(xz.subarray(0, xz.length / 2)), /truncated/);
    const corrupt = Buffer.from(xz);
    corrupt[200] ^= 0xff;
    await assert.rejects(decompress(corrupt), UserError);
    // A failure must not leave the decoder locked: the next call still works.
    assert.deepEqual(Buffer.from(await decompress(xz)), data);
  });

  it('reads zstd from the host zstd, several frames too', skipUnless('zstd', 'zstd'), async () => {
    const zst = filter('zstd', ['-19', '-c'], data);
    assert.equal(sniffCompression(zst), 'zstd');
    assert.deepEqual(Buffer.from(await decompress(zst)), data);
    const two = Buffer.concat([
      filter('zstd', ['-c'], Buffer.from('first ')),
      filter('zstd', ['-c'], Buffer.from('second')),
    ]);
    assert.equal(Buffer.from(await decompress(two)).toString(), 'first second');
    await assert.rejects(decompress(zst.subarray(0, 100)), UserError);
  });

  it('refuses bzip2 with a UserError', skipUnless('bzip2', 'bzip2'), async () => {
    const bz = filter('bzip2', [], data);
    assert.equal(sniffCompression(bz), 'bzip2');
    await assert.rejects(decompress(bz), /bzip2 compression is not supported/);
  });

  it('decompresses ~20 MB of xz in reasonable time', skipUnless('xz', 'xz-utils'), async (t) => {
    // Real binaries and text, like a .deb's data.tar: the host's /usr/bin plus generated text.
    const parts: Buffer[] = [];
    let size = 0;
    for (const f of readdirSync('/usr/bin').sort()) {
      const p = join('/usr/bin', f);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st?.isFile() || size + st.size > 12_000_000) continue;
      parts.push(readFileSync(p));
      size += st.size;
    }
    parts.push(sampleData(20_000_000 - size));
    const input = Buffer.concat(parts);
    const xz = filter('xz', ['-1', '-T1'], input);
    const t0 = performance.now();
    const out = await decompress(xz);
    const ms = performance.now() - t0;
    const t1 = performance.now();
    filter('xz', ['-d'], xz);
    const hostMs = performance.now() - t1;
    t.diagnostic(
      `xz-decompress: ${(input.length / 1e6).toFixed(1)} MB from ${(xz.length / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms (host xz -d: ${hostMs.toFixed(0)} ms incl. spawn)`,
    );
    assert.ok(Buffer.from(out.buffer, out.byteOffset, out.byteLength).equals(input));
    assert.ok(ms < 20_000, `xz decompression took ${ms} ms`);
  });
});

describe('gzip', () => {
  it('is deterministic and readable by the host gzip', skipUnless('gzip', 'gzip'), () => {
    const a = gzip(data);
    assert.deepEqual(gzip(data), a);
    assert.deepEqual(a.subarray(4, 8), Buffer.alloc(4)); // MTIME 0
    assert.deepEqual(filter('gzip', ['-dc'], a), data);
    const fast = gzip(data, 1);
    assert.notDeepEqual(fast, a);
    assert.deepEqual(filter('gzip', ['-dc'], fast), data);
  });

  it('round-trips through decompress', async () => {
    assert.deepEqual(Buffer.from(await decompress(gzip(data, 9))), data);
  });
});

describe('gzipParallel', () => {
  const MiB = 1 << 20;
  // One piece, several pieces whose matches reach back into the piece before (the dictionary:
  // sampleData repeats phrases at every distance), and pieces cut at the maximum size (zeros
  // never hit the cut pattern).
  const sizes = [0, 1, MiB - 1, MiB + 1, 3 * MiB + 12345];

  it(
    'is one gzip member that the host gzip reads back exactly, at every piece boundary',
    skipUnless('gzip', 'gzip'),
    async () => {
      for (const n of sizes) {
        const input = sampleData(n);
        const gz = await gzipParallel(input);
        assert.equal(sniffCompression(gz), 'gzip');
        assert.deepEqual(filter('gzip', ['-dc'], gz), input, `size ${n}`);
        assert.deepEqual(filter('gzip', ['-l'], gz).length > 0, true);
        // One member: the trailer's CRC and length are the whole input's (gzip -t checks both).
        filter('gzip', ['-t'], gz);
        assert.equal(gz.readUInt32LE(gz.length - 4), n);
      }
    },
  );

  it(
    'cuts zeros at the maximum piece size, and the host gzip reads that back too',
    skipUnless('gzip', 'gzip'),
    async () => {
      const zeros = new Uint8Array(5 * MiB);
      assert.deepEqual(pieceEnds(zeros), [2 * MiB, 4 * MiB, 5 * MiB]);
      assert.deepEqual(filter('gzip', ['-dc'], await gzipParallel(zeros)), Buffer.from(zeros));
    },
  );

  it('cuts by content: an insertion moves only the cuts next to it', () => {
    const input = sampleData(6 * MiB);
    const edited = Buffer.concat([
      input.subarray(0, 1000),
      Buffer.from('a longer line'),
      input.subarray(1000),
    ]);
    const a = pieceEnds(input);
    const b = pieceEnds(edited);
    assert.ok(a.length >= 4, `${a.length} pieces`);
    assert.deepEqual(
      b.slice(1).map((e) => e - 13),
      a.slice(1),
    );
  });

  it("streams: any split of the input gives the bytes of deflating pieceEnds' pieces", async () => {
    // The reference: pieceEnds' cuts, each piece deflated with the 32 KiB before it.
    const reference = (d: Uint8Array) => {
      const out: Uint8Array[] = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])];
      let at = 0;
      for (const end of pieceEnds(d)) {
        const dictionary = d.subarray(Math.max(0, at - 32768), at);
        out.push(
          zlib.deflateRawSync(d.subarray(at, end), {
            level: 6,
            ...(dictionary.length ? { dictionary } : {}),
            finishFlush: end === d.length ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
          }),
        );
        at = end;
      }
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(zlib.crc32(d), 0);
      trailer.writeUInt32LE(d.length, 4);
      return Buffer.concat([...out, trailer]);
    };
    let seed = 1;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const input of [sampleData(5 * MiB + 7), new Uint8Array(4 * MiB + 1), new Uint8Array(0)]) {
      const want = reference(input);
      assert.deepEqual(await gzipParallel(input), want);
      for (const maxPiece of [1, 4096, 300_000, 3 * MiB]) {
        const chunks: Uint8Array[] = [];
        for (let at = 0; at < input.length; ) {
          const n = Math.min(input.length - at, 1 + random(maxPiece));
          chunks.push(input.subarray(at, at + n));
          at += n;
          if (chunks.length > 2000) break; // 1-byte pieces: the start of the input is enough
        }
        const part = Buffer.concat(chunks);
        assert.deepEqual(
          await collect(gzipStream(chunks)),
          part.length === input.length ? want : reference(part),
        );
      }
    }
  });

  it('gives the same bytes from its piece cache, and remakes a damaged piece', async () => {
    const cache = tempDir('lk-pieces-');
    const input = sampleData(3 * MiB);
    const plain = await gzipParallel(input);
    assert.deepEqual(await gzipParallel(input, 6, cache), plain);
    assert.deepEqual(await gzipParallel(input, 6, cache), plain);
    const files = readdirSync(cache, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    assert.ok(files.length >= 2, `${files.length} cached pieces`);
    const victim = join(files[0]!.parentPath, files[0]!.name);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 1]! ^= 0xff;
    writeFileSync(victim, bytes);
    assert.deepEqual(await gzipParallel(input, 6, cache), plain);
  });

  it('marks the pieces it uses; prunePieceCache removes the least recently used down to its limit', async () => {
    const cache = tempDir('lk-prune-');
    const listed = () =>
      readdirSync(cache, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name));
    const old = sampleData(3 * MiB);
    await gzipParallel(old, 6, cache);
    const oldPieces = listed();
    // Long unused, then some of them used again by a build that also stores new pieces.
    const longAgo = new Date(Date.now() - 3600_000);
    for (const f of oldPieces) utimesSync(f, longAgo, longAgo);
    const since = Date.now() - 1000;
    const fresh = sampleData(2 * MiB).map((b) => b ^ 1);
    // The same bytes up to the end of old's second piece: those two pieces are used again.
    await gzipParallel(Buffer.concat([old.subarray(0, pieceEnds(old)[1]! + 3), fresh]), 6, cache);
    assert.ok(listed().length > oldPieces.length, 'new pieces were stored');
    const reused = oldPieces.filter((f) => statSync(f).mtimeMs >= since);
    assert.equal(reused.length, 2, `${reused.length} of ${oldPieces.length} reused`);
    const all = listed();
    const size = new Map(all.map((f) => [f, statSync(f).size]));
    const bytes = (fs: string[]) => fs.reduce((n, f) => n + size.get(f)!, 0);
    // A limit below what the last build used: only pieces unused since then go.
    const removed = await prunePieceCache(cache, since, 1);
    const left = listed();
    assert.deepEqual(new Set(left), new Set(all.filter((f) => !oldPieces.includes(f) || reused.includes(f))));
    assert.equal(removed, bytes(all) - bytes(left));
    // Within the limit nothing goes.
    assert.equal(await prunePieceCache(cache, Date.now() + 1000, bytes(left)), 0);
  });

  it('is deterministic and no worse than 1% bigger than single-threaded gzip', async () => {
    const input = sampleData(5 * MiB);
    const a = await gzipParallel(input);
    assert.deepEqual(await gzipParallel(input), a);
    const single = gzip(input);
    assert.ok(a.length <= single.length * 1.01, `${a.length} vs ${single.length}`);
  });
});

describe('compressInitrd', () => {
  const input = sampleData(2 << 20);
  it('gives each kind the kernel takes, and none as is', async () => {
    assert.deepEqual(await decompress(await compressInitrd(input, 'gzip')), input);
    assert.equal(await compressInitrd(input, 'none'), input);
    const lz4 = await compressInitrd(input, 'lz4');
    assert.equal(sniffCompression(lz4), 'lz4-legacy');
    assert.ok(Buffer.from(await decompress(lz4)).equals(input));
  });

  it('streams each kind: pieces in give the bytes compressInitrd makes of the whole', async () => {
    const big = Buffer.concat([input, input, input, input, input]); // > one 8 MiB lz4 block
    const pieces = (d: Uint8Array) =>
      Array.from({ length: Math.ceil(d.length / 999_999) }, (_, i) =>
        d.subarray(i * 999_999, (i + 1) * 999_999),
      );
    assert.deepEqual(await collect(initrdStream(pieces(big), 'lz4')), Buffer.from(lz4Legacy(big)));
    assert.deepEqual(await collect(initrdStream(pieces(big), 'gzip')), await compressInitrd(big, 'gzip'));
    assert.deepEqual(await collect(initrdStream(pieces(big), 'none')), big);
  });
});
