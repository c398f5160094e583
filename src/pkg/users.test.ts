import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { UserError } from '../util/errors.js';
import { userFiles } from './users.js';

const files = () =>
  userFiles(
    [
      { name: 'www-data', uid: 33, gecos: '', home: '/var/www', shell: '/usr/sbin/nologin' },
      { name: 'sshd', uid: 100, group: 'nogroup', gecos: '', home: '/run/sshd', shell: '/usr/sbin/nologin' },
    ],
    [
      { name: 'nogroup', gid: 65534, members: [] },
      { name: 'www-data', gid: 33, members: ['sshd'] },
    ],
  );

test('passwd, group and shadow as postinst would write them; root added, sorted by id', () => {
  const f = files();
  assert.equal(
    f.passwd,
    'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n',
  );
  assert.equal(f.group, 'root:x:0:\nwww-data:x:33:sshd\nnogroup:x:65534:\n');
  // `*`: no password, but not locked (sshd refuses keys for `!` accounts); no change date.
  assert.match(f.shadow, /^root:\*::0:99999:7:::\nwww-data:\*::0:99999:7:::\nsshd:\*::0:99999:7:::\n$/);
});

test('the files pass the shadow tools own consistency checks (pwck, grpck)', {
  skip: spawnSync('pwck', ['--help']).error ? 'pwck not installed (apt-get install passwd)' : false,
}, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-users-'));
  try {
    const f = files();
    for (const [n, t] of Object.entries(f)) writeFileSync(path.join(dir, n), t);
    // grpck checks members against the host's users: use a member the host has (root).
    const g = userFiles([], [{ name: 'staff', gid: 50, members: ['root'] }]);
    writeFileSync(path.join(dir, 'group'), g.group);
    writeFileSync(path.join(dir, 'gshadow'), 'root:*::\nstaff:*::root\n');
    const pw = spawnSync('pwck', ['-r', '-q', path.join(dir, 'passwd'), path.join(dir, 'shadow')], {
      encoding: 'utf8',
    });
    // Exit 0, or 2 only for missing home directories on this host (not a format problem).
    const real = pw.stderr.split('\n').filter((l) => l && !/directory .* does not exist/.test(l));
    assert.deepEqual(real, [], pw.stderr);
    const gr = spawnSync('grpck', ['-r', path.join(dir, 'group'), path.join(dir, 'gshadow')], {
      encoding: 'utf8',
    });
    assert.equal(gr.status, 0, gr.stderr + gr.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad user tables are UserErrors', () => {
  const u = { gecos: '', home: '/', shell: '/bin/sh' };
  assert.throws(
    () =>
      userFiles(
        [
          { name: 'a', uid: 1, ...u },
          { name: 'a', uid: 2, ...u },
        ],
        [],
      ),
    UserError,
  );
  assert.throws(() => userFiles([{ name: 'a', uid: 1, group: 'nope', ...u }], []), /group nope/);
  assert.throws(() => userFiles([], [{ name: 'g', gid: 5, members: ['ghost'] }]), /member ghost/);
});
