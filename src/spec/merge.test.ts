import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { SourceError, UserError } from '../util/errors.js';
import { configToYaml, octalMode } from './dump.js';
import { loadConfig, loadConfigFiles, STDIN_NAME } from './load.js';

const quiet = { warn: () => {} };

describe('multi-file merge (build a.yml b.yml)', () => {
  const dir = tempDir('lk-merge-');
  mkdirSync(path.join(dir, 'sub'));
  const write = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const a = write(
    'a.yml',
    [
      'kernel:',
      '  image: linuxkit/kernel:a',
      '  cmdline: console=ttyS0',
      'init: [linuxkit/init:a]',
      'onboot:',
      '  - name: one',
      '    image: "@pkg:pkg/one"',
      'files:',
      '  - path: etc/a',
      '    source: a.txt',
      '',
    ].join('\n'),
  );
  const b = write(
    'sub/b.yml',
    [
      'kernel:',
      '  cmdline: ""',
      '  binary: bzImage',
      'init: [linuxkit/runc:b]',
      'onboot:',
      '  - name: two',
      '    image: "@pkg:../pkg/two"',
      'services:',
      '  - name: svc',
      '    image: alpine',
      'files:',
      '  - path: etc/b',
      '    source: b.txt',
      '  - path: etc/home',
      '    source: ~/x',
      '  - path: etc/abs',
      '    source: /etc/hostname',
      'volumes:',
      '  - name: v',
      '    image: "@pkg:vol"',
      '',
    ].join('\n'),
  );
  const c = write('c.yml', 'kernel:\n  image: linuxkit/kernel:c\n');

  it('overrides kernel fields, appends lists, keeps the first file and its directory', async () => {
    const loaded = await loadConfigFiles([a, b, c], quiet);
    assert.equal(loaded.file, a);
    assert.equal(loaded.dir, dir);
    assert.deepEqual(loaded.files, [a, b, c]);
    const cfg = loaded.config;
    // an empty cmdline does not override (upstream: only non-empty strings do)
    assert.deepEqual(cfg.kernel, { image: 'linuxkit/kernel:c', cmdline: 'console=ttyS0', binary: 'bzImage' });
    assert.deepEqual(cfg.init, ['linuxkit/init:a', 'linuxkit/runc:b']);
    assert.deepEqual(
      cfg.onboot.map((o) => o.name),
      ['one', 'two'],
    );
    assert.deepEqual(
      cfg.services.map((s) => s.name),
      ['svc'],
    );
    // paths relative to sub/b.yml are rewritten relative to a.yml's directory
    assert.equal(cfg.onboot[1]?.image, '@pkg:pkg/two');
    assert.deepEqual(
      cfg.files.map((f) => f.source),
      ['a.txt', 'sub/b.txt', '~/x', '/etc/hostname'],
    );
    assert.equal(cfg.volumes[0]?.image, '@pkg:sub/vol');
  });

  it('gives positions in the file each entry came from', async () => {
    const loaded = await loadConfigFiles([a, b, c], quiet);
    assert.deepEqual(loaded.posOf(['onboot', 1, 'image']), { file: b, line: 7, col: 12 });
    assert.deepEqual(loaded.posOf(['onboot', 0, 'name']), { file: a, line: 6, col: 11 });
    assert.deepEqual(loaded.posOf(['files', 1, 'source']), { file: b, line: 13, col: 13 });
    assert.deepEqual(loaded.posOf(['volumes', 0]), { file: b, line: 19, col: 5 });
    assert.deepEqual(loaded.posOf(['kernel', 'image']), { file: c, line: 2, col: 10 });
    assert.deepEqual(loaded.posOf(['kernel', 'cmdline']), { file: a, line: 3, col: 12 });
    assert.deepEqual(loaded.posOf(['kernel', 'binary']), { file: b, line: 3, col: 11 });
  });

  it('rejects a name used in two files, pointing at both', async () => {
    const d = write(
      'd.yml',
      'services:\n  - name: extra\n    image: x\n  - name: one\n    image: y\nvolumes:\n  - name: v\n',
    );
    await assert.rejects(loadConfigFiles([a, b, d], quiet), (e: unknown) => {
      assert.ok(e instanceof SourceError);
      assert.deepEqual(
        e.problems.map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`),
        [
          `${d}:4:11: duplicate container name "one" (first at ${a}:6:11)`,
          `${d}:7:11: duplicate volume name "v" (first at ${b}:19:11)`,
        ],
      );
      return true;
    });
  });

  it('reports the problems of every file together, each in its own file', async () => {
    const bad1 = write('bad1.yml', 'kernel:\n  imag: x\n');
    const bad2 = write('bad2.yml', 'services:\n  - name: s\n    image: x\n    capabilities: [CAP_NOPE]\n');
    await assert.rejects(loadConfigFiles([bad1, a, bad2], quiet), (e: unknown) => {
      assert.ok(e instanceof SourceError);
      assert.deepEqual(e.message.split('\n'), [
        `${bad1}:2:3: unknown key "imag" in kernel`,
        `${bad2}:4:20: services[0].capabilities[0]: unknown capability "CAP_NOPE"`,
      ]);
      return true;
    });
  });

  it('reads - from stdin, named <stdin>, relative to the current directory', async () => {
    const loaded = await loadConfigFiles(['-'], {
      ...quiet,
      stdin: async () => 'init: [x]\nservices:\n  - name: s\n    image: y\n    net: 5\n',
    }).catch((e: unknown) => e);
    assert.ok(loaded instanceof SourceError);
    assert.equal(
      loaded.message,
      `${STDIN_NAME}:5:10: services[0].net: expected "host", "new", "none" or a namespace path (a string), got a number`,
    );
    const ok = await loadConfigFiles([a, '-'], { ...quiet, stdin: async () => 'init: [from-stdin]\n' });
    assert.deepEqual(ok.config.init, ['linuxkit/init:a', 'from-stdin']);
    assert.equal(ok.posOf(['init', 1]).file, STDIN_NAME);
  });

  it('gives a UserError for a missing file', async () => {
    await assert.rejects(loadConfigFiles([path.join(dir, 'nope.yml')], quiet), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /nope\.yml: cannot read config file: no such file$/);
      return true;
    });
  });
});

describe('configs from http(s) URLs', () => {
  let server: Server;
  let base = '';
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/base.yml') {
        res.writeHead(200, { 'content-type': 'application/yaml' });
        res.end('kernel:\n  image: linuxkit/kernel:url\ninit: [linuxkit/init:url]\n');
      } else if (req.url === '/bad.yml') {
        res.writeHead(200);
        res.end('init: [x]\nonboot:\n  - name: a\n');
      } else {
        res.writeHead(404, 'Not Found');
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('fetches and merges a URL like a file', async () => {
    const loaded = await loadConfigFiles([`${base}/base.yml`], quiet);
    assert.deepEqual(loaded.config.kernel, { image: 'linuxkit/kernel:url' });
    assert.equal(loaded.file, `${base}/base.yml`);
    assert.equal(loaded.dir, process.cwd());
  });

  it('names the URL in positions', async () => {
    await assert.rejects(loadConfigFiles([`${base}/bad.yml`], quiet), {
      message: `${base}/bad.yml:3:5: onboot[0]: missing required key "image"`,
    });
  });

  it('gives a UserError for an HTTP error or an unreachable server', async () => {
    await assert.rejects(loadConfigFiles([`${base}/missing.yml`], quiet), {
      name: 'UserError',
      message: `${base}/missing.yml: cannot fetch config file: HTTP 404 Not Found`,
    });
    await assert.rejects(loadConfigFiles(['http://127.0.0.1:1/x.yml'], quiet), (e: unknown) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /^http:\/\/127\.0\.0\.1:1\/x\.yml: cannot fetch config file: /);
      return true;
    });
  });
});

describe('dump (--dry-run output)', () => {
  it('writes modes back as octal strings', () => {
    assert.equal(octalMode(0o644), '0644');
    assert.equal(octalMode(0o4755), '04755');
    assert.equal(octalMode(0), '0000');
  });

  it('round-trips: the dump loads to the same config', () => {
    const text = `
kernel: { image: k, cmdline: "a b" }
init: [i]
onboot:
  - image: x
    name: first
    binds.add: [/a:/b]
    runtime: { mkdir: [/m], bindNS: { net: /run/netns/n } }
files:
  - path: etc/f
    mode: 0600
    contents: |
      two
      lines
volumes:
  - name: v
    format: oci
trust: { org: [x] }
`;
    const first = loadConfig(text, 'a.yml', '/d', quiet).config;
    const dumped = configToYaml(first);
    assert.deepEqual(loadConfig(dumped, 'dump.yml', '/d', quiet).config, first);
    // upstream's key order: name and image lead each container; trust is gone
    assert.match(dumped, /- name: first\n {4}image: x\n {4}binds\.add:/);
    assert.match(dumped, /mode: "0600"/);
    assert.doesNotMatch(dumped, /trust/);
  });
});
