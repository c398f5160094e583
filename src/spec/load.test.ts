import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { SourceError, UserError } from '../util/errors.js';
import { formatPath, loadConfig, loadConfigFile } from './load.js';

/** Loads `text` and returns its problems as `LINE:COL: message`, or fails if it loads. */
function problems(text: string): string[] {
  try {
    loadConfig(text, 'test.yml', '/cfg');
  } catch (e) {
    assert.ok(e instanceof SourceError, `expected a SourceError, got ${e}`);
    for (const p of e.problems) assert.equal(p.file, 'test.yml');
    return e.problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
  }
  assert.fail('expected the config to be rejected');
}

const load = (text: string) => loadConfig(text, 'test.yml', '/cfg');

const VALID = `kernel:
  image: linuxkit/kernel:6.6.13
  cmdline: "console=tty0 console=ttyS0"
init:
  - linuxkit/init:v1.0.0
  - linuxkit/runc:v1.0.0
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.0.0
  - name: dhcpcd
    image: linuxkit/dhcpcd:v1.0.0
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
onshutdown:
  - name: shutdown
    image: busybox:latest
    command: ["/bin/echo", "so long"]
services:
  - name: sshd
    image: linuxkit/sshd:v1.0.0
    env:
      - PORT=22
      - EMPTY=
    capabilities: [CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT]
    binds:
      - /root/.ssh:/root/.ssh
      - /etc/resolv.conf:/etc/resolv.conf:ro
    net: host
    pid: host
files:
  - path: etc/issue
    contents: |
      welcome
  - path: root/.ssh/authorized_keys
    source: ~/.ssh/id_ed25519.pub
    mode: "0600"
  - path: var/empty
    directory: true
    mode: 0755
  - path: etc/localtime
    symlink: /usr/share/zoneinfo/UTC
  - path: etc/empty
`;

describe('loadConfig: valid configs', () => {
  it('round-trips a config into the expected object', () => {
    const loaded = load(VALID);
    assert.equal(loaded.file, 'test.yml');
    assert.equal(loaded.dir, '/cfg');
    assert.deepEqual(loaded.config, {
      kernel: { image: 'linuxkit/kernel:6.6.13', cmdline: 'console=tty0 console=ttyS0' },
      init: ['linuxkit/init:v1.0.0', 'linuxkit/runc:v1.0.0'],
      onboot: [
        { name: 'sysctl', image: 'linuxkit/sysctl:v1.0.0' },
        {
          name: 'dhcpcd',
          image: 'linuxkit/dhcpcd:v1.0.0',
          command: ['/sbin/dhcpcd', '--nobackground', '-f', '/dhcpcd.conf', '-1'],
        },
      ],
      onshutdown: [{ name: 'shutdown', image: 'busybox:latest', command: ['/bin/echo', 'so long'] }],
      services: [
        {
          name: 'sshd',
          image: 'linuxkit/sshd:v1.0.0',
          env: ['PORT=22', 'EMPTY='],
          capabilities: ['CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT'],
          binds: ['/root/.ssh:/root/.ssh', '/etc/resolv.conf:/etc/resolv.conf:ro'],
          net: 'host',
          pid: 'host',
        },
      ],
      files: [
        { path: 'etc/issue', contents: 'welcome\n' },
        { path: 'root/.ssh/authorized_keys', source: '~/.ssh/id_ed25519.pub', mode: 0o600 },
        { path: 'var/empty', directory: true, mode: 0o755 },
        { path: 'etc/localtime', symlink: '/usr/share/zoneinfo/UTC' },
        { path: 'etc/empty' },
      ],
      volumes: [],
    });
  });

  it('gives missing and empty sections as empty lists', () => {
    assert.deepEqual(load('kernel:\n  image: k\nservices:\n# none yet\n').config, {
      kernel: { image: 'k' },
      init: [],
      onboot: [],
      onshutdown: [],
      services: [],
      files: [],
      volumes: [],
    });
  });

  it('reads modes as octal whether quoted or not', () => {
    const modes = ['0600', '"0600"', "'0600'", '600', '00600'].map(
      (m) => load(`files:\n  - path: a\n    mode: ${m}\n`).config.files[0]?.mode,
    );
    assert.deepEqual(modes, [0o600, 0o600, 0o600, 0o600, 0o600]);
    assert.equal(load('files:\n  - path: a\n    mode: 7777\n').config.files[0]?.mode, 0o7777);
    assert.equal(load('files:\n  - path: a\n    mode: 0\n').config.files[0]?.mode, 0);
  });

  it('accepts anchors, aliases and merge keys', () => {
    const { config } = load(
      'onboot:\n  - &base\n    name: a\n    image: img\n    net: host\nservices:\n  - <<: *base\n    name: b\n',
    );
    assert.deepEqual(config.services, [{ name: 'b', image: 'img', net: 'host' }]);
  });

  it('accepts directory: false together with contents', () => {
    const { config } = load('files:\n  - path: a\n    directory: false\n    contents: x\n');
    assert.deepEqual(config.files, [{ path: 'a', directory: false, contents: 'x' }]);
  });
});

