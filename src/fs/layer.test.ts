import assert from 'node:assert/strict';
import { linkSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { encodeTarHeader, readTar, TAR_END, type TarHeaderInput, tarPadding } from '../formats/tar.js';
import { UserError } from '../util/errors.js';
import { dataBytes } from './data.js';
import { applyLayer, treeFromTar, treeToTar } from './layer.js';
import type { FsTree } from './tree.js';

type Member = Partial<TarHeaderInput> & { path: string; data?: string };

/** A layer tar from raw members (paths written exactly as given, whiteouts included). */
function layer(...members: Member[]): Buffer {
  const out: Buffer[] = [];
  for (const m of members) {
    const data = Buffer.from(m.data ?? '');
    const kind = m.kind ?? (m.path.endsWith('/') ? 'dir' : 'file');
    const size = kind === 'file' ? data.length : 0;
    out.push(encodeTarHeader({ mode: 0o644, uid: 0, gid: 0, mtime: 1, size, kind, ...m }));
    if (size) out.push(data, tarPadding(size));
  }
  out.push(TAR_END);
  return Buffer.concat(out);
}

const text = (t: FsTree, p: string) => Buffer.from(dataBytes(t.get(p)!.data)).toString();
const paths = (t: FsTree) => t.entries().map((e) => e.path);

const work = tempDir('layer-test-');

describe('applyLayer', () => {
  it('builds a tree, stripping "./" and a leading "/"', () => {
    const t = treeFromTar(
      layer(
        { path: './' },
        { path: './etc/', mode: 0o755 },
        { path: '/etc/hostname', data: 'box\n' },
        { path: 'usr/bin/env', mode: 0o755, data: 'x' },
      ),
    );
    assert.deepEqual(paths(t), ['etc', 'etc/hostname', 'usr', 'usr/bin', 'usr/bin/env']);
    assert.equal(text(t, 'etc/hostname'), 'box\n');
    assert.equal(t.get('usr/bin/env')!.mode, 0o755);
  });

  it('applies whiteouts to lower layers only', () => {
    const t = treeFromTar(
      layer(
        { path: 'a/x', data: 'x' },
        { path: 'a/y', data: 'y' },
        { path: 'a/sub/z', data: 'z' },
        { path: 'top', data: 't' },
      ),
    );
    applyLayer(
      t,
      layer({ path: 'a/.wh.x' }, { path: 'a/.wh.sub' }, { path: '.wh.top' }, { path: 'a/.wh.missing' }),
    );
    assert.deepEqual(paths(t), ['a', 'a/y']);
    // A whiteout and a new entry of the same name in one layer: the new entry stays.
    applyLayer(t, layer({ path: 'a/y', data: 'new y' }, { path: 'a/.wh.y' }));
    assert.equal(text(t, 'a/y'), 'new y');
  });

  it('makes opaque directories, keeping entries of the same layer whatever their order', () => {
    const t = treeFromTar(
      layer(
        { path: 'd/', mode: 0o755 },
        { path: 'd/old1', data: '1' },
        { path: 'd/sub/old2', data: '2' },
        { path: 'keep', data: 'k' },
      ),
    );
    applyLayer(
      t,
      layer(
        { path: 'd/', mode: 0o700 },
        { path: 'd/new1', data: 'n1' }, // before the marker
        { path: 'd/.wh..wh..opq' },
        { path: 'd/sub/new2', data: 'n2' }, // after it
      ),
    );
    assert.deepEqual(paths(t), ['d', 'd/new1', 'd/sub', 'd/sub/new2', 'keep']);
    assert.equal(t.get('d')!.mode, 0o700);
    assert.equal(text(t, 'd/sub/new2'), 'n2');
  });

  it('turns hard links into entries sharing the data object', () => {
    const t = treeFromTar(
      layer(
        { path: 'bin/busybox', mode: 0o755, uid: 5, data: 'BB' },
        { path: 'bin/sh', kind: 'hardlink', linkname: 'bin/busybox' },
        { path: 'bin/ls', kind: 'hardlink', linkname: '/bin/busybox' },
      ),
    );
    const bb = t.get('bin/busybox')!;
    assert.equal(t.get('bin/sh')!.data, bb.data);
    assert.equal(t.get('bin/ls')!.data, bb.data);
    assert.equal(t.get('bin/sh')!.mode, 0o755);
    assert.equal(t.get('bin/sh')!.uid, 5);
    assert.equal(t.get('bin/sh')!.kind, 'file');
    // A link to a file of a lower layer.
    applyLayer(t, layer({ path: 'usr/bin/bb', kind: 'hardlink', linkname: 'bin/busybox' }));
    assert.equal(t.get('usr/bin/bb')!.data, bb.data);
    // Written back as tar hard links.
    const back = [...readTar(treeToTar(t))];
    assert.deepEqual(
      back.filter((e) => e.kind === 'hardlink').map((e) => [e.name, e.linkname]),
      [
        ['bin/ls', 'bin/busybox'],
        ['bin/sh', 'bin/busybox'],
        ['usr/bin/bb', 'bin/busybox'],
      ],
    );
  });

  it('rejects hard links to missing entries or non-files', () => {
    assert.throws(
      () => treeFromTar(layer({ path: 'h', kind: 'hardlink', linkname: 'nope' })),
      /layer entry "h": hard link target "nope" does not exist/,
    );
    assert.throws(
      () => treeFromTar(layer({ path: 'd/' }, { path: 'h', kind: 'hardlink', linkname: 'd' })),
      /hard link target "d" is a dir, not a file/,
    );
    assert.throws(
      () => treeFromTar(layer({ path: 'f', data: 'x' }, { path: 'h', kind: 'hardlink', linkname: '../f' })),
      UserError,
    );
  });

  it('rejects paths that leave the root, naming the entry', () => {
    for (const bad of ['../x', '/../x', 'a/../../x', 'a/../b']) {
      assert.throws(
        () => treeFromTar(layer({ path: bad, data: 'x' })),
        (e: Error) => e instanceof UserError && e.message.includes(JSON.stringify(bad)),
      );
    }
    assert.throws(() => treeFromTar(layer({ path: '../.wh.x' })), UserError);
  });

  it('rejects writing through a symlink parent, naming the entry', () => {
    assert.throws(
      () =>
        treeFromTar(
          layer(
            { path: 'link', kind: 'symlink', linkname: '/etc' },
            { path: 'link/passwd', data: 'root::0:0::/:/bin/sh\n' },
          ),
        ),
      (e: Error) =>
        e instanceof UserError && e.message.includes('"link/passwd"') && e.message.includes('symlink'),
    );
    // Also when the symlink came from a lower layer.
    const t = treeFromTar(
      layer({ path: 'etc/passwd', data: 'p' }, { path: 'link', kind: 'symlink', linkname: 'etc' }),
    );
    assert.throws(() => applyLayer(t, layer({ path: 'link/x/y', data: 'x' })), /"link\/x\/y"/);
    // A whiteout below a symlink deletes nothing (and certainly not etc/passwd).
    applyLayer(t, layer({ path: 'link/.wh.passwd' }));
    assert.equal(text(t, 'etc/passwd'), 'p');
  });

  it('replaces entries as the OCI spec says: dir over dir merges, anything else replaces', () => {
    const t = treeFromTar(
      layer(
        { path: 'd/', mode: 0o755 },
        { path: 'd/child', data: 'c' },
        { path: 'e/', mode: 0o755 },
        { path: 'e/child', data: 'c' },
        { path: 'f', data: 'file' },
        { path: 's', kind: 'symlink', linkname: 'f' },
      ),
    );
    applyLayer(
      t,
      layer(
        { path: 'd/', mode: 0o711, uid: 7 },
        { path: 'e', data: 'now a file' },
        { path: 'f/', mode: 0o700 },
        { path: 'f/inside', data: 'i' },
        { path: 's', data: 'now a file' },
      ),
    );
    assert.deepEqual(paths(t), ['d', 'd/child', 'e', 'f', 'f/inside', 's']);
    assert.deepEqual([t.get('d')!.mode, t.get('d')!.uid], [0o711, 7]);
    assert.equal(t.get('e')!.kind, 'file');
    assert.equal(t.get('f')!.kind, 'dir');
    assert.equal(t.get('s')!.kind, 'file');
  });

  it('reads a layer made by GNU tar and writes it back', skipUnless('tar', 'tar'), () => {
    const src = join(work, 'src');
    mkdirSync(join(src, 'usr/lib'), { recursive: true });
    writeFileSync(join(src, 'usr/lib/libc.so.6'), Buffer.alloc(5000, 3), { mode: 0o755 });
    linkSync(join(src, 'usr/lib/libc.so.6'), join(src, 'usr/lib/libc-hard'));
    symlinkSync('usr/lib', join(src, 'lib'));
    const tarFile = join(work, 'layer.tar');
    runTool('tar', ['-cf', tarFile, '--sort=name', '--numeric-owner', '-C', src, '.']);
    const t = treeFromTar(readFileSync(tarFile));
    assert.deepEqual(paths(t), ['lib', 'usr', 'usr/lib', 'usr/lib/libc-hard', 'usr/lib/libc.so.6']);
    assert.equal(t.get('usr/lib/libc-hard')!.data, t.get('usr/lib/libc.so.6')!.data);
    assert.equal(t.get('lib')!.target, 'usr/lib');
    const out = treeToTar(t);
    assert.deepEqual(treeToTar(treeFromTar(out)), out); // stable through a round trip
    const x = join(work, 'x');
    mkdirSync(x);
    runTool('tar', ['-xf', '-', '-C', x], { input: out });
    assert.deepEqual(readFileSync(join(x, 'usr/lib/libc.so.6')), Buffer.alloc(5000, 3));
    assert.equal(statSync(join(x, 'usr/lib/libc-hard')).ino, statSync(join(x, 'usr/lib/libc.so.6')).ino);
  });
});
