import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { hostHas, runTool, skipUnless } from '../../test/tools.js';
import { CHUNK, FileSlice, withDataFiles } from '../fs/data.js';
import { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { iso9660Chunks, writeIso9660 } from './iso9660.js';

const LONG =
  'Long File Name With Spaces and a very long name indeed that goes over sixty four characters.txt';

function sampleTree(): FsTree {
  const t = new FsTree();
  const file = (p: string, data: string | Uint8Array, extra: Partial<Parameters<typeof fsEntry>[0]> = {}) =>
    t.set(
      fsEntry({ path: p, kind: 'file', data: typeof data === 'string' ? Buffer.from(data) : data, ...extra }),
    );
  file('config', '{"hello":"world"}\n');
  file(`a/b/c/${LONG}`, 'x'.repeat(5000));
  file(`a/b/c/${LONG.toLowerCase()}`, 'y');
  const shared = Buffer.from('shared data');
  file('bin/s1', shared, { mode: 0o4755, uid: 5, gid: 6 });
  file('bin/s2', shared, { mode: 0o755 });
  file('.hidden', 'h');
  file('empty', '');
  file('big', new Uint8Array(100_000).fill(7));
  t.set(fsEntry({ path: 'lnk', kind: 'symlink', mode: 0o777, target: `../${'q'.repeat(300)}/x` }));
  t.set(fsEntry({ path: 'dev/null', kind: 'char', mode: 0o666, devmajor: 1, devminor: 3 }));
  // deeper than ISO 9660's 8 levels: Rock Ridge readers take it as it is
  file('d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/deep.txt', 'deep');
  return t;
}

describe('iso9660Chunks', () => {
  test('the bytes of writeIso9660, with a file on disk read a piece at a time, boot images and all', async () => {
    const dir = tempDir('lk-iso-chunks-');
    const big = randomBytes(3 * CHUNK + 123);
    const file = path.join(dir, 'big.bin');
    writeFileSync(file, big);
    const tree = (data: Uint8Array | FileSlice) => {
      const t = sampleTree();
      t.set(fsEntry({ path: 'boot/loader.bin', kind: 'file', data: new Uint8Array(4096).fill(0xb0) }));
      t.set(fsEntry({ path: 'initrd.img', kind: 'file', data }));
      t.set(fsEntry({ path: 'zz/same.img', kind: 'file', data }));
      return t;
    };
    const opts = { volumeId: 'X', boot: { bios: 'boot/loader.bin' }, hybrid: {} };
    const whole = writeIso9660(tree(big), opts);
    await withDataFiles(async () => {
      const pieces = [...iso9660Chunks(tree(FileSlice.of(file)), opts)];
      assert.ok(Buffer.concat(pieces).equals(whole));
      // After the metadata and boot image, nothing bigger than a read piece is held at once.
      assert.ok(pieces.slice(1).every((p) => p.length <= CHUNK));
      assert.ok(pieces[0]!.length < CHUNK, `head ${pieces[0]!.length} bytes`);
    });
  });
});

describe('writeIso9660', () => {
  test('is deterministic', () => {
    const a = writeIso9660(sampleTree(), { volumeId: 'cidata', mtime: 1700000000 });
    const b = writeIso9660(sampleTree(), { volumeId: 'cidata', mtime: 1700000000 });
    assert.equal(a.length % 2048, 0);
    assert.ok(a.equals(b));
    assert.equal(a.subarray(16 * 2048 + 1, 16 * 2048 + 6).toString(), 'CD001');
    assert.equal(a.subarray(16 * 2048 + 40, 16 * 2048 + 46).toString(), 'cidata');
  });

  test('rejects a bad volume id', () => {
    assert.throws(() => writeIso9660(new FsTree(), { volumeId: '' }), UserError);
    assert.throws(() => writeIso9660(new FsTree(), { volumeId: 'x'.repeat(33) }), UserError);
  });

  test('big directories and names needing SUSP continuation areas', {
    ...skipUnless('xorriso', 'xorriso'),
  }, () => {
    const t = new FsTree();
    const names: string[] = [];
    for (let i = 0; i < 300; i++) {
      const name = `${String(i).padStart(3, '0')}-${'n'.repeat(i % 3 === 0 ? 240 : 40)}`;
      names.push(name);
      t.set(fsEntry({ path: `dir/${name}`, kind: 'file', data: Buffer.from(name) }));
    }
    const dir = tempDir('iso-big-');
    const iso = path.join(dir, 'b.iso');
    writeFileSync(iso, writeIso9660(t, { volumeId: 'BIG' }));
    const out = runTool('xorriso', ['-indev', iso, '-find', '/dir', '-type', 'f']);
    const listed = [...out.matchAll(/'\/dir\/([^']+)'/g)].map((m) => m[1]!);
    assert.deepEqual(listed.sort(), names.sort());
    const x = path.join(dir, 'x');
    runTool('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', `/dir/${names[3]}`, x]);
    assert.equal(readFileSync(x, 'utf8'), names[3]);
  });

  test('El Torito: BIOS with boot info table and UEFI entries, hybrid MBR', {
    ...skipUnless('xorriso', 'xorriso'),
  }, () => {
    const t = new FsTree();
    const loader = Buffer.alloc(4096);
    for (let i = 0; i < loader.length; i++) loader[i] = (i * 7) & 0xff;
    t.set(fsEntry({ path: 'isolinux/isolinux.bin', kind: 'file', data: loader }));
    t.set(fsEntry({ path: 'boot/efi.img', kind: 'file', data: Buffer.alloc(5000, 1) }));
    const img = writeIso9660(t, {
      volumeId: 'BOOT',
      boot: { bios: 'isolinux/isolinux.bin', efi: 'boot/efi.img', catalog: 'boot/boot.cat' },
      hybrid: { mbrCode: Buffer.alloc(432, 0x90) },
    });
    assert.equal(img.length % (1 << 20), 0);
    const dir = tempDir('iso-boot-');
    const iso = path.join(dir, 'boot.iso');
    writeFileSync(iso, img);
    const report = runTool('xorriso', ['-indev', iso, '-report_el_torito', 'plain']);
    const bios = / +1 +BIOS +y +none +0x0000 +0x00 +4 +(\d+)/.exec(report);
    assert.ok(bios, report);
    assert.match(report, / +2 +UEFI +y +none +0x0000 +0x00 +10 +\d+/);
    assert.match(report, /El Torito cat path : \/boot\/boot.cat/);
    assert.match(report, /boot-info-table/);
    // boot info table: PVD at 16, the image's LBA and length, the sum of its words from 64
    const lba = Number(bios[1]);
    const at = lba * 2048;
    let sum = 0;
    for (let i = 64; i < loader.length; i += 4) sum = (sum + loader.readUInt32LE(i)) >>> 0;
    assert.deepEqual(
      [
        img.readUInt32LE(at + 8),
        img.readUInt32LE(at + 12),
        img.readUInt32LE(at + 16),
        img.readUInt32LE(at + 20),
      ],
      [16, lba, 4096, sum],
    );
    assert.ok(img.subarray(at + 64, at + 4096).equals(loader.subarray(64)));
    // the MBR: boot code, the loader's 512-byte sector at 432, partitions, signature
    assert.equal(img[0], 0x90);
    assert.equal(img.readUInt32LE(432), lba * 4);
    assert.equal(img.readUInt16LE(510), 0xaa55);
    if (hostHas('sfdisk')) {
      const dump = runTool('sfdisk', ['--dump', iso]);
      const efi = /start=\s*(\d+), size=\s*10, type=ef/.exec(dump);
      assert.ok(efi, dump);
      assert.match(dump, new RegExp(`start=\\s*0, size=\\s*${efi[1]}, type=0, bootable`));
      assert.match(runTool('sfdisk', ['--verify', iso]), /No errors detected/);
    }
  });

  test('an empty tree is a valid ISO', { ...skipUnless('xorriso', 'xorriso') }, () => {
    const dir = tempDir('iso-empty-');
    const iso = path.join(dir, 'e.iso');
    writeFileSync(iso, writeIso9660(new FsTree(), { volumeId: 'EMPTY' }));
    const out = runTool('xorriso', ['-indev', iso, '-find', '/', '-exec', 'lsdl']);
    assert.match(out, /'\/'/);
  });

  describe('read back by xorriso', { ...skipUnless('xorriso', 'xorriso') }, () => {
    const dir = tempDir('iso-test-');
    const iso = path.join(dir, 't.iso');
    writeFileSync(iso, writeIso9660(sampleTree(), { volumeId: 'cidata', mtime: 1700000000 }));

    test('Rock Ridge: names, modes, owners, symlinks, devices', () => {
      const out = runTool('xorriso', ['-indev', iso, '-find', '/', '-exec', 'lsdl'], { cwd: dir });
      assert.match(out, new RegExp(`-rw-r--r-- +1 0 +0 +5000 .*'/a/b/c/${LONG}'`));
      assert.match(out, /-rwsr-xr-x +1 5 +6 +11 .*'\/bin\/s1'/);
      assert.match(out, /-rwxr-xr-x +1 0 +0 +11 .*'\/bin\/s2'/);
      assert.match(out, /crw-rw-rw- +1 0 +0 +1, *3 .*'\/dev\/null'/);
      assert.match(out, new RegExp(`lrwxrwxrwx .*'/lnk' -> '../${'q'.repeat(300)}/x'`));
      assert.match(out, /'\/d1\/d2\/d3\/d4\/d5\/d6\/d7\/d8\/d9\/d10\/deep.txt'/);
      assert.match(out, /'\/\.hidden'/);
      assert.match(out, /Nov 14 +2023 '\/config'/);
    });

    test('file contents extract intact (shared extents too)', () => {
      const x = path.join(dir, 'x');
      runTool('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', x]);
      assert.equal(readFileSync(path.join(x, 'config'), 'utf8'), '{"hello":"world"}\n');
      assert.equal(readFileSync(path.join(x, 'a/b/c', LONG), 'utf8'), 'x'.repeat(5000));
      assert.equal(readFileSync(path.join(x, 'a/b/c', LONG.toLowerCase()), 'utf8'), 'y');
      assert.equal(readFileSync(path.join(x, 'bin/s2'), 'utf8'), 'shared data');
      assert.deepEqual(readFileSync(path.join(x, 'big')), Buffer.alloc(100_000, 7));
      assert.equal(readFileSync(path.join(x, 'empty')).length, 0);
    });

    test('Joliet tree: names up to 64 UCS-2 characters', () => {
      const out = runTool('xorriso', ['-read_fs', 'norock', '-indev', iso, '-find', '/']);
      assert.match(out, /'\/config'/);
      const names = [...out.matchAll(/'\/a\/b\/c\/([^']*)'/g)].map((m) => m[1]!);
      assert.equal(names.length, 2);
      for (const n of names) {
        assert.ok(n.length <= 64, n);
        assert.ok(n.endsWith('.txt'), n);
      }
      assert.notEqual(names[0], names[1]);
    });

    test('plain ISO 9660 tree: upper-case level-2 names', () => {
      const out = runTool('xorriso', ['-read_fs', 'ecma119', '-indev', iso, '-find', '/']);
      assert.match(out, /'\/CONFIG\.;1'|'\/CONFIG\.'|'\/CONFIG'/);
      for (const m of out.matchAll(/^'(\/[^']*)'$/gm)) assert.doesNotMatch(m[1]!, /[a-z]/);
    });
  });
});