describe('loadConfig: problems with positions', () => {
  it('reports an unknown top-level key at the key', () => {
    assert.deepEqual(problems('kernel:\n  image: k\nservice:\n  - name: a\n'), [
      '3:1: unknown key "service" at the top level',
    ]);
  });

  it('reports an unknown key in a container at the key', () => {
    assert.deepEqual(problems('onboot:\n  - name: dhcpcd\n    image: d\n    imagee: x\n'), [
      '4:5: unknown key "imagee" in onboot[0]',
    ]);
  });

  it('reports an unknown key in kernel and in a file', () => {
    assert.deepEqual(problems('kernel:\n  image: k\n  cmdlin: x\nfiles:\n  - path: a\n    owner: root\n'), [
      '3:3: unknown key "cmdlin" in kernel',
      '6:5: unknown key "owner" in files[0]',
    ]);
  });

  it('reports a wrong type at the value', () => {
    assert.deepEqual(problems('onboot:\n  - name: a\n    image: b\n    command: /bin/sh -c true\n'), [
      '4:14: onboot[0].command: expected a list of strings, got a string',
    ]);
    assert.deepEqual(problems('init: linuxkit/init:v1\n'), [
      '1:7: init: expected a list of image references, got a string',
    ]);
    assert.deepEqual(problems('services:\n  - name: a\n    image: b\n    env: [A=1, 2]\n'), [
      '4:16: services[0].env[1]: expected a string "NAME=VALUE", got a number',
    ]);
    assert.deepEqual(problems('kernel: linuxkit/kernel\n'), [
      '1:9: kernel: expected a mapping with "image" and "cmdline", got a string',
    ]);
  });

  it('points at the key when the value is empty', () => {
    assert.deepEqual(problems('onboot:\n  - name: a\n    image:\n'), [
      '3:5: onboot[0].image: expected an image reference (a string), got an empty value',
    ]);
  });

  it('reports missing name and image at the container', () => {
    assert.deepEqual(problems('onboot:\n  - image: a\nservices:\n  - name: b\n  - net: host\n'), [
      '2:5: onboot[0]: missing required key "name"',
      '4:5: services[0]: missing required key "image"',
      '5:5: services[1]: missing required key "name"',
      '5:5: services[1]: missing required key "image"',
    ]);
  });

  it('reports a duplicate container name across sections at the second occurrence', () => {
    const text = [
      'onboot:',
      '  - name: dhcpcd',
      '    image: a',
      'onshutdown:',
      '  - name: stop',
      '    image: b',
      'services:',
      '  - name: stop',
      '    image: c',
      '  - name: dhcpcd',
      '    image: d',
      '',
    ].join('\n');
    assert.deepEqual(problems(text), [
      '8:11: duplicate container name "stop" (first at line 5)',
      '10:11: duplicate container name "dhcpcd" (first at line 2)',
    ]);
  });

  it('rejects invalid container names', () => {
    assert.deepEqual(
      problems('services:\n  - name: My_Service\n    image: a\n  - name: .hidden\n    image: a\n'),
      [
        `2:11: services[0].name: "My_Service" is not a valid container name (use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit)`,
        `4:11: services[1].name: ".hidden" is not a valid container name (use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit)`,
      ],
    );
  });

  it('rejects modes that are not octal or too large', () => {
    const text = [
      'files:',
      '  - path: a',
      '    mode: 0644',
      '  - path: b',
      '    mode: 0640',
      '  - path: c',
      '    mode: "0999"',
      '  - path: d',
      '    mode: 10000',
      '  - path: e',
      '    mode: 0o600',
      '  - path: f',
      '    mode: true',
      '  - path: g',
      '    mode: 0x1ff',
      '',
    ].join('\n');
    assert.deepEqual(problems(text), [
      '7:11: files[2].mode: "0999" is not an octal mode',
      '9:11: files[3].mode: "10000" is not an octal mode',
      '11:11: files[4].mode: "0o600" is not an octal mode',
      '13:11: files[5].mode: expected an octal mode like "0644", got true',
      '15:11: files[6].mode: "0x1ff" is not an octal mode',
    ]);
    // Unquoted 0999 is a valid YAML number, but its text is not octal.
    assert.deepEqual(problems('files:\n  - path: x\n    mode: 0999\n'), [
      '3:11: files[0].mode: "0999" is not an octal mode',
    ]);
  });

  it('rejects more than one of contents, source, directory, symlink', () => {
    assert.deepEqual(problems('files:\n  - path: a\n    contents: hi\n    source: ./hi.txt\n'), [
      '4:13: files[0].source: "contents" and "source" cannot be used together',
    ]);
    assert.deepEqual(problems('files:\n  - path: a\n    directory: true\n    symlink: /b\n'), [
      '4:14: files[0].symlink: "directory" and "symlink" cannot be used together',
    ]);
  });

  it('rejects a missing or escaping file path', () => {
    assert.deepEqual(problems('files:\n  - contents: x\n  - path: ../etc/passwd\n    contents: y\n'), [
      '2:5: files[0]: missing required key "path"',
      `3:11: files[1].path: "../etc/passwd" leaves the root ('..' is not allowed)`,
    ]);
  });

  it('rejects malformed env and binds entries', () => {
    const text =
      'services:\n  - name: a\n    image: b\n    env: ["=x", "NOVALUE"]\n    binds: ["/a", "/a:b", "/a:/b:ro:x"]\n';
    assert.deepEqual(problems(text), [
      '4:11: services[0].env[0]: "=x" is not of the form NAME=VALUE',
      '4:17: services[0].env[1]: "NOVALUE" is not of the form NAME=VALUE',
      '5:13: services[0].binds[0]: "/a" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
      '5:19: services[0].binds[1]: "/a:b" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
      '5:27: services[0].binds[2]: "/a:/b:ro:x" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)',
    ]);
  });

  it('reports YAML syntax errors with their position', () => {
    assert.deepEqual(problems('onboot:\n\t- name: a\n'), [
      '2:1: tabs are not allowed for indentation (use spaces)',
    ]);
    assert.deepEqual(problems('kernel:\n  image: a\n cmdline: b\n'), [
      '3:1: bad indentation: all mapping items must start at the same column',
    ]);
    assert.deepEqual(problems('kernel:\n  image: a\n  image: b\n'), [
      '3:3: duplicate key "image" (first at line 2)',
    ]);
    assert.deepEqual(problems('kernel:\n  image: "abc\ninit: [a]\n'), [
      '2:10: invalid YAML: this quoted string is never closed',
    ]);
    assert.deepEqual(problems('a: b: c\n'), [
      '1:4: invalid YAML: nested mappings are not allowed in compact mappings',
    ]);
    assert.deepEqual(problems('init: [a]\n---\ninit: [b]\n'), [
      '2:1: only one YAML document is allowed (found a second "---")',
    ]);
    assert.deepEqual(problems('init: *nothing\n'), [
      '1:7: unknown alias "*nothing" (no anchor "&nothing" before it)',
    ]);
  });

  it('still checks the config when the only YAML errors are duplicate keys', () => {
    assert.deepEqual(problems('kernel:\n  image: a\n  image: b\n  bad: 1\n'), [
      '3:3: duplicate key "image" (first at line 2)',
      '4:3: unknown key "bad" in kernel',
    ]);
  });

  it('reports an empty file or a non-mapping top level at 1:1', () => {
    const empty =
      '1:1: the file is empty: expected a mapping with keys such as kernel, init, onboot, services, files';
    assert.deepEqual(problems(''), [empty]);
    assert.deepEqual(problems('# only a comment\n\n'), [empty]);
    assert.deepEqual(problems('\n\n- a\n- b\n'), ['1:1: expected a mapping at the top level, got a list']);
    assert.deepEqual(problems('hello\n'), ['1:1: expected a mapping at the top level, got a string']);
  });

  it('reports several problems at once, sorted by position', () => {
    const text = [
      'kernel:',
      '  image: linuxkit/kernel',
      'onboot:',
      '  - name: dhcpcd',
      '    image: linuxkit/dhcpcd',
      '    command: dhcpcd',
      'services:',
      '  - name: dhcpcd',
      '    imagee: linuxkit/dhcpcd',
      'files:',
      '  - path: a',
      '    mode: 0999',
      'extra: true',
      '',
    ].join('\n');
    assert.deepEqual(problems(text), [
      '6:14: onboot[0].command: expected a list of strings, got a string',
      '8:5: services[0]: missing required key "image"',
      '8:11: duplicate container name "dhcpcd" (first at line 4)',
      '9:5: unknown key "imagee" in services[0]',
      '12:11: files[0].mode: "0999" is not an octal mode',
      '13:1: unknown key "extra" at the top level',
    ]);
  });

  it('throws a UserError whose message has one FILE:LINE:COL line per problem', () => {
    assert.throws(
      () => load('onboot:\n  - name: a\n    image: b\n    x: 1\n    y: 2\n'),
      (e: unknown) =>
        e instanceof UserError &&
        e.message ===
          'test.yml:4:5: unknown key "x" in onboot[0]\ntest.yml:5:5: unknown key "y" in onboot[0]',
    );
  });
});

