import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { cli, REPO, tempDir } from '../../test/helpers.js';
import { runToolBytes, skipUnless } from '../../test/tools.js';
import { metadataIso } from './metadata.js';

describe('metadata ISO', () => {
  const dir = tempDir('lk-metadata-');
  const data =
    '{"greet":{"entries":{"hello":{"perm":"0600","content":"hi \\"there\\"\\n\\u00e9"}}},"top":{"content":"x"}}';
  const iso = path.join(dir, 'data.iso');

  test(
    'holds the data as the file config (read back by bsdtar)',
    skipUnless('bsdtar', 'libarchive-tools'),
    () => {
      writeFileSync(iso, metadataIso(new TextEncoder().encode(data)));
      assert.equal(runToolBytes('bsdtar', ['-xOf', iso, 'config']).toString(), data);
    },
  );

  test(
    'linuxkit metadata create FILE.iso DATA writes the same image',
    skipUnless('bsdtar', 'libarchive-tools'),
    () => {
      const out = path.join(dir, 'cli.iso');
      const r = cli(['metadata', 'create', out, 'some user data']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(readFileSync(out), metadataIso(new TextEncoder().encode('some user data')));
      assert.equal(runToolBytes('bsdtar', ['-xOf', out, 'config']).toString(), 'some user data');
    },
  );

  test(
    'the metadata package reads it into files (its script under the host busybox)',
    skipUnless('busybox', 'busybox-static'),
    () => {
      writeFileSync(iso, metadataIso(new TextEncoder().encode(data)));
      const out = path.join(dir, 'config');
      const r = spawnSync(
        'busybox',
        ['sh', path.join(REPO, 'pkg', 'metadata', 'metadata.sh'), 'cdrom', iso],
        {
          env: { PATH: process.env.PATH, METADATA_DIR: out },
          encoding: 'utf8',
        },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /user data from .*data\.iso/);
      assert.equal(readFileSync(path.join(out, 'userdata'), 'utf8'), data);
      assert.equal(readFileSync(path.join(out, 'greet', 'hello'), 'utf8'), 'hi "there"\né');
      assert.equal(statSync(path.join(out, 'greet', 'hello')).mode & 0o777, 0o600);
      assert.equal(readFileSync(path.join(out, 'top'), 'utf8'), 'x');
      // Not an ISO: nothing found, still exit 0 (the system boots on without user data).
      const none = spawnSync(
        'busybox',
        ['sh', path.join(REPO, 'pkg', 'metadata', 'metadata.sh'), path.join(dir, 'config', 'top')],
        {
          env: { PATH: process.env.PATH, METADATA_DIR: path.join(dir, 'c2') },
          encoding: 'utf8',
        },
      );
      assert.equal(none.status, 0);
      assert.match(none.stdout, /no metadata\/userdata found/);
    },
  );

  test(
    'JSON that is not of the entries shape is kept as userdata only',
    skipUnless('busybox', 'busybox-static'),
    () => {
      writeFileSync(iso, metadataIso(new TextEncoder().encode('{"a": "not an entry", "b": [1, 2]}')));
      const out = path.join(dir, 'bad');
      const r = spawnSync('busybox', ['sh', path.join(REPO, 'pkg', 'metadata', 'metadata.sh'), iso], {
        env: { PATH: process.env.PATH, METADATA_DIR: out },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0);
      assert.match(r.stdout, /not valid JSON of the entries shape/);
      assert.match(r.stderr, /a is not an object/);
      assert.equal(readFileSync(path.join(out, 'userdata'), 'utf8'), '{"a": "not an entry", "b": [1, 2]}');
    },
  );
});
