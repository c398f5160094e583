/**
 * The walking skeleton end to end: build examples/minimal.yml from the package directories in
 * pkg/ (real Debian archives), boot it in qemu, and see `suite PASSED` before a clean power-off.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { build } from '../../src/build/build.js';
import { runQemu } from '../../src/run/qemu.js';
import { REPO, TEST_CACHE, tempDir } from '../helpers.js';

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
  for (const n of ['busybox-static', 'runc', 'libc6', 'libseccomp2'])
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