describe('posOf', () => {
  const loaded = load(VALID);
  const at = (path: (string | number)[]) => {
    const p = loaded.posOf(path);
    return `${p.file}:${p.line}:${p.col}`;
  };

  it('gives the position of a value', () => {
    assert.equal(at(['onboot', 0, 'image']), 'test.yml:9:12');
    assert.equal(at(['onboot', 1, 'command', 1]), 'test.yml:12:31');
    assert.equal(at(['kernel', 'image']), 'test.yml:2:10');
    assert.equal(at(['init', 1]), 'test.yml:6:5');
    assert.equal(at(['files', 2, 'mode']), 'test.yml:38:11');
  });

  it('falls back to the nearest ancestor', () => {
    assert.equal(at(['onboot', 0, 'command']), 'test.yml:8:5');
    assert.equal(at(['onboot', 7, 'image']), 'test.yml:8:3');
    assert.equal(at(['volumes', 0]), 'test.yml:1:1');
  });
});

describe('formatPath', () => {
  it('writes paths as in messages', () => {
    assert.equal(formatPath(['onboot', 0, 'command', 2]), 'onboot[0].command[2]');
    assert.equal(formatPath(['kernel', 'image']), 'kernel.image');
    assert.equal(formatPath([]), '');
  });
});

describe('loadConfigFile', () => {
  it('names the file as given and resolves its directory', async () => {
    const dir = await mkdtemp(nodePath.join(tmpdir(), 'lk-spec-'));
    try {
      const file = nodePath.join(dir, 'bad.yml');
      await writeFile(file, 'kernel:\n  image: k\nonboot:\n  - name: a\n    image: b\n    bogus: 1\n');
      const rel = nodePath.relative(process.cwd(), file);
      await assert.rejects(loadConfigFile(rel), (e: unknown) => {
        assert.ok(e instanceof SourceError);
        assert.equal(e.message, `${rel}:6:5: unknown key "bogus" in onboot[0]`);
        return true;
      });
      await writeFile(file, 'kernel:\n  image: k\n');
      const ok = await loadConfigFile(rel);
      assert.equal(ok.file, rel);
      assert.equal(ok.dir, dir);
      assert.deepEqual(ok.config.kernel, { image: 'k' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives a UserError for a missing file', async () => {
    await assert.rejects(
      loadConfigFile('no/such/config.yml'),
      (e: unknown) =>
        e instanceof UserError && e.message === 'no/such/config.yml: cannot read config file: no such file',
    );
  });
});
