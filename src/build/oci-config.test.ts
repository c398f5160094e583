import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ContainerSpec } from '../spec/types.js';
import { UserError } from '../util/errors.js';
import { ALL_CAPABILITIES } from './capabilities.js';
import {
  CONFIG_LABEL,
  containerConfig,
  containerIdMap,
  encodeGoJson,
  type ImageConfigLike,
  type ImageSettings,
  idNumeric,
  imageRoot,
  parseConfigLabel,
  volumeBinds,
} from './oci-config.js';

/** A YAML entry with any settings (ContainerSpec grows towards ImageSettings). */
const spec = (extra: ImageSettings = {}): ContainerSpec =>
  ({ name: 't', image: 'img', ...extra }) as ContainerSpec;
const withLabel = (label: ImageSettings | string, rest: ImageConfigLike = {}): ImageConfigLike => ({
  ...rest,
  Labels: { [CONFIG_LABEL]: typeof label === 'string' ? label : JSON.stringify(label) },
});
/** Config from: YAML settings, label settings (or none), image config. */
const cfg = (yaml: ImageSettings = {}, label?: ImageSettings, image: ImageConfigLike = {}) =>
  containerConfig(spec(yaml), label ? withLabel(label, image) : image).config;
const throwsUser = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof UserError && re.test(e.message));

describe('whole files', () => {
  it('writes upstream defaults, byte for byte as Go MarshalIndent would', () => {
    const plan = containerConfig(spec(), { Entrypoint: ['/bin/sh'], Cmd: ['-c', 'x'], Env: ['PATH=/bin'] });
    const mount = (dest: string, type: string, opts: string[]) =>
      `        {\n            "destination": "${dest}",\n            "type": "${type}",\n            "source": "${type}",\n            "options": [\n${opts.map((o) => `                "${o}"`).join(',\n')}\n            ]\n        }`;
    const expected = `{
    "ociVersion": "1.2.0",
    "process": {
        "user": {
            "uid": 0,
            "gid": 0
        },
        "args": [
            "/bin/sh",
            "-c",
            "x"
        ],
        "env": [
            "PATH=/bin"
        ],
        "cwd": "/",
        "capabilities": {}
    },
    "root": {
        "path": "rootfs"
    },
    "mounts": [
${[
  mount('/dev', 'tmpfs', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
  mount('/dev/pts', 'devpts', ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620']),
  mount('/proc', 'proc', ['nosuid', 'nodev', 'noexec', 'relatime']),
  mount('/sys', 'sysfs', ['nosuid', 'noexec', 'nodev']),
  mount('/sys/fs/cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']),
].join(',\n')}
    ],
    "linux": {
        "resources": {},
        "namespaces": [
            {
                "type": "pid"
            },
            {
                "type": "mount"
            },
            {
                "type": "cgroup"
            }
        ]
    }
}`;
    assert.equal(plan.configJson, expected);
    assert.equal(plan.readonly, false);
  });

  it('writes runtime.json with every key, rootfs overlay mounts first, for a writable root', () => {
    const plan = containerConfig(spec(), {}, { bundle: 'containers/services/t' });
    assert.equal(
      plan.runtimeJson,
      `{
    "cgroups": [],
    "mounts": [
        {
            "destination": "/containers/services/t/tmp",
            "type": "tmpfs",
            "source": "tmpfs"
        },
        {
            "destination": "/containers/services/t/tmp",
            "options": [
                "remount",
                "private"
            ]
        },
        {
            "destination": "/containers/services/t/rootfs",
            "type": "overlay",
            "source": "overlay",
            "options": [
                "lowerdir=/containers/services/t/lower",
                "upperdir=/containers/services/t/tmp/upper",
                "workdir=/containers/services/t/tmp/work"
            ]
        }
    ],
    "mkdir": [],
    "interfaces": [],
    "bindNS": {
        "cgroup": "",
        "ipc": "",
        "mnt": "",
        "net": "",
        "pid": "",
        "user": "",
        "uts": ""
    },
    "namespace": ""
}`,
    );
    assert.equal(plan.extractTo, 'lower');
    assert.deepEqual(plan.emptyDirs, ['tmp', 'rootfs']);
  });

  it('is deterministic: same input, same bytes, whatever the key order of maps', () => {
    const a = containerConfig(
      spec({ sysctl: { 'b.x': '1', 'a.y': '2' }, annotations: { z: '1', a: '2' } }),
      {},
    );
    const b = containerConfig(
      spec({ annotations: { a: '2', z: '1' }, sysctl: { 'a.y': '2', 'b.x': '1' } }),
      {},
    );
    assert.equal(a.configJson, b.configJson);
    assert.deepEqual(Object.keys(a.config.linux.sysctl ?? {}), ['a.y', 'b.x']);
    assert.deepEqual(Object.keys(a.config), [
      'ociVersion',
      'process',
      'root',
      'mounts',
      'annotations',
      'linux',
    ]);
  });
});

