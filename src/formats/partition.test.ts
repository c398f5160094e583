import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { crc32, GPT_TYPES, guidBytes, stableGuid, writeGpt, writeMbr } from './partition.js';
import { writeSparseFile } from './sparse.js';

const MIB = 1 << 20;

describe('partition tables', () => {
  test('crc32 matches the standard check value', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  });

  test('GUIDs: mixed-endian bytes, stable derivation', () => {
    assert.equal(guidBytes(GPT_TYPES.efiSystem).toString('hex'), '28732ac11ff8d211ba4b00a0c93ec93b');
    assert.equal(stableGuid('x'), stableGuid('x'));
    assert.notEqual(stableGuid('x'), stableGuid('y'));
    assert.match(stableGuid('x'), /^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  });

  describe('read back by sfdisk and sgdisk', () => {
    const dir = tempDir('part-test-');

    test('MBR', { ...skipUnless('sfdisk', 'fdisk') }, () => {
      const img = path.join(dir, 'mbr.img');
      const mbr = writeMbr(
        [
          { bootable: true, type: 0x0c, start: 2048, sectors: 4096 },
          { type: 0x83, start: 6144, sectors: 10240 },
        ],
        { diskId: 0x1234abcd },
      );
      const disk = Buffer.alloc(8 * MIB);
      mbr.copy(disk);
      writeFileSync(img, disk);
      runTool('sfdisk', ['--verify', img]);
      const dump = runTool('sfdisk', ['--dump', img]);
      assert.match(dump, /label-id: 0x1234abcd/);
      assert.match(dump, /start=\s*2048, size=\s*4096, type=c, bootable/);
      assert.match(dump, /start=\s*6144, size=\s*10240, type=83/);
    });

    test('GPT with protective MBR and backup table', { ...skipUnless('sgdisk', 'gdisk') }, async () => {
      const img = path.join(dir, 'gpt.img');
      const size = 64 * MIB;
      const sectors = size / 512;
      const gpt = writeGpt(
        [
          {
            type: GPT_TYPES.efiSystem,
            guid: stableGuid('p1'),
            name: 'EFI System',
            start: 2048,
            sectors: 20480,
          },
          { type: GPT_TYPES.linuxData, guid: stableGuid('p2'), name: 'root', start: 22528, sectors: 40960 },
        ],
        sectors,
        { diskGuid: stableGuid('disk') },
      );
      await writeSparseFile(img, {
        size,
        extents: [
          { offset: 0, data: gpt.head },
          { offset: gpt.tailOffset, data: gpt.tail },
        ],
      });
      const verify = runTool('sgdisk', ['-v', img]);
      assert.match(verify, /No problems found/);
      const info = runTool('sgdisk', ['-p', img]);
      assert.match(info, new RegExp(`Disk identifier \\(GUID\\): ${stableGuid('disk')}`));
      assert.match(info, /1\s+2048\s+22527\s+10\.0 MiB\s+EF00\s+EFI System/);
      assert.match(info, /2\s+22528\s+63487\s+20\.0 MiB\s+8300\s+root/);
      runTool('sfdisk', ['--verify', img]);
    });
  });
});
