/**
 * The kernel image from Debian's real cloud kernel: the module closure, modules.dep and
 * modules.alias we write are checked against what the real depmod computes over the whole
 * module tree.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runTool, skipUnless } from '../../test/tools.js';
import { debianCloudKernel } from '../debian/testing.js';
import { dataBytes } from '../fs/data.js';
import { treeFromTar } from '../fs/layer.js';
import { kernelImageTree } from './kernel.js';
import { moduleKey } from './kmod.js';

test('kernel image: bzImage, only the wanted modules, modules.dep and modules.alias as depmod writes them', {
  ...skipUnless('depmod', 'kmod'),
  timeout: 300_000,
}, async () => {
  const pkg = (await debianCloudKernel()).tree;
  const wanted = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_console', 'virtio_rng', 'overlay'];
  const img = kernelImageTree(pkg, wanted);
  const kernel = dataBytes(img.get('kernel')!.data);
  // A bzImage: the boot sector signature and "HdrS" at 0x202.
  assert.equal(Buffer.from(kernel).readUInt16LE(0x1fe), 0xaa55);
  assert.equal(Buffer.from(kernel).toString('latin1', 0x202, 0x206), 'HdrS');

  const mods = treeFromTar(img.get('kernel.tar')!.data!);
  const dep = mods.entries().find((e) => e.path.endsWith('/modules.dep'))!;
  const version = dep.path.split('/')[2]!;
  const ours = new Map(
    new TextDecoder()
      .decode(dataBytes(dep.data))
      .trim()
      .split('\n')
      .map((l) => {
        const [m, deps] = l.split(':');
        return [m!, deps!.trim().split(' ').filter(Boolean)] as const;
      }),
  );
  const aliasLines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('alias '))
      .sort();
  const ourAliases = aliasLines(
    new TextDecoder().decode(dataBytes(mods.get(`lib/modules/${version}/modules.alias`)!.data)),
  );
  assert.ok(ourAliases.includes('alias virtio:d00000001v* virtio_net'), 'a virtio NIC finds its driver');
  const kos = mods.entries().filter((e) => e.path.endsWith('.ko'));
  assert.equal(kos.length, ours.size, 'every shipped module has a modules.dep line');
  assert.ok(kos.length >= wanted.length && kos.length < 30, `a small closure, got ${kos.length}`);
  assert.equal(
    new TextDecoder().decode(dataBytes(mods.get('etc/modules-load.d/linuxkit.conf')!.data)),
    `${wanted.join('\n')}\n`,
  );

  // The real depmod over the complete module tree of the same package.
  const root = await mkdtemp(path.join(os.tmpdir(), 'lk-depmod-'));
  try {
    for (const e of pkg.entries()) {
      if (!e.path.startsWith(`lib/modules/${version}/`) || e.kind !== 'file') continue;
      await mkdir(path.join(root, path.dirname(e.path)), { recursive: true });
      await writeFile(path.join(root, e.path), dataBytes(e.data));
    }
    runTool('depmod', ['-b', root, version]);
    const { readFile } = await import('node:fs/promises');
    const real = new Map(
      (await readFile(path.join(root, 'lib/modules', version, 'modules.dep'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => {
          const [m, deps] = l.split(':');
          return [m!, deps!.trim().split(' ').filter(Boolean)] as const;
        }),
    );
    // The real modules.alias, cut down to the modules we ship.
    const shipped = new Set(kos.map((e) => moduleKey(path.basename(e.path, '.ko'))));
    assert.deepEqual(
      ourAliases,
      aliasLines(await readFile(path.join(root, 'lib/modules', version, 'modules.alias'), 'utf8')).filter(
        (l) => shipped.has(l.slice(l.lastIndexOf(' ') + 1)),
      ),
    );
    for (const [m, deps] of ours) {
      assert.ok(real.has(m), `${m} is a real module`);
      assert.deepEqual([...deps].sort(), [...real.get(m)!].sort(), `dependencies of ${m}`);
      // Everything a shipped module needs is shipped too.
      for (const d of deps) assert.ok(ours.has(d), `${d} (needed by ${m}) is shipped`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
