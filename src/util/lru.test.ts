import assert from 'node:assert/strict';
import { existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { pruneLeastRecentlyUsed, touch } from './lru.js';

const dir = tempDir('lk-lru-');

/** Files a..e of 10 bytes, used (mtime) 5, 4, 3, 2, 1 hours ago. */
function files(): string[] {
  return ['a', 'b', 'c', 'd', 'e'].map((n, i) => {
    const f = path.join(dir, n);
    writeFileSync(f, Buffer.alloc(10));
    const t = new Date(Date.now() - (5 - i) * 3600_000);
    utimesSync(f, t, t);
    return f;
  });
}
const left = (fs: string[]) => fs.filter((f) => existsSync(f)).map((f) => path.basename(f));

test('touch marks a file as used now, and says whether it was there', async () => {
  const [a] = files();
  assert.equal(await touch(a!), true);
  assert.ok(Date.now() - statSync(a!).mtimeMs < 60_000);
  assert.equal(await touch(path.join(dir, 'missing')), false);
});

test('pruneLeastRecentlyUsed removes the oldest first, down to a count or a size', async () => {
  let fs = files();
  assert.equal(await pruneLeastRecentlyUsed(fs, { maxFiles: 2 }), 30);
  assert.deepEqual(left(fs), ['d', 'e']);
  fs = files();
  assert.equal(await pruneLeastRecentlyUsed(fs, { maxBytes: 25 }), 30);
  assert.deepEqual(left(fs), ['d', 'e']);
  fs = files();
  assert.equal(await pruneLeastRecentlyUsed(fs, { maxFiles: 5, maxBytes: 50 }), 0);
  assert.deepEqual(left(fs), ['a', 'b', 'c', 'd', 'e']);
});

test('pruneLeastRecentlyUsed keeps what was used since keepSince, over the limits', async () => {
  const fs = files();
  await touch(fs[1]!); // b used just now
  assert.equal(await pruneLeastRecentlyUsed(fs, { maxFiles: 0, keepSince: Date.now() - 2.5 * 3600_000 }), 20);
  assert.deepEqual(left(fs), ['b', 'd', 'e']); // a and c are older than keepSince, d is not
});
