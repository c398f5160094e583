/**
 * Real-world YAML: upstream LinuxKit's published examples and test cases (testdata/upstream,
 * Apache-2.0, each naming its source) and our own examples/ must load; the shipped JSON Schema
 * must be current and, read by a real JSON Schema validator, accept them too.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { REPO } from '../../test/helpers.js';
import type { Problem } from '../util/errors.js';
import { configJsonSchemaText, SCHEMA_FILE } from './json-schema.js';
import { loadConfig } from './load.js';

const UPSTREAM = path.join(REPO, 'src', 'spec', 'testdata', 'upstream');
const EXAMPLES = path.join(REPO, 'examples');
const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => path.join(dir, f));

describe('upstream LinuxKit YAML files load unchanged', () => {
  const files = yamlFiles(UPSTREAM);

  it('has the fixtures, each naming its source', () => {
    assert.ok(files.length >= 8 && files.length <= 15, `${files.length} fixtures`);
    for (const f of files) {
      assert.match(
        readFileSync(f, 'utf8').split('\n')[0] ?? '',
        /^# From linuxkit\/linuxkit \S+ \(commit [0-9a-f]{12}\), Apache-2\.0$/,
      );
    }
  });

  for (const f of files) {
    it(path.basename(f), () => {
      const warnings: Problem[] = [];
      const text = readFileSync(f, 'utf8');
      const { config } = loadConfig(text, f, UPSTREAM, { warn: (p) => warnings.push(p) });
      assert.ok(config.init.length > 0);
      assert.ok(config.kernel?.image);
      // the only warning upstream files may cause is the obsolete trust section
      assert.equal(warnings.length, /^trust:/m.test(text) ? 1 : 0);
    });
  }
});

describe('upstream LinuxKit YAML that upstream rejects', () => {
  it('091_validate_linuxkit_yaml: an unknown top-level key', () => {
    const f = path.join(
      REPO,
      'src',
      'spec',
      'testdata',
      'upstream-invalid',
      'test-cases-091_validate_linuxkit_yaml.yml',
    );
    assert.throws(() => loadConfig(readFileSync(f, 'utf8'), 'linuxkit.yml', UPSTREAM), {
      name: 'SourceError',
      message: 'linuxkit.yml:2:1: unknown key "unknownField" at the top level',
    });
  });
});

describe('our examples', () => {
  for (const f of yamlFiles(EXAMPLES)) {
    it(`${path.basename(f)} validates`, () => {
      loadConfig(readFileSync(f, 'utf8'), f, EXAMPLES, { warn: (p) => assert.fail(`warning: ${p.message}`) });
    });
  }
});

describe('the shipped JSON Schema', () => {
  it(`${SCHEMA_FILE} is up to date (npm run schema)`, () => {
    const shipped = readFileSync(path.join(REPO, SCHEMA_FILE), 'utf8');
    assert.ok(shipped === configJsonSchemaText(), `${SCHEMA_FILE} is stale: run npm run schema`);
  });

  // python3-jsonschema (Debian) reads YAML 1.1 with python3-yaml, as many editors do.
  const probe = spawnSync('python3', ['-c', 'import jsonschema, yaml'], { encoding: 'utf8' });
  const skip = probe.status === 0 ? false : 'python3-jsonschema / python3-yaml not installed';
  const validator = `
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
for f in sys.argv[2:]:
    doc = yaml.safe_load(open(f))
    for e in v.iter_errors(doc):
        print(f + ": " + "/".join(str(p) for p in e.absolute_path) + ": " + e.message)
`;
  const validate = (files: string[]) =>
    spawnSync('python3', ['-c', validator, path.join(REPO, SCHEMA_FILE), ...files], { encoding: 'utf8' });

  it('accepts upstream files and our examples (python3-jsonschema)', { skip }, () => {
    const r = validate([...yamlFiles(UPSTREAM), ...yamlFiles(EXAMPLES)]);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, '');
    assert.equal(r.status, 0);
  });

  it('rejects unknown keys and wrong types (python3-jsonschema)', { skip }, () => {
    const dir = path.join(REPO, 'src', 'spec', 'testdata');
    const r = validate([path.join(dir, 'schema-bad.yml')]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.slice(l.indexOf(': ') + 2));
    assert.ok(
      lines.some((l) => /^: Additional properties are not allowed \('kernal' was unexpected\)$/.test(l)),
      r.stdout,
    );
    assert.ok(
      lines.some((l) => l.startsWith("files/0/mode: '0999' is not valid")),
      r.stdout,
    );
    assert.ok(
      lines.some((l) => l.startsWith("services/0/capabilities/0: 'CAP_FLY' is not one of")),
      r.stdout,
    );
    assert.ok(
      lines.some((l) => l.startsWith("services/0/readonly: 'yes' is not of type 'boolean'")),
      r.stdout,
    );
    assert.equal(lines.length, 4, r.stdout);
  });
});
