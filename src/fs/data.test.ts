import assert from 'node:assert/strict';
import { readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { UserError } from '../util/errors.js';
import { CHUNK, dataBytes, dataChunks, FileSlice, gatherChunks, takeMemory, withDataFiles } from './data.js';

const work = tempDir('data-test-');
const bytes = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff));
const file = join(work, 'f');
writeFileSync(file, bytes);

/** The file descriptors this process has open. */
const openFds = () => readdirSync('/proc/self/fd').length;

describe('FileSlice', () => {
  it('reads its range, whole or in pieces, and sub-slices of it', () => {
    const all = FileSlice.of(file);
    assert.equal(all.length, 3000);
    assert.deepEqual(dataBytes(all), bytes);
    const part = all.slice(100, 1100);
    assert.equal(part.length, 1000);
    assert.deepEqual(dataBytes(part), bytes.subarray(100, 1100));
    assert.deepEqual(dataBytes(part.slice(10, 20)), bytes.subarray(110, 120));
    const pieces = [...dataChunks(part, 300)];
    assert.deepEqual(
      pieces.map((p) => p.length),
      [300, 300, 300, 100],
    );
    assert.deepEqual(Buffer.concat(pieces), bytes.subarray(100, 1100));
    all.file.close();
  });

  it('bytes in memory are their own data', () => {
    assert.equal(dataBytes(bytes), bytes);
    assert.deepEqual([...dataChunks(bytes)], [bytes]);
    assert.deepEqual([...dataChunks(new Uint8Array(0))], []);
    assert.equal(dataBytes(undefined).length, 0);
  });

  it('refuses a file that became shorter than a slice says', () => {
    const f = join(work, 'shrinks');
    writeFileSync(f, bytes);
    const s = FileSlice.of(f);
    truncateSync(f, 10);
    assert.throws(
      () => dataBytes(s),
      (e: unknown) => e instanceof UserError && e.message.includes(f),
    );
    s.file.close();
  });

  it('refuses a directory, as reading one would', () => {
    assert.throws(
      () => FileSlice.of(work),
      (e: unknown) => (e as NodeJS.ErrnoException).code === 'EISDIR',
    );
  });
});

describe('withDataFiles', () => {
  it('closes the files opened within it, and only those', async () => {
    const outside = FileSlice.of(file);
    const before = openFds();
    const inside = await withDataFiles(async () => {
      const s = [FileSlice.of(file), FileSlice.of(file)];
      assert.equal(openFds(), before + 2);
      return s;
    });
    assert.equal(openFds(), before);
    assert.throws(() => dataBytes(inside[0]));
    assert.deepEqual(dataBytes(outside), bytes);
    outside.file.close();
  });

  it('gives out its memory budget once', async () => {
    await withDataFiles(async () => {
      assert.equal(takeMemory(600), true);
      assert.equal(takeMemory(500), false);
      assert.equal(takeMemory(400), true);
      assert.equal(takeMemory(1), false);
    }, 1000);
  });
});

describe('gatherChunks', () => {
  it('gathers small pieces into ~CHUNK ones and passes big ones through uncopied', () => {
    const small = Array.from({ length: 5000 }, (_, i) => Buffer.alloc(300, i & 0xff));
    const big = Buffer.alloc(300_000, 1);
    const input = [...small.slice(0, 2500), big, ...small.slice(2500)];
    const out = [...gatherChunks(input)];
    assert.deepEqual(Buffer.concat(out), Buffer.concat(input));
    assert.ok(out.includes(big), 'the big piece itself');
    assert.ok(out.length < 10, `${out.length} pieces`);
    for (const p of out) assert.ok(p.length <= CHUNK + 300, `${p.length}`);
  });
});
