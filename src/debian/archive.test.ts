import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { decompress } from '../formats/compress.js';
import { UserError } from '../util/errors.js';
import {
  DebianArchive,
  findMirror,
  httpGet,
  PackageIndex,
  type PackageInfo,
  packageFromStanza,
  parseDepends,
  parseSourcesList,
} from './archive.js';
import { parseDeb822 } from './deb822.js';
import { SHARED_TEST_CACHE, testArchive, testdata } from './testing.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'lk-debian-archive-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('parseDepends: groups, alternatives, versions, arch qualifiers', () => {
  assert.deepEqual(
    parseDepends('libc6 (>= 2.34), perl:any | python3:native (<<3.12~),\n foo [amd64] <!nocheck>'),
    [
      [{ name: 'libc6', op: '>=', version: '2.34' }],
      [
        { name: 'perl', arch: 'any' },
        { name: 'python3', arch: 'native', op: '<<', version: '3.12~' },
      ],
      [{ name: 'foo' }],
    ],
  );
  assert.deepEqual(parseDepends(''), []);
  assert.throws(() => parseDepends('foo (~ 1)'), UserError);
  assert.throws(() => parseDepends('Foo_Bar'), UserError);
});

test('packageFromStanza: fields, Pre-Depends first, Provides, bad hashes rejected', () => {
  const [s] = parseDeb822(
    'Package: mawk\nVersion: 1.3.4.20200120-3.1\nArchitecture: amd64\nMulti-Arch: foreign\nPriority: required\nSection: interpreters\n' +
      'Pre-Depends: libc6 (>= 2.34)\nDepends: x\nProvides: awk, foo (= 1.0)\nFilename: pool/main/m/mawk/mawk.deb\nSize: 10\n' +
      `SHA256: ${'A'.repeat(64)}\nEssential: yes\n`,
  );
  const p = packageFromStanza(s!);
  assert.deepEqual(JSON.parse(JSON.stringify(p)), {
    name: 'mawk',
    version: '1.3.4.20200120-3.1',
    arch: 'amd64',
    filename: 'pool/main/m/mawk/mawk.deb',
    sha256: 'a'.repeat(64),
    size: 10,
    provides: [{ name: 'awk' }, { name: 'foo', version: '1.0' }],
    multiArch: 'foreign',
    essential: true,
    priority: 'required',
    section: 'interpreters',
    depends: [[{ name: 'libc6', op: '>=', version: '2.34' }], [{ name: 'x' }]],
  });
  const [bad] = parseDeb822(
    'Package: a\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\nSHA256: 1234\n',
  );
  assert.throws(() => packageFromStanza(bad!), /bad SHA256/);
});

test('PackageIndex: versions highest first, constrained lookup, providers', () => {
  const mk = (name: string, version: string, provides: PackageInfo['provides'] = []): PackageInfo => ({
    name,
    version,
    arch: 'amd64',
    filename: `${name}.deb`,
    sha256: '0'.repeat(64),
    size: 1,
    depends: [],
    provides,
  });
  const idx = new PackageIndex([
    mk('a', '1.0'),
    mk('a', '2.0~rc1'),
    mk('a', '1:0.1'),
    mk('gawk', '5', [{ name: 'awk' }]),
    mk('mawk', '1', [{ name: 'awk' }]),
  ]);
  assert.deepEqual(
    idx.versions('a').map((p) => p.version),
    ['1:0.1', '2.0~rc1', '1.0'],
  );
  assert.equal(idx.get('a')?.version, '1:0.1');
  assert.equal(idx.get('a', '<<', '1:0')?.version, '2.0~rc1');
  assert.equal(idx.get('a', '<<', '1.0'), undefined);
  assert.deepEqual(
    idx.providers('awk').map((p) => p.pkg.name),
    ['gawk', 'mawk'],
  );
  assert.equal(idx.get('awk'), undefined);
});

