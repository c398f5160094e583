import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { runtimeScript, shQuote } from './runtime-script.js';

test('shQuote leaves safe words alone and quotes the rest so sh reads them back', () => {
  assert.equal(shQuote('/containers/onboot/000-x/rootfs'), '/containers/onboot/000-x/rootfs');
  for (const s of ["it's", 'a b', '$HOME', '`x`', 'x;y', '']) {
    assert.equal(execFileSync('sh', ['-c', `printf %s ${shQuote(s)}`], { encoding: 'utf8' }), s);
  }
});

test('writable root: tmpfs, private remount, overlay, then mkdir, in that order', () => {
  const s = runtimeScript({
    mounts: [
      { source: 'tmpfs', type: 'tmpfs', destination: '/c/tmp' },
      { destination: '/c/tmp', options: ['remount', 'private'] },
      {
        source: 'overlay',
        type: 'overlay',
        destination: '/c/rootfs',
        options: ['lowerdir=/c/lower', 'upperdir=/c/tmp/upper', 'workdir=/c/tmp/work'],
      },
    ],
    mkdir: ['/c/tmp/upper', '/c/tmp/work'],
  });
  const lines = s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(lines, [
    'runtime_pre() {',
    'mkdir -p /c/tmp',
    'mount -t tmpfs tmpfs /c/tmp',
    'mount --make-private /c/tmp',
    'mkdir -p /c/rootfs',
    'mkdir -p /c/tmp/upper',
    'mkdir -p /c/tmp/work',
    'mount -t overlay -o lowerdir=/c/lower,upperdir=/c/tmp/upper,workdir=/c/tmp/work overlay /c/rootfs',
    'mkdir -p /c/tmp/upper',
    'mkdir -p /c/tmp/work',
    '}',
  ]);
});

test('bind mounts have no -t; an empty runtime is a valid no-op function', () => {
  const s = runtimeScript({ mounts: [{ source: '/a', destination: '/b', options: ['bind'] }] });
  assert.match(s, /^ {2}mount -o bind \/a \/b$/m);
  const empty = runtimeScript({});
  assert.equal(execFileSync('sh', ['-c', `${empty}\nruntime_pre && echo ok`], { encoding: 'utf8' }), 'ok\n');
});
