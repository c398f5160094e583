/**
 * Bad YAML through the real CLI: one clear message with FILE:LINE:COL, a non-zero exit, and no
 * output files.
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cli, pkgRef as pkg, tempDir } from '../helpers.js';

const dir = tempDir('lk-errors-');

async function buildBad(name: string, yaml: string) {
  const file = path.join(dir, `${name}.yml`);
  await writeFile(file, yaml);
  const outDir = path.join(dir, `out-${name}`);
  const r = cli(['build', '-dir', outDir, file], { cwd: dir });
  const written = await readdir(outDir).catch(() => []);
  return { ...r, file, written };
}

const cases: { name: string; yaml: string; where: string; says: RegExp }[] = [
  {
    name: 'unknown-key',
    yaml: `kernel:\n  image: ${pkg('kernel')}\n  cmdline: console=ttyS0\ninit:\n  - ${pkg('init')}\nonboot:\n  - name: check\n    imagee: ${pkg('test')}\n`,
    where: ':8:5:',
    says: /imagee/,
  },
  {
    name: 'wrong-type',
    yaml: `kernel:\n  image: ${pkg('kernel')}\ninit:\n  - ${pkg('init')}\nonboot:\n  - name: check\n    image: ${pkg('test')}\n    command: echo hi\n`,
    where: ':8:14:',
    says: /command/,
  },
  {
    name: 'duplicate-name',
    yaml: `kernel:\n  image: ${pkg('kernel')}\ninit:\n  - ${pkg('init')}\nonboot:\n  - name: check\n    image: ${pkg('test')}\nservices:\n  - name: check\n    image: ${pkg('test')}\n`,
    where: ':9:',
    says: /duplicate/,
  },
  {
    name: 'missing-image',
    yaml: `kernel:\n  image: ${pkg('kernel')}\ninit:\n  - ${pkg('init')}\nonboot:\n  - name: check\n    image: example.org/no/such-image:1.0\n`,
    where: ':7:12:',
    says: /no\/such-image/,
  },
];

for (const c of cases) {
  test(`refused: ${c.name}`, { timeout: 600_000 }, async () => {
    const r = await buildBad(c.name, c.yaml);
    assert.notEqual(r.code, 0, `exit code; stderr:\n${r.stderr}`);
    assert.ok(r.stderr.includes(`${r.file}${c.where}`), `expected ${r.file}${c.where} in:\n${r.stderr}`);
    assert.match(r.stderr, c.says);
    assert.doesNotMatch(r.stderr, /internal error|at .*\.js:\d+/, 'no stack trace');
    assert.deepEqual(r.written, [], 'no output files');
  });
}
