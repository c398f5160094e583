/**
 * Images through a real registry (Debian's docker-registry on 127.0.0.1): skopeo copies our
 * package images into it, a YAML references them as 127.0.0.1:PORT/x/NAME:1 and builds with an
 * empty cache (pulling them); `--pull` re-resolves a moved tag; 4 builds at once on one cache and
 * 50 SIGKILLs at random moments of pulls and builds leave `cache verify` clean. Prints the pull
 * throughput against `skopeo copy` of the same image.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ImageStore } from '../../src/oci/layout.js';
import { cleanStore, verifyStore } from '../../src/oci/maintain.js';
import { RegistryClient } from '../../src/oci/registry.js';
import { startRegistry, type TestRegistry } from '../../src/oci/testing-registry.js';
import { cli, REPO, TEST_CACHE, tempDir } from '../helpers.js';
import { hostHas, runTool } from '../tools.js';

const missing = ['docker-registry', 'skopeo'].filter((t) => !hostHas(t));
const skip = missing.length ? `needs ${missing.join(', ')} (apt-get install docker-registry skopeo)` : false;

const dir = tempDir('lk-e2e-registry-');
const BIN = path.join(REPO, 'bin', 'linuxkit.js');

/** Run the CLI asynchronously (so several run at once); resolves with its exit code and stderr. */
function cliAsync(args: string[], cache: string, kill?: { afterLine: RegExp; delayMs: number }) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, LINUXKIT_CACHE: cache },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let timer: NodeJS.Timeout | undefined;
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    // Kill relative to the moment the transfer starts, so the kills land inside it.
    if (kill && !timer && kill.afterLine.test(stderr))
      timer = setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
  });
  child.stdout.resume();
  return new Promise<{ code: number | null; signal: string | null; stderr: string; ms: number }>(
    (resolve) => {
      const t0 = performance.now();
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({ code, signal, stderr, ms: performance.now() - t0 });
      });
    },
  );
}

