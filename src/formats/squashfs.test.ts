/**
 * squashfs writer checked with squashfs-tools: `unsquashfs -s` (superblock), `-lln` (listing
 * with modes, owners, sizes, link targets), extraction compared byte for byte with the tree,
 * and xattrs read back with getfattr.
 */
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { hostHas, runTool, skipUnless } from '../../test/tools.js';
import { dataBytes, FileSlice } from '../fs/data.js';
import { FsTree } from '../fs/tree.js';
import { squashfsParts, writeSquashfs } from './squashfs.js';

function sampleTree(): FsTree {
  const t = new FsTree();
  const big = new Uint8Array(300_000); // three blocks, the last one short
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  const random = new Uint8Array(5000); // does not compress: stored as is
  let x = 12345;
  for (let i = 0; i < random.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    random[i] = x >>> 24;
  }
  t.set(fsEntry({ path: 'bin', kind: 'dir', mode: 0o755 }));
  t.set(fsEntry({ path: 'bin/big', kind: 'file', mode: 0o755, data: big }));
  t.set(fsEntry({ path: 'bin/big-copy', kind: 'file', mode: 0o700, data: big.slice() }));
  t.set(fsEntry({ path: 'bin/random', kind: 'file', data: random }));
  t.set(fsEntry({ path: 'bin/sh', kind: 'symlink', mode: 0o777, target: 'busybox' }));
  t.set(fsEntry({ path: 'empty', kind: 'file', data: new Uint8Array(0), uid: 1000, gid: 100 }));
  t.set(fsEntry({ path: 'dev', kind: 'dir', mode: 0o755 }));
  t.set(fsEntry({ path: 'dev/null', kind: 'char', mode: 0o666, devmajor: 1, devminor: 3 }));
  t.set(fsEntry({ path: 'dev/sda', kind: 'block', mode: 0o660, devmajor: 8, devminor: 300 }));
  t.set(fsEntry({ path: 'dev/fifo', kind: 'fifo', mode: 0o600 }));
  t.set(fsEntry({ path: 'tmp', kind: 'dir', mode: 0o1777 }));
  t.set(
    fsEntry({
      path: 'ping',
      kind: 'file',
      mode: 0o755,
      data: Buffer.from('#!/bin/sh\n'),
      xattrs: {
        'security.capability': Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
      },
    }),
  );
  // A big directory: listing runs over several headers and metadata blocks.
  for (let i = 0; i < 700; i++)
    t.set(fsEntry({ path: `many/f${i}`, kind: 'file', data: Buffer.from(`${i}\n`) }));
  // Names whose byte order differs from the order of their full paths ('-' < '/' < '0').
  t.set(fsEntry({ path: 'a-b', kind: 'file', data: Buffer.from('x') }));
  t.set(fsEntry({ path: 'a/c', kind: 'file', data: Buffer.from('y') }));
  return t;
}

