import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goStyleFlags } from './defaults.js';

test('Go-style single-dash long flags become double-dash ones', () => {
  assert.deepEqual(goStyleFlags(['build', '-format', 'kernel+initrd', '-dir=out', 'x.yml']), [
    'build',
    '--format',
    'kernel+initrd',
    '--dir=out',
    'x.yml',
  ]);
});

test('short flags, values, negative numbers and everything after -- stay as they are', () => {
  assert.deepEqual(goStyleFlags(['-h', '--mem', '512', '-1', '--', '-format']), [
    '-h',
    '--mem',
    '512',
    '-1',
    '--',
    '-format',
  ]);
});