describe('readonly', () => {
  it('defaults to a writable root: image in lower/, overlay at boot', () => {
    const plan = containerConfig(spec(), {}, { bundle: 'containers/onboot/000-t' });
    assert.equal(plan.readonly, false);
    assert.deepEqual(plan.config.root, { path: 'rootfs' });
    assert.deepEqual(plan.runtime.mounts[2]?.options?.[0], 'lowerdir=/containers/onboot/000-t/lower');
  });

  it('true: image in rootfs/, bound onto itself; /dev and /sys read-only', () => {
    for (const plan of [
      containerConfig(spec({ readonly: true }), {}, { bundle: 'containers/onboot/000-t' }),
      containerConfig(spec(), withLabel({ readonly: true }), { bundle: 'containers/onboot/000-t' }),
    ]) {
      assert.equal(plan.readonly, true);
      assert.deepEqual(plan.config.root, { path: 'rootfs', readonly: true });
      const byDest = new Map(plan.config.mounts?.map((m) => [m.destination, m.options]));
      assert.deepEqual(byDest.get('/dev'), ['nosuid', 'strictatime', 'mode=755', 'size=65536k', 'ro']);
      assert.deepEqual(byDest.get('/sys'), ['nosuid', 'noexec', 'nodev', 'ro']);
      assert.deepEqual(byDest.get('/proc'), ['nosuid', 'nodev', 'noexec', 'relatime']);
      assert.deepEqual(plan.runtime.mounts, [
        {
          destination: '/containers/onboot/000-t/rootfs',
          source: '/containers/onboot/000-t/rootfs',
          options: ['bind'],
        },
      ]);
      assert.equal(plan.extractTo, 'rootfs');
      assert.deepEqual(plan.emptyDirs, []);
    }
  });

  it('YAML false beats label true', () => {
    assert.equal(containerConfig(spec({ readonly: false }), withLabel({ readonly: true })).readonly, false);
  });

  it('reuses an image extracted by an earlier bundle', () => {
    const shared = imageRoot('containers/onboot/000-a', false);
    assert.equal(shared, 'containers/onboot/000-a/lower');
    const ro = containerConfig(
      spec({ readonly: true }),
      {},
      { bundle: 'containers/services/b', sharedRoot: shared },
    );
    assert.equal(ro.extractTo, null);
    assert.deepEqual(ro.emptyDirs, ['rootfs']);
    assert.deepEqual(ro.runtime.mounts[0], {
      destination: '/containers/services/b/rootfs',
      source: '/containers/onboot/000-a/lower',
      options: ['bind'],
    });
    const rw = containerConfig(spec(), {}, { bundle: 'containers/services/c', sharedRoot: shared });
    assert.equal(rw.extractTo, null);
    assert.equal(rw.runtime.mounts[2]?.options?.[0], 'lowerdir=/containers/onboot/000-a/lower');
  });
});

describe('process: args, env, cwd', () => {
  it('args: Entrypoint+Cmd, then label command, then YAML command', () => {
    const image = { Entrypoint: ['/ep'], Cmd: ['arg'] };
    assert.deepEqual(cfg({}, undefined, image).process.args, ['/ep', 'arg']);
    assert.deepEqual(cfg({}, undefined, { Cmd: ['/cmd'] }).process.args, ['/cmd']);
    assert.deepEqual(cfg({}, { command: ['/label'] }, image).process.args, ['/label']);
    assert.deepEqual(cfg({ command: ['/yaml', 'x'] }, { command: ['/label'] }, image).process.args, [
      '/yaml',
      'x',
    ]);
    assert.equal(cfg().process.args, undefined);
  });

  it('env: image Env, then label, then YAML; none given means none (no PATH added)', () => {
    const image = { Env: ['PATH=/usr/bin'] };
    assert.deepEqual(cfg({}, undefined, image).process.env, ['PATH=/usr/bin']);
    assert.deepEqual(cfg({}, { env: ['A=1'] }, image).process.env, ['A=1']);
    assert.deepEqual(cfg({ env: ['B=2'] }, { env: ['A=1'] }, image).process.env, ['B=2']);
    assert.equal(cfg().process.env, undefined);
  });

  it('cwd: "/" by default, then WorkingDir, label, YAML; an empty string does not override', () => {
    assert.equal(cfg().process.cwd, '/');
    assert.equal(cfg({}, undefined, { WorkingDir: '/w' }).process.cwd, '/w');
    // upstream TestOverrides: the label's cwd applies when the YAML has none
    assert.equal(cfg({}, { cwd: '/label/directory' }, { WorkingDir: '/w' }).process.cwd, '/label/directory');
    assert.equal(cfg({ cwd: '/y' }, { cwd: '/l' }).process.cwd, '/y');
    assert.equal(cfg({ cwd: '' }, { cwd: '/l' }).process.cwd, '/l');
  });

  it('ignores the image config User, as upstream does', () => {
    assert.deepEqual(cfg({}, undefined, { User: 'nobody' }).process.user, { uid: 0, gid: 0 });
  });

  it('terminal is never written (false)', () => {
    assert.equal('terminal' in cfg().process, false);
  });
});

