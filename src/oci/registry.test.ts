import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostHas, runTool } from '../../test/tools.js';
import { writeTar } from '../formats/tar.js';
import { UserError } from '../util/errors.js';
import { credentialsFor, parseChallenge } from './auth.js';
import { imageTree, loadImage, writeImage } from './image.js';
import { ImageStore, MEDIA_TYPE } from './layout.js';
import { RegistryClient } from './registry.js';
import { startProxy, startRegistry, type TestRegistry } from './testing-registry.js';

const missing = ['docker-registry', 'skopeo', 'htpasswd'].filter((t) => !hostHas(t));
const skip = missing.length
  ? `needs ${missing.join(', ')} (apt-get install docker-registry skopeo apache2-utils)`
  : false;

const work = mkdtempSync(path.join(os.tmpdir(), 'lk-reg-test-'));
after(() => rmSync(work, { recursive: true, force: true }));
let nStore = 0;
const newStore = () => new ImageStore(path.join(work, `store${++nStore}`));

/** A small image with `files` random-content files (the content makes its digests unique). */
async function makeImage(store: ImageStore, ref: string, bytes = 4096, layers = 2) {
  const tars: Buffer[] = [];
  for (let i = 0; i < layers; i++) {
    tars.push(
      writeTar([
        { path: 'data', kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 },
        { path: `data/f${i}`, kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data: randomBytes(bytes) },
      ] as never),
    );
  }
  const desc = await writeImage(store, { layers: tars, config: { Cmd: ['/bin/true'] } });
  await store.tag(ref, desc);
  return desc;
}

test('WWW-Authenticate challenges parse', () => {
  const c = parseChallenge(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
  );
  assert.deepEqual(c, {
    scheme: 'bearer',
    params: {
      realm: 'https://auth.docker.io/token',
      service: 'registry.docker.io',
      scope: 'repository:library/alpine:pull',
    },
  });
  assert.deepEqual(parseChallenge('Basic realm="x y"'), { scheme: 'basic', params: { realm: 'x y' } });
});

test('credentials from a Docker config: auths, and credential helpers', async () => {
  const dir = path.join(work, 'dockercfg');
  await mkdir(dir, { recursive: true });
  const helper = path.join(dir, 'docker-credential-lktest');
  // A real credential helper speaking the protocol: server URL on stdin, JSON on stdout.
  writeFileSync(
    helper,
    '#!/bin/sh\nread url\nif [ "$url" = "helped.example" ]; then echo \'{"Username":"hu","Secret":"hs"}\'; else echo "credentials not found in native keychain"; exit 1; fi\n',
  );
  await chmod(helper, 0o755);
  const cfg = path.join(dir, 'config.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw:with:colons').toString('base64') },
        'reg.example:5000': { username: 'u', password: 'p' },
      },
      credHelpers: { 'helped.example': 'lktest' },
    }),
  );
  const oldPath = process.env.PATH;
  process.env.PATH = `${dir}:${oldPath}`;
  try {
    assert.deepEqual(await credentialsFor('docker.io', cfg), { username: 'hub', password: 'pw:with:colons' });
    assert.deepEqual(await credentialsFor('reg.example:5000', cfg), { username: 'u', password: 'p' });
    assert.deepEqual(await credentialsFor('helped.example', cfg), { username: 'hu', password: 'hs' });
    assert.equal(await credentialsFor('other.example', cfg), undefined);
    assert.equal(await credentialsFor('x', path.join(dir, 'absent.json')), undefined);
  } finally {
    process.env.PATH = oldPath;
  }
});

