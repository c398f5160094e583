/**
 * The disk-image and tar formats end to end (issue 7b): examples/minimal.yml built as qcow2-bios,
 * qcow2-efi, vhd, dynamic-vhd, vmdk, gcp, aws, azure, tar-kernel-initrd, tar, docker and
 * kernel+squashfs. qemu-img checks and compares every disk against the raw image it wraps,
 * GNU tar reads the tars, unsquashfs the squashfs; each bootable image boots to
 * `suite PASSED`; a second build with a fresh cache from another directory gives the same bytes.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { build } from '../../src/build/build.js';
import type { Drive } from '../../src/run/qemu.js';
import {
  assertBootsToSuitePassed,
  assertRebuildIdentical,
  exampleCmdline,
  OVMF_CODE,
  REPO,
  TEST_CACHE,
  tempDir,
} from '../helpers.js';
import { hostHas, runTool } from '../tools.js';

const YML = path.join(REPO, 'examples', 'minimal.yml');
// vhd and dynamic-vhd both write NAME.vhd (as upstream): vhd is built in its own directory.
const FORMATS = [
  'raw-bios',
  'raw-efi',
  'qcow2-bios',
  'qcow2-efi',
  'dynamic-vhd',
  'vmdk',
  'gcp',
  'aws',
  'azure',
  'tar-kernel-initrd',
  'tar',
  'docker',
];

const out = tempDir('lk-disk-formats-');
const a = path.join(out, 'a');
const vhdDir = path.join(out, 'vhd');
const f = (name: string) => path.join(a, name);

const noQemuImg = !hostHas('qemu-img') && 'qemu-img not installed (apt-get install qemu-utils)';
const noQemu =
  !hostHas('qemu-system-x86_64') && 'qemu-system-x86_64 not installed (apt-get install qemu-system-x86)';
const noOvmf = !existsSync(OVMF_CODE) && 'OVMF not installed (apt-get install ovmf)';

/**
 * kernel+squashfs needs squashfs.ko among the kernel image's modules (its initramfs loads it).
 * pkg/kernel ships it; should it stop, this uses a copy of pkg/kernel that adds it.
 */
