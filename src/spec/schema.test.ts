import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import {
  CONTAINER_NAME_RE,
  configSchema,
  containerSchema,
  fileSchema,
  OCTAL_MODE_RE,
  plainError,
} from './schema.js';

describe('schema', () => {
  it('matches container names like upstream examples and rejects others', () => {
    for (const ok of ['dhcpcd', 'rngd1', 'open-vm-tools', 'kube_let', 'a.b', '9p'])
      assert.match(ok, CONTAINER_NAME_RE);
    for (const bad of ['', 'Sshd', '-x', '.', '..', 'a/b', 'a b', 'ünï'])
      assert.doesNotMatch(bad, CONTAINER_NAME_RE);
  });

  it('accepts octal modes up to 07777 only', () => {
    for (const ok of ['0', '644', '0644', '00644', '7777', '04755']) assert.match(ok, OCTAL_MODE_RE);
    for (const bad of ['', '0999', '8', '17777', '0o644', '0x1ff', '-644', '+644', '64 4']) {
      assert.doesNotMatch(bad, OCTAL_MODE_RE);
    }
  });

  it('turns a mode string into its permission bits', () => {
    assert.deepEqual(fileSchema.parse({ path: 'a', mode: '4755' }), { path: 'a', mode: 0o4755 });
  });

  it('is strict: unknown keys are issues', () => {
    const r = containerSchema.safeParse({ name: 'a', image: 'b', imagee: 'c' });
    assert.equal(r.success, false);
    assert.deepEqual(
      r.error?.issues.map((i) => [i.code, i.path]),
      [['unrecognized_keys', []]],
    );
  });

  it('words type errors plainly', () => {
    const r = configSchema.safeParse(
      { onboot: [{ name: 'a', image: 'b', command: 'sh' }], init: [true] },
      { error: plainError },
    );
    assert.deepEqual(
      r.error?.issues.map((i) => i.message),
      ['expected an image reference (a string), got true', 'expected a list of strings, got a string'],
    );
  });

  it('allows at most one way of giving a file its content', () => {
    assert.equal(fileSchema.safeParse({ path: 'a' }).success, true);
    assert.equal(fileSchema.safeParse({ path: 'a', symlink: 'b' }).success, true);
    const r = fileSchema.safeParse({ path: 'a', source: 'x', symlink: 'b', contents: '' });
    assert.deepEqual(
      r.error?.issues.map((i) => [i.path, i.message]),
      [[['source'], '"contents" and "source" and "symlink" cannot be used together']],
    );
  });

  it('can be exported as a JSON Schema for editors', () => {
    const js = z.toJSONSchema(configSchema, { io: 'input' }) as {
      additionalProperties?: boolean;
      properties?: Record<string, unknown>;
    };
    assert.equal(js.additionalProperties, false);
    assert.deepEqual(Object.keys(js.properties ?? {}), [
      'kernel',
      'init',
      'onboot',
      'onshutdown',
      'services',
      'files',
      'volumes',
      'trust',
    ]);
  });
});
