import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Problem, SourceError } from '../util/errors.js';
import { loadConfig } from './load.js';

/** Problems of `text` as `LINE:COL: message`; fails if it loads. */
function problems(text: string): string[] {
  try {
    loadConfig(text, 'v.yml', '/cfg', { warn: () => {} });
  } catch (e) {
    assert.ok(e instanceof SourceError, `expected a SourceError, got ${e}`);
    for (const p of e.problems) assert.equal(p.file, 'v.yml');
    return e.problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
  }
  assert.fail('expected the config to be rejected');
}

const load = (text: string, warn: (p: Problem) => void = () => {}) =>
  loadConfig(text, 'v.yml', '/cfg', { warn }).config;

describe('validation: each kind of mistake, at its position', () => {
  it('unknown keys, at the key, at every level', () => {
    assert.deepEqual(
      problems(
        [
          'kernel:',
          '  image: k',
          '  cmdlin: x',
          'onboot:',
          '  - name: a',
          '    image: b',
          '    runtime:',
          '      mkdirs: [/x]',
          '      bindNS:',
          '        network: /run/netns/x',
          'volume:',
          '  - name: v',
        ].join('\n'),
      ),
      [
        '3:3: unknown key "cmdlin" in kernel',
        '8:7: unknown key "mkdirs" in onboot[0].runtime',
        '10:9: unknown key "network" in onboot[0].runtime.bindNS',
        '11:1: unknown key "volume" at the top level',
      ],
    );
  });

  it('wrong types, naming what was expected and what was found', () => {
    assert.deepEqual(
      problems(
        [
          'services:',
          '  - name: a',
          '    image: b',
          '    readonly: "yes"',
          '    oomScoreAdj: 1.5',
          '    sysctl: [a]',
          '    uid: [0]',
          '    resources:',
          '      memory:',
          '        limit: lots',
          '    runtime:',
          '      interfaces:',
          '        - name: eth0',
          '          createInRoot: 1',
          'kernel:',
          '  tar: 5',
        ].join('\n'),
      ),
      [
        '4:15: services[0].readonly: expected true or false, got a string',
        '5:18: services[0].oomScoreAdj: expected an integer, got 1.5',
        '6:13: services[0].sysctl: expected a mapping, got a list',
        '7:10: services[0].uid: expected a number or a container name, got a list',
        '10:16: services[0].resources.memory.limit: expected a number, got a string',
        '14:25: services[0].runtime.interfaces[0].createInRoot: expected true or false, got a number',
        '16:8: kernel.tar: expected a file name (a string), got a number',
      ],
    );
  });

  it('duplicate container names across sections and duplicate volume names', () => {
    assert.deepEqual(
      problems(
        [
          'onboot:',
          '  - name: a',
          '    image: x',
          'services:',
          '  - name: b',
          '    image: x',
          '  - name: a',
          '    image: y',
          'volumes:',
          '  - name: v',
          '  - name: v',
        ].join('\n'),
      ),
      [
        '7:11: duplicate container name "a" (first at line 2)',
        '11:11: duplicate volume name "v" (first at line 10)',
      ],
    );
  });

  it('bad octal modes, quoted or not, in files and devices', () => {
    assert.deepEqual(
      problems(
        [
          'files:',
          '  - path: a',
          '    mode: 0999',
          '  - path: b',
          '    mode: "rw-r--r--"',
          'services:',
          '  - name: s',
          '    image: x',
          '    devices:',
          '      - path: /dev/console',
          '        mode: 0666',
        ].join('\n'),
      ),
      [
        '3:11: files[0].mode: "0999" is not an octal mode',
        '5:11: files[1].mode: "rw-r--r--" is not an octal mode',
      ],
    );
    // The device's unquoted 0666 reaches the config as its source text, not the number 666.
    const c = load(
      'services:\n  - name: s\n    image: x\n    devices:\n      - path: /dev/console\n        mode: 0666\n',
    );
    assert.equal(c.services[0]?.devices?.[0]?.mode, '0666');
  });

  it('bad volume names and formats', () => {
    assert.deepEqual(
      problems(
        [
          'volumes:',
          '  - name: Data',
          '  - name: a/b',
          '  - name: ""',
          '  - name: ok',
          '    format: tar',
        ].join('\n'),
      ),
      [
        `2:11: volumes[0].name: "Data" is not a valid volume name (use lowercase letters, digits, '-' and '_')`,
        `3:11: volumes[1].name: "a/b" is not a valid volume name (use lowercase letters, digits, '-' and '_')`,
        `4:11: volumes[2].name: "" is not a valid volume name (use lowercase letters, digits, '-' and '_')`,
        '6:13: volumes[3].format: expected "oci" or "filesystem", got "tar"',
      ],
    );
  });

  it('contents and source (or other ways to give content) together', () => {
    assert.deepEqual(
      problems(
        [
          'files:',
          '  - path: a',
          '    contents: x',
          '    source: ./x',
          '  - path: b',
          '    directory: true',
          '    metadata: yaml',
        ].join('\n'),
      ),
      [
        '4:13: files[0].source: "contents" and "source" cannot be used together',
        '7:15: files[1].metadata: "directory" and "metadata" cannot be used together',
      ],
    );
  });

  it('unknown capabilities, each at its list entry, with a hint', () => {
    assert.deepEqual(
      problems(
        [
          'services:',
          '  - name: a',
          '    image: x',
          '    capabilities: [CAP_NET_ADMIN, net_raw, CAP_FLY]',
          '    capabilities.add: [all, CAP_CHOWN]',
          '    ambient: [sys_admin]',
        ].join('\n'),
      ),
      [
        '4:35: services[0].capabilities[1]: unknown capability "net_raw" (did you mean CAP_NET_RAW?)',
        '4:44: services[0].capabilities[2]: unknown capability "CAP_FLY"',
        '5:24: services[0].capabilities.add[0]: unknown capability "all" ("all" must be alone in the list)',
        '6:15: services[0].ambient[0]: unknown capability "sys_admin" (did you mean CAP_SYS_ADMIN?)',
      ],
    );
    // all / none alone, in any case, as upstream compares them
    for (const only of ['all', 'none', 'ALL']) {
      assert.deepEqual(
        load(`services:\n  - name: a\n    image: x\n    capabilities: [${only}]\n`).services[0]?.capabilities,
        [only],
      );
    }
  });

  it('malformed binds and tmpfs entries', () => {
    assert.deepEqual(
      problems(
        [
          'onboot:',
          '  - name: a',
          '    image: x',
          '    binds: [/a, "/a:b", "/a:/b:ro:x", ":/b"]',
          '    binds.add: [/c]',
          '    tmpfs: ["/t:size=1m:x", t]',
        ].join('\n'),
      ),
      [
        '4:13: onboot[0].binds[0]: "/a" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
        '4:17: onboot[0].binds[1]: "/a:b" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
        '4:25: onboot[0].binds[2]: "/a:/b:ro:x" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
        '4:39: onboot[0].binds[3]: ":/b" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
        '5:17: onboot[0].binds.add[0]: "/c" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
        '6:13: onboot[0].tmpfs[0]: "/t:size=1m:x" is not a tmpfs of the form DST[:OPTIONS] (DST an absolute path)',
        '6:29: onboot[0].tmpfs[1]: "t" is not a tmpfs of the form DST[:OPTIONS] (DST an absolute path)',
      ],
    );
  });

  it('malformed rlimits', () => {
    assert.deepEqual(
      problems(
        [
          'onboot:',
          '  - name: a',
          '    image: x',
          '    rlimits: ["nofile,1024,unlimited", "RLIMIT_CORE,0,0", "nofile,1024", "fd,1,1", "nproc,-1,5"]',
        ].join('\n'),
      ),
      [
        '4:59: onboot[0].rlimits[2]: "nofile,1024" is not a limit of the form NAME,SOFT,HARD (e.g. nofile,1024,unlimited)',
        '4:74: onboot[0].rlimits[3]: "fd,1,1" is not a limit of the form NAME,SOFT,HARD (e.g. nofile,1024,unlimited)',
        '4:84: onboot[0].rlimits[4]: "nproc,-1,5" is not a limit of the form NAME,SOFT,HARD (e.g. nofile,1024,unlimited)',
      ],
    );
  });

  it('reports every problem of a file in one error, in file order', () => {
    const all = problems(
      [
        'kernel:',
        '  imag: k',
        'services:',
        '  - name: a',
        '    image: x',
        '    capabilities: [CAP_X]',
        '    binds: [/x]',
        'files:',
        '  - path: f',
        '    mode: 8',
        'volumes:',
        '  - name: V',
      ].join('\n'),
    );
    assert.deepEqual(
      all.map((p) => p.split(':').slice(0, 2).join(':')),
      ['2:3', '6:20', '7:13', '10:11', '12:11'],
    );
  });
});