/** A small deterministic PRNG, so a failing run can be repeated with the seed it prints. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function assertClean(cache: string, what: string) {
  const r = await verifyStore(new ImageStore(cache));
  assert.deepEqual(r.corrupt, [], `${what}: corrupt blobs`);
  assert.deepEqual(r.dangling, [], `${what}: dangling references`);
  return r;
}

describe('images through a real registry', { skip }, () => {
  let reg: TestRegistry;
  const tags: Record<string, string> = {};
  let yaml: string;
  let smallYaml: string;
  before(async () => {
    reg = await startRegistry();
    for (const name of ['test', 'kernel']) {
      const r = cli(['pkg', 'build', path.join(REPO, 'pkg', name)]);
      if (r.code === 0)
        tags[name] = r.stdout.trim(); // linuxkit/NAME:TAG
      else {
        // The package source may be mid-change: any earlier build of it serves as well here.
        const earlier = (await new ImageStore(TEST_CACHE).list()).filter((e) =>
          e.ref.startsWith(`docker.io/linuxkit/${name}:`),
        );
        assert.ok(earlier.length, r.stderr);
        tags[name] = earlier[earlier.length - 1]!.ref.replace(/^docker\.io\//, '');
      }
      runTool(
        'skopeo',
        [
          'copy',
          '--dest-tls-verify=false',
          `oci:${TEST_CACHE}:docker.io/${tags[name]}`,
          `docker://${reg.host}/x/${name}:1`,
        ],
        { timeoutMs: 300_000 },
      );
    }
    yaml = path.join(dir, 'reg.yml');
    await writeFile(
      yaml,
      `kernel:\n  image: ${reg.host}/x/kernel:1\n  cmdline: console=ttyS0\nonboot:\n  - name: check\n    image: ${reg.host}/x/test:1\n`,
    );
    smallYaml = path.join(dir, 'small.yml');
    await writeFile(smallYaml, `onboot:\n  - name: check\n    image: ${reg.host}/x/test:1\n`);
  });
  after(() => reg?.stop());

  test('a YAML naming 127.0.0.1:PORT/x/test:1 builds with an empty cache; --pull follows a moved tag', async () => {
    const cache = path.join(dir, 'fresh-cache');
    const out = path.join(dir, 'out1');
    const r = cli(['build', '--format', 'tar', '--dir', out, smallYaml], { env: { LINUXKIT_CACHE: cache } });
    assert.equal(r.code, 0, r.stderr);
    const listing = runTool('tar', ['-tf', path.join(out, 'small.tar')]);
    assert.match(listing, /containers\/onboot\/000-check\/rootfs\//);
    const ls = cli(['cache', 'ls'], { env: { LINUXKIT_CACHE: cache } }).stdout;
    const before = ls.split('\n').find((l) => l.startsWith(`${reg.host}/x/test:1 `));
    assert.ok(before, ls);
    await assertClean(cache, 'after the build');

    // Move the tag to another image: a plain build keeps the cached one, --pull fetches the new.
    runTool('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      `oci:${TEST_CACHE}:docker.io/${tags.kernel}`,
      `docker://${reg.host}/x/test:1`,
    ]);
    assert.equal(
      cli(['build', '--format', 'tar', '--dir', out, smallYaml], { env: { LINUXKIT_CACHE: cache } }).code,
      0,
    );
    assert.ok(cli(['cache', 'ls'], { env: { LINUXKIT_CACHE: cache } }).stdout.includes(before));
    const p = cli(['build', '--pull', '--format', 'tar', '--dir', out, smallYaml], {
      env: { LINUXKIT_CACHE: cache },
    });
    assert.equal(p.code, 0, p.stderr);
    assert.ok(
      !cli(['cache', 'ls'], { env: { LINUXKIT_CACHE: cache } }).stdout.includes(before),
      'the tag was re-resolved',
    );
    // Put the tag back for the other tests.
    runTool('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      `oci:${TEST_CACHE}:docker.io/${tags.test}`,
      `docker://${reg.host}/x/test:1`,
    ]);
  });

  test('oci-archive:PATH and oci:DIR:NAME images build', async () => {
    const cache = path.join(dir, 'archive-cache');
    const archive = path.join(dir, 'test.oci.tar');
    const ex = cli(['cache', 'export', '--outfile', archive, tags.test!]);
    assert.equal(ex.code, 0, ex.stderr);
    const y = path.join(dir, 'archives.yml');
    await writeFile(
      y,
      `onboot:\n  - name: a\n    image: oci-archive:test.oci.tar\n  - name: b\n    image: oci:${TEST_CACHE}:docker.io/${tags.test}\n`,
    );
    const out = path.join(dir, 'out-archives');
    const r = cli(['build', '--format', 'tar', '--dir', out, y], { env: { LINUXKIT_CACHE: cache } });
    assert.equal(r.code, 0, r.stderr);
    const listing = runTool('tar', ['-tf', path.join(out, 'archives.tar')]);
    assert.match(listing, /containers\/onboot\/000-a\/rootfs\//);
    assert.match(listing, /containers\/onboot\/001-b\/rootfs\//);
    await assertClean(cache, 'after building from archives');
    await writeFile(y, 'onboot:\n  - name: a\n    image: oci-archive:absent.tar\n');
    const bad = cli(['build', '--format', 'tar', '--dir', out, y], { env: { LINUXKIT_CACHE: cache } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /archives\.yml:3:\d+: cannot read .*absent\.tar/);
  });

  test('pull throughput from the loopback registry, against skopeo copy of the same image', async (t) => {
    const ref = `${reg.host}/x/kernel:1`;
    const ours: number[] = [];
    const inProcess: number[] = [];
    const theirs: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const cache = path.join(dir, `speed-${i}`);
      const r = await cliAsync(['cache', 'pull', ref], cache);
      assert.equal(r.code, 0, r.stderr);
      ours.push(r.ms);
      bytes = (await verifyStore(new ImageStore(cache))).bytes;
      const t1 = performance.now();
      await new RegistryClient().pull(new ImageStore(path.join(dir, `speed-lib-${i}`)), ref);
      inProcess.push(performance.now() - t1);
      const t0 = performance.now();
      runTool('skopeo', [
        'copy',
        '-q',
        '--src-tls-verify=false',
        `docker://${ref}`,
        `oci:${path.join(dir, `skopeo-${i}`)}:k`,
      ]);
      theirs.push(performance.now() - t0);
    }
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[1]!;
    const line = `pull of ${(bytes / 1e6).toFixed(1)} MB: linuxkit cache pull ${med(ours).toFixed(0)} ms (${(bytes / 1e3 / med(ours)).toFixed(1)} MB/s, including node start; ${med(inProcess).toFixed(0)} ms = ${(bytes / 1e3 / med(inProcess)).toFixed(1)} MB/s in process), skopeo copy ${med(theirs).toFixed(0)} ms (${(bytes / 1e3 / med(theirs)).toFixed(1)} MB/s); medians of 3`;
    t.diagnostic(line);
    console.log(`# ${line}`);
    assert.ok(bytes > 1e6);
  });

  test('4 concurrent builds on one cache: all succeed with identical outputs, cache verify clean', async (t) => {
    const cache = path.join(dir, 'concurrent-cache');
    const t0 = performance.now();
    const runs = await Promise.all(
      [0, 1, 2, 3].map((i) => cliAsync(['build', '--dir', path.join(dir, `c${i}`), yaml], cache)),
    );
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const sums = [0, 1, 2, 3].map((i) =>
      createHash('sha256')
        .update(readFileSync(path.join(dir, `c${i}`, 'reg-initrd.img')))
        .digest('hex'),
    );
    assert.equal(new Set(sums).size, 1, 'identical initrds');
    const v = await assertClean(cache, 'after 4 concurrent builds');
    const line = `4 concurrent builds (kernel + test image pulled from the registry): ${((performance.now() - t0) / 1000).toFixed(1)} s, verify: ${v.blobs} blobs, 0 corrupt, 0 dangling, ${v.leftovers.length} leftovers`;
    t.diagnostic(line);
    console.log(`# ${line}`);
  });

  test('50 SIGKILLs at random moments of pulls and builds leave the cache valid', async (t) => {
    const cache = path.join(dir, 'kill-cache');
    const store = new ImageStore(cache);
    const seed = Number(process.env.LK_KILL_SEED ?? Date.now() % 100000);
    const rnd = prng(seed);
    // How long a whole pull takes here, so the kills land during the transfer.
    const full = await cliAsync(['cache', 'pull', `${reg.host}/x/kernel:1`], cache);
    assert.equal(full.code, 0, full.stderr);
    const transfer = /pulled .* in ([\d.]+) s/.exec(full.stderr);
    const transferMs = transfer ? Number(transfer[1]) * 1000 : 500;
    let killed = 0;
    let midTransfer = 0;
    let finished = 0;
    for (let i = 0; i < 50; i++) {
      // Start each pull from nothing now and then, so most kills hit a real download.
      if (i % 2 === 0) {
        for (const { ref } of await store.list()) await store.untag(ref);
        await cleanStore(store);
      }
      const args =
        i % 5 === 4
          ? ['build', '--format', 'tar', '--dir', path.join(dir, 'kill-out'), smallYaml]
          : ['cache', 'pull', `${reg.host}/x/kernel:1`, `${reg.host}/x/test:1`];
      const blobsBefore = (await verifyStore(store)).blobs;
      const delayMs = Math.floor(rnd() * transferMs * 1.2);
      const r = await cliAsync(args, cache, { afterLine: /pulling /, delayMs });
      if (r.signal === 'SIGKILL') {
        killed++;
        // Killed after some blobs landed but before the tag: the dangerous window.
        const v = await verifyStore(store);
        if (v.blobs > blobsBefore || v.leftovers.length) midTransfer++;
      } else {
        assert.equal(r.code, 0, r.stderr);
        finished++;
      }
      await assertClean(cache, `after kill ${i} (seed ${seed})`);
    }
    const v = await assertClean(cache, 'at the end');
    // And the cache still works: a full pull and a build.
    const again = await cliAsync(['cache', 'pull', `${reg.host}/x/kernel:1`, `${reg.host}/x/test:1`], cache);
    assert.equal(again.code, 0, again.stderr);
    const verifyOut = cli(['cache', 'verify'], { env: { LINUXKIT_CACHE: cache } });
    assert.equal(verifyOut.code, 0, verifyOut.stderr);
    const line = `50 runs (seed ${seed}; kills 0-${(transferMs * 1.2).toFixed(0)} ms after a transfer starts): ${killed} killed by SIGKILL (${midTransfer} of them mid-transfer: some blobs or temp files written, no tag yet), ${finished} finished first; cache verify after each: 0 corrupt, 0 dangling (${v.leftovers.length} temp files of killed writers left, invisible; cache clean removes them)`;
    t.diagnostic(line);
    console.log(`# ${line}`);
  });
});
