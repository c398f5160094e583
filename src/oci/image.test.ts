import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { runTool, runToolBytes, skipUnless } from '../../test/tools.js';
import { dataBytes, FileSlice, withDataFiles } from '../fs/data.js';
import { UserError } from '../util/errors.js';
import { sha256Digest } from './digest.js';
import { imageTree, loadImage, writeImage } from './image.js';
import { ImageStore, type Index, type Manifest, MEDIA_TYPE } from './layout.js';

const needSkopeo = skipUnless('skopeo', 'skopeo');

let work: string;
let tarA: Buffer;
let tarB: Buffer;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lk-img-'));
  // Two layers made by GNU tar: the second overwrites a file and deletes one with a whiteout.
  const a = join(work, 'a');
  const b = join(work, 'b');
  await mkdir(join(a, 'etc'), { recursive: true });
  await mkdir(join(b, 'etc'), { recursive: true });
  await writeFile(join(a, 'etc/hello'), 'hello\n');
  await writeFile(join(a, 'etc/gone'), 'bye\n');
  await writeFile(join(b, 'etc/hello'), 'hello again\n');
  await writeFile(join(b, 'etc/.wh.gone'), '');
  const tar = (dir: string) =>
    runToolBytes('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '--format=pax',
      '-C',
      dir,
      '-cf',
      '-',
      '.',
    ]);
  tarA = tar(a);
  tarB = tar(b);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let n = 0;
const newStore = async () => {
  const s = new ImageStore(join(work, `store${++n}`));
  await s.init();
  return s;
};
const skopeo = (...args: string[]) => runTool('skopeo', args);

const CONFIG = {
  Entrypoint: ['/bin/sh'],
  Cmd: ['-c', 'echo hi'],
  Env: ['PATH=/bin'],
  Labels: { z: '1', a: '2' },
};

test('writeImage: identical inputs give identical digests; the documents are as the spec says', async () => {
  const s1 = await newStore();
  const s2 = await newStore();
  const d1 = await writeImage(s1, { layers: [tarA, tarB], config: CONFIG, created: 1700000000 });
  // same values, members in another order, another store
  const d2 = await writeImage(s2, {
    layers: [tarA, tarB],
    config: {
      Labels: { a: '2', z: '1' },
      Env: ['PATH=/bin'],
      Cmd: ['-c', 'echo hi'],
      Entrypoint: ['/bin/sh'],
    },
    created: 1700000000,
  });
  assert.deepEqual(d1, d2);
  assert.equal(d1.mediaType, MEDIA_TYPE.index);

  const index = JSON.parse((await s1.readBlob(d1.digest)).toString()) as Index;
  assert.equal(index.manifests.length, 1);
  assert.deepEqual(index.manifests[0]?.platform, { architecture: 'amd64', os: 'linux' });
  const manifest = JSON.parse((await s1.readBlob(index.manifests[0]!.digest)).toString()) as Manifest;
  assert.equal(manifest.mediaType, MEDIA_TYPE.manifest);
  assert.deepEqual(
    manifest.layers.map((l) => l.mediaType),
    [MEDIA_TYPE.layerGzip, MEDIA_TYPE.layerGzip],
  );
  const layer0 = await s1.readBlob(manifest.layers[0]!.digest);
  assert.deepEqual(gunzipSync(layer0), tarA);
  assert.equal(layer0.readUInt32LE(4), 0, 'gzip MTIME is 0');
  const config = JSON.parse((await s1.readBlob(manifest.config.digest)).toString());
  assert.equal(config.created, '2023-11-14T22:13:20Z');
  assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256Digest(tarA), sha256Digest(tarB)] });
  assert.equal(config.architecture, 'amd64');
  assert.equal(config.os, 'linux');
  assert.deepEqual(Object.keys(config.config.Labels), ['a', 'z']);
  assert.equal(config.history, undefined);

  // a different input gives a different digest
  const d3 = await writeImage(s1, { layers: [tarA], config: CONFIG, created: 1700000000 });
  assert.notEqual(d3.digest, d1.digest);
});

