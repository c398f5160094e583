import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { hostHas, runTool } from '../../test/tools.js';
import { writeTar } from '../formats/tar.js';
import { dataBytes, FileSlice } from '../fs/data.js';
import { FsTree } from '../fs/tree.js';
import { writeImage } from '../oci/image.js';
import { ImageStore } from '../oci/layout.js';
import type { Config, LoadedConfig } from '../spec/types.js';
import { UserError } from '../util/errors.js';
import { assemble, configMetadata } from './assemble.js';
import { ImageResolver } from './images.js';

const utf8 = (s: string) => new TextEncoder().encode(s);
const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-assemble-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const loaded = (c: Partial<Config>): LoadedConfig => ({
  config: { init: [], onboot: [], onshutdown: [], services: [], files: [], volumes: [], ...c },
  file: 'x.yml',
  dir,
  files: ['x.yml'],
  posOf: (p) => ({ file: 'x.yml', line: 3, col: Number(p[1] ?? 0) + 1 }),
});
// No containers or images: the resolver is never asked.
const noResolver = {} as ImageResolver;
const ctr = (name: string) => ({ name, image: `img-${name}` });
// Containers need their images: empty ones (an empty file system, no config) will do.
const images = new Map(
  ['a', 'b'].map((n) => [
    `img-${n}`,
    { spec: `img-${n}`, ref: `img-${n}`, digest: `sha256:${n}`, config: {}, manifest: {} },
  ]),
);
const emptyImages = { tree: async () => new FsTree() } as unknown as ImageResolver;

test('files land with mode, owner (numbers or container names) and owned parent directories', async () => {
  writeFileSync(path.join(dir, 'src.txt'), 'from-source');
  const { root } = await assemble(
    loaded({
      onboot: [ctr('a'), ctr('b')],
      files: [
        { path: 'etc/app/conf', contents: 'x', mode: 0o640, uid: 'b', gid: 7 },
        { path: 'etc/app/src', source: 'src.txt' },
        { path: 'etc/missing', source: 'nope.txt', optional: true },
        { path: 'var/d', directory: true },
      ],
    }),
    images,
    emptyImages,
    0,
  );
  const conf = root.get('etc/app/conf');
  assert.equal(conf?.mode, 0o640);
  assert.equal(conf?.uid, 101);
  assert.equal(conf?.gid, 7);
  // the parent made for it: mode plus search bits, the file's owner
  const parent = root.get('etc/app');
  assert.equal(parent?.mode, 0o750);
  assert.equal(parent?.uid, 101);
  const src = root.get('etc/app/src');
  // A source is read when the outputs are written, not held in memory.
  assert.ok(src?.data instanceof FileSlice);
  assert.equal(new TextDecoder().decode(dataBytes(src?.data)), 'from-source');
  assert.equal(src?.mode, 0o600);
  assert.equal(root.has('etc/missing'), false);
  assert.equal(root.get('var/d')?.mode, 0o700);
});

test('a missing source that is not optional, or an unknown owner, is a UserError at its place', async () => {
  await assert.rejects(
    assemble(loaded({ files: [{ path: 'a', source: 'nope.txt' }] }), new Map(), noResolver, 0),
    (e: unknown) => e instanceof UserError && /^x\.yml:3:1: cannot read nope\.txt: ENOENT/.test(e.message),
  );
  await assert.rejects(
    assemble(loaded({ files: [{ path: 'a', contents: '', uid: 'ghost' }] }), new Map(), noResolver, 0),
    (e: unknown) => e instanceof UserError && /uid: cannot find id "ghost"/.test(e.message),
  );
});

