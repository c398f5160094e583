import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { dataBytes, FileSlice } from '../fs/data.js';
import type { FsEntry } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { cpioChunks, readCpio, writeCpio } from './cpio.js';

const work = tempDir('cpio-test-');

const libc = Buffer.alloc(100_003, 0x5a); // odd size: exercises the padding
function sample(): FsEntry[] {
  return [
    fsEntry({ path: 'a', kind: 'dir', mode: 0o755 }),
    fsEntry({ path: 'a/libc.so', kind: 'file', mode: 0o755, data: libc }),
    fsEntry({ path: 'a/sh', kind: 'symlink', mode: 0o777, target: '/bin/busybox' }),
    fsEntry({ path: 'b', kind: 'dir', mode: 0o700, uid: 1000, gid: 100 }),
    fsEntry({ path: 'b/copy-of-libc', kind: 'file', mode: 0o755, data: Buffer.from(libc) }), // equal bytes, other object
    fsEntry({ path: 'b/empty1', kind: 'file', data: Buffer.alloc(0) }),
    fsEntry({ path: 'b/empty2', kind: 'file', data: Buffer.alloc(0) }),
    fsEntry({ path: 'b/same-bytes-other-mode', kind: 'file', mode: 0o4755, data: Buffer.from(libc) }),
    fsEntry({ path: 'b/unique', kind: 'file', uid: 1000, gid: 100, data: Buffer.from('unique\n') }),
    fsEntry({ path: 'c', kind: 'dir', mode: 0o755 }),
    fsEntry({ path: 'c/third-libc', kind: 'file', mode: 0o755, data: libc }),
    fsEntry({ path: 'dev', kind: 'dir', mode: 0o755 }),
    fsEntry({ path: 'dev/console', kind: 'char', mode: 0o600, devmajor: 5, devminor: 1 }),
    fsEntry({ path: 'dev/vda', kind: 'block', mode: 0o660, gid: 6, devmajor: 254, devminor: 0 }),
    fsEntry({ path: 'init', kind: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\nexec /sbin/init\n') }),
  ];
}

describe('writeCpio', () => {
  const cpio = writeCpio(sample());

  it('writes the same bytes from data on disk, in pieces of about 1 MiB', () => {
    // Every file's data as a slice of one file on disk; duplicates are found by content still.
    const entries = sample();
    const blobs = entries.filter((e) => e.kind === 'file').map((e) => dataBytes(e.data));
    const big = Buffer.alloc(2_500_001, 0x42);
    const file = join(work, 'data');
    writeFileSync(file, Buffer.concat([...blobs, big]));
    const all = FileSlice.of(file);
    let at = 0;
    const onDisk = entries.map((e) => {
      if (e.kind !== 'file') return e;
      const n = e.data!.length;
      at += n;
      return { ...e, data: all.slice(at - n, at) };
    });
    onDisk.push(fsEntry({ path: 'z-big', kind: 'file', data: all.slice(at) }));
    const inMemory = [...entries, fsEntry({ path: 'z-big', kind: 'file', data: big })];
    const pieces = [...cpioChunks(onDisk)];
    assert.deepEqual(Buffer.concat(pieces), writeCpio(inMemory));
    assert.ok(pieces.length > 2);
    for (const p of pieces) assert.ok(p.length <= 1 << 20, `a piece of ${p.length} bytes`);
    all.file.close();
  });
  const file = join(work, 'initrd.cpio');
  writeFileSync(file, cpio);
  const back = [...readCpio(cpio)];
  const get = (n: string) => back.find((x) => x.name === n)!;

  it('is byte-identical on rewrite and 4-aligned', () => {
    assert.deepEqual(writeCpio(sample()), cpio);
    assert.equal(cpio.length % 4, 0);
    assert.equal(cpio.subarray(0, 6).toString(), '070701');
  });

  it('numbers inodes in entry order and links identical files, data on the last', () => {
    assert.deepEqual(
      back.map((x) => x.name),
      sample().map((x) => x.path),
    );
    const links = ['a/libc.so', 'b/copy-of-libc', 'c/third-libc'].map(get);
    assert.deepEqual(
      links.map((x) => [x.ino, x.nlink, x.data.length]),
      [
        [2, 3, 0],
        [2, 3, 0],
        [2, 3, libc.length],
      ],
    );
    assert.deepEqual(Buffer.from(links[2]!.data), libc);
    // Same bytes but another mode cannot share the inode; empty files are not linked.
    const other = get('b/same-bytes-other-mode');
    assert.equal(other.nlink, 1);
    assert.notEqual(other.ino, 2);
    assert.equal(other.data.length, libc.length);
    assert.notEqual(get('b/empty1').ino, get('b/empty2').ino);
    assert.deepEqual(
      back.map((x) => x.ino),
      [1, 2, 3, 4, 2, 5, 6, 7, 8, 9, 2, 10, 11, 12, 13],
    );
    assert.equal(get('a/sh').mode, 0o120777);
    assert.equal(Buffer.from(get('a/sh').data).toString(), '/bin/busybox');
    assert.equal(get('dev/console').mode, 0o020600);
    assert.deepEqual([get('dev/vda').devmajor, get('dev/vda').devminor], [254, 0]);
    assert.equal(get('b').mode, 0o040700);
    assert.equal(get('b/unique').uid, 1000);
    assert.equal(get('init').mtime, 1700000000);
  });

  it('lists correctly with GNU cpio', skipUnless('cpio', 'cpio'), () => {
    const out = runTool('cpio', ['-t', '-v', '--numeric-uid-gid', '-F', file]);
    assert.match(out, /^drwxr-xr-x +2 0 +0 +0 Nov 14 +2023 a$/m);
    assert.match(out, /^-rwxr-xr-x +3 0 +0 +100003 Nov 14 +2023 c\/third-libc$/m);
    assert.match(out, /^lrwxrwxrwx +1 0 +0 +12 .* a\/sh -> \/bin\/busybox$/m);
    assert.match(out, /^drwx------ +2 1000 +100 .* b$/m);
    assert.match(out, /^-rwsr-xr-x +1 0 +0 +100003 .* b\/same-bytes-other-mode$/m);
    assert.match(out, /^crw------- +1 0 +0 +5, +1 .* dev\/console$/m);
    assert.match(out, /^brw-rw---- +1 0 +6 +254, +0 .* dev\/vda$/m);
    assert.equal(out.trim().split('\n').length, sample().length);
  });

  it('lists correctly with bsdtar', skipUnless('bsdtar', 'libarchive-tools'), () => {
    const out = runTool('bsdtar', ['-tvf', file, '--numeric-owner']);
    assert.match(out, /^lrwxrwxrwx .* a\/sh -> \/bin\/busybox$/m);
    assert.match(out, /^-rw-r--r-- +1 1000 +100 +7 Nov 14 +2023 b\/unique$/m);
    assert.match(out, /^crw------- .* 5,1 .* dev\/console$/m);
    assert.equal(out.trim().split('\n').length, sample().length);
  });

  it('extracts correctly with cpio -idm, deduplicated files in full', skipUnless('cpio', 'cpio'), () => {
    const dest = join(work, 'x');
    mkdirSync(dest);
    // Device nodes left out: mknod needs privileges a CI user may not have.
    runTool('cpio', ['-idm', '--quiet', '--no-absolute-filenames', '-F', file, '--nonmatching', 'dev/*'], {
      cwd: dest,
    });
    for (const s of sample()) {
      if (s.kind === 'file')
        assert.deepEqual(readFileSync(join(dest, s.path)), Buffer.from(dataBytes(s.data)), s.path);
      if (s.kind === 'symlink') assert.equal(readlinkSync(join(dest, s.path)), s.target);
      if (s.kind === 'file' || s.kind === 'dir')
        assert.equal(lstatSync(join(dest, s.path)).mode & 0o7777, s.mode, s.path);
    }
    const ino = (p: string) => statSync(join(dest, p)).ino;
    assert.equal(ino('a/libc.so'), ino('c/third-libc'));
    assert.equal(ino('a/libc.so'), ino('b/copy-of-libc'));
    assert.notEqual(ino('a/libc.so'), ino('b/same-bytes-other-mode'));
    assert.equal(statSync(join(dest, 'init')).mtimeMs, 1700000000 * 1000);
  });

  it('rejects what newc cannot hold, and bad input', () => {
    assert.throws(
      () => writeCpio([fsEntry({ path: 'x', kind: 'file', uid: 2 ** 32, data: Buffer.alloc(1) })]),
      UserError,
    );
    assert.throws(() => [...readCpio(cpio.subarray(0, 200))], /truncated/);
    assert.throws(() => [...readCpio(Buffer.from('070707'.padEnd(200, '0')))], /bad magic/);
  });
});