test('writeImage takes the creation time from SOURCE_DATE_EPOCH, else 0', async () => {
  const s = await newStore();
  const old = process.env.SOURCE_DATE_EPOCH;
  try {
    process.env.SOURCE_DATE_EPOCH = '86400';
    const d = await writeImage(s, { layers: [tarA], config: {} });
    await s.tag('t:epoch', d);
    assert.equal((await loadImage(s, 't:epoch'))?.config.created, '1970-01-02T00:00:00Z');
    delete process.env.SOURCE_DATE_EPOCH;
    await s.tag('t:zero', await writeImage(s, { layers: [tarA], config: {} }));
    assert.equal((await loadImage(s, 't:zero'))?.config.created, '1970-01-01T00:00:00Z');
    process.env.SOURCE_DATE_EPOCH = 'yesterday';
    await assert.rejects(writeImage(s, { layers: [tarA], config: {} }), UserError);
  } finally {
    if (old === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = old;
  }
});

test('loadImage follows the index to linux/amd64; imageTree applies the layers in order', async () => {
  const s = await newStore();
  const d = await writeImage(s, { layers: [tarA, tarB], config: CONFIG, created: 0 });
  await s.tag('linuxkit/test:abc', d);
  const img = await loadImage(s, 'linuxkit/test:abc');
  assert.ok(img);
  const index = JSON.parse((await s.readBlob(d.digest)).toString()) as Index;
  assert.equal(img.digest, index.manifests[0]?.digest);
  assert.deepEqual(img.config.config?.Entrypoint, ['/bin/sh']);
  const tree = await imageTree(s, img.manifest);
  assert.equal(Buffer.from(dataBytes(tree.get('etc/hello')?.data)).toString(), 'hello again\n');
  assert.equal(tree.has('etc/gone'), false, 'the whiteout removed etc/gone');
  assert.equal(await loadImage(s, 'linuxkit/test:nope'), undefined);
  await assert.rejects(
    loadImage(s, 'linuxkit/test:abc', { os: 'linux', architecture: 'arm64' }),
    (e: unknown) => e instanceof UserError && /arm64/.test(e.message) && /linux\/amd64/.test(e.message),
  );
});

test('imageTree keeps layers on disk: past the memory budget, file data are slices of the unpacked tars', async () => {
  const s = await newStore();
  const d = await writeImage(s, { layers: [tarA, tarB], config: CONFIG, created: 0 });
  await s.tag('t:disk', d);
  const img = (await loadImage(s, 't:disk'))!;
  const derived = join(s.dir, 'derived', 'layers');
  // writeImage kept the tars it had; a pulled image's are unpacked (streamed) on first use.
  for (const fresh of [false, true]) {
    if (fresh) await rm(derived, { recursive: true });
    await withDataFiles(async () => {
      const tree = await imageTree(s, img.manifest);
      const hello = tree.get('etc/hello')?.data;
      assert.ok(hello instanceof FileSlice);
      assert.equal(Buffer.from(dataBytes(hello)).toString(), 'hello again\n');
      assert.equal(tree.has('etc/gone'), false);
    }, 0);
    const tars = (await readdir(derived)).sort();
    assert.equal(tars.length, 2);
    const have = await Promise.all(tars.map((f) => readFile(join(derived, f))));
    assert.deepEqual(
      new Set(have.map((b) => sha256Digest(b))),
      new Set([sha256Digest(tarA), sha256Digest(tarB)]),
    );
  }
  // Within the budget, layers are read whole (one read, not one per file).
  await withDataFiles(async () => {
    const tree = await imageTree(s, img.manifest);
    assert.ok(tree.get('etc/hello')?.data instanceof Uint8Array);
  });
});

test(
  'skopeo reads what we write: inspect, --raw, --config and copy agree with our digests',
  needSkopeo,
  async () => {
    const s = await newStore();
    const d = await writeImage(s, { layers: [tarA, tarB], config: CONFIG, created: 1700000000 });
    const ref = 'docker.io/linuxkit/init:0123abc';
    await s.tag('linuxkit/init:0123abc', d);
    // skopeo splits at the first ':' after the directory, so the fully expanded name works as is
    const src = `oci:${s.dir}:${ref}`;
    const info = JSON.parse(skopeo('inspect', src));
    assert.equal(info.Digest, d.digest);
    assert.equal(info.Architecture, 'amd64');
    assert.equal(info.Os, 'linux');
    assert.deepEqual(info.Labels, { a: '2', z: '1' });
    const raw = skopeo('inspect', '--raw', src);
    assert.equal(sha256Digest(Buffer.from(raw)), d.digest);
    const img = await loadImage(s, ref);
    assert.ok(img);
    const config = JSON.parse(skopeo('inspect', '--config', src));
    assert.deepEqual(config.rootfs.diff_ids, [sha256Digest(tarA), sha256Digest(tarB)]);
    assert.deepEqual(config, img.config);

    // skopeo verifies every blob's digest while copying
    const out = join(work, 'dir-out');
    skopeo('copy', src, `dir:${out}`);
    const copiedManifest = await readFile(join(out, 'manifest.json'));
    assert.equal(sha256Digest(copiedManifest), img.digest);
    for (const l of img.manifest.layers) {
      assert.deepEqual(await readFile(join(out, l.digest.slice(7))), await s.readBlob(l.digest));
    }
  },
);

test('an image skopeo writes into an OCI layout loads back', needSkopeo, async () => {
  const a = await newStore();
  const d = await writeImage(a, { layers: [tarA, tarB], config: CONFIG, created: 5 });
  await a.tag('docker.io/linuxkit/init:v1', d);
  const want = await loadImage(a, 'linuxkit/init:v1');
  assert.ok(want);

  // skopeo resolves the index to one manifest and records the name as given ("other")
  const bDir = join(work, 'skopeo-b');
  skopeo('copy', `oci:${a.dir}:docker.io/linuxkit/init:v1`, `oci:${bDir}:other`);
  const b = new ImageStore(bDir);
  const got = await loadImage(b, 'other');
  assert.ok(got);
  assert.equal(got.digest, want.digest);
  const tree = await imageTree(b, got.manifest);
  assert.equal(Buffer.from(dataBytes(tree.get('etc/hello')?.data)).toString(), 'hello again\n');

  // --all keeps the index; a fully expanded name written by skopeo resolves as we record it
  skopeo('copy', '--all', `oci:${a.dir}:docker.io/linuxkit/init:v1`, `oci:${bDir}:docker.io/x/y:z`);
  assert.equal((await b.resolve('x/y:z'))?.digest, d.digest);
  assert.equal((await loadImage(b, 'x/y:z'))?.digest, want.digest);
  // and we can tag into the layout skopeo made, which skopeo then reads
  await b.tag('x/y:again', d);
  assert.equal(JSON.parse(skopeo('inspect', `oci:${bDir}:docker.io/x/y:again`)).Digest, d.digest);
});

test('a corrupted layer is refused while loading the tree, naming the digest', async () => {
  const s = await newStore();
  await s.tag('c:1', await writeImage(s, { layers: [tarA], config: {} }));
  const img = await loadImage(s, 'c:1');
  assert.ok(img);
  const layer = img.manifest.layers[0]!.digest;
  const bytes = await readFile(s.blobPath(layer));
  bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0xff;
  await writeFile(s.blobPath(layer), bytes);
  await assert.rejects(
    imageTree(s, img.manifest),
    (e: unknown) => e instanceof UserError && e.message.includes(layer),
  );
  // Valid gzip of other bytes: it unpacks, and its digest is what gives it away; nothing is kept.
  await writeFile(s.blobPath(layer), gzipSync(tarB));
  await assert.rejects(
    imageTree(s, img.manifest),
    (e: unknown) => e instanceof UserError && e.message.includes(layer) && /is corrupt/.test(e.message),
  );
  assert.deepEqual((await readdir(join(s.dir, 'derived', 'layers'))).length, 1); // writeImage's, not this one
});
