import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { UserError } from '../util/errors.js';
import { parseNetworking, parsePublish, qemuArgs } from './qemu.js';
import { bootKindOf, parseDisk, prepareVm, sniffFormat } from './vm.js';

const isUserError = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);

describe('flag parsing', () => {
  test('-disk [file=]PATH[,size=N(G|M)][,format=F]', () => {
    assert.deepEqual(parseDisk('file=/x/d.img,size=2G,format=raw'), {
      path: '/x/d.img',
      size: 2048,
      format: 'raw',
    });
    assert.deepEqual(parseDisk('d.qcow2'), { path: 'd.qcow2' });
    assert.deepEqual(parseDisk('size=512M'), { size: 512 });
    assert.deepEqual(parseDisk('size=100'), { size: 100 });
    for (const bad of ['size=0', 'size=1T', 'd.img,colour=red', 'format=a/b', ''])
      assert.throws(() => parseDisk(bad), isUserError(/-disk/), bad);
  });
  test('-publish HOST:GUEST[/tcp|/udp]', () => {
    assert.deepEqual(parsePublish('8080:80'), { host: 8080, guest: 80, protocol: 'tcp' });
    assert.deepEqual(parsePublish('5353:53/UDP'), { host: 5353, guest: 53, protocol: 'udp' });
    for (const bad of ['80', '0:80', '70000:1', '1:2/sctp', 'a:b'])
      assert.throws(() => parsePublish(bad), isUserError(/-publish/), bad);
  });
  test('-networking user|tap,IF|bridge,BR|none', () => {
    assert.deepEqual(parseNetworking('user'), { mode: 'user' });
    assert.deepEqual(parseNetworking('default'), { mode: 'user' });
    assert.deepEqual(parseNetworking('tap,tap0'), { mode: 'tap', ifname: 'tap0' });
    assert.deepEqual(parseNetworking('bridge,br0'), { mode: 'bridge', bridge: 'br0' });
    assert.deepEqual(parseNetworking('none'), { mode: 'none' });
    for (const bad of ['tap', 'bridge,', 'wifi', 'user,x', 'tap,a,b'])
      assert.throws(() => parseNetworking(bad), isUserError(/-networking/), bad);
  });
});

describe('qemuArgs for the run qemu flags', () => {
  const base = { kernel: 'k', initrd: 'i', cmdline: 'c', accel: 'tcg' as const };
  const joined = (a: string[]) => a.join(' ');
  test('disks are virtio (/dev/vda...), the data ISO last and read-only', () => {
    const a = joined(
      qemuArgs({
        ...base,
        disks: [{ path: '/d/a,b.qcow2', format: 'qcow2' }, { path: '/d/r.img' }],
        dataIso: '/s/data.iso',
      }),
    );
    assert.match(
      a,
      /-drive file=\/d\/a,,b\.qcow2,format=qcow2,if=virtio -drive file=\/d\/r\.img,format=raw,if=virtio -drive file=\/s\/data\.iso,format=raw,if=virtio,readonly=on/,
    );
  });
  test('networking: none has no NIC; user forwards every published port; tap and bridge', () => {
    assert.doesNotMatch(joined(qemuArgs(base)), /netdev|virtio-net/);
    const user = joined(
      qemuArgs({
        ...base,
        networking: { mode: 'user' },
        publish: [parsePublish('2222:22'), parsePublish('5353:53/udp')],
      }),
    );
    assert.match(
      user,
      /-netdev user,id=net0,hostfwd=tcp::2222-:22,hostfwd=udp::5353-:53 -device virtio-net-pci,netdev=net0,status=off/,
    );
    assert.match(
      joined(qemuArgs({ ...base, networking: { mode: 'tap', ifname: 'tap0' } })),
      /-netdev tap,id=net0,ifname=tap0,script=no,downscript=no/,
    );
    assert.match(
      joined(qemuArgs({ ...base, networking: { mode: 'bridge', bridge: 'br0' } })),
      /-netdev bridge,id=net0,br=br0/,
    );
    assert.throws(
      () => qemuArgs({ ...base, publish: [parsePublish('1:2')] }),
      isUserError(/user networking/),
    );
  });
  test('UEFI: code read-only, vars writable; ISO, disk and net boots; detached; devices', () => {
    const u = joined(qemuArgs({ ...base, uefi: { code: '/f/CODE.fd', vars: '/s/VARS.fd' } }));
    assert.match(
      u,
      /if=pflash,format=raw,unit=0,readonly=on,file=\/f\/CODE\.fd -drive if=pflash,format=raw,unit=1,file=\/s\/VARS\.fd/,
    );
    const iso = joined(qemuArgs({ accel: 'tcg', iso: '/x.iso' }));
    assert.match(iso, /-drive file=\/x\.iso,format=raw,media=cdrom -boot d/);
    assert.doesNotMatch(iso, /-kernel/);
    assert.match(
      joined(qemuArgs({ accel: 'tcg', bootDisk: { path: '/b.qcow2', format: 'qcow2' } })),
      /file=\/b\.qcow2,format=qcow2,if=virtio/,
    );
    const nb = joined(
      qemuArgs({ accel: 'tcg', netboot: 'http://10.0.2.2:1/a.ipxe', networking: { mode: 'user' } }),
    );
    assert.match(nb, /-boot n .*bootfile=http:\/\/10\.0\.2\.2:1\/a\.ipxe/);
    const d = qemuArgs({
      ...base,
      detached: true,
      pidFile: '/s/qemu.pid',
      consoleLog: '/s/console.log',
      devices: ['e1000'],
    });
    assert.match(
      joined(d),
      /-serial file:\/s\/console\.log -monitor none -daemonize .*-pidfile \/s\/qemu\.pid.*-device e1000/,
    );
    assert.throws(() => qemuArgs({ ...base, detached: true }), isUserError(/pid file/));
    assert.throws(() => qemuArgs({ ...base, iso: '/x.iso' }), isUserError(/exactly one/));
  });
  test('a console log tees the serial console through one stdio chardev', () => {
    const a = qemuArgs({ ...base, consoleLog: '/s/console.log', console: { onLine() {} } });
    assert.match(
      joined(a),
      /-chardev stdio,id=con0,mux=on,signal=off,logfile=\/s\/console\.log -serial chardev:con0 -monitor none/,
    );
  });
});

