import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, truncate, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { hostHas, runTool, skipUnless } from '../../test/tools.js';
import { writeTar } from '../formats/tar.js';
import { UserError } from '../util/errors.js';
import { exportDockerArchive, exportOciArchive, importArchive, importLayout } from './archive.js';
import { imageTree, loadImage, writeImage } from './image.js';
import { ImageStore } from './layout.js';
import { cleanStore, verifyStore } from './maintain.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'lk-archive-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const newStore = () => new ImageStore(path.join(work, `s${++n}`));

async function makeImage(store: ImageStore, ref: string) {
  const tar = writeTar([
    { path: 'etc', kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 },
    { path: 'etc/hello', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: randomBytes(5000) },
  ] as never);
  const tar2 = writeTar([
    { path: 'two', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: randomBytes(100) },
  ] as never);
  const desc = await writeImage(store, { layers: [tar, tar2], config: { Cmd: ['/bin/sh'] } });
  await store.tag(ref, desc);
  return desc;
}

const skopeo = skipUnless('skopeo', 'skopeo');

test('cache export: an OCI archive skopeo reads, imported back with the same digests', skopeo, async () => {
  const s = newStore();
  const desc = await makeImage(s, 'docker.io/linuxkit/arch:1');
  const img = await loadImage(s, 'linuxkit/arch:1');
  const out = path.join(work, 'a.oci.tar');
  await exportOciArchive(s, ['linuxkit/arch:1'], out);
  const bytes = readFileSync(out);
  await exportOciArchive(s, ['linuxkit/arch:1'], out);
  assert.ok(readFileSync(out).equals(bytes), 'the same images give the same archive bytes');
  const info = JSON.parse(runTool('skopeo', ['inspect', `oci-archive:${out}`])) as {
    Digest: string;
    Layers: string[];
  };
  assert.equal(info.Digest, desc.digest); // the tag's root, our index
  assert.deepEqual(
    info.Layers,
    img!.manifest.layers.map((l) => l.digest),
  );
  const t = newStore();
  const got = await importArchive(t, out);
  assert.deepEqual(
    got.map((g) => [g.ref, g.desc.digest]),
    [['docker.io/linuxkit/arch:1', desc.digest]],
  );
  assert.equal((await verifyStore(t)).corrupt.length, 0);

  // And what skopeo writes as an OCI archive (from our layout) we import.
  const viaSkopeo = path.join(work, 'skopeo.oci.tar');
  runTool('skopeo', [
    'copy',
    `oci:${s.dir}:docker.io/linuxkit/arch:1`,
    `oci-archive:${viaSkopeo}:example/x:2`,
  ]);
  const u = newStore();
  const got2 = await importArchive(u, viaSkopeo);
  assert.equal(got2[0]!.ref, 'docker.io/example/x:2');
  const img2 = await loadImage(u, 'example/x:2');
  assert.deepEqual(
    img2!.manifest.layers.map((l) => l.digest),
    img!.manifest.layers.map((l) => l.digest),
  );
});

test(
  'cache export: a docker archive skopeo reads; imported back, its files are the same',
  skopeo,
  async () => {
    const s = newStore();
    await makeImage(s, 'docker.io/linuxkit/dock:1');
    const img = await loadImage(s, 'linuxkit/dock:1');
    const out = path.join(work, 'd.tar');
    await exportDockerArchive(s, ['linuxkit/dock:1'], out);
    const info = JSON.parse(runTool('skopeo', ['inspect', `docker-archive:${out}`])) as {
      RepoTags: string[];
      Layers: string[];
    };
    assert.equal(info.Layers.length, 2);
    // skopeo's docker-archive source names layers by their uncompressed digest: our diff_ids.
    assert.deepEqual(info.Layers, img!.config.rootfs.diff_ids);
    if (hostHas('tar')) assert.match(runTool('tar', ['-tf', out]), /manifest\.json/);
    const t = newStore();
    const got = await importArchive(t, out);
    assert.equal(got[0]!.ref, 'docker.io/linuxkit/dock:1');
    const back = await loadImage(t, 'linuxkit/dock:1');
    const a = await imageTree(t, back!.manifest);
    const b = await imageTree(s, img!.manifest);
    assert.deepEqual(
      [...a.entries()].map((e) => [e.path, e.data?.length]),
      [...b.entries()].map((e) => [e.path, e.data?.length]),
    );
    // skopeo's own docker-archive output imports too.
    const viaSkopeo = path.join(work, 'skopeo-docker.tar');
    runTool('skopeo', [
      'copy',
      `oci:${s.dir}:docker.io/linuxkit/dock:1`,
      `docker-archive:${viaSkopeo}:example/y:3`,
    ]);
    const got2 = await importArchive(newStore(), viaSkopeo);
    assert.equal(got2[0]!.ref, 'docker.io/example/y:3');
  },
);

