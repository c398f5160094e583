import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fsEntry, tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import type { Assembled } from '../build/assemble.js';
import { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { bootloaderPackages, checkFormats, FORMATS, outputFiles, writeOutputs } from './outputs.js';

const MIB = 1 << 20;

function system(): Assembled {
  const root = new FsTree();
  root.set(fsEntry({ path: 'init', kind: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\n') }));
  return { kernel: Buffer.alloc(100_000, 'K'), cmdline: 'console=ttyS0 quiet', root };
}

/** Stand-ins for the boot loader package trees (the real ones are booted in test/e2e). */
function boot(): Map<string, FsTree> {
  const syslinux = new FsTree();
  for (const [p, n] of [
    ['usr/lib/ISOLINUX/isolinux.bin', 4096],
    ['usr/lib/ISOLINUX/isohdpfx.bin', 432],
    ['usr/lib/syslinux/modules/bios/ldlinux.c32', 1000],
  ] as const)
    syslinux.set(fsEntry({ path: p, kind: 'file', data: Buffer.alloc(n, 1) }));
  const sdboot = new FsTree();
  sdboot.set(
    fsEntry({
      path: 'usr/lib/systemd/boot/efi/systemd-bootx64.efi',
      kind: 'file',
      data: Buffer.alloc(5000, 2),
    }),
  );
  return new Map([
    ['syslinux', syslinux],
    ['systemd-boot', sdboot],
  ]);
}

describe('writeOutputs', () => {
  const dir = tempDir('outputs-test-');

  test('format names and the boot loader packages they need', () => {
    assert.throws(() => checkFormats(['iso-bios', 'floppy']), UserError);
    assert.deepEqual(
      bootloaderPackages(['kernel+initrd', 'raw-efi', 'iso-bios', 'iso-efi']).map((p) => path.basename(p)),
      ['syslinux', 'systemd-boot'],
    );
    assert.deepEqual(bootloaderPackages(['kernel+initrd']), []);
  });

  test('a missing kernel or boot loader is a UserError', async () => {
    const s = system();
    delete s.kernel;
    await assert.rejects(
      writeOutputs(s, ['iso-bios'], path.join(dir, 'nok'), { boot: boot() }),
      /needs a kernel/,
    );
    await assert.rejects(writeOutputs(system(), ['iso-efi'], path.join(dir, 'nob')), /boot loader package/);
    await assert.rejects(
      writeOutputs(system(), ['raw-efi'], path.join(dir, 'small'), { boot: boot(), size: 8 * MIB }),
      UserError,
    );
  });

  test('kernel+initrd and kernel+iso share NAME-kernel', async () => {
    const files = await writeOutputs(system(), ['kernel+initrd', 'kernel+iso'], path.join(dir, 'k'));
    assert.deepEqual(files.map((f) => path.basename(f)).sort(), [
      'k-cmdline',
      'k-initrd.img',
      'k-kernel',
      'k.iso',
    ]);
  });

  test('each format writes the files outputFiles names; a clash is refused before any work', async () => {
    const s = system();
    // kernel+squashfs's small initramfs runs the image's busybox
    s.root.set(fsEntry({ path: 'bin/busybox', kind: 'file', mode: 0o755, data: Buffer.from('x') }));
    for (const f of FORMATS) {
      const prefix = path.join(dir, 'each', f.replace(/\W/g, '_'), 'x');
      mkdirSync(path.dirname(prefix), { recursive: true });
      const files = await writeOutputs(s, [f], prefix, { boot: boot(), size: 64 * MIB });
      assert.deepEqual(files.sort(), outputFiles([f], prefix).sort(), f);
    }
    assert.deepEqual(
      outputFiles(['kernel+initrd', 'kernel+iso', 'kernel+initrd'], '/o/k').map((f) => path.basename(f)),
      ['k-kernel', 'k-initrd.img', 'k-cmdline', 'k.iso'],
    );
    for (const [a, b, file] of [
      ['vhd', 'dynamic-vhd', 'c.vhd'],
      ['kernel+iso', 'iso-bios', 'c.iso'],
      ['kernel+initrd', 'kernel+squashfs', 'c-initrd.img'],
    ] as const) {
      const prefix = path.join(dir, 'clash', 'c');
      mkdirSync(path.dirname(prefix), { recursive: true });
      await assert.rejects(
        writeOutputs(system(), [a, b], prefix, { boot: boot(), size: 64 * MIB }),
        (e: Error) =>
          e instanceof UserError &&
          e.message.includes(`formats ${a} and ${b} both write`) &&
          e.message.endsWith(`${file}: build them separately`),
      );
      assert.deepEqual(readdirSync(path.dirname(prefix)), [], 'nothing written, no scratch file either');
    }
  });

  test('every disk and ISO format, with the file names upstream uses', {
    ...skipUnless('sfdisk', 'fdisk'),
  }, async () => {
    const prefix = path.join(dir, 'sys');
    const files = await writeOutputs(
      system(),
      ['iso-bios', 'iso-efi', 'iso-efi-initrd', 'raw-bios', 'raw-efi', 'qcow2-efi', 'gcp'],
      prefix,
      {
        boot: boot(),
        size: 64 * MIB,
      },
    );
    assert.deepEqual(files.map((f) => path.basename(f)).sort(), [
      'sys-bios.img',
      'sys-efi-initrd.iso',
      'sys-efi.img',
      'sys-efi.iso',
      'sys-efi.qcow2',
      'sys.img.tar.gz',
      'sys.iso',
    ]);
    // The initrd these formats share, the ISO inside the BIOS disk and the FAT file system
    // inside the EFI ISO were made in scratch files, gone now.
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.startsWith('.')),
      [],
    );
    for (const n of ['sys-bios.img', 'sys-efi.img'])
      assert.equal(statSync(`${path.join(dir, n)}`).size, 64 * MIB);
    assert.match(runTool('sgdisk', ['-v', path.join(dir, 'sys-efi.img')]), /No problems found/);
    assert.match(
      runTool('qemu-img', [
        'compare',
        '-f',
        'raw',
        '-F',
        'qcow2',
        path.join(dir, 'sys-efi.img'),
        path.join(dir, 'sys-efi.qcow2'),
      ]),
      /identical/,
    );
    // gcp's disk.raw is the BIOS disk.
    const gcp = path.join(dir, 'gcp');
    mkdirSync(gcp);
    runTool('tar', ['-xzf', path.join(dir, 'sys.img.tar.gz'), '-C', gcp]);
    assert.ok(readFileSync(path.join(gcp, 'disk.raw')).equals(readFileSync(path.join(dir, 'sys-bios.img'))));
    for (const n of ['sys.iso', 'sys-efi.iso', 'sys-bios.img'])
      assert.match(runTool('sfdisk', ['--verify', path.join(dir, n)]), /No errors detected/);
    // the YAML's cmdline reaches both boot loaders
    const iso = readFileSync(path.join(dir, 'sys.iso')).toString('latin1');
    assert.ok(iso.includes('append initrd=/initrd.img console=ttyS0 quiet\n'));
    const efi = readFileSync(path.join(dir, 'sys-efi.img')).toString('latin1');
    assert.ok(efi.includes('options console=ttyS0 quiet\n'));
  });
});
