import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../util/errors.js';
import { digestLike, isDigest, parseDigest, sha256Digest, validateDigest } from './digest.js';

const ABC256 = 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

test('sha256Digest gives the known digest of "abc"', () => {
  assert.equal(sha256Digest(Buffer.from('abc')), ABC256);
  assert.equal(digestLike(ABC256, Buffer.from('abc')), ABC256);
});

test('digestLike hashes with the algorithm of the digest it is given', () => {
  const d = digestLike(`sha512:${'0'.repeat(128)}`, Buffer.from('abc'));
  assert.match(d, /^sha512:ddaf35a193617aba/);
});

test('valid digests are accepted and split', () => {
  assert.equal(validateDigest(ABC256), ABC256);
  assert.deepEqual(parseDigest(ABC256), { algorithm: 'sha256', hex: ABC256.slice(7) });
  assert.ok(isDigest(`sha512:${'a'.repeat(128)}`));
});

test('malformed digests are a UserError naming the digest', () => {
  for (const bad of [
    'ba7816bf',
    'sha256:',
    `sha256:${'A'.repeat(64)}`,
    `sha256:${'a'.repeat(63)}`,
    `sha256:${'g'.repeat(64)}`,
    `md5:${'a'.repeat(32)}`,
    `sha512:${'a'.repeat(64)}`,
  ]) {
    assert.throws(
      () => validateDigest(bad),
      (e: unknown) => e instanceof UserError && e.message.includes(JSON.stringify(bad)),
      bad,
    );
    assert.equal(isDigest(bad), false);
  }
});