test('metadata files hold the config with resolved image references, as yaml or json', async () => {
  const config: Config = {
    kernel: { image: 'k', cmdline: 'console=ttyS0' },
    init: ['i'],
    onboot: [{ name: 'a', image: 'x', capabilities: ['CAP_NET_ADMIN'], net: 'new' }],
    onshutdown: [],
    services: [],
    files: [{ path: 'etc/linuxkit.yml', metadata: 'yaml' }],
    volumes: [],
  };
  const refOf = (s: string) => `docker.io/library/${s}:1`;
  const y = parseYaml(configMetadata(config, 'yaml', refOf));
  assert.deepEqual(y.kernel, { image: 'docker.io/library/k:1', cmdline: 'console=ttyS0' });
  assert.deepEqual(y.init, ['docker.io/library/i:1']);
  assert.deepEqual(y.onboot, [
    { name: 'a', image: 'docker.io/library/x:1', capabilities: ['CAP_NET_ADMIN'], net: 'new' },
  ]);
  assert.deepEqual(y.files, [
    { path: 'etc/linuxkit.yml', directory: false, metadata: 'yaml', optional: false },
  ]);

  const j = configMetadata(config, 'json', refOf);
  // Go's MarshalIndent: 4 spaces, struct order, nil lists as null
  assert.ok(j.startsWith('{\n    "kernel": {\n        "image": "docker.io/library/k:1",'), j);
  const parsed = JSON.parse(j);
  assert.deepEqual(Object.keys(parsed), [
    'kernel',
    'init',
    'onboot',
    'onshutdown',
    'services',
    'files',
    'volumes',
  ]);
  assert.equal(parsed.onshutdown, null);
  assert.deepEqual(Object.keys(parsed.onboot[0]), ['name', 'image', 'capabilities', 'net']);

  // and the file itself is written by the build
  const { root } = await assemble(
    loaded({ files: [{ path: 'etc/linuxkit.json', metadata: 'json' }] }),
    new Map(),
    noResolver,
    0,
  );
  const written = JSON.parse(new TextDecoder().decode(dataBytes(root.get('etc/linuxkit.json')?.data)));
  assert.equal(written.files[0].path, 'etc/linuxkit.json');
});

test('volumes: an image as files or as an OCI layout skopeo reads; writable ones get tmp/', async () => {
  const store = new ImageStore(path.join(dir, 'cache'));
  await store.init();
  const layer = writeTar([
    { path: 'data', kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 },
    { path: 'data/seed', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: utf8('seed') },
  ]);
  await store.tag('docker.io/library/vol:1', await writeImage(store, { layers: [layer], config: {} }));
  const resolver = new ImageResolver(store, { store, debianCacheDir: path.join(dir, 'deb') }, dir);
  const { root } = await assemble(
    loaded({
      volumes: [
        { name: 'files', image: 'vol:1' },
        { name: 'layout', image: 'vol:1', format: 'oci', readonly: true },
        { name: 'empty' },
      ],
    }),
    new Map(),
    resolver,
    0,
  );
  const v = 'containers/volumes';
  assert.equal(new TextDecoder().decode(dataBytes(root.get(`${v}/files/lower/data/seed`)?.data)), 'seed');
  for (const d of [
    'files/merged',
    'files/tmp',
    'layout/merged',
    'empty/lower',
    'empty/merged',
    'empty/tmp',
  ]) {
    assert.equal(root.get(`${v}/${d}`)?.kind, 'dir', d);
  }
  assert.equal(root.has(`${v}/layout/tmp`), false);
  assert.equal(root.has(`${v}/layout/lower/data`), false);

  // Write the layout out and let skopeo read it.
  const out = path.join(dir, 'layout');
  const prefix = `${v}/layout/lower/`;
  for (const e of root.entries()) {
    if (!e.path.startsWith(prefix)) continue;
    const p = path.join(out, e.path.slice(prefix.length));
    if (e.kind === 'dir') mkdirSync(p, { recursive: true });
    else if (e.kind === 'file') {
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, dataBytes(e.data));
    }
  }
  if (hostHas('skopeo')) {
    const info = JSON.parse(runTool('skopeo', ['inspect', `oci:${out}`]));
    const img = await new ImageResolver(store, { store, debianCacheDir: dir }, dir).resolve('vol:1');
    assert.equal(info.Digest, img.digest);
    assert.equal(info.Layers.length, 1);
  }
});
