import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { dataBytes, FileSlice } from '../fs/data.js';
import type { FsEntry, FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { readDeb } from './deb.js';
import { testArchive } from './testing.js';

const tmp = tempDir('lk-deb-');

const sha256 = (d: Uint8Array) => createHash('sha256').update(d).digest('hex');

/** What dpkg-deb + tar put on disk: path -> kind, mode, owner, mtime, content hash (or link target). */
function extractWithDpkg(deb: Uint8Array, name: string): Map<string, string> {
  const file = path.join(tmp, `${name}.deb`);
  const dir = path.join(tmp, name);
  writeFileSync(file, deb);
  mkdirSync(dir, { recursive: true });
  runTool('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -x --same-owner -p -C "$2"`, 'sh', file, dir]);
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const n of readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(path.join(dir, r));
      const common = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      const mtime = Math.floor(st.mtimeMs / 1000);
      if (st.isDirectory()) {
        // No mtime: GNU tar creates symlinks last, which touches their directories.
        out.set(r, `dir ${common}`);
        walk(r);
      } else if (st.isSymbolicLink()) out.set(r, `symlink -> ${readlinkSync(path.join(dir, r))}`);
      else out.set(r, `file ${common} ${mtime} ${sha256(readFileSync(path.join(dir, r)))}`);
    }
  };
  walk('');
  return out;
}

function describe(tree: FsTree): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of tree.entries() as FsEntry[]) {
    const common = `${e.mode.toString(8)} ${e.uid}:${e.gid}`;
    if (e.kind === 'dir') out.set(e.path, `dir ${common}`);
    else if (e.kind === 'symlink') out.set(e.path, `symlink -> ${e.target}`);
    else out.set(e.path, `${e.kind} ${common} ${e.mtime} ${sha256(dataBytes(e.data))}`);
  }
  return out;
}

for (const [pkgName, binary] of [
  ['busybox-static', 'bin/busybox'],
  ['runc', 'usr/sbin/runc'],
] as const) {
  test(`${pkgName}.deb: control stanza, and the same files as dpkg-deb --fsys-tarfile | tar -x`, async (t) => {
    const a = testArchive('bookworm');
    const info = (await a.packages()).get(pkgName);
    assert.ok(info);
    const deb = await a.fetchDeb(info);
    const { control, data } = await readDeb(deb, pkgName);
    assert.equal(control.Package, pkgName);
    assert.equal(control.Version, info.version);
    const bin = data.get(binary);
    assert.equal(bin?.kind, 'file');
    assert.equal(bin?.mode, 0o755);
    assert.ok((bin?.data?.length ?? 0) > 500_000);
    // an ELF executable
    assert.deepEqual([...dataBytes(bin?.data).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
    // Unpacked to a scratch file instead: the same tree, its data slices of a file that is
    // already gone from the directory (read through its open descriptor).
    const scratch = path.join(tmp, `scratch-${pkgName}`);
    const onDisk = await readDeb(deb, pkgName, scratch);
    assert.ok(onDisk.data.get(binary)?.data instanceof FileSlice);
    assert.deepEqual(describe(onDisk.data), describe(data));
    assert.deepEqual(readdirSync(scratch), []);
    const { skip } = skipUnless('dpkg-deb', 'dpkg');
    if (skip) return t.skip(skip);
    assert.deepEqual(describe(data), extractWithDpkg(deb, pkgName));
  });
}

test('bad .debs are UserErrors', async () => {
  await assert.rejects(
    readDeb(new TextEncoder().encode('not an archive'), 'x.deb'),
    (e: unknown) => e instanceof UserError && /^x\.deb: /.test(e.message),
  );
  const a = testArchive('bookworm');
  const info = (await a.packages()).get('busybox-static');
  assert.ok(info);
  const deb = await a.fetchDeb(info);
  await assert.rejects(readDeb(deb.subarray(0, 3000), 'cut.deb'), UserError);
  const corrupt = Buffer.from(deb);
  for (let i = 2000; i < 2100; i++) corrupt[i] = 0;
  await assert.rejects(readDeb(corrupt, 'corrupt.deb'), UserError);
  // Unpacking to a scratch file: the same error, and no file left behind.
  const scratch = path.join(tmp, 'scratch-corrupt');
  await assert.rejects(readDeb(corrupt, 'corrupt.deb', scratch), UserError);
  assert.deepEqual(readdirSync(scratch), []);
});
