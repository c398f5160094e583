/**
 * The walking skeleton end to end: build examples/minimal.yml from the package directories in
 * pkg/ (real Debian archives), boot it in qemu, and see `suite PASSED` before a clean power-off.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { build } from '../../src/build/build.js';
import { sniffCompression } from '../../src/formats/compress.js';
import { probeAccel, runQemu } from '../../src/run/qemu.js';
import { assertBootsToSuitePassed, cli, expectedMicrovm, REPO, TEST_CACHE, tempDir } from '../helpers.js';

const out = tempDir('lk-minimal-');

test('examples/minimal.yml builds and boots to suite PASSED', { timeout: 900_000 }, async () => {
  const { outputs } = await build({
    file: path.join(REPO, 'examples', 'minimal.yml'),
    formats: ['kernel+initrd'],
    dir: out,
    cacheDir: TEST_CACHE,
  });
  assert.deepEqual(outputs.map((o) => path.basename(o)).sort(), [
    'minimal-cmdline',
    'minimal-initrd.img',
    'minimal-kernel',
    'minimal-sbom.spdx.json',
  ]);
  // The SBOM names every Debian package in the system with its signed sha256.
  const sbom = JSON.parse(await readFile(path.join(out, 'minimal-sbom.spdx.json'), 'utf8'));
  assert.equal(sbom.spdxVersion, 'SPDX-2.3');
  const names = sbom.packages.map((p: { name: string }) => p.name);
  for (const n of ['busybox-static', 'crun', 'libc6', 'libseccomp2'])
    assert.ok(names.includes(n), `${n} in ${names}`);
  assert.ok(
    names.some((n: string) => n.startsWith('linux-image-6.1')),
    'the kernel package',
  );
  for (const p of sbom.packages) assert.match(p.checksums[0].checksumValue, /^[0-9a-f]{64}$/);
  const lines: string[] = [];
  const r = await runQemu({
    kernel: path.join(out, 'minimal-kernel'),
    initrd: path.join(out, 'minimal-initrd.img'),
    cmdline: await readFile(path.join(out, 'minimal-cmdline'), 'utf8'),
    mem: 1024,
    console: { onLine: (l) => lines.push(l) },
    timeoutMs: 180_000,
  });
  const log = lines.join('\n');
  assert.match(log, /suite PASSED/, `console:\n${log}`);
  assert.doesNotMatch(log, /suite FAILED/);
  assert.equal(r.code, 0, `qemu exit ${r.code}; console:\n${log}`);
  assert.ok(r.poweredOff);
  // Under TCG the kernel's vmlinux boots through PVH (the other boots here take the bzImage
  // path), on microvm where the host's TSC frequency is known (the kernel image loads virtio_mmio).
  assert.equal(r.pvh, (await probeAccel()) === 'tcg' ? true : undefined);
  assert.equal(r.microvm, await expectedMicrovm());
});

test('building twice gives the same bytes, also with a fresh empty cache', { timeout: 900_000 }, async () => {
  const yml = path.join(REPO, 'examples', 'minimal.yml');
  const a = path.join(out, 'a');
  const b = path.join(out, 'b');
  const fresh = path.join(out, 'fresh-cache');
  await build({ file: yml, formats: ['kernel+initrd'], dir: a, cacheDir: TEST_CACHE });
  await build({ file: yml, formats: ['kernel+initrd'], dir: b, cacheDir: fresh });
  const names = (await readdir(a)).sort();
  assert.deepEqual(names, (await readdir(b)).sort());
  for (const n of names) {
    assert.ok((await readFile(path.join(a, n))).equals(await readFile(path.join(b, n))), `${n} differs`);
  }
});

// The kernel unpacks every initrd compression `-compress` offers (zstd only where Node has it).
for (const kind of ['lz4', 'none'] as const) {
  test(`-compress ${kind}: the kernel unpacks the initrd and the system boots`, {
    timeout: 900_000,
  }, async () => {
    const dir = path.join(out, `compress-${kind}`);
    const yml = path.join(REPO, 'examples', 'minimal.yml');
    await build({ file: yml, formats: ['kernel+initrd'], dir, cacheDir: TEST_CACHE, compress: kind });
    const initrd = await readFile(path.join(dir, 'minimal-initrd.img'));
    assert.equal(sniffCompression(initrd), kind === 'lz4' ? 'lz4-legacy' : 'none');
    const r = await assertBootsToSuitePassed(path.join(dir, 'vm'), {
      kernel: path.join(dir, 'minimal-kernel'),
      initrd: path.join(dir, 'minimal-initrd.img'),
      cmdline: 'console=ttyS0',
      // The bzImage's own decompressor and loader, as KVM and UEFI boots use.
      pvh: false,
    });
    assert.equal(r.pvh, undefined);
    assert.equal(r.microvm, undefined, 'microvm boots only PVH kernels');
  });
}

test('a rebuild with nothing changed is a no-op; a changed input or output is rebuilt', {
  timeout: 900_000,
}, async () => {
  const dir = path.join(out, 'noop');
  await mkdir(dir, { recursive: true });
  // @pkg: paths are relative to the YAML: point them at this repository's packages.
  const yml = path.join(dir, 'sys.yml');
  const example = await readFile(path.join(REPO, 'examples', 'minimal.yml'), 'utf8');
  await writeFile(yml, example.replaceAll('@pkg:../pkg/', `@pkg:${REPO}/pkg/`));
  const args = ['build', '-dir', dir, '-cache', TEST_CACHE, yml];
  const first = cli(args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /wrote .*sys-initrd\.img/);
  const initrd = path.join(dir, 'sys-initrd.img');
  const before = await stat(initrd);

  const again = cli(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /up to date .*sys-initrd\.img/);
  assert.doesNotMatch(again.stderr, /wrote/);
  assert.equal((await stat(initrd)).mtimeMs, before.mtimeMs, 'the initrd was not rewritten');

  // Same length, same second: only the content differs. It must still rebuild.
  const text = await readFile(yml, 'utf8');
  await writeFile(yml, text.replace('console=ttyS0 ', 'console=ttyS1 '));
  const edited = cli(args);
  assert.match(edited.stderr, /wrote .*sys-initrd\.img/);
  assert.match(await readFile(path.join(dir, 'sys-cmdline'), 'utf8'), /^console=ttyS1 /);

  // An output changed behind the build's back is rebuilt.
  await writeFile(path.join(dir, 'sys-cmdline'), 'tampered');
  const repaired = cli(args);
  assert.match(repaired.stderr, /wrote .*sys-cmdline/);
  assert.match(await readFile(path.join(dir, 'sys-cmdline'), 'utf8'), /^console=ttyS1 /);
  // --pull always builds.
  assert.match(cli([...args.slice(0, 1), '-pull', ...args.slice(1)]).stderr, /wrote/);
});
