import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { UserError } from '../util/errors.js';
import { PackageIndex, type PackageInfo, parseDepends } from './archive.js';
import { resolve } from './resolve.js';
import { testArchive } from './testing.js';

function pkg(
  name: string,
  version: string,
  depends = '',
  extra: Partial<PackageInfo> & { provides?: PackageInfo['provides'] } = {},
): PackageInfo {
  return {
    name,
    version,
    arch: 'amd64',
    filename: `pool/${name}_${version}.deb`,
    sha256: '0'.repeat(64),
    size: 1,
    depends: parseDepends(depends),
    provides: [],
    ...extra,
  };
}

const names = (r: { packages: PackageInfo[] }) => r.packages.map((p) => `${p.name}=${p.version}`);

test('versioned constraints pick the highest satisfying version; chains in why', () => {
  const idx = new PackageIndex([
    pkg('app', '1', 'lib (>= 2), tool'),
    pkg('lib', '1'),
    pkg('lib', '2'),
    pkg('lib', '3', 'base'),
    pkg('tool', '1', 'lib (<< 4)'),
    pkg('base', '1'),
  ]);
  const r = resolve(idx, ['app']);
  assert.deepEqual(names(r), ['app=1', 'base=1', 'lib=3', 'tool=1']);
  assert.deepEqual(r.why.get('base'), ['app', 'lib', 'base']);
  // name=version pins a version, and its dependents then have to live with it
  assert.deepEqual(names(resolve(idx, ['lib=2', 'app'])), ['app=1', 'lib=2', 'tool=1']);
  assert.throws(
    () => resolve(idx, ['lib=1', 'app']),
    (e: unknown) =>
      e instanceof UserError && /lib \(>= 2\).*needed by app 1.*lib 1 is already selected/.test(e.message),
  );
  assert.throws(() => resolve(idx, ['lib=9']), /no version 9.*it has 3, 2, 1/);
  assert.throws(() => resolve(idx, ['nope']), /nope is not in the index/);
});

test('alternatives: an already selected one wins, else the first satisfiable', () => {
  const idx = new PackageIndex([
    pkg('a', '1', 'x | y'),
    pkg('b', '1', 'gone | y (>= 2) | z'),
    pkg('x', '1'),
    pkg('y', '1'),
    pkg('z', '1'),
  ]);
  assert.deepEqual(names(resolve(idx, ['a'])), ['a=1', 'x=1']);
  assert.deepEqual(names(resolve(idx, ['y', 'a'])), ['a=1', 'y=1']);
  assert.deepEqual(names(resolve(idx, ['b'])), ['b=1', 'z=1']);
});

test('virtual packages: real name first, selected provider, sole provider, else alphabetical', () => {
  const idx = new PackageIndex([
    pkg('needs-awk', '1', 'awk'),
    pkg('needs-mta', '1', 'mail-transport-agent'),
    pkg('needs-v2', '1', 'libfoo-abi (>= 2)'),
    pkg('mawk', '1', '', { provides: [{ name: 'awk' }] }),
    pkg('gawk', '1', '', { provides: [{ name: 'awk' }] }),
    pkg('postfix', '1', '', { provides: [{ name: 'mail-transport-agent' }] }),
    pkg('foo1', '1', '', { provides: [{ name: 'libfoo-abi', version: '1' }] }),
    pkg('foo2', '1', '', { provides: [{ name: 'libfoo-abi', version: '2' }] }),
    pkg('foo-unversioned', '1', '', { provides: [{ name: 'libfoo-abi' }] }),
  ]);
  assert.deepEqual(names(resolve(idx, ['needs-awk'])), ['gawk=1', 'needs-awk=1']);
  assert.deepEqual(names(resolve(idx, ['mawk', 'needs-awk'])), ['mawk=1', 'needs-awk=1']);
  assert.deepEqual(names(resolve(idx, ['needs-mta'])), ['needs-mta=1', 'postfix=1']);
  assert.deepEqual(names(resolve(idx, ['needs-v2'])), ['foo2=1', 'needs-v2=1']);
  assert.deepEqual(resolve(idx, ['awk']).why.get('gawk'), ['awk', 'gawk']);
});

test(':any needs Multi-Arch: allowed; :native is a plain name', () => {
  const idx = new PackageIndex([
    pkg('script', '1', 'perl:any, python3:native'),
    pkg('perl', '1', '', { multiArch: 'allowed' }),
    pkg('python3', '1'),
    pkg('bad', '1', 'python3:any'),
  ]);
  assert.deepEqual(names(resolve(idx, ['script'])), ['perl=1', 'python3=1', 'script=1']);
  assert.throws(() => resolve(idx, ['bad']), /cannot satisfy "python3:any"/);
});

