import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSize } from './common.js';

test('-size takes upstream forms: 1024M, 4G, 512K, bare megabytes', () => {
  assert.equal(parseSize('1024M'), 1024 * 2 ** 20);
  assert.equal(parseSize('4G'), 4 * 2 ** 30);
  assert.equal(parseSize('512k'), 512 * 2 ** 10);
  assert.equal(parseSize('100'), 100 * 2 ** 20);
  for (const bad of ['', '0', '1T', '-5M', 'big']) assert.throws(() => parseSize(bad), bad);
});
