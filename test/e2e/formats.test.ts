/**
 * The bootable output formats end to end: examples/minimal.yml built as iso-bios, iso-efi,
 * iso-efi-initrd, raw-bios, raw-efi and kernel+iso; each file checked by an independent reader
 * (xorriso, sfdisk, sgdisk, fsck.fat, mtools), each bootable one booted to `suite PASSED`
 * (BIOS formats under SeaBIOS, EFI formats under OVMF; ISOs as CD-ROM and as disk), and a
 * second build with a fresh cache from another working directory giving the same bytes.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { build } from '../../src/build/build.js';
import {
  assertBootsToSuitePassed,
  assertRebuildIdentical,
  exampleCmdline,
  OVMF_CODE,
  REPO,
  TEST_CACHE,
  tempDir,
} from '../helpers.js';
import { hostHas, runTool, skipUnless } from '../tools.js';

const YML = path.join(REPO, 'examples', 'minimal.yml');
const FORMATS = ['iso-bios', 'iso-efi', 'iso-efi-initrd', 'raw-bios', 'raw-efi'];
const MIB = 1 << 20;

const out = tempDir('lk-formats-');
const a = path.join(out, 'a');
const isoDir = path.join(out, 'kernel-iso');
const f = (name: string) => path.join(a, name);

const noQemu =
  !hostHas('qemu-system-x86_64') && 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';
const noOvmf = !existsSync(OVMF_CODE) && 'OVMF not installed (apt-get install ovmf)';

describe('bootable formats of examples/minimal.yml', { timeout: 3_600_000 }, () => {
  test('build', { timeout: 900_000 }, async () => {
    const { outputs } = await build({ file: YML, formats: FORMATS, dir: a, cacheDir: TEST_CACHE });
    assert.deepEqual(outputs.map((o) => path.basename(o)).sort(), [
      'minimal-bios.img',
      'minimal-efi-initrd.iso',
      'minimal-efi.img',
      'minimal-efi.iso',
      'minimal-sbom.spdx.json',
      'minimal.iso',
    ]);
    await build({ file: YML, formats: ['kernel+iso'], dir: isoDir, cacheDir: TEST_CACHE });
  });

  describe('independent readers', { ...skipUnless('xorriso', 'xorriso') }, () => {
    test('iso-bios: El Torito BIOS entry with boot info table, isohybrid MBR', () => {
      const iso = f('minimal.iso');
      const report = runTool('xorriso', ['-indev', iso, '-report_el_torito', 'plain']);
      assert.match(report, /El Torito boot img : +1 +BIOS +y +none +0x0000 +0x00 +4 +\d+/);
      assert.match(report, /El Torito img path : +1 +\/isolinux\/isolinux.bin/);
      assert.match(report, /boot-info-table/);
      assert.match(report, /isohybrid-suitable/);
      const files = runTool('xorriso', ['-indev', iso, '-find', '/', '-type', 'f']);
      for (const p of ['/kernel', '/initrd.img', '/isolinux/isolinux.cfg', '/isolinux/ldlinux.c32'])
        assert.ok(files.includes(`'${p}'`), files);
      const x = path.join(out, 'x-bios');
      runTool('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/isolinux/isolinux.cfg', x]);
      assert.ok(readFileSync(x, 'utf8').includes(`append initrd=/initrd.img ${exampleCmdline('minimal')}\n`));
      assert.ok(readFileSync(path.join(a, 'minimal.iso')).length % MIB === 0, 'hybrid image padded to 1 MiB');
    });

    test('hybrid MBRs and raw-bios pass sfdisk --verify', { ...skipUnless('sfdisk', 'fdisk') }, () => {
      for (const n of ['minimal.iso', 'minimal-efi.iso', 'minimal-bios.img']) {
        const v = runTool('sfdisk', ['--verify', f(n)]);
        assert.match(v, /No errors detected/);
      }
      assert.match(
        runTool('sfdisk', ['--dump', f('minimal.iso')]),
        /start=\s*0, size=\s*\d+, type=17, bootable/,
      );
      assert.match(runTool('sfdisk', ['--dump', f('minimal-efi.iso')]), /type=ef/);
    });

    for (const n of ['minimal-efi.iso', 'minimal-efi-initrd.iso']) {
      test(`${n}: UEFI El Torito entry, its FAT image passes fsck.fat, systemd-boot entry has the cmdline`, {
        ...skipUnless('fsck.fat', 'dosfstools'),
      }, () => {
        const iso = f(n);
        const report = runTool('xorriso', ['-indev', iso, '-report_el_torito', 'plain']);
        assert.match(report, /El Torito boot img : +1 +UEFI +y +none/);
        const esp = path.join(out, `${n}.esp`);
        runTool('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/boot/efi.img', esp]);
        runTool('fsck.fat', ['-n', esp]);
        if (hostHas('mtype')) {
          const entry = runTool('mtype', ['-i', esp, '::/loader/entries/linuxkit.conf']);
          assert.match(entry, /^linux \/kernel$/m);
          assert.match(entry, /^initrd \/initrd.img$/m);
          assert.ok(entry.split('\n').includes(`options ${exampleCmdline('minimal')}`), entry);
          assert.match(runTool('mdir', ['-i', esp, '::/EFI/BOOT']), /BOOTX64 +EFI/);
        }
      });
    }

    test('raw-efi: GPT passes sgdisk -v, the ESP passes fsck.fat', {
      ...skipUnless('sgdisk', 'gdisk'),
    }, () => {
      const img = f('minimal-efi.img');
      assert.match(runTool('sgdisk', ['-v', img]), /No problems found/);
      const p = runTool('sgdisk', ['-p', img]);
      const m = /^\s+1\s+(\d+)\s+(\d+)\s+.*EF00/m.exec(p);
      assert.ok(m, p);
      if (hostHas('fsck.fat')) {
        const esp = path.join(out, 'raw-efi.esp');
        const count = (Number(m[2]) - Number(m[1]) + 1) / 2048;
        runTool('dd', [
          `if=${img}`,
          `of=${esp}`,
          'bs=1M',
          `skip=${Number(m[1]) / 2048}`,
          `count=${count}`,
          'conv=sparse',
        ]);
        const fsck = runTool('fsck.fat', ['-n', '-v', esp]);
        assert.match(fsck, /32 bit entries/);
      }
    });

    test('raw disks are sparse and -size big', async () => {
      const { statSync } = await import('node:fs');
      for (const n of ['minimal-bios.img', 'minimal-efi.img']) {
        const s = statSync(f(n));
        assert.equal(s.size, 1024 * MIB);
        assert.ok(s.blocks * 512 < 100 * MIB, `${n} uses ${s.blocks * 512} bytes`);
      }
    });

    test('kernel+iso: the root file system as Rock Ridge ISO beside kernel and cmdline', () => {
      assert.deepEqual(readdirSync(isoDir).sort(), [
        'minimal-cmdline',
        'minimal-kernel',
        'minimal-sbom.spdx.json',
        'minimal.iso',
      ]);
      const files = runTool('xorriso', [
        '-indev',
        path.join(isoDir, 'minimal.iso'),
        '-find',
        '/containers',
        '-name',
        'config.json',
      ]);
      assert.match(files, /'\/containers\/onboot\/000-check\/config.json'/);
    });
  });

  describe('boots', { skip: noQemu, concurrency: 1 }, () => {
    const cases: { name: string; file: string; as: 'cd' | 'disk'; uefi: boolean }[] = [
      { name: 'iso-bios as CD under SeaBIOS', file: 'minimal.iso', as: 'cd', uefi: false },
      { name: 'iso-bios as disk (hybrid) under SeaBIOS', file: 'minimal.iso', as: 'disk', uefi: false },
      { name: 'raw-bios as disk under SeaBIOS', file: 'minimal-bios.img', as: 'disk', uefi: false },
      { name: 'iso-efi as CD under OVMF', file: 'minimal-efi.iso', as: 'cd', uefi: true },
      { name: 'iso-efi as disk (hybrid) under OVMF', file: 'minimal-efi.iso', as: 'disk', uefi: true },
      { name: 'iso-efi-initrd as CD under OVMF', file: 'minimal-efi-initrd.iso', as: 'cd', uefi: true },
      { name: 'raw-efi as disk under OVMF', file: 'minimal-efi.img', as: 'disk', uefi: true },
    ];
    for (const c of cases) {
      test(c.name, { skip: c.uefi && noOvmf, timeout: 600_000 }, async () => {
        await assertBootsToSuitePassed(
          path.join(out, 'vm', c.name.replace(/\W+/g, '-')),
          c.as === 'cd'
            ? { iso: f(c.file) }
            : { bootDisk: { path: f(c.file), format: 'raw', readonly: true } },
          c.uefi,
        );
      });
    }
  });

  test('a second build (fresh image cache, other working directory) gives the same bytes', {
    timeout: 1_800_000,
  }, async () => {
    await assertRebuildIdentical(out, a, YML, FORMATS);
  });
});