test('exclude: never installed; a group with every alternative excluded is dropped', () => {
  const idx = new PackageIndex([
    pkg('daemon', '1', 'libc, perl, debconf (>= 1) | debconf-2.0, adduser | useradd-tool'),
    pkg('libc', '1'),
    pkg('perl', '1', 'perl-base'),
    pkg('perl-base', '1'),
    pkg('debconf', '1', '', { provides: [{ name: 'debconf-2.0' }] }),
    pkg('cdebconf', '1', '', { provides: [{ name: 'debconf-2.0' }] }),
    pkg('adduser', '1'),
    pkg('shadow', '1', '', { provides: [{ name: 'useradd-tool' }] }),
  ]);
  assert.equal(resolve(idx, ['daemon']).packages.length, 6);
  // debconf excluded: debconf-2.0 is still there, provided by cdebconf
  assert.deepEqual(names(resolve(idx, ['daemon'], { exclude: ['perl', 'debconf', 'adduser'] })), [
    'cdebconf=1',
    'daemon=1',
    'libc=1',
    'shadow=1',
  ]);
  // a virtual whose providers are all excluded counts as excluded
  assert.deepEqual(
    names(resolve(idx, ['daemon'], { exclude: ['perl', 'debconf', 'cdebconf', 'adduser', 'shadow'] })),
    ['daemon=1', 'libc=1'],
  );
  assert.throws(() => resolve(idx, ['perl'], { exclude: ['perl'] }), /both wanted and excluded/);
});

test('deterministic: the same answer for any order of the index', () => {
  const list = [
    pkg('a', '1', 'v, b'),
    pkg('b', '1', 'v'),
    pkg('p2', '1', '', { provides: [{ name: 'v' }] }),
    pkg('p1', '1', '', { provides: [{ name: 'v' }] }),
  ];
  const one = names(resolve(new PackageIndex(list), ['a']));
  assert.deepEqual(names(resolve(new PackageIndex([...list].reverse()), ['a'])), one);
  assert.deepEqual(one, ['a=1', 'b=1', 'p1=1']);
});

// --- The real bookworm index ------------------------------------------------------------------

const KERNEL_PRUNE = ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool'];
// What openssh-server's maintainer scripts need, but sshd itself does not.
const SSHD_PRUNE = [
  'adduser',
  'debconf',
  'debconf-2.0',
  'perl',
  'perl-base',
  'ucf',
  'dpkg',
  'init-system-helpers',
  'usrmerge',
  'runit-helper',
  'lsb-base',
  'sysvinit-utils',
  'procps',
  'sensible-utils',
  'libpam-runtime',
  'passwd',
  'tar',
];

test('bookworm: runc, busybox-static, the cloud kernel', async () => {
  const idx = await testArchive('bookworm').packages();
  const runc = resolve(idx, ['runc']);
  assert.deepEqual(
    runc.packages.map((p) => p.name),
    ['gcc-12-base', 'libc6', 'libgcc-s1', 'libseccomp2', 'runc'],
  );
  assert.deepEqual(runc.why.get('gcc-12-base'), ['runc', 'libc6', 'libgcc-s1', 'gcc-12-base']);
  assert.deepEqual(
    resolve(idx, ['busybox-static']).packages.map((p) => p.name),
    ['busybox-static'],
  );
  const k = resolve(idx, ['linux-image-cloud-amd64'], { exclude: KERNEL_PRUNE }).packages.map((p) => p.name);
  assert.equal(k.length, 2, k.join(' '));
  assert.equal(k[1], 'linux-image-cloud-amd64');
  assert.match(k[0] as string, /^linux-image-6\.1\.0-\d+-cloud-amd64$/);
});

test('bookworm: openssh-server with and without a prune list', async (t) => {
  const idx = await testArchive('bookworm').packages();
  const full = resolve(idx, ['openssh-server']);
  const pruned = resolve(idx, ['openssh-server'], { exclude: SSHD_PRUNE });
  const names = pruned.packages.map((p) => p.name);
  t.diagnostic(
    `openssh-server: ${full.packages.length} packages, ${pruned.packages.length} with the prune list`,
  );
  assert.ok(full.packages.some((p) => p.name === 'perl-base'));
  assert.ok(full.packages.length > 60);
  for (const n of ['openssh-server', 'openssh-client', 'libc6', 'libssl3', 'zlib1g', 'libpam0g'])
    assert.ok(names.includes(n), n);
  for (const n of SSHD_PRUNE) assert.ok(!names.includes(n), n);
  assert.ok(pruned.packages.length < full.packages.length - 15);
  for (const p of pruned.packages) assert.equal(pruned.why.get(p.name)?.[0], 'openssh-server');
});

/** apt's own answer from the host's lists, with nothing installed and no Recommends. */
function aptClosure(pkgName: string): string[] | undefined {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-apt-'));
  try {
    writeFileSync(path.join(dir, 'status'), '');
    const out = execFileSync(
      'apt-get',
      [
        '-s',
        '-o',
        `Dir::State::status=${dir}/status`,
        '-o',
        'APT::Install-Recommends=false',
        '-o',
        'Debug::NoLocking=1',
        'install',
        pkgName,
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const names = out
      .split('\n')
      .filter((l) => l.startsWith('Inst '))
      .map((l) => l.split(' ')[1] as string);
    return names.length ? names.sort() : undefined;
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('cross-check with apt-get --simulate (empty dpkg status, no Recommends)', async (t) => {
  const idx = await testArchive('bookworm').packages();
  for (const p of ['openssh-server']) {
    const apt = aptClosure(p);
    if (!apt) {
      t.skip('apt-get has no package lists for bookworm here (run apt-get update)');
      return;
    }
    assert.deepEqual(
      resolve(idx, [p]).packages.map((x) => x.name),
      apt,
      p,
    );
  }
});