test('PackageIndex.fromCompact: arch filter, lazy lines, the same objects from versions and providers', () => {
  // The parsed-index cache's form: one package per line, 13 tab-separated fields.
  const line = (name: string, version: string, arch: string, provides = '', depends = '') =>
    [
      name,
      version,
      arch,
      `pool/${name}.deb`,
      'a'.repeat(64),
      '1',
      '',
      depends,
      provides,
      '',
      '',
      '',
      '',
    ].join('\t');
  const text = [
    line('gawk', '1:5.2', 'amd64', 'awk'),
    line('mawk', '1.3', 'amd64', 'awk, mawk-alias (= 1.3)', 'libc6 (>= 2.34)'),
    line('mawk', '1.4', 'arm64', 'awk'),
    line('a', '1.0', 'all'),
    line('a', '2.0', 'amd64'),
    line('a', '2.0', 'amd64'),
  ].join('\n');
  const idx = PackageIndex.fromCompact([{ buf: Buffer.from(text), source: 'test' }], ['amd64', 'all']);
  assert.equal(idx.size, 3);
  assert.deepEqual(idx.names(), ['a', 'gawk', 'mawk']);
  assert.deepEqual(
    idx.versions('a').map((p) => `${p.version} ${p.arch}`),
    ['2.0 amd64', '1.0 all'],
  );
  assert.deepEqual(
    idx.versions('mawk').map((p) => p.version),
    ['1.3'],
  );
  assert.deepEqual(idx.get('mawk')?.depends, [[{ name: 'libc6', op: '>=', version: '2.34' }]]);
  const awk = idx.providers('awk');
  assert.deepEqual(
    awk.map((p) => p.pkg.name),
    ['gawk', 'mawk'],
  );
  assert.equal(awk[1]?.pkg, idx.get('mawk'), 'one object per line');
  assert.deepEqual(
    idx.providers('mawk-alias').map((p) => p.version),
    ['1.3'],
  );
  assert.deepEqual(idx.versions('nope'), []);
  assert.deepEqual(
    PackageIndex.fromCompact([{ buf: Buffer.alloc(0), source: 'empty' }], ['amd64']).names(),
    [],
  );
  assert.throws(
    () => PackageIndex.fromCompact([{ buf: Buffer.from('a\tb'), source: 'cache/x.v1' }], ['amd64']),
    /cache\/x\.v1: corrupt parsed index/,
  );
});

test('mirror choice: explicit, env, host apt sources (Debian only), default', () => {
  const root = path.join(tmp, 'root');
  mkdirSync(path.join(root, 'etc/apt/sources.list.d'), { recursive: true });
  writeFileSync(
    path.join(root, 'etc/apt/sources.list'),
    '# comment\ndeb cdrom:[Debian]/ bookworm main\ndeb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.example/linux/debian bookworm stable\n',
  );
  writeFileSync(
    path.join(root, 'etc/apt/sources.list.d/a-thirdparty.sources'),
    'Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/nodesource.gpg\n',
  );
  writeFileSync(
    path.join(root, 'etc/apt/sources.list.d/debian.sources'),
    '# snapshot\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' +
      'Types: deb\nEnabled: no\nURIs: http://disabled.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n' +
      'Types: deb deb-src\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n',
  );
  const env = {};
  assert.equal(findMirror('bookworm', { aptRoot: root, env }), 'http://mirror.example/debian');
  assert.equal(
    findMirror('bookworm', { aptRoot: root, env, components: ['main', 'non-free'] }),
    'http://deb.debian.org/debian',
  );
  assert.equal(findMirror('bookworm-security', { aptRoot: root, env }), 'http://sec.example/debian-security');
  assert.equal(findMirror('trixie', { aptRoot: root, env }), 'http://deb.debian.org/debian');
  assert.equal(
    findMirror('trixie-security', { aptRoot: root, env }),
    'http://deb.debian.org/debian-security',
  );
  assert.equal(
    findMirror('bookworm', { aptRoot: root, env: { LINUXKIT_DEBIAN_MIRROR: 'https://env.example/d/' } }),
    'https://env.example/d',
  );
  assert.equal(
    findMirror('bookworm', { aptRoot: root, env, explicit: 'http://flag.example/debian' }),
    'http://flag.example/debian',
  );
  assert.throws(() => findMirror('bookworm', { explicit: 'ftp://x' }), UserError);
  assert.deepEqual(
    parseSourcesList(
      'deb [ signed-by=/k.gpg ] http://h/debian bookworm main # c\ndeb-src http://h/debian bookworm main\n',
    ),
    [{ uri: 'http://h/debian', suites: ['bookworm'], components: ['main'], signedBy: '/k.gpg' }],
  );
});

