import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { signature, stampKey, upToDate, writeStamp } from './stamp.js';

describe('signature', () => {
  const dir = tempDir('lk-stamp-');
  const pkg = path.join(dir, 'pkg');
  mkdirSync(path.join(pkg, 'sub'), { recursive: true });
  writeFileSync(path.join(pkg, 'build.yml'), 'image: x\n');
  writeFileSync(path.join(pkg, 'sub', 'f'), 'abc');

  it('follows content, not timestamps', async () => {
    const a = await signature(pkg);
    utimesSync(path.join(pkg, 'sub', 'f'), 1, 1);
    assert.equal(await signature(pkg), a, 'a touch changes nothing');
    writeFileSync(path.join(pkg, 'sub', 'f'), 'abd');
    assert.notEqual(await signature(pkg), a, 'same size, other bytes');
  });

  it('sees added files, symlink targets and absent paths', async () => {
    const a = await signature(pkg);
    writeFileSync(path.join(pkg, 'sub', 'new'), '');
    const b = await signature(pkg);
    assert.notEqual(b, a);
    symlinkSync('f', path.join(pkg, 'link'));
    const c = await signature(pkg);
    assert.notEqual(c, b);
    assert.equal(await signature(path.join(dir, 'nothing')), 'absent');
  });
});

describe('upToDate', () => {
  const dir = tempDir('lk-stamp-');
  const yml = path.join(dir, 'a.yml');
  const out = path.join(dir, 'a-initrd.img');
  writeFileSync(yml, 'kernel: {}\n');
  writeFileSync(out, 'initrd');
  const opts = { file: yml, formats: ['kernel+initrd'], dir, cacheDir: path.join(dir, 'cache') };

  it('holds until an input, an output, an option or the expiry changes', async () => {
    const key = stampKey(opts)!;
    assert.equal(await upToDate(key), undefined, 'no stamp yet');
    await writeStamp(key, [yml], [out]);
    assert.deepEqual(await upToDate(key), [out]);
    assert.equal(await upToDate(stampKey({ ...opts, formats: ['iso-bios'] })), undefined);
    assert.equal(await upToDate(stampKey({ ...opts, compress: 'lz4' })), undefined);
    // Rewritten in place, same bytes (pinned to another mtime: the clock may not have ticked).
    writeFileSync(out, 'initrd');
    utimesSync(out, 5, 5);
    assert.equal(await upToDate(key), undefined);
    await writeStamp(key, [yml], [out]);
    writeFileSync(yml, 'kernel: []\n');
    assert.equal(await upToDate(key), undefined);
    await writeStamp(key, [yml], [out], Date.now() - 1);
    assert.equal(await upToDate(key), undefined, 'expired');
  });

  it('follows the tags it used in the cache index, not the rest of the index', async () => {
    const key = stampKey(opts)!;
    const entry = (name: string, digest: string) => ({
      digest,
      annotations: { 'org.opencontainers.image.ref.name': name },
    });
    const index = (...manifests: object[]) =>
      writeFileSync(path.join(opts.cacheDir, 'index.json'), JSON.stringify({ manifests }));
    mkdirSync(opts.cacheDir, { recursive: true });
    writeFileSync(yml, 'kernel: {}\n');
    index(entry('docker.io/library/a:1', 'sha256:aa'));
    await writeStamp(key, [yml], [out], undefined, [['docker.io/library/a:1', 'sha256:aa']]);
    assert.deepEqual(await upToDate(key), [out]);
    index(entry('docker.io/library/a:1', 'sha256:aa'), entry('docker.io/library/other:2', 'sha256:bb'));
    assert.deepEqual(await upToDate(key), [out], 'another tag came: nothing to do');
    index(entry('docker.io/library/a:1', 'sha256:aa'), entry('docker.io/library/a:1', 'sha256:cc'));
    assert.equal(await upToDate(key), undefined, 'the tag moved');
  });

  it('trusts the stat of settled paths, so a no-op check reads no file and loads no node:crypto', async () => {
    const pkg = path.join(dir, 'settled');
    mkdirSync(path.join(pkg, 'sub'), { recursive: true });
    writeFileSync(path.join(pkg, 'sub', 'f'), 'abc');
    writeFileSync(yml, 'kernel: {}\n');
    await new Promise((r) => setTimeout(r, 2100)); // older than SETTLED_MS
    const key = stampKey(opts)!;
    await writeStamp(key, [yml, pkg], [out]);
    // A fresh process, as the CLI is: does the check load node:crypto?
    const stampJs = new URL('./stamp.js', import.meta.url).href;
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(stampJs)});
         const r = await m.upToDate(${JSON.stringify(key)});
         console.log(JSON.stringify([r, process.moduleLoadList.some((n) => /^NativeModule crypto$/.test(n))]));`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), [[out], false]);

    // Same bytes rewritten: a new ctime, so it is hashed again, and found the same.
    writeFileSync(path.join(pkg, 'sub', 'f'), 'abc');
    assert.deepEqual(await upToDate(key), [out]);
    // Other bytes of the same size, mtime pinned back: the ctime still gives it away.
    const st = statSync(path.join(pkg, 'sub', 'f'));
    writeFileSync(path.join(pkg, 'sub', 'f'), 'abd');
    utimesSync(path.join(pkg, 'sub', 'f'), st.atime, st.mtime);
    assert.equal(await upToDate(key), undefined);
  });

  it('is never claimed for stdin or URLs', () => {
    assert.equal(stampKey({ ...opts, file: ['-'] }), undefined);
    assert.equal(stampKey({ ...opts, file: ['https://example.org/a.yml'] }), undefined);
  });
});