describe('capabilities', () => {
  it('none by default: an empty capabilities object', () => {
    assert.deepEqual(cfg().process.capabilities, {});
  });

  it('label only', () => {
    const c = cfg({}, { capabilities: ['CAP_SYS_CHROOT', 'CAP_CHOWN'] }).process.capabilities;
    assert.deepEqual(c.effective, ['CAP_SYS_CHROOT', 'CAP_CHOWN']);
    assert.deepEqual(c.bounding, ['CAP_CHOWN', 'CAP_SYS_CHROOT']);
    assert.deepEqual(c.inheritable, c.bounding);
    assert.deepEqual(c.permitted, c.bounding);
    assert.equal(c.ambient, undefined);
  });

  it('YAML replaces the label (upstream TestOverrides)', () => {
    const c = cfg({ capabilities: ['CAP_SYS_ADMIN'] }, { capabilities: ['CAP_SYS_CHROOT'] }).process
      .capabilities;
    assert.deepEqual(c.bounding, ['CAP_SYS_ADMIN']);
    assert.deepEqual(c.effective, ['CAP_SYS_ADMIN']);
  });

  it('YAML capabilities.add extends the label; duplicates stay in effective only', () => {
    const c = cfg({ 'capabilities.add': ['CAP_NET_ADMIN', 'CAP_CHOWN'] }, { capabilities: ['CAP_CHOWN'] })
      .process.capabilities;
    assert.deepEqual(c.effective, ['CAP_CHOWN', 'CAP_NET_ADMIN', 'CAP_CHOWN']);
    assert.deepEqual(c.bounding, ['CAP_CHOWN', 'CAP_NET_ADMIN']);
    // add without a label list, and YAML capabilities beating both
    assert.deepEqual(cfg({ 'capabilities.add': ['CAP_KILL'] }).process.capabilities.effective, ['CAP_KILL']);
    assert.deepEqual(
      cfg({ capabilities: ['CAP_KILL'], 'capabilities.add': ['CAP_CHOWN'] }, { capabilities: ['CAP_SETUID'] })
        .process.capabilities.effective,
      ['CAP_KILL'],
    );
  });

  it('the label`s own capabilities.add is not used', () => {
    assert.deepEqual(cfg({}, { 'capabilities.add': ['CAP_KILL'] }).process.capabilities, {});
  });

  it('[all] gives every capability: effective in kernel order, bounding sorted', () => {
    for (const word of ['all', 'ALL']) {
      const c = cfg({ capabilities: [word] }).process.capabilities;
      assert.equal(c.effective?.length, 41);
      assert.deepEqual(c.effective, [...ALL_CAPABILITIES]);
      assert.equal(c.effective?.[0], 'CAP_CHOWN');
      assert.equal(c.bounding?.[0], 'CAP_AUDIT_CONTROL');
      assert.deepEqual(c.bounding, [...ALL_CAPABILITIES].sort());
    }
  });

  it('[none] clears the label`s list', () => {
    assert.deepEqual(
      cfg({ capabilities: ['none'] }, { capabilities: ['CAP_KILL'] }).process.capabilities,
      {},
    );
  });

  it('rejects unknown names (upstream TestInvalidCap), lowercase names, and all mixed with others', () => {
    throwsUser(() => cfg({}, { capabilities: ['NOT_A_CAP'] }), /unknown capability.*NOT_A_CAP/);
    throwsUser(() => cfg({ capabilities: ['cap_sys_admin'] }), /unknown capability/);
    throwsUser(() => cfg({ capabilities: ['all', 'CAP_KILL'] }), /unknown capability.*all/);
  });

  it('ambient: its own list, and part of the bounding set', () => {
    const c = cfg({ capabilities: ['CAP_KILL'], ambient: ['CAP_NET_RAW'] }).process.capabilities;
    assert.deepEqual(c.ambient, ['CAP_NET_RAW']);
    assert.deepEqual(c.effective, ['CAP_KILL']);
    assert.deepEqual(c.bounding, ['CAP_KILL', 'CAP_NET_RAW']);
    assert.deepEqual(cfg({}, { ambient: ['CAP_NET_RAW'] }).process.capabilities.ambient, ['CAP_NET_RAW']);
    assert.deepEqual(cfg({ ambient: ['none'] }, { ambient: ['CAP_NET_RAW'] }).process.capabilities, {});
    throwsUser(() => cfg({ ambient: ['CAP_NOPE'] }), /unknown capability in ambient/);
  });
});

