/**
 * The tar outputs and the GCE tarball, listed and extracted by GNU tar and bsdtar.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { FsTree } from '../fs/tree.js';
import {
  gnuSparseTar,
  kernelInitrdTarChunks,
  rootfsTarChunks,
  SQUASHFS_INIT,
  squashfsInitrdTree,
  wrapDisk,
} from './artifacts.js';
import { collect, gzip } from './compress.js';
import { readAt, sparseImage } from './sparse.js';

const kernel = Buffer.from('KERNEL'.repeat(100));

function tree(): FsTree {
  const t = new FsTree();
  t.set(fsEntry({ path: 'bin/busybox', kind: 'file', mode: 0o755, data: Buffer.from('bb') }));
  t.set(fsEntry({ path: 'bin/sh', kind: 'symlink', mode: 0o777, target: 'busybox' }));
  t.set(fsEntry({ path: 'lib/modules/6.1/modules.dep', kind: 'file', data: Buffer.from('') }));
  t.set(fsEntry({ path: 'containers/onboot/000-x/config.json', kind: 'file', data: Buffer.from('{}') }));
  return t;
}

describe('tar outputs', skipUnless('bsdtar', 'libarchive-tools'), () => {
  const dir = tempDir('lk-artifacts-');
  const list = (file: string) => runTool('tar', ['-tvf', file, '--numeric-owner', '--utc']);

  test('tar-kernel-initrd: kernel, initrd.img, cmdline', () => {
    const f = path.join(dir, 'x-initrd.tar');
    writeFileSync(
      f,
      Buffer.concat([...kernelInitrdTarChunks(kernel, Buffer.from('INITRD'), 'console=ttyS0', 0)]),
    );
    assert.equal(runTool('tar', ['-tf', f]), 'kernel\ninitrd.img\ncmdline\n');
    assert.match(list(f), /^-rw-r--r-- 0\/0 +600 1970-01-01 00:00 kernel$/m);
    assert.equal(runTool('bsdtar', ['-xOf', f, 'cmdline']), 'console=ttyS0');
  });

  test('tar: boot/ first with the kernel and cmdline, then the root', () => {
    const f = path.join(dir, 'x.tar');
    writeFileSync(f, Buffer.concat([...rootfsTarChunks(tree(), kernel, 'console=ttyS0', 0)]));
    assert.deepEqual(runTool('bsdtar', ['-tf', f]).trim().split('\n').slice(0, 4), [
      'boot/',
      'boot/cmdline',
      'boot/kernel',
      'bin/',
    ]);
    assert.match(list(f), /^lrwxrwxrwx 0\/0 +0 .* bin\/sh -> busybox$/m);
    assert.equal(runTool('tar', ['-xOf', f, 'boot/kernel']), kernel.toString());
    assert.doesNotMatch(runTool('tar', ['-tf', f]), /Dockerfile/);
  });

  test('docker: the same tar plus a Dockerfile whose entrypoint is our init', () => {
    const f = path.join(dir, 'x.docker');
    writeFileSync(f, Buffer.concat([...rootfsTarChunks(tree(), kernel, '', 0, true)]));
    const names = runTool('tar', ['-tf', f]).trim().split('\n');
    assert.equal(names.at(-1), 'Dockerfile');
    assert.match(runTool('tar', ['-xOf', f, 'Dockerfile']), /^FROM scratch\n[\s\S]*ENTRYPOINT \["\/init"\]/);
  });

  test('kernel+squashfs initramfs: busybox, the modules it loads, an init that switches to the squashfs', () => {
    const root = tree();
    const ko = (p: string) =>
      root.set(fsEntry({ path: `lib/modules/6.1/kernel/${p}`, kind: 'file', data: Buffer.from(p) }));
    ko('fs/squashfs/squashfs.ko');
    ko('lib/zstd.ko');
    ko('fs/xfs/xfs.ko');
    root.set(
      fsEntry({
        path: 'lib/modules/6.1/modules.dep',
        kind: 'file',
        data: Buffer.from(
          'kernel/fs/squashfs/squashfs.ko: kernel/lib/zstd.ko\nkernel/lib/zstd.ko:\nkernel/fs/xfs/xfs.ko:\n',
        ),
      }),
    );
    const t = squashfsInitrdTree(root, 0);
    const mods = t
      .entries()
      .filter((e) => e.path.endsWith('.ko'))
      .map((e) => e.path);
    assert.deepEqual(mods, [
      'lib/modules/6.1/kernel/fs/squashfs/squashfs.ko',
      'lib/modules/6.1/kernel/lib/zstd.ko',
    ]);
    t.delete('lib/modules/6.1/kernel');

    assert.deepEqual(
      t.entries().map((e) => e.path),
      [
        'bin',
        'bin/busybox',
        'dev',
        'init',
        'lib',
        'lib/modules',
        'lib/modules/6.1',
        'lib/modules/6.1/modules.dep',
        'newroot',
        'proc',
        'ro',
        'rw',
        'sys',
      ],
    );
    assert.match(SQUASHFS_INIT, /mount -t squashfs -o ro/);
    assert.match(SQUASHFS_INIT, /exec switch_root \/newroot \/init/);
    assert.throws(() => squashfsInitrdTree(new FsTree(), 0), /needs \/bin\/busybox/);
  });
});

describe('gcp: disk.raw in an old-GNU sparse tar.gz', skipUnless('tar', 'tar'), () => {
  const dir = tempDir('lk-gcp-');
  const MiB = 1024 * 1024;
  // More than 4 runs, so the sparse map needs an extension block; ends in a hole.
  const raw = sparseImage(
    64 * MiB,
    Array.from({ length: 30 }, (_, i) => ({
      offset: i * MiB + 100,
      data: Buffer.from(`run ${i} `.repeat(600)),
    })),
  );

  test('GNU tar and bsdtar list disk.raw at its full size; extraction equals the raw image', async () => {
    const f = path.join(dir, 'x.img.tar.gz');
    const out = wrapDisk('gcp', raw, 'x', 0);
    assert.equal(out.suffix, '.img.tar.gz');
    const written = await collect(out.stream!);
    writeFileSync(f, written);
    assert.match(
      runTool('tar', ['-tvzf', f, '--numeric-owner']),
      /^-rw-r--r-- 0\/0 +67108864 .* disk\.raw$/m,
    );
    assert.match(runTool('bsdtar', ['-tvzf', f]), /67108864 .* disk\.raw/);
    runTool('tar', ['-xzf', f, '-C', dir]);
    const got = readFileSync(path.join(dir, 'disk.raw'));
    assert.equal(got.length, 64 * MiB);
    assert.ok(got.equals(Buffer.from(readAt(raw, 0, raw.size))));
    assert.ok(statSync(path.join(dir, 'disk.raw')).blocks * 512 < 8 * MiB, 'GNU tar restores the holes');
    const again = gzip(Buffer.concat([...gnuSparseTar('disk.raw', raw, 0)]), 6);
    assert.ok(again.equals(written), 'reproducible, and streamed gzip is one-shot gzip');
  });

  test('an all-zero disk is one (size, 0) map entry', () => {
    const f = path.join(dir, 'zero.tar');
    writeFileSync(f, Buffer.concat([...gnuSparseTar('disk.raw', sparseImage(MiB, []), 0)]));
    assert.match(runTool('tar', ['-tvf', f]), / 1048576 .* disk\.raw$/m);
  });
});
