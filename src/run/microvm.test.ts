import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { tempDir } from '../../test/helpers.js';
import { writeCpio } from '../formats/cpio.js';
import type { FsEntry } from '../fs/tree.js';
import { cpioLoadsVirtioMmio, drivesVirtioMmio, hostTscKhz } from './microvm.js';
import { qemuArgs } from './qemu.js';

const cpu = (mhz: string, flags = 'fpu tsc constant_tsc nonstop_tsc tsc_known_freq') =>
  `processor\t: 0\ncpu MHz\t\t: ${mhz}\nflags\t\t: ${flags}\n\n`;

describe('hostTscKhz', () => {
  test('one frequency on every CPU, constant and non-stop TSC, no cpufreq: that frequency in kHz', () => {
    assert.equal(hostTscKhz(cpu('1996.249') + cpu('1996.249'), false), 1996249);
  });
  test('no answer under frequency scaling, for CPUs that differ, or without a constant non-stop TSC', () => {
    assert.equal(hostTscKhz(cpu('1996.249'), true), undefined);
    assert.equal(hostTscKhz(cpu('1996.249') + cpu('2400.000'), false), undefined);
    assert.equal(hostTscKhz(cpu('1996.249', 'fpu tsc constant_tsc'), false), undefined);
    assert.equal(hostTscKhz(cpu('1996.249', 'fpu tsc nonstop_tsc'), false), undefined);
    assert.equal(hostTscKhz('processor\t: 0\nflags\t\t: constant_tsc nonstop_tsc\n', false), undefined);
  });
});

const at = { uid: 0, gid: 0, mtime: 0 };
const dir = (p: string): FsEntry => ({ path: p, kind: 'dir', mode: 0o755, ...at });
const file = (p: string, data: string): FsEntry => ({
  path: p,
  kind: 'file',
  mode: 0o644,
  ...at,
  data: Buffer.from(data),
});
const MODULE = 'lib/modules/6.1.0-50-cloud-amd64/kernel/drivers/virtio/virtio_mmio.ko';

describe('cpioLoadsVirtioMmio', () => {
  test('needs both the module and a modules-load.d file naming it', () => {
    const conf = file('etc/modules-load.d/kernel.conf', 'virtio_pci\nvirtio_mmio\n');
    assert.equal(cpioLoadsVirtioMmio(writeCpio([dir('etc'), conf, file(MODULE, 'ELF')])), true);
    assert.equal(cpioLoadsVirtioMmio(writeCpio([conf])), false, 'named, not shipped');
    assert.equal(cpioLoadsVirtioMmio(writeCpio([file(MODULE, 'ELF')])), false, 'shipped, not loaded');
    const other = file('etc/modules-load.d/kernel.conf', 'virtio_pci\n# virtio_mmio\n');
    assert.equal(cpioLoadsVirtioMmio(writeCpio([other, file(MODULE, 'ELF')])), false, 'a comment');
  });
});

describe('drivesVirtioMmio', () => {
  test('built into the kernel, or loaded from the initrd; the answer is cached per initrd file', async () => {
    const d = tempDir('lk-microvm-');
    const cache = path.join(d, 'cache');
    const plain = path.join(d, 'vmlinux');
    const builtin = path.join(d, 'vmlinux-builtin');
    await writeFile(plain, 'ELF kernel');
    await writeFile(builtin, 'ELF kernel ... LNRO0005 ...');
    const bare = path.join(d, 'bare.img');
    const loads = path.join(d, 'loads.img');
    const junk = path.join(d, 'junk.img');
    await writeFile(bare, gzipSync(writeCpio([file('init', '#!/bin/sh\n')])));
    await writeFile(
      loads,
      gzipSync(writeCpio([file('etc/modules-load.d/k.conf', 'virtio_mmio\n'), file(MODULE, 'ELF')])),
    );
    await writeFile(junk, 'not an initrd');
    assert.equal(await drivesVirtioMmio(plain, 'k1', bare, cache), false);
    assert.equal(await drivesVirtioMmio(builtin, 'k2', bare, cache), true);
    assert.equal(await drivesVirtioMmio(plain, 'k1', loads, cache), true);
    assert.equal(await drivesVirtioMmio(plain, 'k1', junk, cache), false);
    const answers = await readdir(path.join(cache, 'microvm'));
    assert.deepEqual(answers.map((n) => n.split('.').at(-1)).sort(), ['no', 'no', 'yes', 'yes']);
    // Asked again, the answer comes from the cache (an answer changed by hand shows it)...
    const { dev, ino } = statSync(bare);
    const bareNo = answers.find((n) => n.startsWith(`k1-${dev.toString(16)}-${ino.toString(16)}-`))!;
    await rename(
      path.join(cache, 'microvm', bareNo),
      path.join(cache, 'microvm', bareNo.replace(/\.no$/, '.yes')),
    );
    assert.equal(await drivesVirtioMmio(plain, 'k1', bare, cache), true);
    // ...until the initrd is written again.
    await writeFile(bare, gzipSync(writeCpio([file('init', '#!/bin/sh\n')])));
    assert.equal(await drivesVirtioMmio(plain, 'k1', bare, cache), false);
  });
});

describe('qemuArgs on microvm', () => {
  test('the microvm machine, virtio-mmio devices and the TSC frequency on the command line', () => {
    const a = qemuArgs({
      kernel: 'k',
      initrd: 'i',
      cmdline: 'console=ttyS0 quiet\n',
      accel: 'tcg',
      microvmTscKhz: 1996249,
      networking: { mode: 'user' },
    });
    const after = (flag: string) => a[a.indexOf(flag) + 1];
    assert.equal(after('-machine'), 'microvm,accel=tcg,acpi=on,rtc=on,auto-kernel-cmdline=off');
    assert.equal(after('-append'), 'console=ttyS0 quiet tsc_early_khz=1996249 tsc=reliable');
    const devices = a.flatMap((x, n) => (x === '-device' ? [a[n + 1]] : []));
    assert.deepEqual(devices, ['virtio-rng-device', 'virtio-net-device,netdev=net0,status=off']);
  });
});
