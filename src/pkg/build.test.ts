import assert from 'node:assert/strict';
import { test } from 'node:test';
import { globMatcher } from './build.js';

test('prune globs: a dir prunes what is below it, * stays in one component, ** crosses them', () => {
  const m = globMatcher(['usr/share/doc', 'usr/lib/*/gconv', '/etc/**/*.conf', 'a?c']);
  for (const p of [
    'usr/share/doc',
    'usr/share/doc/runc/copyright',
    'usr/lib/x86_64-linux-gnu/gconv/GBK.so',
    'etc/x/y/z.conf',
    'abc',
  ]) {
    assert.ok(m(p), p);
  }
  for (const p of ['usr/share/docs', 'usr/lib/a/b/gconv', 'etc/x.conf.d', 'abbc', 'usr/share'])
    assert.ok(!m(p), p);
});
