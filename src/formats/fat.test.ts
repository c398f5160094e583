import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { writeFat } from './fat.js';
import { flatten, writeSparseFile } from './sparse.js';

const MIB = 1 << 20;

function espLike(): FsTree {
  const t = new FsTree();
  const file = (p: string, data: string | Uint8Array, mode = 0o644) =>
    t.set(
      fsEntry({ path: p, kind: 'file', mode, data: typeof data === 'string' ? Buffer.from(data) : data }),
    );
  file('EFI/BOOT/BOOTX64.EFI', new Uint8Array(100_000).fill(0x4d));
  file('loader/loader.conf', 'timeout 0\n');
  file('loader/entries/linuxkit.conf', 'title LinuxKit\nlinux /kernel\n');
  file('kernel', Buffer.alloc(3_000_001, 'k'));
  file('README', 'read only', 0o444);
  file('empty', '');
  for (let i = 0; i < 30; i++) file(`many/A file with a long name, number ${i}.txt`, `data ${i}`);
  t.ensureDir('emptydir');
  return t;
}

describe('writeFat', () => {
  test('is deterministic, FAT16 when small and FAT32 from 512 MiB', () => {
    const a = writeFat(espLike(), { label: 'ESP' });
    const b = writeFat(espLike(), { label: 'ESP' });
    assert.ok(Buffer.from(flatten(a)).equals(flatten(b)));
    assert.equal(a.layout.fatType, 16);
    const big = writeFat(espLike(), { size: 1024 * MIB });
    assert.equal(big.layout.fatType, 32);
    // sparse: what is written follows the files, not the 1 GiB size
    const written = big.extents.reduce((n, e) => n + e.data.length, 0);
    assert.ok(written < 8 * MIB, `${written} bytes written`);
  });

  test('rejects what FAT cannot hold', () => {
    const t = new FsTree();
    t.set(fsEntry({ path: 'l', kind: 'symlink', target: 'x' }));
    assert.throws(() => writeFat(t), UserError);
    const tooBig = new FsTree();
    tooBig.set(fsEntry({ path: 'f', kind: 'file', data: new Uint8Array(9 * MIB) }));
    assert.throws(() => writeFat(tooBig, { size: 8 * MIB }), UserError);
    const clash = new FsTree();
    clash.set(fsEntry({ path: 'Ab', kind: 'file', data: new Uint8Array(1) }));
    clash.set(fsEntry({ path: 'aB', kind: 'file', data: new Uint8Array(1) }));
    assert.throws(() => writeFat(clash), UserError);
  });

  for (const [what, size] of [
    ['FAT16', undefined],
    ['FAT32', 600 * MIB],
  ] as const) {
    describe(`${what} read back by fsck.fat and mtools`, { ...skipUnless('fsck.fat', 'dosfstools') }, () => {
      const dir = tempDir('fat-test-');
      const img = path.join(dir, 'fat.img');
      test('fsck.fat finds no problem', async () => {
        await writeSparseFile(img, writeFat(espLike(), { label: 'LINUXKIT', size }));
        const out = runTool('fsck.fat', ['-n', '-v', img]);
        assert.match(out, new RegExp(`2 FATs, ${what === 'FAT16' ? '16' : '32'} bit entries`));
        assert.doesNotMatch(out, /wrong|Marking|Unable|differ|orphan|invalid|bad/i);
        assert.match(out, /: 4\d files, \d+\/\d+ clusters\n$/);
      });
      test('names (long and short), sizes and contents', { ...skipUnless('mdir', 'mtools') }, () => {
        const root = runTool('mdir', ['-i', img, '::/']);
        assert.match(root, /Volume in drive : is LINUXKIT/);
        const many = runTool('mdir', ['-i', img, '::/many']);
        for (let i = 0; i < 30; i++)
          assert.ok(many.includes(`A file with a long name, number ${i}.txt`), many);
        assert.equal(
          runTool('mtype', ['-i', img, '::/loader/entries/linuxkit.conf']),
          'title LinuxKit\nlinux /kernel\n',
        );
        const k = path.join(dir, 'k');
        runTool('mcopy', ['-i', img, '::/kernel', k]);
        assert.ok(readFileSync(k).equals(Buffer.alloc(3_000_001, 'k')));
        assert.match(runTool('mattrib', ['-i', img, '::/README']), /R/);
      });
    });
  }
});