describe('squashfs', skipUnless('unsquashfs', 'squashfs-tools'), () => {
  const dir = tempDir('lk-squashfs-');
  const tree = sampleTree();
  const img = writeSquashfs(tree, { epoch: 1700000000 });
  const file = path.join(dir, 'root.img');
  writeFileSync(file, img);

  test('superblock as unsquashfs reads it; padded to 4 KiB; reproducible', () => {
    const s = runTool('unsquashfs', ['-s', file]);
    assert.match(s, new RegExp(`Filesystem size ${img.readBigUInt64LE(40)} bytes`));
    assert.match(s, /Compression gzip/);
    assert.match(s, /Block size 131072/);
    assert.match(s, new RegExp(`Number of inodes ${tree.size + 1}\\b`));
    assert.match(s, /Number of ids 3\b/);
    assert.equal(img.length % 4096, 0);
    assert.ok(img.equals(writeSquashfs(sampleTree(), { epoch: 1700000000 })));
  });

  test('a file that is a slice of a file on disk gives the same image, made in parts', () => {
    const src = path.join(dir, 'big.src');
    const big = dataBytes(tree.get('bin/big')!.data);
    writeFileSync(src, Buffer.concat([Buffer.from('head'), big, Buffer.from('tail')]));
    const t = sampleTree();
    t.set({ ...t.get('bin/big')!, data: FileSlice.of(src).slice(4, 4 + big.length) });
    const parts = squashfsParts(t, { epoch: 1700000000 });
    const data = [...parts.data];
    const { head, tail } = parts.finish();
    assert.ok(Buffer.concat([head, ...data, ...tail]).equals(img));
    assert.throws(() => squashfsParts(t).finish(), /before all the data/);
  });

  test('identical files share their data blocks', () => {
    const withCopy = writeSquashfs(tree).length;
    const t2 = sampleTree();
    t2.delete('bin/big-copy');
    const without = writeSquashfs(t2).length;
    assert.ok(withCopy - without < 200, `a duplicate costs ${withCopy - without} bytes`);
  });

  test('listing: modes, owners, sizes, device numbers, link targets', () => {
    const l = runTool('unsquashfs', ['-lln', '-d', '', file]);
    const line = (p: string) =>
      l.split('\n').find((s) => s.endsWith(` ${p}`) || s.includes(` ${p} -> `)) ?? '';
    assert.match(line('/bin/big'), /^-rwxr-xr-x 0\/0 +300000 2023-11-14 22:13 /);
    assert.match(line('/bin/big-copy'), /^-rwx------ 0\/0 +300000 /);
    assert.match(line('/bin/sh'), /^lrwxrwxrwx 0\/0 +7 .* \/bin\/sh -> busybox$/);
    assert.match(line('/empty'), /^-rw-r--r-- 1000\/100 +0 /);
    assert.match(line('/dev/null'), /^crw-rw-rw- 0\/0 +1, +3 /);
    // (unsquashfs lists only the low 8 bits of a minor; extraction below checks the whole one)
    assert.match(line('/dev/sda'), /^brw-rw---- 0\/0 /);
    assert.match(line('/dev/fifo'), /^prw------- /);
    assert.match(line('/tmp'), /^drwxrwxrwt /);
    assert.equal(l.split('\n').filter((s) => s.includes('/many/f')).length, 700);
  });

  test('extraction gives back every file byte for byte, and the xattrs', () => {
    const out = path.join(dir, 'x');
    runTool('unsquashfs', ['-d', out, file]);
    for (const e of tree.entries()) {
      const p = path.join(out, e.path);
      const st = lstatSync(p);
      assert.equal(st.mode & 0o7777, e.mode, e.path);
      if (e.kind === 'file') assert.ok(readFileSync(p).equals(Buffer.from(dataBytes(e.data))), e.path);
      if (e.kind === 'symlink') assert.equal(readlinkSync(p), e.target);
      if (e.path === 'dev/null') assert.equal(st.rdev, (1 << 8) | 3);
      // glibc makedev(8, 300): minor's low byte, major << 8, minor's high bits << 12
      if (e.path === 'dev/sda') assert.equal(st.rdev, 0x2c | (8 << 8) | (0x100 << 12));
    }
    if (hostHas('getfattr')) {
      const x = runTool('getfattr', ['-e', 'hex', '-n', 'security.capability', path.join(out, 'ping')]);
      assert.match(x, /security.capability=0x0100000200200000/);
    }
  });

  test('zstd is refused with a clear message where Node has no zstd compressor', () => {
    if ('zstdCompressSync' in zlib) {
      assert.match(
        runTool('unsquashfs', ['-s', write('zstd.img', writeSquashfs(tree, { compression: 'zstd' }))]),
        /zstd/,
      );
      return;
    }
    assert.throws(() => writeSquashfs(tree, { compression: 'zstd' }), /zstd compression is not available/);
  });

  function write(name: string, data: Uint8Array): string {
    const p = path.join(dir, name);
    writeFileSync(p, data);
    return p;
  }
});