describe('against a real registry (docker-registry), no auth', { skip }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(() => reg?.stop());

  test('push, skopeo sees the same digests, pull back, and skopeo-pushed images pull', async () => {
    const src = newStore();
    const desc = await makeImage(src, 'docker.io/linuxkit/regtest:1');
    const client = new RegistryClient({ chunkSize: 3000 }); // the layers go in PATCH chunks
    const dst = `${reg.host}/x/regtest:1`;
    const pushed = await client.push(src, 'docker.io/linuxkit/regtest:1', dst);
    assert.equal(pushed.uploaded, 3);
    assert.equal(pushed.desc.digest, desc.digest);
    const raw = runTool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dst}`]);
    assert.equal(
      `sha256:${(await import('node:crypto')).createHash('sha256').update(raw).digest('hex')}`,
      desc.digest,
    );
    const info = JSON.parse(runTool('skopeo', ['inspect', '--tls-verify=false', `docker://${dst}`])) as {
      Digest: string;
      Layers: string[];
    };
    const local = await loadImage(src, 'docker.io/linuxkit/regtest:1');
    assert.deepEqual(
      info.Layers,
      local!.manifest.layers.map((l) => l.digest),
    );

    // A second push finds everything in place (HEAD before upload).
    const again = await client.push(src, 'docker.io/linuxkit/regtest:1', dst);
    assert.equal(again.uploaded, 0);
    assert.equal(again.existing, 3);
    // Another repository on the same registry mounts the blobs instead of uploading them.
    const mounted = await client.push(src, 'docker.io/linuxkit/regtest:1', `${reg.host}/y/other:2`, {
      mountFrom: dst,
    });
    assert.equal(mounted.mounted, 3);
    assert.equal(mounted.uploaded, 0);

    // Pull into an empty store: same digests, same files.
    const fresh = newStore();
    const pulled = await new RegistryClient().pull(fresh, dst);
    assert.equal(pulled.desc.digest, desc.digest);
    const img = await loadImage(fresh, dst);
    assert.equal(img!.digest, local!.digest);
    const t1 = await imageTree(fresh, img!.manifest);
    const t2 = await imageTree(src, local!.manifest);
    assert.deepEqual(
      [...t1.entries()].map((e) => e.path),
      [...t2.entries()].map((e) => e.path),
    );

    // What skopeo copies into the registry (from an OCI layout) we pull, by tag and by digest.
    const layout = path.join(work, 'skopeo-layout');
    runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${dst}`, `oci:${layout}:img`]);
    runTool('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      `oci:${layout}:img`,
      `docker://${reg.host}/z/viaskopeo:t`,
    ]);
    const digest = JSON.parse(
      runTool('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/z/viaskopeo:t`]),
    ).Digest as string;
    const s3 = newStore();
    const byTag = await new RegistryClient().pull(s3, `${reg.host}/z/viaskopeo:t`);
    assert.equal(byTag.desc.digest, digest);
    const byDigest = await new RegistryClient().pull(newStore(), `${reg.host}/z/viaskopeo@${digest}`);
    assert.equal(byDigest.manifestDigest, (await loadImage(s3, `${reg.host}/z/viaskopeo:t`))!.digest);
  });

  test('a blob altered in transit is refused, naming its digest; nothing becomes visible', async () => {
    const src = newStore();
    await makeImage(src, 'docker.io/linuxkit/tamper:1', 100_000, 1);
    await new RegistryClient().push(src, 'docker.io/linuxkit/tamper:1', `${reg.host}/x/tamper:1`);
    const img = await loadImage(src, 'docker.io/linuxkit/tamper:1');
    const proxy = await startProxy(reg.host, { tamperBlobs: true });
    try {
      const store = newStore();
      await assert.rejects(
        new RegistryClient({ attempts: 1 }).pull(store, `${proxy.host}/x/tamper:1`),
        (e: Error) =>
          e instanceof UserError &&
          /does not match its digest/.test(e.message) &&
          (e.message.includes(img!.manifest.layers[0]!.digest) ||
            e.message.includes(img!.manifest.config.digest)),
      );
      assert.equal(await store.resolve(`${proxy.host}/x/tamper:1`), undefined);
      for (const b of [img!.manifest.config, ...img!.manifest.layers])
        assert.equal(await store.hasBlob(b.digest), false);
    } finally {
      await proxy.stop();
    }
  });

  test('retries honour Retry-After; a broken download resumes with a Range request', async () => {
    const src = newStore();
    await makeImage(src, 'docker.io/linuxkit/flaky:1', 300_000, 1);
    await new RegistryClient().push(src, 'docker.io/linuxkit/flaky:1', `${reg.host}/x/flaky:1`);
    const proxy = await startProxy(reg.host, {
      fail: (n) => (n === 0 ? { status: 503, headers: { 'retry-after': '1' } } : undefined),
      cutBlobsAfter: 70_000,
    });
    try {
      const client = new RegistryClient({ backoffMs: 10 });
      const t0 = Date.now();
      const r = await client.pull(newStore(), `${proxy.host}/x/flaky:1`);
      assert.ok(Date.now() - t0 >= 1000, 'waited for Retry-After');
      assert.ok(r.bytes > 300_000);
      assert.ok(client.stats.resumed >= 1, 'resumed');
      assert.ok(
        proxy.seen.some((s) => / bytes=\d+-$/.test(s)),
        `a Range request: ${proxy.seen.join('\n')}`,
      );
    } finally {
      await proxy.stop();
    }
  });

  test('an index pulls only the asked platform; a missing platform is a clear error', async () => {
    const src = newStore();
    const desc = await makeImage(src, 'docker.io/linuxkit/plat:1', 1000, 1);
    assert.equal(desc.mediaType, MEDIA_TYPE.index);
    await new RegistryClient().push(src, 'docker.io/linuxkit/plat:1', `${reg.host}/x/plat:1`);
    await assert.rejects(
      new RegistryClient().pull(newStore(), `${reg.host}/x/plat:1`, {
        platform: { os: 'linux', architecture: 'arm64' },
      }),
      /has no image for linux\/arm64 \(it has: linux\/amd64\)/,
    );
    await assert.rejects(new RegistryClient().pull(newStore(), `${reg.host}/x/absent:1`), (e: Error) =>
      /HTTP 404/.test(e.message),
    );
  });
});

