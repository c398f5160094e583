import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { runTool, skipUnless } from '../../test/tools.js';
import { UserError } from '../util/errors.js';
import { readAr } from './ar.js';
import { decompress } from './compress.js';
import { readTar } from './tar.js';

const work = tempDir('ar-test-');

describe('readAr', () => {
  it('reads archives made by binutils ar (odd sizes, long names)', skipUnless('ar', 'binutils'), () => {
    const files: Record<string, Buffer> = {
      odd: Buffer.from('abc'), // odd size: a '\n' pad follows
      even: Buffer.from('abcd'),
      'a-rather-long-member-name.txt': Buffer.from('long name\n'), // > 15 chars: the '//' table
      'another-long-member-name.bin': Buffer.from([0, 1, 2, 0x0a, 0x60]),
      empty: Buffer.alloc(0),
    };
    for (const [n, d] of Object.entries(files)) writeFileSync(join(work, n), d);
    runTool('ar', ['rc', 'test.a', ...Object.keys(files)], { cwd: work, timeoutMs: 120_000 });
    const members = readAr(readFileSync(join(work, 'test.a')));
    assert.deepEqual(
      members.map((m) => [m.name, Buffer.from(m.data)]),
      Object.entries(files),
    );
  });

  it('reads a .deb built by dpkg-deb', skipUnless('dpkg-deb', 'dpkg'), async () => {
    const root = join(work, 'pkg');
    mkdirSync(join(root, 'DEBIAN'), { recursive: true });
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    writeFileSync(
      join(root, 'DEBIAN/control'),
      'Package: lktest\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n',
    );
    writeFileSync(join(root, 'usr/bin/hello'), '#!/bin/sh\necho hello\n');
    chmodSync(join(root, 'usr/bin/hello'), 0o755);
    for (const z of ['xz', 'gzip', 'zstd']) {
      const deb = join(work, `lktest-${z}.deb`);
      const r = spawnSync('dpkg-deb', ['--root-owner-group', `-Z${z}`, '--build', root, deb], {
        encoding: 'utf8',
      });
      if (r.status !== 0 && z === 'zstd') continue; // older dpkg-deb without zstd
      assert.equal(r.status, 0, r.stderr);
      const members = readAr(readFileSync(deb));
      const ext = { xz: 'xz', gzip: 'gz', zstd: 'zst' }[z];
      assert.deepEqual(
        members.map((m) => m.name),
        ['debian-binary', `control.tar.${ext}`, `data.tar.${ext}`],
      );
      assert.equal(Buffer.from(members[0]!.data).toString(), '2.0\n');
      const data = [...readTar(await decompress(members[2]!.data))];
      const hello = data.find((e) => e.name === './usr/bin/hello')!;
      assert.equal(hello.mode, 0o755);
      assert.equal(Buffer.from(hello.data).toString(), '#!/bin/sh\necho hello\n');
    }
  });

  it('reads a real Debian package (busybox-static)', async (t) => {
    const dl = join(work, 'dl');
    mkdirSync(dl);
    const r = spawnSync('apt-get', ['download', 'busybox-static'], {
      cwd: dl,
      encoding: 'utf8',
      timeout: 120_000,
    });
    const debs = r.status === 0 ? readdirSync(dl).filter((f) => f.endsWith('.deb')) : [];
    if (debs.length !== 1) return t.skip(`apt-get download busybox-static failed: ${r.stderr?.trim()}`);
    const members = readAr(readFileSync(join(dl, debs[0]!)));
    assert.deepEqual(
      members.map((m) => m.name),
      ['debian-binary', 'control.tar.xz', 'data.tar.xz'],
    );
    const control = [...readTar(await decompress(members[1]!.data))];
    const ctl = control.find((e) => e.name === './control')!;
    assert.match(Buffer.from(ctl.data).toString(), /^Package: busybox-static$/m);
    const data = [...readTar(await decompress(members[2]!.data))];
    const bb = data.find((e) => e.name === './bin/busybox')!;
    assert.equal(bb.kind, 'file');
    assert.ok(bb.size > 500_000);
    assert.deepEqual(Buffer.from(bb.data.subarray(0, 4)), Buffer.from('\x7fELF', 'latin1'));
  });

  it('rejects bad magic and truncation with a UserError', () => {
    assert.throws(() => readAr(Buffer.from('!<arch>')), UserError);
    assert.throws(() => readAr(Buffer.from('PK\x03\x04 not an ar archive')), /bad magic/);
    const good = Buffer.concat([
      Buffer.from('!<arch>\n'),
      Buffer.from(
        `${'name/'.padEnd(16)}${'0'.padEnd(12)}${'0'.padEnd(6)}${'0'.padEnd(6)}${'644'.padEnd(8)}${'10'.padEnd(10)}\`\n`,
      ),
      Buffer.from('0123456789'),
    ]);
    assert.deepEqual(
      readAr(good).map((m) => [m.name, Buffer.from(m.data).toString()]),
      [['name', '0123456789']],
    );
    assert.throws(() => readAr(good.subarray(0, good.length - 1)), /truncated member/);
    assert.throws(() => readAr(good.subarray(0, 40)), /truncated member header/);
    const badSize = Buffer.from(good);
    badSize.write('1x', 8 + 48);
    assert.throws(() => readAr(badSize), /bad member size/);
  });
});
