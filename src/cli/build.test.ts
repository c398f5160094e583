import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { REPO, tempDir } from '../../test/helpers.js';
import { loadConfig } from '../spec/load.js';
import { defaultOutputName } from '../spec/naming.js';

/** Runs the CLI with an empty cache: --dry-run must need no image at all. */
function run(args: string[], input?: string, cwd = REPO) {
  const r = spawnSync(process.execPath, [path.join(REPO, 'bin', 'linuxkit.js'), ...args], {
    cwd,
    input,
    encoding: 'utf8',
    env: { ...process.env, LINUXKIT_CACHE: emptyCache },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const emptyCache = tempDir('lk-empty-cache-');

const UPSTREAM = path.join(REPO, 'src', 'spec', 'testdata', 'upstream');
const upstreamFiles = readdirSync(UPSTREAM)
  .filter((f) => f.endsWith('.yml'))
  .sort();

describe('linuxkit build --dry-run', () => {
  for (const f of upstreamFiles) {
    it(`prints upstream's ${f} without pulling anything`, () => {
      const file = path.join(UPSTREAM, f);
      const r = run(['build', '-dry-run', file]);
      assert.equal(r.code, 0, r.stderr);
      const text = readFileSync(file, 'utf8');
      // the only thing said on stderr is the obsolete-trust warning
      if (/^trust:/m.test(text))
        assert.match(r.stderr, /^\S+:\d+:1: warning: the "trust" section is obsolete/);
      else assert.equal(r.stderr, '');
      // what it prints is the same config, loadable again
      const printed = loadConfig(r.stdout, 'out.yml', UPSTREAM, { warn: () => {} }).config;
      assert.deepEqual(printed, loadConfig(text, file, UPSTREAM, { warn: () => {} }).config);
    });
  }

  it('merges several files, - being stdin', () => {
    const r = run(
      ['build', '--dry-run', path.join(UPSTREAM, 'examples-sshd.yml'), '-'],
      'kernel:\n  image: linuxkit/kernel:override\nonboot:\n  - name: extra\n    image: alpine\n',
    );
    assert.equal(r.code, 0, r.stderr);
    const c = loadConfig(r.stdout, 'out.yml', '/', { warn: () => {} }).config;
    assert.equal(c.kernel?.image, 'linuxkit/kernel:override');
    assert.equal(c.kernel?.cmdline, 'console=ttyS0 page_poison=1');
    assert.deepEqual(
      c.onboot.map((o) => o.name),
      ['sysctl', 'extra'],
    );
  });

  it('exits 1 with every problem as FILE:LINE:COL and prints nothing', () => {
    const dir = tempDir('lk-dry-');
    const a = path.join(dir, 'a.yml');
    writeFileSync(a, 'init: [x]\nservices:\n  - name: s\n    image: x\n    binds: [/nocolon]\n');
    const r = run(['build', '--dry-run', 'a.yml', '-'], 'services:\n  - name: s\n    image: y\n', dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      'a.yml:5:13: services[0].binds[0]: "/nocolon" is not of the form SRC:DST[:OPTIONS] (DST an absolute path)\n',
    );
    const r2 = run(['build', '--dry-run', 'a.yml'], undefined, dir);
    assert.equal(r2.code, 1);
    writeFileSync(a, 'init: [x]\nservices:\n  - name: s\n    image: x\n');
    const r3 = run(['build', '--dry-run', 'a.yml', '-'], 'services:\n  - name: s\n    image: y\n', dir);
    assert.equal(r3.code, 1);
    assert.equal(r3.stdout, '');
    assert.equal(r3.stderr, '<stdin>:2:11: duplicate container name "s" (first at a.yml:3:11)\n');
  });
});

describe('default output name', () => {
  it('is the last file without its extension, or moby for stdin, as upstream', () => {
    assert.equal(defaultOutputName(['a.yml', 'dir/b.yaml']), 'b');
    assert.equal(defaultOutputName(['a.yml', '-']), 'moby');
    assert.equal(defaultOutputName(['https://example.org/cfg/sshd.yml?x=1']), 'sshd');
    assert.equal(defaultOutputName(['x.conf.yml']), 'x.conf');
  });
});
