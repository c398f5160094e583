import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { UserError } from '../util/errors.js';
import { field, parseDeb822 } from './deb822.js';

test('stanzas, continuation lines, blank separators', () => {
  const text = [
    'Package: foo',
    'Version: 1.0-1',
    'Description: short',
    ' long line one',
    ' .',
    ' line three   ',
    '',
    '',
    'Package: bar',
    'Depends: a (>= 1),',
    '\tb | c',
    '   ', // whitespace-only line: still a separator
    'Package: baz',
    'Empty:',
  ].join('\n');
  const s = parseDeb822(text);
  assert.equal(s.length, 3);
  assert.deepEqual(
    { ...s[0] },
    {
      Package: 'foo',
      Version: '1.0-1',
      Description: 'short\nlong line one\n.\nline three',
    },
  );
  assert.equal(s[1]?.Depends, 'a (>= 1),\nb | c');
  assert.deepEqual({ ...s[2] }, { Package: 'baz', Empty: '' });
});

test('comments (as in .sources files) and CRLF line ends', () => {
  const text =
    '# a comment\r\nTypes: deb\r\n# http://snapshot.debian.org/x\r\nURIs: http://deb.debian.org/debian\r\nSuites: bookworm\r\n  bookworm-updates\r\n#c\r\n\r\nTypes: deb-src\r\n';
  const s = parseDeb822(text);
  assert.equal(s.length, 2);
  assert.equal(s[0]?.URIs, 'http://deb.debian.org/debian');
  assert.equal(s[0]?.Suites, 'bookworm\n bookworm-updates');
  assert.equal(s[1]?.Types, 'deb-src');
  // a comment inside a folded value is dropped, not part of the value
  const t = parseDeb822('A: x\n y\n# no\n z\n');
  assert.equal(t[0]?.A, 'x\ny\nz');
});

test('field() ignores the case of field names; odd names are plain fields', () => {
  const [s] = parseDeb822('Package: x\nMulti-Arch: foreign\nconstructor: c\n__proto__: p\n');
  assert.ok(s);
  assert.equal(field(s, 'package'), 'x');
  assert.equal(field(s, 'MULTI-ARCH'), 'foreign');
  assert.equal(field(s, 'Depends'), undefined);
  assert.equal(field(s, 'constructor'), 'c');
  assert.equal(field(s, '__proto__'), 'p');
  assert.equal(field(s, 'toString'), undefined);
});

test('bad input is a UserError with a line number', () => {
  assert.throws(
    () => parseDeb822(' leading continuation\n'),
    (e: unknown) => e instanceof UserError && /:1: continuation/.test(e.message),
  );
  assert.throws(
    () => parseDeb822('A: 1\nno colon here\n', 'x.sources'),
    (e: unknown) => e instanceof UserError && /x\.sources:2: expected/.test(e.message),
  );
  assert.throws(() => parseDeb822('A: 1\nA: 2\n'), /duplicate field A/);
  assert.throws(() => parseDeb822(': value\n'), UserError);
});

test('dpkg status database: same packages and versions as dpkg-query', {
  skip: !existsSync('/var/lib/dpkg/status') && 'no /var/lib/dpkg/status',
}, () => {
  let want: string;
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
    want = execFileSync('dpkg-query', ['-W', '-f=${Package}\t${Version}\n'], { encoding: 'utf8' });
  } catch {
    return; // no dpkg-query: nothing to compare with
  }
  const stanzas = parseDeb822(readFileSync('/var/lib/dpkg/status', 'utf8'), '/var/lib/dpkg/status');
  const ours = stanzas.map((s) => `${field(s, 'package')}\t${field(s, 'version') ?? ''}`).sort();
  assert.deepEqual(ours, want.trim().split('\n').sort());
  assert.ok(ours.length > 50);
});
