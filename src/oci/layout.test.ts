import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../util/errors.js';
import { sha256Digest } from './digest.js';
import { ANNOTATION, ImageStore, MEDIA_TYPE } from './layout.js';

const temps: string[] = [];
async function tempStore(): Promise<ImageStore> {
  const dir = await mkdtemp(join(tmpdir(), 'lk-oci-'));
  temps.push(dir);
  const s = new ImageStore(join(dir, 'cache'));
  await s.init();
  return s;
}
after(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

/** A pid that surely belongs to no process: one that has just exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}

test('init lays out oci-layout, an empty index.json and blobs/sha256, idempotently', async () => {
  const s = await tempStore();
  await s.init();
  assert.deepEqual(JSON.parse(await readFile(join(s.dir, 'oci-layout'), 'utf8')), {
    imageLayoutVersion: '1.0.0',
  });
  const index = JSON.parse(await readFile(join(s.dir, 'index.json'), 'utf8'));
  assert.deepEqual(index, { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: [] });
  assert.ok((await stat(join(s.dir, 'blobs', 'sha256'))).isDirectory());
  // a second store on the same directory keeps what is there
  const d = await s.writeBlob(Buffer.from('x'));
  await s.tag('a', { mediaType: MEDIA_TYPE.config, ...d });
  await new ImageStore(s.dir).init();
  assert.equal((await s.list()).length, 1);
});

test('writeBlob stores content under its sha256 and leaves no temp file', async () => {
  const s = await tempStore();
  const data = Buffer.from('hello blob\n');
  const { digest, size } = await s.writeBlob(data);
  assert.equal(digest, sha256Digest(data));
  assert.equal(size, data.length);
  assert.deepEqual(await readFile(join(s.dir, 'blobs', 'sha256', digest.slice(7))), data);
  assert.deepEqual(await s.readBlob(digest), data);
  assert.ok(await s.hasBlob(digest));
  assert.deepEqual(await readdir(join(s.dir, 'blobs', 'sha256')), [digest.slice(7)]);
  // present: a no-op that keeps the same file
  const ino = (await stat(s.blobPath(digest))).ino;
  assert.deepEqual(await s.writeBlob(data, digest), { digest, size });
  assert.equal((await stat(s.blobPath(digest))).ino, ino);
});

test('writeBlob refuses content that does not match the expected digest, before it is visible', async () => {
  const s = await tempStore();
  const wrong = sha256Digest(Buffer.from('other'));
  await assert.rejects(
    s.writeBlob(Buffer.from('data'), wrong),
    (e: unknown) => e instanceof UserError && e.message.includes(wrong),
  );
  assert.equal(await s.hasBlob(wrong), false);
  assert.deepEqual(await readdir(join(s.dir, 'blobs', 'sha256')), []);
  await assert.rejects(s.writeBlob(Buffer.from('data'), 'sha256:nothex'), UserError);
});

test('a truncated leftover blob is rewritten, not trusted', async () => {
  const s = await tempStore();
  const data = Buffer.from('0123456789');
  const digest = sha256Digest(data);
  await writeFile(s.blobPath(digest), data.subarray(0, 4));
  await s.writeBlob(data);
  assert.deepEqual(await s.readBlob(digest), data);
});

test('a blob with a flipped byte on disk is refused with an error naming the digest and path', async () => {
  const s = await tempStore();
  const { digest } = await s.writeBlob(Buffer.from('precious layer data'));
  const path = s.blobPath(digest);
  const bytes = await readFile(path);
  bytes[3] = (bytes[3] as number) ^ 0x01;
  await writeFile(path, bytes);
  await assert.rejects(
    s.readBlob(digest),
    (e: unknown) => e instanceof UserError && e.message.includes(digest) && e.message.includes(path),
  );
  const missing = sha256Digest(Buffer.from('never written'));
  await assert.rejects(
    s.readBlob(missing),
    (e: unknown) => e instanceof UserError && e.message.includes(missing),
  );
});

test('writeBlobStream hashes while writing and publishes only verified content', async () => {
  const s = await tempStore();
  const parts = [Buffer.from('chunk one, '), Buffer.from('chunk two')];
  const all = Buffer.concat(parts);
  const digest = sha256Digest(all);
  async function* gen(p: Buffer[]) {
    yield* p;
  }
  await assert.rejects(s.writeBlobStream(gen([parts[0] as Buffer]), { digest }), UserError);
  await assert.rejects(s.writeBlobStream(gen(parts), { digest, size: all.length - 1 }), UserError);
  assert.deepEqual(await readdir(join(s.dir, 'blobs', 'sha256')), []);
  assert.deepEqual(await s.writeBlobStream(gen(parts), { digest, size: all.length }), {
    digest,
    size: all.length,
  });
  assert.deepEqual(await s.readBlob(digest), all);
});

test('tag records the fully expanded reference; resolve finds it by any spelling; re-tag replaces', async () => {
  const s = await tempStore();
  const a = { mediaType: MEDIA_TYPE.manifest, ...(await s.writeBlob(Buffer.from('{"a":1}'))) };
  const b = { mediaType: MEDIA_TYPE.index, ...(await s.writeBlob(Buffer.from('{"b":2}'))) };
  await s.tag('linuxkit/init:v1', a);
  await s.tag('alpine', b);
  const index = JSON.parse(await readFile(join(s.dir, 'index.json'), 'utf8'));
  assert.deepEqual(
    index.manifests.map((d: { annotations: Record<string, string> }) => d.annotations[ANNOTATION.refName]),
    ['docker.io/linuxkit/init:v1', 'docker.io/library/alpine:latest'],
  );
  assert.equal((await s.resolve('docker.io/linuxkit/init:v1'))?.digest, a.digest);
  assert.equal((await s.resolve('linuxkit/init:v1'))?.digest, a.digest);
  assert.equal((await s.resolve('alpine:latest'))?.digest, b.digest);
  assert.equal(await s.resolve('linuxkit/init:v2'), undefined);
  // by digest, with or without a tag
  assert.equal((await s.resolve(`anything@${a.digest}`))?.digest, a.digest);
  assert.equal((await s.resolve(`linuxkit/init:zz@${b.digest}`))?.mediaType, MEDIA_TYPE.index);

  await s.tag('docker.io/linuxkit/init:v1', b);
  const list = await s.list();
  assert.deepEqual(
    list.map((e) => [e.ref, e.desc.digest]),
    [
      ['docker.io/library/alpine:latest', b.digest],
      ['docker.io/linuxkit/init:v1', b.digest],
    ],
  );
  assert.equal(await s.untag('linuxkit/init:v1'), true);
  assert.equal(await s.untag('linuxkit/init:v1'), false);
  assert.equal(await s.resolve('linuxkit/init:v1'), undefined);
});

test('tag refuses a descriptor whose blob is missing, or a bad reference', async () => {
  const s = await tempStore();
  const d = { mediaType: MEDIA_TYPE.manifest, digest: sha256Digest(Buffer.from('nope')), size: 4 };
  await assert.rejects(
    s.tag('x:y', d),
    (e: unknown) => e instanceof UserError && e.message.includes(d.digest),
  );
  await assert.rejects(
    s.tag('Bad:Ref', d),
    (e: unknown) => e instanceof UserError && e.message.includes('Bad:Ref'),
  );
  assert.deepEqual(await s.list(), []);
});

test('concurrent tags in one process all land', async () => {
  const s = await tempStore();
  const d = { mediaType: MEDIA_TYPE.manifest, ...(await s.writeBlob(Buffer.from('{}'))) };
  await Promise.all(Array.from({ length: 30 }, (_, i) => s.tag(`x/y:t${i}`, d)));
  assert.equal((await s.list()).length, 30);
});

test('a lock left by a dead process is broken; a live holder is waited for', async () => {
  const s = await tempStore();
  const d = { mediaType: MEDIA_TYPE.manifest, ...(await s.writeBlob(Buffer.from('{}'))) };
  const lock = join(s.dir, 'index.json.lock');
  await writeFile(lock, `${deadPid()}\n`);
  await s.tag('a:1', d);
  assert.equal((await s.list()).length, 1);
  await assert.rejects(stat(lock)); // released

  // a live process (a sleeping child) holds it: tag waits until the lock goes
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
  try {
    await writeFile(lock, `${child.pid}\n`);
    let done = false;
    const p = s.tag('b:2', d).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(done, false, 'tag must wait while a live process holds the lock');
    await rm(lock);
    await p;
    assert.equal((await s.list()).length, 2);
  } finally {
    child.kill();
  }
});

test('concurrent tag() from 4 processes x 20 refs loses no update', async () => {
  const s = await tempStore();
  const d = { mediaType: MEDIA_TYPE.manifest, ...(await s.writeBlob(Buffer.from('{"m":1}'))) };
  const layoutUrl = new URL('./layout.js', import.meta.url).href;
  const script = `
    const { ImageStore } = await import(${JSON.stringify(layoutUrl)});
    const [dir, who, desc] = process.argv.slice(1);
    const s = new ImageStore(dir);
    for (let i = 0; i < 20; i++) await s.tag('proc' + who + '/img:t' + i, JSON.parse(desc));
  `;
  const runs = [0, 1, 2, 3].map(
    (who) =>
      new Promise<number>((res, rej) => {
        const c = spawn(
          process.execPath,
          ['--input-type=module', '-e', script, s.dir, String(who), JSON.stringify(d)],
          {
            stdio: ['ignore', 'ignore', 'inherit'],
          },
        );
        c.on('error', rej);
        c.on('exit', (code) => res(code ?? -1));
      }),
  );
  assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
  const refs = (await s.list()).map((e) => e.ref).sort();
  assert.equal(refs.length, 80);
  assert.equal(new Set(refs).size, 80);
  assert.ok(refs.includes('docker.io/proc3/img:t19'));
  // nothing left behind but the layout itself
  assert.deepEqual((await readdir(s.dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
});

test('a corrupt index.json is a UserError naming it', async () => {
  const s = await tempStore();
  await writeFile(join(s.dir, 'index.json'), '{"schemaVersion":2,');
  await assert.rejects(s.list(), (e: unknown) => e instanceof UserError && e.message.includes('index.json'));
});
