import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dataBytes } from '../fs/data.js';
import { FsTree } from '../fs/tree.js';
import { imageRootfs } from './image-rootfs.js';

const file = (path: string, s: string) => ({
  path,
  kind: 'file' as const,
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: 5,
  data: new TextEncoder().encode(s),
});

test('docker-build leftovers go, hosts and resolv.conf are fixed, required paths exist', () => {
  const t = new FsTree();
  t.set(file('Dockerfile', 'FROM x'));
  t.set(file('etc/hostname', 'builder'));
  t.set(file('etc/hosts', '10.0.0.1 builder'));
  t.set(file('etc/resolv.conf', 'nameserver 10.0.0.1'));
  t.set(file('bin/x', 'x'));
  const out = imageRootfs(t, { mtime: 0 });
  assert.equal(out.has('Dockerfile'), false);
  assert.equal(out.has('etc/hostname'), false);
  assert.match(new TextDecoder().decode(dataBytes(out.get('etc/hosts')!.data)), /^127\.0\.0\.1\s+localhost/);
  assert.match(
    new TextDecoder().decode(dataBytes(out.get('etc/resolv.conf')!.data)),
    /no resolv.conf configured/,
  );
  for (const d of ['dev', 'dev/pts', 'dev/shm', 'proc', 'sys']) assert.equal(out.get(d)?.kind, 'dir', d);
  assert.equal(out.get('etc/mtab')?.target, '/proc/mounts');
  assert.equal(out.get('bin/x')?.mtime, 5);
});

test('init images get resolv.conf as a symlink a DHCP client can fill', () => {
  const out = imageRootfs(new FsTree(), { mtime: 0, resolv: '/run/resolvconf/resolv.conf' });
  assert.equal(out.get('etc/resolv.conf')?.kind, 'symlink');
  assert.equal(out.get('etc/resolv.conf')?.target, '/run/resolvconf/resolv.conf');
});

test("an image whose resolv.conf is a symlink gets a 0644 file, not the link's 0777", () => {
  const t = new FsTree();
  t.set({
    path: 'etc/resolv.conf',
    kind: 'symlink',
    mode: 0o777,
    uid: 0,
    gid: 0,
    mtime: 0,
    target: '/run/x',
  });
  const e = imageRootfs(t, { mtime: 0 }).get('etc/resolv.conf')!;
  assert.equal(e.kind, 'file');
  assert.equal(e.mode, 0o644);
});
