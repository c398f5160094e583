import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { tempDir } from '../../test/helpers.js';
import { hostHas, skipUnless } from '../../test/tools.js';
import { debianCloudKernel } from '../debian/testing.js';
import { writeCpio } from '../formats/cpio.js';
import { UserError } from '../util/errors.js';
import {
  bootProbe,
  DEFAULT_CPUS,
  DEFAULT_QEMU,
  probeAccel,
  probeBootSector,
  qemuArgs,
  runQemu,
} from './qemu.js';

const needQemu = skipUnless(DEFAULT_QEMU, 'qemu-system-x86');

/** A static busybox from the host (Debian's busybox-static), never a dynamic one. */
function findStaticBusybox(): string | undefined {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!existsSync(p)) continue;
    const elf = readFileSync(p);
    if (elf.subarray(0, 4).toString('latin1') !== '\x7fELF' || elf[4] !== 2) continue;
    // A dynamic executable has a PT_INTERP (type 3) program header naming its loader.
    const phoff = Number(elf.readBigUInt64LE(0x20));
    const [phentsize, phnum] = [elf.readUInt16LE(0x36), elf.readUInt16LE(0x38)];
    let dynamic = false;
    for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === 3) dynamic = true;
    if (!dynamic) return p;
  }
  return undefined;
}

describe('probe boot sector', () => {
  test('is a BIOS boot sector that writes the debug-exit port', () => {
    const b = probeBootSector();
    assert.equal(b.length, 512);
    assert.equal(b[510], 0x55);
    assert.equal(b[511], 0xaa);
    assert.deepEqual([...b.subarray(0, 4)], [0xb0, 0x01, 0xe6, 0xf4]); // mov al,1; out 0xf4,al
  });
});

describe('qemuArgs', () => {
  const base = { kernel: 'k', initrd: 'i', cmdline: 'console=ttyS0' };
  test('q35, memory, cpus, rng, no reboot, kernel and initrd', () => {
    const a = qemuArgs({ ...base, accel: 'tcg', mem: 512, cpus: 2 });
    const after = (flag: string) => a[a.indexOf(flag) + 1];
    assert.equal(after('-machine'), 'q35,accel=tcg');
    assert.equal(after('-m'), '512');
    assert.equal(after('-smp'), '2');
    assert.equal(after('-device'), 'virtio-rng-pci');
    assert.equal(after('-kernel'), 'k');
    assert.equal(after('-initrd'), 'i');
    assert.equal(after('-append'), 'console=ttyS0');
    assert.ok(a.includes('-no-reboot'));
    assert.ok(!a.includes('-cpu'), 'no -cpu host without KVM');
    assert.equal(after('-serial'), 'mon:stdio');
  });
  test('defaults: 1024 MB, DEFAULT_CPUS (2, or 1 on a one-core host); captured console has no monitor; kvm uses -cpu host', () => {
    const a = qemuArgs({ ...base, accel: 'kvm', console: { onLine() {} }, extraArgs: ['-foo'] });
    const after = (flag: string) => a[a.indexOf(flag) + 1];
    assert.equal(after('-m'), '1024');
    assert.equal(after('-smp'), String(Math.min(2, os.availableParallelism())));
    assert.equal(DEFAULT_CPUS, Math.min(2, os.availableParallelism()));
    assert.equal(after('-serial'), 'stdio');
    assert.equal(after('-monitor'), 'none');
    assert.equal(after('-cpu'), 'host');
    assert.equal(a.at(-1), '-foo');
  });
});

describe('probeAccel', () => {
  let saved: string | undefined;
  before(() => {
    saved = process.env.LINUXKIT_QEMU_ACCEL;
  });
  after(() => {
    if (saved === undefined) delete process.env.LINUXKIT_QEMU_ACCEL;
    else process.env.LINUXKIT_QEMU_ACCEL = saved;
  });

  test('LINUXKIT_QEMU_ACCEL overrides, and a bad value is a UserError', async () => {
    process.env.LINUXKIT_QEMU_ACCEL = 'tcg';
    assert.equal(await probeAccel('no-such-qemu-binary'), 'tcg');
    process.env.LINUXKIT_QEMU_ACCEL = 'kvm';
    assert.equal(await probeAccel('no-such-qemu-binary'), 'kvm');
    process.env.LINUXKIT_QEMU_ACCEL = 'hvf';
    await assert.rejects(
      probeAccel(),
      (e: unknown) => e instanceof UserError && /kvm or tcg/.test(e.message),
    );
    delete process.env.LINUXKIT_QEMU_ACCEL;
  });

  test('a missing qemu is a UserError naming the Debian package', async () => {
    delete process.env.LINUXKIT_QEMU_ACCEL;
    await assert.rejects(
      probeAccel('no-such-qemu-binary'),
      (e: unknown) => e instanceof UserError && /apt-get install qemu-system-x86/.test(e.message),
    );
  });

  test('answers kvm or tcg in bounded time, and remembers it', needQemu, async () => {
    delete process.env.LINUXKIT_QEMU_ACCEL;
    const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'lk-accel-'));
    try {
      const t0 = Date.now();
      const accel = await probeAccel(DEFAULT_QEMU, { cacheDir, timeoutMs: 4000 });
      assert.ok(accel === 'kvm' || accel === 'tcg', accel);
      assert.ok(Date.now() - t0 < 15_000, `probe took ${Date.now() - t0} ms`);
      if (existsSync('/dev/kvm')) {
        const saved = JSON.parse(readFileSync(path.join(cacheDir, 'accel-probe.json'), 'utf8'));
        assert.equal(saved.accel, accel);
      }
      // The same process asks again: the memo answers at once.
      const t1 = Date.now();
      assert.equal(await probeAccel(DEFAULT_QEMU, { cacheDir }), accel);
      assert.ok(Date.now() - t1 < 1000);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });

  test(
    'the probe guest really runs under TCG, and a hung guest is killed at the deadline',
    needQemu,
    async () => {
      assert.equal(await bootProbe(DEFAULT_QEMU, 'tcg', 20_000), true);
      const t0 = Date.now();
      // 1 ms is too short for qemu even to start: counts as a hang, and must come back promptly.
      assert.equal(await bootProbe(DEFAULT_QEMU, 'tcg', 1), false);
      assert.ok(Date.now() - t0 < 5000);
    },
  );
});