test('oci:DIR[:NAME] imports from an image layout; bad archives are user errors', async () => {
  const s = newStore();
  const desc = await makeImage(s, 'docker.io/linuxkit/lay:1');
  const t = newStore();
  const got = await importLayout(t, s.dir, 'docker.io/linuxkit/lay:1');
  assert.equal(got[0]!.desc.digest, desc.digest);
  const junk = path.join(work, 'junk.tar');
  writeFileSync(
    junk,
    writeTar([
      { path: 'x', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: Buffer.from('x') },
    ] as never),
  );
  await assert.rejects(
    importArchive(newStore(), junk),
    (e: Error) => e instanceof UserError && /neither/.test(e.message),
  );
  await assert.rejects(importArchive(newStore(), path.join(work, 'absent.tar')), UserError);
});

test('verify finds corrupt blobs, dangling references and leftovers; repair and clean fix them', async () => {
  const s = newStore();
  await makeImage(s, 'docker.io/linuxkit/v:1');
  await makeImage(s, 'docker.io/linuxkit/v:2');
  assert.deepEqual(await verifyStore(s), {
    blobs: 10,
    bytes: (await verifyStore(s)).bytes,
    corrupt: [],
    dangling: [],
    leftovers: [],
  });
  const img = await loadImage(s, 'linuxkit/v:1');
  const layer = img!.manifest.layers[0]!.digest;
  // Flip a byte of one layer, delete a layer of the other image, leave a dead writer's temp file.
  const f = s.blobPath(layer);
  const data = readFileSync(f);
  data[10] ^= 0xff;
  writeFileSync(f, data);
  const img2 = await loadImage(s, 'linuxkit/v:2');
  await unlink(s.blobPath(img2!.manifest.layers[1]!.digest));
  writeFileSync(path.join(s.dir, 'blobs', 'sha256', '.abc.tmp-999999999-1'), 'partial');
  const r = await verifyStore(s);
  assert.deepEqual(r.corrupt, [layer]);
  // v:1 reaches the corrupt blob: dangling once repair removes it; v:2 lacks a layer.
  assert.deepEqual(
    r.dangling.map((d) => d.ref),
    ['docker.io/linuxkit/v:2'],
  );
  assert.deepEqual(r.leftovers, ['blobs/sha256/.abc.tmp-999999999-1']);
  const fixed = await verifyStore(s, { repair: true });
  assert.deepEqual(
    fixed.dangling.map((d) => d.ref),
    ['docker.io/linuxkit/v:1', 'docker.io/linuxkit/v:2'],
  );
  const r2 = await verifyStore(s);
  assert.deepEqual([r2.corrupt, r2.dangling, r2.leftovers], [[], [], []]);
  assert.deepEqual(await s.list(), []);
  const cleaned = await cleanStore(s);
  assert.ok(cleaned.removed > 0);
  assert.deepEqual(await readdir(path.join(s.dir, 'blobs', 'sha256')), []);
  await truncate(path.join(s.dir, 'oci-layout'), 0); // verify still runs on an odd layout
  assert.equal((await verifyStore(s)).blobs, 0);
});
