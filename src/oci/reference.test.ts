import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../util/errors.js';
import { expandRef, parseRef } from './reference.js';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;

test('references expand as Docker normalises them (ParseNormalizedNamed + TagNameOnly)', () => {
  const cases: [string, string][] = [
    ['alpine', 'docker.io/library/alpine:latest'],
    ['alpine:3.20', 'docker.io/library/alpine:3.20'],
    ['linuxkit/init:8f1e8a7', 'docker.io/linuxkit/init:8f1e8a7'],
    ['docker.io/alpine', 'docker.io/library/alpine:latest'],
    ['index.docker.io/linuxkit/runc:v1', 'docker.io/linuxkit/runc:v1'],
    ['foo/bar/baz', 'docker.io/foo/bar/baz:latest'],
    ['127.0.0.1:5000/x/y:t', '127.0.0.1:5000/x/y:t'],
    ['localhost/x', 'localhost/x:latest'],
    ['localhost:5000/x', 'localhost:5000/x:latest'],
    ['ghcr.io/a/b-c_d.e__f:1.0-rc_1', 'ghcr.io/a/b-c_d.e__f:1.0-rc_1'],
    ['[::1]:5000/x:t', '[::1]:5000/x:t'],
    ['Registry/x', 'Registry/x:latest'],
    [`name@${D}`, `docker.io/library/name@${D}`],
    [`name:tag@${D}`, `docker.io/library/name:tag@${D}`],
    [`quay.io/a/b:c@${D}`, `quay.io/a/b:c@${D}`],
    ['localhost:5000', 'docker.io/library/localhost:5000'],
  ];
  for (const [input, want] of cases) assert.equal(expandRef(input), want, input);
});

test('parts of a parsed reference', () => {
  const r = parseRef(`127.0.0.1:5000/x/y:t@${D}`);
  assert.equal(r.domain, '127.0.0.1:5000');
  assert.equal(r.path, 'x/y');
  assert.equal(r.tag, 't');
  assert.equal(r.digest, D);
  assert.equal(r.name, '127.0.0.1:5000/x/y');
  assert.equal(`${r}`, `127.0.0.1:5000/x/y:t@${D}`);
  const a = parseRef('alpine');
  assert.deepEqual([a.domain, a.path, a.tag, a.digest], ['docker.io', 'library/alpine', 'latest', undefined]);
  assert.equal(parseRef(`x@${D}`).tag, undefined);
});

test('bad references are a UserError naming the reference', () => {
  for (const bad of [
    '',
    'Alpine',
    'docker.io/Library/alpine',
    'alpine:',
    'alpine:-bad',
    `alpine:${'t'.repeat(129)}`,
    ':tag',
    'a//b',
    '/a',
    'a/',
    'a b',
    'alpine@sha256:1234',
    'alpine@',
    `${'0123456789abcdef'.repeat(4)}`,
    'a_-b',
    'host-:5000/x',
    'host:port/x',
    `example.com/${'a'.repeat(250)}`,
    'a@b@c',
  ]) {
    assert.throws(
      () => parseRef(bad),
      (e: unknown) =>
        e instanceof UserError && e.message.startsWith(`invalid image reference ${JSON.stringify(bad)}`),
      bad,
    );
  }
});
