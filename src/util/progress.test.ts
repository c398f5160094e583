import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlobProgress } from './progress.js';

async function* chunks(sizes: number[]): AsyncGenerator<Uint8Array> {
  for (const n of sizes) yield new Uint8Array(n);
}

async function drain(it: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of it) n += c.length;
  return n;
}

test('on a terminal each blob gets a bar that ends full; bytes pass through unchanged', async () => {
  let out = '';
  let t = 0;
  const p = new BlobProgress({ isTTY: true, columns: 80, write: (s) => (out += s) }, () => (t += 200));
  assert.equal(
    await drain(p.track('sha256:0123456789abcdef', 3_000_000, chunks([1_000_000, 2_000_000]))),
    3_000_000,
  );
  assert.equal(await drain(p.track('sha256:fedcba9876543210', 1_000_000, chunks([1_000_000]))), 1_000_000);
  const lastFrame = out.slice(out.lastIndexOf('\x1b[2A'));
  assert.match(lastFrame, /0123456789ab \[=+\] 3\.0\/3\.0 MB/);
  assert.match(lastFrame, /fedcba987654 \[=+\] 1\.0\/1\.0 MB/);
});

test('off a terminal nothing is drawn', async () => {
  let out = '';
  const p = new BlobProgress({ isTTY: false, write: (s) => (out += s) });
  assert.equal(await drain(p.track('sha256:00', 10, chunks([4, 6]))), 10);
  assert.equal(out, '');
});