function squashfsYaml(): string {
  const kernelYml = readFileSync(path.join(REPO, 'pkg', 'kernel', 'build.yml'), 'utf8');
  if (/\bsquashfs\b/.test(kernelYml)) return YML;
  const dir = path.join(out, 'sq');
  cpSync(path.join(REPO, 'pkg', 'kernel'), path.join(dir, 'kernel'), { recursive: true });
  const by = path.join(dir, 'kernel', 'build.yml');
  writeFileSync(by, kernelYml.replace(/modules: \[/, 'modules: [squashfs, '));
  const pkg = (n: string) => JSON.stringify(`@pkg:${path.join(REPO, 'pkg', n)}`);
  const yml = path.join(dir, 'minimal.yml');
  writeFileSync(
    yml,
    [
      'kernel:',
      '  image: "@pkg:./kernel"',
      '  cmdline: "console=ttyS0"',
      'init:',
      `  - ${pkg('init')}`,
      `  - ${pkg('runc')}`,
      'onboot:',
      '  - name: check',
      `    image: ${pkg('test')}`,
      '  - name: poweroff',
      `    image: ${pkg('poweroff')}`,
      '',
    ].join('\n'),
  );
  return yml;
}

describe('disk and tar formats of examples/minimal.yml', { timeout: 3_600_000 }, () => {
  const sqDir = path.join(out, 'sq-out');

  test('build', { timeout: 900_000 }, async () => {
    const { outputs } = await build({ file: YML, formats: FORMATS, dir: a, cacheDir: TEST_CACHE });
    assert.deepEqual(outputs.map((o) => path.basename(o)).sort(), [
      'minimal-azure.vhd',
      'minimal-bios.img',
      'minimal-efi.img',
      'minimal-efi.qcow2',
      'minimal-initrd.tar',
      'minimal-sbom.spdx.json',
      'minimal.docker',
      'minimal.img.tar.gz',
      'minimal.qcow2',
      'minimal.raw',
      'minimal.tar',
      'minimal.vhd',
      'minimal.vmdk',
    ]);
    await build({ file: YML, formats: ['vhd'], dir: vhdDir, cacheDir: TEST_CACHE });
    await build({ file: squashfsYaml(), formats: ['kernel+squashfs'], dir: sqDir, cacheDir: TEST_CACHE });
  });

  describe('independent readers', { skip: noQemuImg }, () => {
    const info = (file: string, fmt: string) =>
      JSON.parse(runTool('qemu-img', ['info', '--output=json', '-f', fmt, file])) as Record<string, unknown>;
    const same = (raw: string, file: string, fmt: string) =>
      assert.match(
        runTool('qemu-img', ['compare', '-f', 'raw', '-F', fmt, raw, file]),
        /Images are identical/,
      );

    test('qcow2-bios / qcow2-efi: qemu-img check clean, equal to raw-bios / raw-efi', () => {
      for (const [q, raw] of [
        ['minimal.qcow2', 'minimal-bios.img'],
        ['minimal-efi.qcow2', 'minimal-efi.img'],
      ] as const) {
        runTool('qemu-img', ['check', '-f', 'qcow2', f(q)]);
        assert.equal(info(f(q), 'qcow2')['virtual-size'], statSync(f(raw)).size);
        same(f(raw), f(q), 'qcow2');
        assert.ok(statSync(f(q)).size < 64 << 20, `${q} allocates only what is written`);
      }
    });

    test('vhd, dynamic-vhd, azure, vmdk: qemu-img info and compare with raw-bios', () => {
      const raw = f('minimal-bios.img');
      for (const [file, fmt] of [
        [path.join(vhdDir, 'minimal.vhd'), 'vpc'],
        [f('minimal.vhd'), 'vpc'],
        [f('minimal-azure.vhd'), 'vpc'],
        [f('minimal.vmdk'), 'vmdk'],
      ] as const) {
        assert.equal(info(file, fmt)['virtual-size'], statSync(raw).size, file);
        same(raw, file, fmt);
      }
      assert.equal(statSync(f('minimal-azure.vhd')).size % (1 << 20), 512, 'azure: whole MiB + footer');
      assert.ok(statSync(f('minimal.vhd')).size < 64 << 20, 'dynamic VHD stores only written blocks');
      runTool('qemu-img', ['check', '-f', 'vmdk', f('minimal.vmdk')]);
    });

    test('aws is the raw BIOS disk; gcp holds it as disk.raw', () => {
      same(f('minimal-bios.img'), f('minimal.raw'), 'raw');
      assert.match(
        runTool('tar', ['-tvzf', f('minimal.img.tar.gz')]),
        /^-\S+ \S+ +1073741824 .* disk\.raw$/m,
      );
      const x = path.join(out, 'gcp');
      mkdirSync(x);
      runTool('tar', ['-xzf', f('minimal.img.tar.gz'), '-C', x]);
      same(f('minimal-bios.img'), path.join(x, 'disk.raw'), 'raw');
    });

    test('tar outputs: GNU tar lists them as upstream lays them out', () => {
      assert.equal(runTool('tar', ['-tf', f('minimal-initrd.tar')]), 'kernel\ninitrd.img\ncmdline\n');
      const t = runTool('tar', ['-tf', f('minimal.tar')]).split('\n');
      assert.deepEqual(t.slice(0, 3), ['boot/', 'boot/cmdline', 'boot/kernel']);
      assert.ok(t.includes('containers/onboot/000-check/config.json'));
      assert.equal(runTool('tar', ['-xOf', f('minimal.tar'), 'boot/cmdline']), exampleCmdline('minimal'));
      const d = runTool('tar', ['-tf', f('minimal.docker')])
        .trim()
        .split('\n');
      assert.equal(d.at(-1), 'Dockerfile');
    });

    test('kernel+squashfs: unsquashfs lists the root', {
      skip: !hostHas('unsquashfs') && 'no unsquashfs',
    }, () => {
      assert.deepEqual(readdirSync(sqDir).sort(), [
        'minimal-cmdline',
        'minimal-initrd.img',
        'minimal-kernel',
        'minimal-sbom.spdx.json',
        'minimal-squashfs.img',
      ]);
      const l = runTool('unsquashfs', ['-l', path.join(sqDir, 'minimal-squashfs.img')]);
      assert.match(l, /^squashfs-root\/containers\/onboot\/000-check\/config.json$/m);
      assert.match(l, /^squashfs-root\/init$/m);
    });
  });

  describe('boots', { skip: noQemu, concurrency: 1 }, () => {
    const cases: { name: string; disk?: Drive; uefi?: boolean; squashfs?: boolean }[] = [
      { name: 'qcow2-bios under SeaBIOS', disk: { path: f('minimal.qcow2'), format: 'qcow2' } },
      { name: 'qcow2-efi under OVMF', disk: { path: f('minimal-efi.qcow2'), format: 'qcow2' }, uefi: true },
      { name: 'vhd (fixed) under SeaBIOS', disk: { path: path.join(vhdDir, 'minimal.vhd'), format: 'vpc' } },
      { name: 'dynamic-vhd under SeaBIOS', disk: { path: f('minimal.vhd'), format: 'vpc' } },
      { name: 'vmdk under SeaBIOS', disk: { path: f('minimal.vmdk'), format: 'vmdk' } },
      { name: 'kernel+squashfs (root on a virtio disk)', squashfs: true },
    ];
    for (const c of cases) {
      test(c.name, { skip: c.uefi && noOvmf, timeout: 600_000 }, async () => {
        const s = (n: string) => path.join(sqDir, n);
        await assertBootsToSuitePassed(
          path.join(out, 'vm', c.name.replace(/\W+/g, '-')),
          c.squashfs
            ? {
                kernel: s('minimal-kernel'),
                initrd: s('minimal-initrd.img'),
                cmdline: readFileSync(s('minimal-cmdline'), 'utf8'),
                disks: [{ path: s('minimal-squashfs.img'), format: 'raw', readonly: true }],
              }
            : { bootDisk: { ...c.disk!, readonly: true } },
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
