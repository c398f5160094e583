/**
 * build.lock against the real Debian archive: lock, rebuild from the lock to the same image,
 * a stale lock (build.yml changed) and a lock the mirror cannot satisfy fail with the fix.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { SHARED_TEST_CACHE } from '../debian/testing.js';
import { ImageStore } from '../oci/layout.js';
import { buildPackage, planPackage, whyPackage } from './build.js';
import { decodeLock, encodeLock, makeLock, readLock, writeLock } from './lock.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function setup() {
  const store = new ImageStore(path.join(dir, 'cache'));
  await store.init();
  const pkg = path.join(dir, 'pkg');
  await import('node:fs/promises').then((f) => f.mkdir(pkg, { recursive: true }));
  await writeFile(
    path.join(pkg, 'build.yml'),
    'image: locktest\ndebian:\n  packages: [libseccomp2]\nfiles:\n  - path: /hello\n    contents: hi\n',
  );
  return { store, pkg, opts: { store, debianCacheDir: SHARED_TEST_CACHE } };
}

test('lock round trip: pkg lock, then build from the lock gives the same image', {
  timeout: 300_000,
}, async () => {
  const { pkg, opts } = await setup();
  const plan = await planPackage(pkg, opts);
  assert.equal(plan.locked, false);
  const names = plan.debs.map((d) => d.name);
  assert.ok(names.includes('libseccomp2') && names.includes('libc6'), names.join(' '));
  const lock = makeLock(plan.yml, plan.debs);
  assert.deepEqual(decodeLock(encodeLock(lock), 'x'), lock);
  await writeLock(pkg, lock);
  assert.deepEqual(await readLock(pkg), lock);
  const unlocked = await buildPackage(pkg, { ...opts, ignoreLock: true });
  const locked = await planPackage(pkg, opts);
  assert.equal(locked.locked, true);
  assert.equal(locked.tag, plan.tag);
  const rebuilt = await buildPackage(pkg, { ...opts, force: true });
  assert.equal(rebuilt.digest, unlocked.digest);
  assert.match(await whyPackage(pkg, 'libc6', opts), /^libc6 \S+: libseccomp2 -> libc6$/);
});

test('a stale lock and a lock the mirror cannot satisfy fail, naming the package and the fix', {
  timeout: 300_000,
}, async () => {
  const { pkg, opts } = await setup();
  const plan = await planPackage(pkg, { ...opts, ignoreLock: true });
  const lock = makeLock(plan.yml, plan.debs);
  const gone = lock.packages.find((p) => p.name === 'libseccomp2')!;
  gone.version = '0.0-0';
  gone.filename = 'pool/main/libs/libseccomp/libseccomp2_0.0-0_amd64.deb';
  gone.sha256 = '0'.repeat(64);
  await writeLock(pkg, lock);
  await assert.rejects(
    buildPackage(pkg, { ...opts, force: true }),
    /package libseccomp2 0\.0-0 pinned by .*build\.lock cannot be fetched .*linuxkit pkg lock/s,
  );
  const yml = await readFile(path.join(pkg, 'build.yml'), 'utf8');
  await writeFile(path.join(pkg, 'build.yml'), yml.replace('[libseccomp2]', '[libseccomp2, zlib1g]'));
  await assert.rejects(planPackage(pkg, opts), /build\.lock was made for another debian: section.*pkg lock/);
});
