/**
 * format + mount: a blank qcow2 disk is formatted as ext4 (label DATA) and mounted by label
 * at /var/data; a file written there in one boot is read back in the next (where format
 * leaves the existing file system alone).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { bootBuilt, buildYaml, pkgRef as pkg, systemYaml, tempDir } from '../helpers.js';
import { runTool, skipUnless } from '../tools.js';

const dir = tempDir('lk-disk-');

test('format + mount: a blank disk is formatted, mounted by label, and keeps data across boots', {
  timeout: 1_200_000,
  ...skipUnless('qemu-img', 'qemu-utils'),
}, async () => {
  const disk = path.join(dir, 'data.qcow2');
  runTool('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  await buildYaml(
    dir,
    'disk',
    `${systemYaml()}onboot:
  - name: format
    image: ${pkg('format')}
    command: ["/usr/bin/format", "-label", "DATA"]
  - name: mount
    image: ${pkg('mount')}
    command: ["/usr/bin/mountie", "-label", "DATA", "/var/data"]
  - name: use
    image: ${pkg('test')}
    binds: ["/var/data:/data"]
    command: ["/bin/sh", "-c", "echo \\"stamp=$(busybox cat /data/stamp 2>/dev/null || echo none)\\"; echo \\"boot-$(busybox cat /data/n 2>/dev/null || echo 0)\\" >/data/stamp; echo 1 >/data/n"]
  - name: poweroff
    image: ${pkg('poweroff')}
`,
  );
  const boot = async () => {
    const vm = bootBuilt(dir, 'disk', { disks: [{ path: disk, format: 'qcow2' }], timeoutMs: 300_000 });
    const r = await vm.vm;
    const log = vm.log();
    assert.ok(r.poweredOff, `no clean power-off; console:\n${log}`);
    return log;
  };
  const first = await boot();
  assert.match(first, /format: making an ext4 file system on \/dev\/vda labelled DATA/, first);
  assert.match(first, /^stamp=none$/m, first);
  const second = await boot();
  assert.match(second, /already has a file system, left alone/, second);
  assert.match(second, /^stamp=boot-0$/m, second);
});