describe('boot kind and state', () => {
  const dir = tempDir('lk-vm-');
  test('PATH names a kernel+initrd prefix, an ISO or a disk image', () => {
    for (const f of [
      'a-kernel',
      'a-initrd.img',
      'a-cmdline',
      'b.iso',
      'c.qcow2',
      'q-kernel',
      'q-squashfs.img',
    ])
      writeFileSync(path.join(dir, f), 'x');
    const p = (f: string) => path.join(dir, f);
    assert.deepEqual(bootKindOf(p('a')), { kind: 'kernel', prefix: p('a') });
    assert.deepEqual(bootKindOf(p('a-kernel')), { kind: 'kernel', prefix: p('a') });
    assert.deepEqual(bootKindOf(p('b.iso')), { kind: 'iso', prefix: p('b') });
    assert.deepEqual(bootKindOf(p('c.qcow2')), { kind: 'disk', prefix: p('c.qcow2') });
    assert.deepEqual(bootKindOf(p('q')), { kind: 'squashfs', prefix: p('q') });
    assert.throws(() => bootKindOf(p('nothing')), isUserError(/not found/));
  });

  test(
    'disks are created (qcow2 by default, raw when asked), UEFI vars copied, data ISO written',
    skipUnless('qemu-img', 'qemu-utils'),
    async () => {
      for (const f of ['vm-kernel', 'vm-initrd.img']) writeFileSync(path.join(dir, f), 'x');
      writeFileSync(path.join(dir, 'vm-cmdline'), 'console=ttyS0\n');
      // A firmware pair of our own, so the test does not need the ovmf package.
      writeFileSync(path.join(dir, 'FW_CODE.fd'), 'code');
      writeFileSync(path.join(dir, 'FW_VARS.fd'), 'vars');
      const state = path.join(dir, 'st');
      const q = await prepareVm({
        path: path.join(dir, 'vm'),
        stateDir: state,
        disks: [parseDisk('size=64M'), parseDisk(`file=${path.join(dir, 'r.img')},size=32M,format=raw`)],
        uefi: true,
        fw: path.join(dir, 'FW_CODE.fd'),
        data: new TextEncoder().encode('hello'),
      });
      assert.equal(q.kernel, path.join(dir, 'vm-kernel'));
      assert.equal(q.cmdline, 'console=ttyS0');
      assert.equal(q.pidFile, path.join(state, 'qemu.pid'));
      assert.deepEqual(q.disks, [
        { path: path.join(state, 'disk.img'), format: 'qcow2' },
        { path: path.join(dir, 'r.img'), format: 'raw' },
      ]);
      const info = JSON.parse(runTool('qemu-img', ['info', '--output=json', path.join(state, 'disk.img')]));
      assert.equal(info.format, 'qcow2');
      assert.equal(info['virtual-size'], 64 << 20);
      assert.equal(
        JSON.parse(runTool('qemu-img', ['info', '--output=json', path.join(dir, 'r.img')]))['virtual-size'],
        32 << 20,
      );
      assert.equal(await sniffFormat(path.join(state, 'disk.img')), 'qcow2');
      assert.equal(await sniffFormat(path.join(dir, 'r.img')), 'raw');
      assert.deepEqual(q.uefi, {
        code: path.join(dir, 'FW_CODE.fd'),
        vars: path.join(state, 'OVMF_VARS.fd'),
      });
      assert.equal(readFileSync(path.join(state, 'OVMF_VARS.fd'), 'utf8'), 'vars');
      assert.equal(q.dataIso, path.join(state, 'data.iso'));
      assert.ok(existsSync(q.dataIso));
      // A second run keeps the VM's disks and vars as they are.
      writeFileSync(path.join(state, 'OVMF_VARS.fd'), 'changed by the guest');
      const again = await prepareVm({
        path: path.join(dir, 'vm'),
        stateDir: state,
        disks: [parseDisk('size=64M')],
        uefi: true,
        fw: path.join(dir, 'FW_CODE.fd'),
      });
      assert.equal(readFileSync(path.join(state, 'OVMF_VARS.fd'), 'utf8'), 'changed by the guest');
      assert.equal(again.disks?.[0]?.format, 'qcow2');
    },
  );

  test('missing firmware names the ovmf package; a missing disk without a size is an error', async () => {
    copyFileSync(path.join(dir, 'vm-kernel'), path.join(dir, 'vm2-kernel'));
    copyFileSync(path.join(dir, 'vm-initrd.img'), path.join(dir, 'vm2-initrd.img'));
    await assert.rejects(
      prepareVm({ path: path.join(dir, 'vm2'), uefi: true, fw: path.join(dir, 'none.fd') }),
      isUserError(/apt-get install ovmf/),
    );
    await assert.rejects(
      prepareVm({ path: path.join(dir, 'vm2'), disks: [parseDisk(path.join(dir, 'nope.img'))] }),
      isUserError(/give a size/),
    );
  });
});