describe('against a real registry with htpasswd basic auth', { skip }, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ user: 'lk', password: 's3cret' });
  });
  after(() => reg?.stop());

  test('without credentials a push is refused; with ~/.docker/config.json auths it works both ways', async () => {
    const src = newStore();
    const desc = await makeImage(src, 'docker.io/linuxkit/authed:1');
    const noCreds = new RegistryClient({ dockerConfig: path.join(work, 'none.json') });
    await assert.rejects(
      noCreds.push(src, 'docker.io/linuxkit/authed:1', `${reg.host}/x/authed:1`),
      /docker login/,
    );
    const cfg = path.join(reg.dockerConfigDir!, 'config.json');
    const client = new RegistryClient({ dockerConfig: cfg });
    await client.push(src, 'docker.io/linuxkit/authed:1', `${reg.host}/x/authed:1`);
    const info = JSON.parse(
      runTool('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--creds',
        'lk:s3cret',
        `docker://${reg.host}/x/authed:1`,
      ]),
    ) as { Digest: string };
    assert.equal(info.Digest, desc.digest); // the tag's root: our index
    const pulled = await client.pull(newStore(), `${reg.host}/x/authed:1`);
    assert.equal(pulled.desc.digest, desc.digest);
    // skopeo pushes with credentials, we pull what it pushed.
    const layout = path.join(work, 'auth-layout');
    runTool('skopeo', [
      'copy',
      '--src-creds',
      'lk:s3cret',
      '--src-tls-verify=false',
      `docker://${reg.host}/x/authed:1`,
      `oci:${layout}:a`,
    ]);
    runTool('skopeo', [
      'copy',
      '--dest-creds',
      'lk:s3cret',
      '--dest-tls-verify=false',
      `oci:${layout}:a`,
      `docker://${reg.host}/x/fromskopeo:1`,
    ]);
    const p2 = await client.pull(newStore(), `${reg.host}/x/fromskopeo:1`);
    assert.ok(p2.manifestDigest.startsWith('sha256:'));
  });
});

describe('against a real registry with bearer tokens (auth: token, our token service)', {
  skip: skip || (hostHas('openssl') ? false : 'needs openssl'),
}, () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ user: 'tk', password: 'pw' }, 'token');
  });
  after(() => reg?.stop());

  test('the WWW-Authenticate bearer flow gets scoped tokens with the config credentials', async () => {
    const src = newStore();
    const desc = await makeImage(src, 'docker.io/linuxkit/tok:1');
    await assert.rejects(
      new RegistryClient({ dockerConfig: path.join(work, 'none.json') }).push(
        src,
        'linuxkit/tok:1',
        `${reg.host}/x/tok:1`,
      ),
      /token service .* refused an anonymous request/,
    );
    const client = new RegistryClient({ dockerConfig: path.join(reg.dockerConfigDir!, 'config.json') });
    await client.push(src, 'linuxkit/tok:1', `${reg.host}/x/tok:1`);
    await client.push(src, 'linuxkit/tok:1', `${reg.host}/x/tok2:1`, { mountFrom: `${reg.host}/x/tok:1` });
    const pulled = await new RegistryClient({
      dockerConfig: path.join(reg.dockerConfigDir!, 'config.json'),
    }).pull(newStore(), `${reg.host}/x/tok:1`);
    assert.equal(pulled.desc.digest, desc.digest);
    assert.ok(reg.tokenScopes!.includes('repository:x/tok:pull,push'), reg.tokenScopes!.join('\n'));
    assert.ok(reg.tokenScopes!.includes('repository:x/tok2:pull,push repository:x/tok:pull'));
    assert.ok(reg.tokenScopes!.includes('repository:x/tok:pull'));
  });
});
