import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { CHUNK, dataBytes, type FileData, FileSlice } from '../fs/data.js';
import type { FsEntry } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { readTar, type TarEntry, writeTar } from './tar.js';

const work = tempDir('tar-test-');

const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(60)}/${'g'.repeat(60)}/${'h'.repeat(60)}`;
const longFile = `${longDir}/${'n'.repeat(120)}.txt`; // > 255 bytes, last component > 100
const longTarget = `/${'t'.repeat(150)}/target`;
const xattrValue = Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x41, 0x20]); // NUL, newline, '=': binary-safe?

/** A directory tree exercising every case; returns its path. */
function makeSourceTree(): string {
  const src = join(work, 'src');
  mkdirSync(join(src, longDir), { recursive: true });
  writeFileSync(join(src, longFile), 'long name contents\n');
  writeFileSync(join(src, 'plain.txt'), 'hello\n', { mode: 0o640 });
  writeFileSync(join(src, 'setuid'), Buffer.alloc(1000, 7), { mode: 0o4755 });
  linkSync(join(src, 'setuid'), join(src, 'hardlink'));
  symlinkSync(longTarget, join(src, 'longlink'));
  symlinkSync('plain.txt', join(src, 'shortlink'));
  writeFileSync(join(src, 'caps'), 'x');
  spawnSync('setfattr', ['-n', 'user.bin', '-v', `0x${xattrValue.toString('hex')}`, join(src, 'caps')]);
  spawnSync('mkfifo', [join(src, 'fifo')]);
  return src;
}

function byName<E extends TarEntry<FileData>>(entries: E[]): Map<string, E> {
  return new Map(entries.map((e) => [e.name.replace(/^\.\//, '').replace(/\/$/, ''), e]));
}

describe('readTar', skipUnless('tar', 'tar'), () => {
  const src = makeSourceTree();
  const xattrsWork = spawnSync('getfattr', ['-n', 'user.bin', join(src, 'caps')]).status === 0;
  const common = ['--sort=name', '--owner=3000000', '--group=2500000', '--numeric-owner', '-C', src, '.'];

  for (const format of ['gnu', 'pax', 'posix-xattrs', 'bsdtar']) {
    it(`reads archives written by ${format === 'bsdtar' ? 'bsdtar' : `GNU tar --format=${format}`}`, (t) => {
      const out = join(work, `${format}.tar`);
      if (format === 'bsdtar') {
        const { skip } = skipUnless('bsdtar', 'libarchive-tools');
        if (skip) return t.skip(skip);
        runTool('bsdtar', [
          '-cf',
          out,
          '--format=pax',
          '--uid',
          '3000000',
          '--gid',
          '2500000',
          '-C',
          src,
          '.',
        ]);
      } else if (format === 'posix-xattrs') {
        runTool('tar', ['-cf', out, '--format=posix', '--xattrs', '--xattrs-include=*', ...common]);
      } else runTool('tar', ['-cf', out, `--format=${format}`, ...common]);
      const entries = [...readTar(readFileSync(out))];
      const m = byName(entries);
      const long = m.get(longFile);
      assert.ok(long, `long name missing; got ${[...m.keys()].join(', ')}`);
      assert.equal(long.kind, 'file');
      assert.equal(Buffer.from(long.data).toString(), 'long name contents\n');
      assert.equal(long.uid, 3000000);
      assert.equal(long.gid, 2500000);
      assert.equal(m.get(longDir)?.kind, 'dir');
      const plain = m.get('plain.txt')!;
      assert.equal(plain.mode, 0o640);
      assert.equal(plain.mtime, Math.floor(statSync(join(src, 'plain.txt')).mtimeMs / 1000));
      assert.equal(m.get('setuid')!.mode, 0o4755);
      // Whichever of the two names came first carries the data, the second is the hard link.
      const [first, second] = entries.filter((e) => /(setuid|hardlink)$/.test(e.name));
      assert.equal(first!.kind, 'file');
      assert.deepEqual(Buffer.from(first!.data), Buffer.alloc(1000, 7));
      assert.equal(second!.kind, 'hardlink');
      assert.equal(second!.linkname!.replace(/^\.\//, ''), first!.name.replace(/^\.\//, ''));
      assert.equal(second!.data.length, 0);
      assert.equal(m.get('longlink')!.kind, 'symlink');
      assert.equal(m.get('longlink')!.linkname, longTarget);
      assert.equal(m.get('shortlink')!.linkname, 'plain.txt');
      assert.equal(m.get('fifo')!.kind, 'fifo');
      if (xattrsWork && (format === 'posix-xattrs' || format === 'bsdtar')) {
        assert.deepEqual(Buffer.from(m.get('caps')!.xattrs?.['user.bin'] ?? []), xattrValue);
      }
    });
  }

  it("reads a slice of a file as it reads bytes, leaving the members' data on disk", () => {
    // pax records, GNU long names and a member bigger than the read window, at an offset in a file.
    const big = Buffer.alloc(3 * CHUNK + 123, 0x61);
    writeFileSync(join(src, 'big'), big);
    const tars = ['pax', 'gnu'].map((format) => {
      const out = join(work, `slice-${format}.tar`);
      runTool('tar', ['-cf', out, `--format=${format}`, ...common]);
      return readFileSync(out);
    });
    const junk = Buffer.alloc(777, 0xee);
    const file = join(work, 'slices');
    writeFileSync(file, Buffer.concat([junk, tars[0]!, junk, tars[1]!, junk]));
    const whole = FileSlice.of(file);
    let at = junk.length;
    for (const tar of tars) {
      const fromFile = [...readTar(whole.slice(at, at + tar.length))];
      const fromMemory = [...readTar(tar)];
      assert.equal(fromFile.length, fromMemory.length);
      fromFile.forEach((f, i) => {
        const m = fromMemory[i]!;
        assert.ok(f.data instanceof FileSlice);
        assert.deepEqual({ ...f, data: undefined }, { ...m, data: undefined });
        assert.deepEqual(dataBytes(f.data), m.data, m.name);
      });
      assert.equal(byName(fromFile).get('big')?.data.length, big.length);
      at += tar.length + junk.length;
    }
    whole.file.close();
  });

  it('reads ustar prefix/name splits and old-style entries', () => {
    const out = join(work, 'ustar.tar');
    const name = `${'p'.repeat(90)}/${'q'.repeat(90)}`;
    const d = join(work, 'ustarsrc');
    mkdirSync(join(d, 'p'.repeat(90)), { recursive: true });
    writeFileSync(join(d, name), 'u');
    runTool('tar', ['-cf', out, '--format=ustar', '-C', d, name]);
    const [e] = [...readTar(readFileSync(out))];
    assert.equal(e!.name, name);
    mkdirSync(join(d, 'v7dir'));
    runTool('tar', ['-cf', out, '--format=v7', '-C', d, 'v7dir']);
    const v7 = [...readTar(readFileSync(out))];
    assert.equal(v7[0]!.kind, 'dir'); // v7 has no dir type: a '/'-terminated name
  });

  it('skips pax global headers as GNU tar and bsdtar do', () => {
    const out = join(work, 'global.tar');
    writeFileSync(join(work, 'g'), 'g');
    runTool('tar', ['-cf', out, '--format=posix', '--pax-option=uid=77', '-C', work, 'g']);
    const buf = readFileSync(out);
    assert.equal(buf[156], 0x67); // the archive does start with a 'g' header
    const [e, ...rest] = [...readTar(buf)];
    assert.equal(rest.length, 0);
    assert.equal(e!.name, 'g');
    assert.equal(e!.uid, 0);
    assert.equal(Buffer.from(e!.data).toString(), 'g');
  });

  it('rejects bad checksums and truncation with a UserError', () => {
    const buf = Buffer.from(readFileSync(join(work, 'gnu.tar')));
    const bad = Buffer.from(buf);
    bad[10] ^= 1;
    assert.throws(() => [...readTar(bad)], UserError);
    assert.throws(() => [...readTar(buf.subarray(0, 700))], /truncated/);
    assert.throws(() => [...readTar(buf.subarray(0, 300))], /truncated/);
    assert.throws(() => [...readTar(Buffer.from('not a tar at all'.repeat(40)))], UserError);
    assert.deepEqual([...readTar(new Uint8Array(0))], []);
  });
});

/** The entries every writer test uses. */
function sampleEntries(): FsEntry[] {
  const shared = Buffer.from('shared contents\n');
  return [
    fsEntry({ path: 'bin', kind: 'dir', mode: 0o755 }),
    fsEntry({ path: 'bin/sh', kind: 'file', mode: 0o4755, data: Buffer.from('#!/bin/false\n') }),
    fsEntry({ path: 'dev', kind: 'dir', mode: 0o755 }),
    fsEntry({ path: 'dev/null', kind: 'char', mode: 0o666, devmajor: 1, devminor: 3 }),
    fsEntry({ path: 'dev/sda', kind: 'block', mode: 0o660, gid: 6, devmajor: 8, devminor: 0 }),
    fsEntry({ path: 'dev/pipe', kind: 'fifo', mode: 0o600 }),
    fsEntry({ path: 'etc', kind: 'dir', mode: 0o755, mtime: -86400 }),
    fsEntry({ path: 'etc/a', kind: 'file', data: shared }),
    fsEntry({ path: 'etc/b', kind: 'file', data: shared }), // same object: a hard link
    fsEntry({ path: 'etc/c', kind: 'file', data: Buffer.from('shared contents\n') }), // equal bytes, other object
    fsEntry({
      path: 'etc/big-ids',
      kind: 'file',
      uid: 3000000,
      gid: 0o7777777 + 1,
      data: Buffer.from('ids'),
    }),
    fsEntry({
      path: 'etc/caps',
      kind: 'file',
      data: Buffer.from('x'),
      xattrs: { 'user.bin': xattrValue, 'user.a': Buffer.from('A') },
    }),
    fsEntry({ path: 'etc/link', kind: 'symlink', mode: 0o777, target: longTarget }),
    fsEntry({ path: 'etc/übung', kind: 'file', data: Buffer.alloc(513, 1) }),
    fsEntry({ path: longDir.split('/')[0]!, kind: 'dir', mode: 0o700, uid: 1000, gid: 1000 }),
    fsEntry({ path: longFile, kind: 'file', data: Buffer.from('deep') }),
    fsEntry({ path: `${'s'.repeat(150)}/${'t'.repeat(99)}`, kind: 'file', data: Buffer.alloc(0) }),
  ];
}

describe('writeTar', () => {
  const entries = sampleEntries();
  const tar = writeTar(entries);
  const file = join(work, 'ours.tar');
  writeFileSync(file, tar);

  it('is byte-identical on rewrite and ends with two zero blocks', () => {
    assert.deepEqual(writeTar(sampleEntries()), tar);
    assert.equal(tar.length % 512, 0);
    assert.ok(tar.subarray(-1024).every((b) => b === 0));
  });

  it('reads back what it wrote', () => {
    const back = byName([...readTar(tar)]);
    for (const e of entries) {
      const r = back.get(e.path);
      assert.ok(r, e.path);
      assert.equal(r.mode, e.mode, e.path);
      assert.equal(r.uid, e.uid, e.path);
      assert.equal(r.gid, e.gid, e.path);
      assert.equal(r.mtime, e.mtime, e.path);
      if (e.path === 'etc/b') {
        assert.equal(r.kind, 'hardlink');
        assert.equal(r.linkname, 'etc/a');
      } else assert.equal(r.kind, e.kind, e.path);
      if (e.kind === 'file' && e.path !== 'etc/b')
        assert.deepEqual(Buffer.from(r.data), Buffer.from(dataBytes(e.data)));
      if (e.kind === 'symlink') assert.equal(r.linkname, e.target);
      if (e.devmajor !== undefined) assert.deepEqual([r.devmajor, r.devminor], [e.devmajor, e.devminor]);
      assert.deepEqual(
        r.xattrs && Object.fromEntries(Object.entries(r.xattrs).map(([k, v]) => [k, Buffer.from(v)])),
        e.xattrs,
      );
    }
    assert.equal(back.get('bin')!.name, 'bin/'); // dirs carry a trailing '/'
  });

  it('writes pax headers only where needed', () => {
    const small = writeTar([
      { path: 'a', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: Buffer.from('x') },
    ]);
    assert.equal(small.length, 512 * 4); // header, data, two zero blocks
    assert.equal(small[156], 0x30);
    assert.equal(small.subarray(257, 265).toString('latin1'), 'ustar\x0000');
    assert.ok(small.subarray(265, 329).every((b) => b === 0)); // no uname/gname
  });

  it('lists correctly with GNU tar', skipUnless('tar', 'tar'), () => {
    const lines = runTool('tar', ['--numeric-owner', '-tvf', file]).trim().split('\n');
    const find = (suffix: string) => {
      const l = lines.find((x) => x.endsWith(suffix) || x.includes(` ${suffix} `));
      assert.ok(l, `no line for ${suffix} in\n${lines.join('\n')}`);
      return l;
    };
    assert.match(find(' bin/sh'), /^-rwsr-xr-x 0\/0 +13 2023-11-14 22:13 bin\/sh$/);
    assert.match(find(' dev/null'), /^crw-rw-rw- 0\/0 +1,3 .* dev\/null$/);
    assert.match(find(' dev/sda'), /^brw-rw---- 0\/6 +8,0 .* dev\/sda$/);
    assert.match(find(' dev/pipe'), /^prw------- /);
    assert.match(find(' etc/'), /^drwxr-xr-x 0\/0 +0 1969-12-31 00:00 etc\/$/);
    assert.match(find('etc/b link to etc/a'), /^hrw-r--r-- /);
    assert.match(find(' etc/big-ids'), / 3000000\/2097152 +3 /);
    assert.match(find(`etc/link -> ${longTarget}`), /^lrwxrwxrwx /);
    assert.match(find(' etc/übung'), / 513 /);
    assert.match(find(longFile), / 1000\/1000 |0\/0 +4 /);
    assert.equal(lines.length, entries.length);
  });

  it('lists correctly with bsdtar', skipUnless('bsdtar', 'libarchive-tools'), () => {
    const out = runTool('bsdtar', ['--numeric-owner', '-tvf', file]);
    // columns: mode, nlink, uid, gid, size (or major,minor), date, name
    assert.match(out, /\n-rwsr-xr-x +0 0 +0 +13 Nov 14 +2023 bin\/sh\n/);
    assert.match(out, /\ncrw-rw-rw- +0 0 +0 +1,3 .* dev\/null\n/);
    assert.match(out, /\nbrw-rw---- +0 0 +6 +8,0 .* dev\/sda\n/);
    assert.match(out, /\nhrw-r--r-- .* etc\/b link to etc\/a\n/);
    assert.match(out, / 3000000 +2097152 +3 .* etc\/big-ids\n/);
    assert.match(out, /\ndrwx------ +0 1000 +1000 +0 .* d+\/\n/);
    assert.ok(out.includes(`etc/link -> ${longTarget}\n`));
    assert.ok(out.includes(`${longFile}\n`));
    assert.equal(out.trim().split('\n').length, entries.length);
  });

  for (const [tool, aptPackage] of [
    ['tar', 'tar'],
    ['bsdtar', 'libarchive-tools'],
  ] as const) {
    it(`extracts correctly with ${tool}`, skipUnless(tool, aptPackage), () => {
      const dest = join(work, `x-${tool}`);
      mkdirSync(dest);
      const args =
        tool === 'tar' ? ['--xattrs', '--xattrs-include=*', '--exclude=dev/*'] : ['--exclude', 'dev/*'];
      runTool(tool, ['-xf', file, '-C', dest, ...args]);
      for (const e of entries) {
        if (e.kind !== 'file') continue;
        assert.deepEqual(readFileSync(join(dest, e.path)), Buffer.from(dataBytes(e.data)), e.path);
      }
      assert.equal(statSync(join(dest, 'etc/a')).ino, statSync(join(dest, 'etc/b')).ino);
      assert.notEqual(statSync(join(dest, 'etc/a')).ino, statSync(join(dest, 'etc/c')).ino);
      assert.equal(statSync(join(dest, 'bin/sh')).mode & 0o7777, 0o4755);
      const fattr = spawnSync('getfattr', ['--only-values', '-n', 'user.bin', join(dest, 'etc/caps')]);
      if (fattr.status === 0) assert.deepEqual(fattr.stdout, xattrValue);
    });
  }

  it('rejects values it cannot write', () => {
    const base = { kind: 'file' as const, mode: 0o644, gid: 0, mtime: 0, data: Buffer.alloc(0) };
    assert.throws(() => writeTar([{ ...base, path: 'x', uid: -1 }]), UserError);
    assert.throws(
      () => writeTar([{ ...base, path: 'x', uid: 0, xattrs: { 'a=b': Buffer.alloc(1) } }]),
      UserError,
    );
  });
});