describe('validation: what upstream accepts', () => {
  it('takes every upstream container field under its upstream name', () => {
    const c = load(`
onboot:
  - name: full
    image: alpine
    capabilities: [CAP_SYS_ADMIN]
    capabilities.add: [CAP_NET_ADMIN]
    ambient: [CAP_NET_RAW]
    mounts:
      - type: cgroup
        options: [rw]
    binds: [/a:/a]
    binds.add: ["/b:/b:ro"]
    tmpfs: ["/run:size=1m"]
    devices:
      - path: all
        type: a
    command: [sh]
    env: [A=1]
    cwd: /
    net: new
    pid: host
    ipc: new
    uts: new
    userns: new
    hostname: h
    readonly: true
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
    uid: full
    gid: 100
    additionalGids: [1, full]
    noNewPrivileges: true
    oomScoreAdj: -500
    rootfsPropagation: shared
    cgroupsPath: /x
    resources:
      memory: { limit: 1000 }
      pids: { limit: 10 }
    sysctl:
      net.ipv4.ip_forward: "1"
    rlimits: ["nofile,1024,2048"]
    uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }]
    gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }]
    annotations: { a: b }
    runtime:
      cgroups: [x]
      mounts: [{ type: bind, source: /a, destination: /b }]
      mkdir: [/var/x]
      interfaces:
        - name: veth0
          add: veth
          peer: veth1
          createInRoot: false
      bindNS:
        cgroup: /run/ns/c
        ipc: /run/ns/i
        mnt: /run/ns/m
        net: /run/ns/n
        pid: /run/ns/p
        user: /run/ns/u
        uts: /run/ns/t
      namespace: ns
      noRestart: true
`);
    const ct = c.onboot[0];
    assert.ok(ct);
    assert.deepEqual(ct['capabilities.add'], ['CAP_NET_ADMIN']);
    assert.deepEqual(ct['binds.add'], ['/b:/b:ro']);
    assert.equal(ct.rootfsPropagation, 'shared');
    assert.deepEqual(ct.runtime?.interfaces, [
      { name: 'veth0', add: 'veth', peer: 'veth1', createInRoot: false },
    ]);
    assert.equal(ct.runtime?.bindNS?.uts, '/run/ns/t');
    assert.equal(ct.runtime?.namespace, 'ns');
    // upstream's schema allows runtime.noRestart and its code ignores it: so do we
    assert.equal('noRestart' in (ct.runtime ?? {}), false);
    assert.deepEqual(ct.additionalGids, [1, 'full']);
    assert.equal(ct.uid, 'full');
    assert.equal(ct.oomScoreAdj, -500);
    assert.deepEqual(ct.sysctl, { 'net.ipv4.ip_forward': '1' });
  });

  it('takes the kernel, file and volume fields', () => {
    const c = load(`
kernel:
  cmdline: console=ttyS0
  binary: bzImage
  tar: none
  ucode: intel-ucode.cpio
files:
  - path: etc/config.json
    metadata: json
  - path: etc/opt
    source: ./maybe
    optional: true
    uid: 1000
    gid: sshd
    mode: "0600"
volumes:
  - name: data_1
  - name: img
    image: alpine:3.19
    readonly: true
    format: oci
    platforms: [linux/amd64, linux/arm64]
`);
    assert.deepEqual(c.kernel, {
      cmdline: 'console=ttyS0',
      binary: 'bzImage',
      tar: 'none',
      ucode: 'intel-ucode.cpio',
    });
    assert.deepEqual(c.files[1], {
      path: 'etc/opt',
      source: './maybe',
      optional: true,
      uid: 1000,
      gid: 'sshd',
      mode: 0o600,
    });
    assert.deepEqual(c.volumes, [
      { name: 'data_1' },
      {
        name: 'img',
        image: 'alpine:3.19',
        readonly: true,
        format: 'oci',
        platforms: ['linux/amd64', 'linux/arm64'],
      },
    ]);
  });

  it('accepts the obsolete trust section with a warning at its key, and drops it', () => {
    const warnings: Problem[] = [];
    const c = load('init: [a]\ntrust:\n  org:\n    - linuxkit\n', (p) => warnings.push(p));
    assert.equal('trust' in c, false);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.file, 'v.yml');
    assert.equal(warnings[0]?.line, 2);
    assert.equal(warnings[0]?.col, 1);
    assert.match(warnings[0]?.message ?? '', /"trust" section is obsolete and ignored/);
    // and a malformed trust section is still an error
    assert.deepEqual(problems('trust:\n  orgs: [x]\n'), ['2:3: unknown key "orgs" in trust']);
  });
});