describe('runQemu', () => {
  const busybox = findStaticBusybox();
  const skip = needQemu.skip || (!busybox && 'no static busybox (apt-get install busybox-static)');
  const dir = tempDir('lk-qemu-');
  let initrd = '';
  let kernel = '';
  const MARKER = 'linuxkit-qemu-test: userspace reached';

  before(async () => {
    if (skip) return;
    kernel = process.env.LINUXKIT_TEST_KERNEL ?? (await debianCloudKernel()).vmlinuz;
    const init = `#!/bin/busybox sh\necho "${MARKER}"\nexec /bin/busybox poweroff -f\n`;
    const at = { uid: 0, gid: 0, mtime: 0 };
    const cpio = writeCpio([
      { path: 'bin', kind: 'dir', mode: 0o755, ...at },
      { path: 'bin/busybox', kind: 'file', mode: 0o755, ...at, data: readFileSync(busybox!) },
      { path: 'dev', kind: 'dir', mode: 0o755, ...at },
      { path: 'dev/console', kind: 'char', mode: 0o600, ...at, devmajor: 5, devminor: 1 },
      { path: 'init', kind: 'file', mode: 0o755, ...at, data: Buffer.from(init) },
    ]);
    initrd = path.join(dir, 'initrd.img');
    await writeFile(initrd, gzipSync(cpio, { level: 1 }));
  });

  test('a missing qemu or kernel is a UserError', async () => {
    await assert.rejects(
      runQemu({ kernel: 'k', initrd: 'i', cmdline: '', qemu: 'no-such-qemu-binary', accel: 'tcg' }),
      (e: unknown) => e instanceof UserError && /apt-get install qemu-system-x86/.test(e.message),
    );
    if (hostHas(DEFAULT_QEMU)) {
      await assert.rejects(
        runQemu({
          kernel: path.join(dir, 'nope'),
          initrd: path.join(dir, 'nope'),
          cmdline: '',
          accel: 'tcg',
        }),
        (e: unknown) => e instanceof UserError && /kernel .* cannot be read/.test(e.message),
      );
    }
  });

  test('boots a busybox initrd to userspace and exits 0 when it powers off', {
    skip,
    timeout: 120_000,
  }, async () => {
    const lines: string[] = [];
    const r = await runQemu({
      kernel,
      initrd,
      cmdline: 'console=ttyS0 quiet panic=-1',
      mem: 256,
      console: { onLine: (l) => lines.push(l) },
      timeoutMs: 100_000,
    });
    assert.ok(
      lines.some((l) => l.includes(MARKER)),
      `marker not seen; console:\n${lines.slice(-30).join('\n')}`,
    );
    const accel = await probeAccel();
    assert.deepEqual(r, { code: 0, poweredOff: true, ...(accel === 'tcg' ? { pvh: true } : {}) });
  });

  test('a guest that does not finish is killed at the timeout', { skip, timeout: 60_000 }, async () => {
    const r = await runQemu({
      kernel,
      initrd,
      cmdline: 'console=ttyS0 quiet',
      mem: 256,
      console: { onLine() {} },
      timeoutMs: 300,
    });
    assert.equal(r.poweredOff, false);
    assert.equal(r.timedOut, true);
    // No qemu of ours is left behind: none has our initrd on its command line.
    for (const pid of readdirSync('/proc').filter((f) => /^\d+$/.test(f))) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      } catch {
        continue; // gone meanwhile
      }
      assert.ok(!cmd.includes(initrd), `qemu still running as pid ${pid}`);
    }
  });
});