test('HTTP errors are UserErrors naming the URL; 5xx is retried, 404 is not', async () => {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url === '/flaky' && hits < 3) {
      res.writeHead(503).end();
      return;
    }
    if (req.url === '/flaky') {
      res.end('ok');
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.equal(new TextDecoder().decode(await httpGet(`${base}/flaky`, { retryDelayMs: 5 })), 'ok');
    assert.equal(hits, 3);
    hits = 0;
    await assert.rejects(
      httpGet(`${base}/missing`, { retryDelayMs: 5 }),
      (e: unknown) =>
        e instanceof UserError && e.message.includes(`${base}/missing`) && /404/.test(e.message),
    );
    assert.equal(hits, 1);
  } finally {
    server.close();
  }
  // Nothing listens there: a network error, retried, then reported with the URL.
  await assert.rejects(
    httpGet(`${base}/gone`, { retryDelayMs: 5 }),
    (e: unknown) => e instanceof UserError && e.message.includes(`${base}/gone`),
  );
  const a = new DebianArchive({
    suite: 'bookworm',
    mirror: base,
    cacheDir: path.join(tmp, 'c0'),
    http: { retryDelayMs: 5 },
  });
  await assert.rejects(
    a.packages(),
    (e: unknown) => e instanceof UserError && e.message.includes(`${base}/dists/bookworm/InRelease`),
  );
});

test('a signed InRelease of another suite is refused', async () => {
  const body = readFileSync(testdata('bookworm-InRelease'));
  const server = createServer((req, res) => {
    if (req.url === '/debian/dists/trixie/InRelease') res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/debian`;
  try {
    const a = new DebianArchive({ suite: 'trixie', mirror: base, cacheDir: path.join(tmp, 'c1') });
    await assert.rejects(a.packages(), /InRelease is for bookworm\/oldstable, not trixie/);
  } finally {
    server.close();
  }
});

test('bookworm main: verified index, .deb fetched, cached by sha256 and re-verified', async (t) => {
  const a = testArchive('bookworm');
  const t0 = performance.now();
  const idx = await a.packages();
  const ms = performance.now() - t0;
  assert.ok(idx.size > 60000, `only ${idx.size} packages`);
  const busybox = idx.get('busybox-static');
  assert.ok(busybox);
  assert.equal(busybox.arch, 'amd64');
  assert.match(busybox.filename, /^pool\/main\/b\/busybox\/busybox-static_.*_amd64\.deb$/);
  const deb = await a.fetchDeb(busybox);
  assert.equal(deb.length, busybox.size);
  assert.equal(createHash('sha256').update(deb).digest('hex'), busybox.sha256);
  // The cached copy is checked on read: a corrupted one is replaced, not returned.
  const cached = path.join(SHARED_TEST_CACHE, 'sha256', busybox.sha256);
  const good = readFileSync(cached);
  const bad = Buffer.from(good);
  bad[1000] = (bad[1000] as number) ^ 0xff;
  writeFileSync(cached, bad);
  const again = await a.fetchDeb(busybox);
  assert.equal(createHash('sha256').update(again).digest('hex'), busybox.sha256);
  assert.deepEqual(readFileSync(cached), good);
  // A package whose recorded hash does not match what the mirror serves is refused.
  await assert.rejects(a.fetchDeb({ ...busybox, sha256: 'f'.repeat(64) }), /does not match the signed index/);
  await assert.rejects(a.fetchDeb({ ...busybox, filename: '../../etc/passwd' }), /unsafe Filename/);
  t.diagnostic(`bookworm index: ${idx.size} packages in ${ms.toFixed(0)} ms`);
});

test('deb822 speed: the whole bookworm main Packages index', async (t) => {
  const a = testArchive('bookworm');
  const idx = await a.packages();
  const rel = await a.release();
  const name = ['main/binary-amd64/Packages.gz', 'main/binary-amd64/Packages.xz'].find((n) =>
    rel.files.has(n),
  ) as string;
  const entry = rel.files.get(name);
  assert.ok(entry);
  const text = new TextDecoder().decode(
    await decompress(readFileSync(path.join(SHARED_TEST_CACHE, 'sha256', entry.sha256))),
  );
  const t0 = performance.now();
  const stanzas = parseDeb822(text);
  const ms = performance.now() - t0;
  t.diagnostic(
    `deb822: ${stanzas.length} stanzas, ${(text.length / 1e6).toFixed(1)} M chars in ${ms.toFixed(0)} ms`,
  );
  assert.ok(stanzas.length > 60000);
  assert.equal(new Set(stanzas.map((s) => s.Package)).size, idx.size);
  assert.ok(ms < 10000, `${ms} ms`);
});

test('offline: the last verified InRelease and cached files are used', async () => {
  await testArchive('bookworm').packages(); // make sure the shared cache is filled
  const off = new DebianArchive({
    suite: 'bookworm',
    cacheDir: SHARED_TEST_CACHE,
    offline: true,
    mirror: testArchive('bookworm').mirror,
  });
  const idx = await off.packages();
  assert.ok(idx.get('runc'));
  const none = new DebianArchive({ suite: 'bookworm', cacheDir: path.join(tmp, 'empty'), offline: true });
  await assert.rejects(none.packages(), /offline: no cached InRelease/);
});