describe('mounts, binds, tmpfs', () => {
  const mountsOf = (c: ReturnType<typeof cfg>) => new Map(c.mounts?.map((m) => [m.destination, m]));

  it('binds: default options rw,rbind,rshared; given options get rbind appended', () => {
    const m = mountsOf(cfg({ binds: ['/var:/var', '/etc/resolv.conf:/etc/resolv.conf:ro'] }));
    assert.deepEqual(m.get('/var'), {
      destination: '/var',
      type: 'bind',
      source: '/var',
      options: ['rw', 'rbind', 'rshared'],
    });
    assert.deepEqual(m.get('/etc/resolv.conf')?.options, ['ro', 'rbind']);
  });

  it('binds: label only, YAML replaces, YAML binds.add extends the label', () => {
    const dests = (c: ReturnType<typeof cfg>) =>
      c.mounts?.filter((m) => m.type === 'bind').map((m) => m.destination);
    assert.deepEqual(dests(cfg({}, { binds: ['/a:/a'] })), ['/a']);
    assert.deepEqual(dests(cfg({ binds: ['/b:/b'] }, { binds: ['/a:/a'] })), ['/b']);
    assert.deepEqual(dests(cfg({ 'binds.add': ['/b:/b'] }, { binds: ['/a:/a'] })), ['/a', '/b']);
    assert.deepEqual(dests(cfg({ binds: ['/c:/c'], 'binds.add': ['/b:/b'] }, { binds: ['/a:/a'] })), ['/c']);
    assert.deepEqual(dests(cfg({}, { 'binds.add': ['/b:/b'] })), []);
  });

  it('binds: bad forms', () => {
    throwsUser(() => cfg({ binds: ['/only'] }), /missing ':'/);
    throwsUser(() => cfg({ binds: ['/a:/b:ro:x'] }), /too many ':'/);
  });

  it('a bind replaces a default mount at the same destination', () => {
    const m = mountsOf(cfg({ binds: ['/sys:/sys'] }));
    assert.equal(m.get('/sys')?.type, 'bind');
  });

  it('tmpfs: with and without options, label and YAML', () => {
    const m = mountsOf(cfg({ tmpfs: ['/run:size=1m,mode=755', '/tmp'] }));
    assert.deepEqual(m.get('/run'), {
      destination: '/run',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['size=1m', 'mode=755'],
    });
    assert.deepEqual(m.get('/tmp'), { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' });
    assert.ok(mountsOf(cfg({}, { tmpfs: ['/l'] })).has('/l'));
    const both = mountsOf(cfg({ tmpfs: ['/y'] }, { tmpfs: ['/l'] }));
    assert.ok(both.has('/y') && !both.has('/l'));
    throwsUser(() => cfg({ tmpfs: ['/a:b:c'] }), /too many ':'/);
  });

  it('mounts: type from source, tmpfs on /dev, destination from type; replaces defaults', () => {
    const m = mountsOf(
      cfg({
        mounts: [
          { source: 'mqueue' },
          { destination: '/dev', options: ['rw'] },
          { type: 'proc', options: ['ro'] },
          { type: 'tmpfs', destination: '/scratch' },
        ],
      }),
    );
    assert.deepEqual(m.get('/dev/mqueue'), { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue' });
    assert.deepEqual(m.get('/dev'), { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['rw'] });
    assert.deepEqual(m.get('/proc'), { destination: '/proc', type: 'proc', source: 'proc', options: ['ro'] });
    assert.deepEqual(m.get('/scratch'), { destination: '/scratch', type: 'tmpfs', source: 'tmpfs' });
    throwsUser(() => cfg({ mounts: [{ destination: '/x', source: '/y' }] }), /missing a type/);
    throwsUser(() => cfg({ mounts: [{ type: 'tmpfs' }] }), /missing a destination/);
  });

  it('mounts: label only, YAML replaces the whole list', () => {
    assert.ok(mountsOf(cfg({}, { mounts: [{ type: 'tmpfs', destination: '/l' }] })).has('/l'));
    const m = mountsOf(
      cfg({ mounts: [{ type: 'tmpfs', destination: '/y' }] }, { mounts: [{ source: 'mqueue' }] }),
    );
    assert.ok(m.has('/y') && !m.has('/dev/mqueue'));
  });

  it('mounts are sorted by destination (tmpfs, binds, mounts mixed)', () => {
    const c = cfg({ binds: ['/x:/a/b'], tmpfs: ['/a'], mounts: [{ source: 'mqueue' }] });
    const dests = c.mounts?.map((m) => m.destination) ?? [];
    assert.deepEqual(dests, [...dests].sort());
    assert.deepEqual(dests, [
      '/a',
      '/a/b',
      '/dev',
      '/dev/mqueue',
      '/dev/pts',
      '/proc',
      '/sys',
      '/sys/fs/cgroup',
    ]);
  });
});

describe('namespaces', () => {
  const nsOf = (yaml: ImageSettings, label?: ImageSettings) => cfg(yaml, label).linux.namespaces;

  it('default: new pid, mount and cgroup; host net, ipc, uts, user', () => {
    assert.deepEqual(nsOf({}), [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }]);
  });

  it('net: host, new, none, a path; label and YAML', () => {
    assert.deepEqual(nsOf({ net: 'host' }), nsOf({}));
    assert.deepEqual(nsOf({ net: 'new' })[0], { type: 'network' });
    assert.deepEqual(nsOf({ net: 'none' })[0], { type: 'network' });
    assert.deepEqual(nsOf({ net: '/run/netns/x' })[0], { type: 'network', path: '/run/netns/x' });
    assert.deepEqual(nsOf({}, { net: 'new' })[0], { type: 'network' });
    assert.deepEqual(nsOf({ net: 'host' }, { net: 'new' }), nsOf({}));
    // an empty string in the YAML means unset, so the label applies
    assert.deepEqual(nsOf({ net: '' }, { net: 'new' })[0], { type: 'network' });
  });

  it('pid: host shares, new or a path creates/joins; label and YAML', () => {
    assert.deepEqual(nsOf({ pid: 'host' }), [{ type: 'mount' }, { type: 'cgroup' }]);
    assert.deepEqual(nsOf({ pid: 'new' }), nsOf({}));
    assert.deepEqual(nsOf({ pid: '/proc/1/ns/pid' })[0], { type: 'pid', path: '/proc/1/ns/pid' });
    assert.deepEqual(nsOf({}, { pid: 'host' }), [{ type: 'mount' }, { type: 'cgroup' }]);
    assert.deepEqual(nsOf({ pid: 'new' }, { pid: 'host' })[0], { type: 'pid' });
  });

  it('ipc, uts, userns: in upstream order network, ipc, uts, pid, user, mount, cgroup', () => {
    const all = nsOf({ net: 'new', ipc: 'new', uts: '/u', pid: 'new', userns: 'new' });
    assert.deepEqual(
      all.map((n) => n.type),
      ['network', 'ipc', 'uts', 'pid', 'user', 'mount', 'cgroup'],
    );
    assert.deepEqual(all[2], { type: 'uts', path: '/u' });
    assert.deepEqual(nsOf({}, { ipc: 'new' })[0], { type: 'ipc' });
    // upstream quirk: only net knows "none"; for ipc it is taken as a path
    assert.deepEqual(nsOf({ ipc: 'none' })[0], { type: 'ipc', path: 'none' });
  });
});

describe('user ids', () => {
  it('numbers, defaults 0, label and YAML', () => {
    assert.deepEqual(cfg().process.user, { uid: 0, gid: 0 });
    assert.deepEqual(cfg({}, { uid: 5, gid: 6 }).process.user, { uid: 5, gid: 6 });
    assert.deepEqual(cfg({ uid: 7 }, { uid: 5, gid: 6 }).process.user, { uid: 7, gid: 6 });
    assert.deepEqual(cfg({ additionalGids: [1, 2] }).process.user, {
      uid: 0,
      gid: 0,
      additionalGids: [1, 2],
    });
    assert.deepEqual(cfg({}, { additionalGids: [3] }).process.user.additionalGids, [3]);
    // Go's uint32(int) wraps
    assert.equal(cfg({ uid: -1 }).process.user.uid, 4294967295);
    assert.equal(cfg({ uid: 'root' }).process.user.uid, 0);
  });

  it('names map through the id map (upstream TestIdMap)', () => {
    const plan = containerConfig(
      spec({ uid: 'test', gid: 76, additionalGids: ['test', 3] }),
      {},
      {
        idMap: { test: 199 },
      },
    );
    assert.deepEqual(plan.config.process.user, { uid: 199, gid: 76, additionalGids: [199, 3] });
    throwsUser(() => cfg({ gid: 'nobody' }), /cannot find id "nobody"/);
  });

  it('containerIdMap numbers from 100 in onboot, onshutdown, services order', () => {
    assert.deepEqual(
      containerIdMap({
        onboot: [{ name: 'a' }, { name: 'b' }],
        onshutdown: [{ name: 'c' }],
        services: [{ name: 'd' }],
      }),
      { a: 100, b: 101, c: 102, d: 103 },
    );
  });
});

describe('rlimits', () => {
  it('parses TYPE,SOFT,HARD with or without RLIMIT_, any case, unlimited', () => {
    const plan = containerConfig(spec({ rlimits: ['nofile, 1024, unlimited', 'RLIMIT_nproc,10,20'] }), {});
    assert.deepEqual(plan.config.process.rlimits, [
      { type: 'RLIMIT_NOFILE', hard: 18446744073709551615n, soft: 1024 },
      { type: 'RLIMIT_NPROC', hard: 20, soft: 10 },
    ]);
    assert.match(
      plan.configJson,
      /"type": "RLIMIT_NOFILE",\n\s+"hard": 18446744073709551615,\n\s+"soft": 1024/,
    );
    assert.equal(cfg().process.rlimits, undefined);
    assert.equal(cfg({}, { rlimits: ['core,0,0'] }).process.rlimits?.[0]?.type, 'RLIMIT_CORE');
    assert.equal(
      cfg({ rlimits: ['as,1,1'] }, { rlimits: ['core,0,0'] }).process.rlimits?.[0]?.type,
      'RLIMIT_AS',
    );
  });

  it('rejects bad entries', () => {
    throwsUser(() => cfg({ rlimits: ['nofile,1'] }), /cannot parse rlimit/);
    throwsUser(() => cfg({ rlimits: ['bogus,1,1'] }), /unknown rlimit bogus/);
    throwsUser(() => cfg({ rlimits: ['nofile,-1,1'] }), /cannot parse "-1"/);
    throwsUser(() => cfg({ rlimits: ['nofile,1,18446744073709551616'] }), /out of range/);
  });
});

describe('other process and linux fields', () => {
  it('noNewPrivileges: written only when true; YAML beats label', () => {
    assert.equal(cfg().process.noNewPrivileges, undefined);
    assert.equal(cfg({}, { noNewPrivileges: true }).process.noNewPrivileges, true);
    assert.equal(
      cfg({ noNewPrivileges: false }, { noNewPrivileges: true }).process.noNewPrivileges,
      undefined,
    );
  });

  it('oomScoreAdj: written when set, even 0', () => {
    assert.equal(cfg().process.oomScoreAdj, undefined);
    assert.equal(cfg({}, { oomScoreAdj: -500 }).process.oomScoreAdj, -500);
    assert.equal(cfg({ oomScoreAdj: 0 }, { oomScoreAdj: -500 }).process.oomScoreAdj, 0);
    assert.match(containerConfig(spec({ oomScoreAdj: 0 }), {}).configJson, /"oomScoreAdj": 0/);
  });

  it('hostname: label, YAML, empty means unset', () => {
    assert.equal(cfg().hostname, undefined);
    assert.equal(cfg({}, { hostname: 'l' }).hostname, 'l');
    assert.equal(cfg({ hostname: 'y' }, { hostname: 'l' }).hostname, 'y');
    assert.equal(cfg({ hostname: '' }, { hostname: 'l' }).hostname, 'l');
  });

  it('rootfsPropagation and cgroupsPath: label, YAML; YAML "" clears the label', () => {
    assert.equal(cfg().linux.rootfsPropagation, undefined);
    assert.equal(cfg({}, { rootfsPropagation: 'shared' }).linux.rootfsPropagation, 'shared');
    assert.equal(
      cfg({ rootfsPropagation: 'slave' }, { rootfsPropagation: 'shared' }).linux.rootfsPropagation,
      'slave',
    );
    assert.equal(
      cfg({ rootfsPropagation: '' }, { rootfsPropagation: 'shared' }).linux.rootfsPropagation,
      undefined,
    );
    assert.equal(cfg({}, { cgroupsPath: 'podruntime/x' }).linux.cgroupsPath, 'podruntime/x');
    assert.equal(cfg({ cgroupsPath: 'y' }, { cgroupsPath: 'x' }).linux.cgroupsPath, 'y');
  });

  it('sysctl and annotations: whole maps, YAML replaces label, keys sorted', () => {
    assert.equal(cfg().linux.sysctl, undefined);
    assert.deepEqual(cfg({}, { sysctl: { 'net.ipv4.ip_forward': '1' } }).linux.sysctl, {
      'net.ipv4.ip_forward': '1',
    });
    assert.deepEqual(cfg({ sysctl: { b: '2' } }, { sysctl: { a: '1' } }).linux.sysctl, { b: '2' });
    assert.equal(cfg().annotations, undefined);
    assert.deepEqual(cfg({}, { annotations: { k: 'v' } }).annotations, { k: 'v' });
    assert.deepEqual(cfg({ annotations: { y: '1' } }, { annotations: { k: 'v' } }).annotations, { y: '1' });
  });

  it('maskedPaths and readonlyPaths: no defaults; label, YAML', () => {
    assert.equal(cfg().linux.maskedPaths, undefined);
    assert.equal(cfg().linux.readonlyPaths, undefined);
    assert.deepEqual(cfg({}, { maskedPaths: ['/proc/kcore'] }).linux.maskedPaths, ['/proc/kcore']);
    assert.deepEqual(cfg({ readonlyPaths: ['/y'] }, { readonlyPaths: ['/l'] }).linux.readonlyPaths, ['/y']);
  });

  it('uidMappings and gidMappings', () => {
    const m = { containerID: 0, hostID: 1000, size: 1 };
    assert.equal(cfg().linux.uidMappings, undefined);
    assert.deepEqual(cfg({}, { uidMappings: [m] }).linux.uidMappings, [m]);
    assert.deepEqual(cfg({ gidMappings: [{ hostID: 5 }] }, { gidMappings: [m] }).linux.gidMappings, [
      { containerID: 0, hostID: 5, size: 0 },
    ]);
  });

  it('resources: {} by default; label, YAML replaces the whole object; OCI key names', () => {
    assert.deepEqual(cfg().linux.resources, {});
    assert.deepEqual(cfg({}, { resources: { memory: { limit: 1000 } } }).linux.resources, {
      memory: { limit: 1000 },
    });
    const r = cfg(
      { resources: { pids: {}, blockio: { weight: 10, throttleReadBpsDevice: [{ major: 8, rate: 5 }] } } },
      { resources: { memory: { limit: 1000 } } },
    ).linux.resources;
    assert.deepEqual(r, {
      pids: { limit: 0 },
      blockIO: { weight: 10, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 5 }] },
    });
    assert.deepEqual(
      cfg({ resources: { hugepageLimits: [{ pageSize: '2MB', limit: 1 }] } }).linux.resources,
      {
        hugepageLimits: [{ pageSize: '2MB', limit: 1 }],
      },
    );
  });

  it('devices: node plus cgroup rule; `all` allows a type; after resources.devices', () => {
    const c = cfg(
      {
        devices: [
          { path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: '0666' },
          { path: 'all', type: 'b' },
        ],
      },
      { resources: { devices: [{ allow: false, access: 'rwm' }] } },
    );
    assert.deepEqual(c.linux.devices, [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666 },
    ]);
    assert.deepEqual(c.linux.resources.devices, [
      { allow: false, access: 'rwm' },
      { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
      { allow: true, type: 'b', access: 'rwm' },
    ]);
    assert.deepEqual(cfg({}, { devices: [{ path: 'all', type: 'c' }] }).linux.resources, {
      devices: [{ allow: true, type: 'c', access: 'rwm' }],
    });
    throwsUser(() => cfg({ devices: [{ path: '/dev/x', type: 'c', major: 1, minor: 1 }] }), /octal/);
    throwsUser(() => cfg({ devices: [{ path: '/dev/x', type: 'c', mode: '0999' }] }), /octal/);
  });
});

describe('runtime.json fields', () => {
  it('each field from YAML else label; bindNS key by key', () => {
    const plan = containerConfig(
      spec({ runtime: { mkdir: ['/var/y'], bindNS: { net: '/run/netns/y' } } }),
      withLabel({
        runtime: {
          mkdir: ['/var/l'],
          cgroups: ['systemreserved'],
          interfaces: [{ name: 'eth1', add: 'veth', peer: 'veth1' }],
          mounts: [{ type: 'bind', source: '/a', destination: '/b', options: ['rbind'] }],
          bindNS: { net: '/run/netns/l', uts: '/run/uts/l' },
          namespace: 'ns',
        },
      }),
    );
    assert.deepEqual(plan.runtime, {
      cgroups: ['systemreserved'],
      mounts: [{ destination: '/b', type: 'bind', source: '/a', options: ['rbind'] }],
      mkdir: ['/var/y'],
      interfaces: [{ name: 'eth1', add: 'veth', peer: 'veth1', createInRoot: false }],
      bindNS: { cgroup: '', ipc: '', mnt: '', net: '/run/netns/y', pid: '', user: '', uts: '/run/uts/l' },
      namespace: 'ns',
    });
    assert.match(
      plan.runtimeJson,
      /"name": "eth1",\n\s+"add": "veth",\n\s+"peer": "veth1",\n\s+"createInRoot": false/,
    );
  });

  it('user runtime mounts come after the rootfs mounts', () => {
    const plan = containerConfig(
      spec({ readonly: true, runtime: { mounts: [{ destination: '/x', type: 'tmpfs' }] } }),
      {},
      {
        bundle: 'containers/services/t',
      },
    );
    assert.deepEqual(
      plan.runtime.mounts.map((m) => m.destination),
      ['/containers/services/t/rootfs', '/x'],
    );
  });
});

describe('volumes bound by name', () => {
  const vols = [{ name: 'data' }, { name: 'seed', readonly: true }];
  const fail = (m: string): never => {
    throw new UserError(m);
  };
  it('points binds, binds.add and bind mounts naming a volume at its merged dir', () => {
    const out = volumeBinds(
      {
        binds: ['data:/d', '/etc:/etc:ro'],
        'binds.add': ['seed:/s:ro'],
        mounts: [
          { type: 'bind', source: 'data', destination: '/m', options: ['rbind', 'rw'] },
          { type: 'tmpfs', source: 'tmpfs', destination: '/t' },
        ],
      },
      vols,
      fail,
    );
    assert.deepEqual(out.binds, ['/containers/volumes/data/merged:/d', '/etc:/etc:ro']);
    assert.deepEqual(out['binds.add'], ['/containers/volumes/seed/merged:/s:ro']);
    assert.equal(out.mounts?.[0]?.source, '/containers/volumes/data/merged');
    assert.equal(out.mounts?.[1]?.source, 'tmpfs');
  });
  it('the config.json bind takes the merged dir with the default options', () => {
    const plan = containerConfig(spec({ binds: ['data:/d'] }), {}, { volumes: vols });
    const m = plan.config.mounts?.find((x) => x.destination === '/d');
    assert.deepEqual(m, {
      destination: '/d',
      type: 'bind',
      source: '/containers/volumes/data/merged',
      options: ['rw', 'rbind', 'rshared'],
    });
  });
  it('rejects an unknown volume and a read-only volume bound read-write', () => {
    throwsUser(
      () => containerConfig(spec({ binds: ['nope:/d'] }), {}, { volumes: vols }),
      /no volume named "nope"/,
    );
    throwsUser(
      () => containerConfig(spec({ binds: ['seed:/s'] }), {}, { volumes: vols }),
      /seed is read-only/,
    );
    throwsUser(
      () =>
        containerConfig(
          spec({ mounts: [{ type: 'bind', source: 'seed', destination: '/s', options: ['rw', 'ro'] }] }),
          {},
          { volumes: vols },
        ),
      /seed is read-only/,
    );
  });
  it("leaves the label's binds alone, as upstream does", () => {
    const c = containerConfig(spec(), withLabel({ binds: ['rel:/r'] }), { volumes: vols }).config;
    assert.equal(c.mounts?.find((x) => x.destination === '/r')?.source, 'rel');
  });
});

describe('idNumeric', () => {
  const fail = (m: string): never => {
    throw new UserError(m);
  };
  it('numbers, root, and container names through the id map', () => {
    const map = containerIdMap({ onboot: [{ name: 'a' }], onshutdown: [], services: [{ name: 'b' }] });
    assert.equal(idNumeric(undefined, map, fail, 'uid'), 0);
    assert.equal(idNumeric(42, map, fail, 'uid'), 42);
    assert.equal(idNumeric('root', map, fail, 'uid'), 0);
    assert.equal(idNumeric('b', map, fail, 'uid'), 101);
    throwsUser(() => idNumeric('zz', map, fail, 'gid'), /gid: cannot find id "zz"/);
  });
});

describe('the org.mobyproject.config label', () => {
  it('accepts JSON and YAML; an empty label is no label', () => {
    assert.deepEqual(parseConfigLabel('{"net":"host","capabilities":["CAP_KILL"]}', 'img'), {
      net: 'host',
      capabilities: ['CAP_KILL'],
    });
    assert.deepEqual(parseConfigLabel('pid: host\nbinds:\n  - /a:/b\n', 'img'), {
      pid: 'host',
      binds: ['/a:/b'],
    });
    assert.deepEqual(cfg({}, undefined, { Labels: { [CONFIG_LABEL]: '' } }).process.capabilities, {});
  });

  it('rejects bad labels with one clear UserError naming the image', () => {
    throwsUser(() => parseConfigLabel('{"net": ', 'reg/img:1'), /label of reg\/img:1 is not valid JSON/);
    throwsUser(() => parseConfigLabel('["a"]', 'img'), /must be a JSON object/);
    throwsUser(() => parseConfigLabel('{"name":"x"}', 'img'), /name cannot be set/);
    throwsUser(() => parseConfigLabel('{"image":"x"}', 'img'), /image cannot be set/);
    throwsUser(() => parseConfigLabel('{"nett":"host"}', 'img'), /invalid.*nett/);
    throwsUser(() => parseConfigLabel('{"capabilities":"CAP_KILL"}', 'img'), /capabilities/);
    throwsUser(() => parseConfigLabel('{"uid":1.5}', 'img'), /uid/);
    throwsUser(() => parseConfigLabel('{"resources":{"memory":{"limitt":1}}}', 'img'), /resources\.memory/);
    throwsUser(() => containerConfig(spec(), withLabel('{"readonly":"yes"}')), /readonly/);
  });
});

describe('encodeGoJson', () => {
  it('escapes as Go does and formats empty containers compactly', () => {
    assert.equal(
      encodeGoJson('<a&b>"\\\n\t\u0001\u2028'),
      '"\\u003ca\\u0026b\\u003e\\"\\\\\\n\\t\\u0001\\u2028"',
    );
    assert.equal(
      encodeGoJson({ a: [], b: {}, c: undefined, d: 2n ** 64n - 1n }),
      '{\n    "a": [],\n    "b": {},\n    "d": 18446744073709551615\n}',
    );
    assert.equal(encodeGoJson('\ud800x'), '"\ufffdx"');
    assert.equal(encodeGoJson('é😀'), '"é😀"');
  });
});

// The real consumer: runc must accept the bundle and run the process with the settings asked.
describe('runc runs the bundle', () => {
  const runc = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p));
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  const skip = runc && busybox && process.getuid?.() === 0 ? false : 'needs root, runc and busybox';

  /** Runs `script` under busybox sh in a bundle made from our config.json; returns stdout. */
  const runIn = (
    t: { skip: (msg: string) => void },
    settings: ImageSettings,
    script: string,
  ): string | null => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-config-'));
    const id = `oci-config-test-${process.pid}-${Math.floor(performance.now())}`;
    try {
      const rootfs = join(dir, 'rootfs');
      for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc'])
        mkdirSync(join(rootfs, d), { recursive: true });
      copyFileSync(busybox as string, join(rootfs, 'bin/busybox'));
      chmodSync(join(rootfs, 'bin/busybox'), 0o755);
      const plan = containerConfig(spec({ readonly: true, ...settings }), {
        Entrypoint: ['/bin/busybox', 'sh', '-c'],
        Cmd: [script],
      });
      writeFileSync(join(dir, 'config.json'), plan.configJson);
      const r = spawnSync(runc as string, ['--root', join(dir, 'state'), 'run', '--bundle', dir, id], {
        encoding: 'utf8',
        timeout: 30_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (r.status !== 0 && /cgroup|permission denied|operation not permitted/i.test(r.stderr)) {
        t.skip(`runc cannot run containers here: ${r.stderr.trim().split('\n').pop()}`);
        return null;
      }
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    } finally {
      spawnSync(runc as string, ['--root', join(dir, 'state'), 'delete', '-f', id]);
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('applies env, cwd, tmpfs, rlimits and capabilities', { skip }, (t) => {
    const out = runIn(
      t,
      {
        capabilities: ['CAP_KILL'],
        rlimits: ['nofile,77,88'],
        env: ['FOO=bar'],
        cwd: '/tmp',
        tmpfs: ['/tmp'],
      },
      'echo $FOO; pwd; ulimit -n; grep CapEff /proc/self/status; echo $$',
    );
    // CAP_KILL is bit 5; a new pid namespace makes the shell pid 1
    if (out !== null) assert.equal(out, 'bar\n/tmp\n77\nCapEff:\t0000000000000020\n1\n');
  });

  it('applies uid/gid, uts + hostname, a new net namespace, noNewPrivileges, devices, sysctl', {
    skip,
  }, (t) => {
    const out = runIn(
      t,
      {
        uid: 1000,
        gid: 1001,
        additionalGids: [1002],
        uts: 'new',
        hostname: 'box',
        net: 'new',
        noNewPrivileges: true,
        devices: [{ path: '/dev/null', type: 'c', major: 1, minor: 3, mode: '0666' }],
        sysctl: { 'net.ipv4.ip_forward': '1' },
      },
      'id -u; id -g; id -G; hostname; ls /sys/class/net; grep NoNewPrivs /proc/self/status; ' +
        'echo x > /dev/null && echo null-ok; cat /proc/sys/net/ipv4/ip_forward',
    );
    if (out !== null) assert.equal(out, '1000\n1001\n1001 1002\nbox\nlo\nNoNewPrivs:\t1\nnull-ok\n1\n');
  });
});
