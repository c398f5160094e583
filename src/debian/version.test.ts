import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runTool, skipUnless } from '../../test/tools.js';
import { UserError } from '../util/errors.js';
import { compareVersions, parseVersion, satisfies } from './version.js';

/** [a, b, sign of compare(a, b)]: the cases that make dpkg's order unusual. */
const HANDMADE: [string, string, number][] = [
  ['1.0', '1.0', 0],
  ['1.0', '1.0-0', 0], // no revision sorts like revision 0
  ['1.0-1', '1.0-01', 0],
  ['0:1.0', '1.0', 0],
  ['1:0.1', '9.9', 1], // epoch first
  ['2:1', '10:1', -1], // epochs compare as numbers
  ['1.0~rc1', '1.0', -1], // '~' before the end
  ['1.0~~', '1.0~', -1],
  ['1.0~~a', '1.0~', -1],
  ['1.0~', '1.0~a', -1],
  ['1.0', '1.0a', -1], // the end before a letter
  ['1.0a', '1.0+', -1], // letters before non-letters
  ['1.0+', '1.0.', -1], // then by character code
  ['1.0+b1', '1.0.1', -1],
  ['1.0-1', '1.0-1+b1', -1],
  ['1.0-1+deb12u1', '1.0-1+deb12u2', -1],
  ['1.0-1~bpo12+1', '1.0-1', -1],
  ['1.10', '1.9', 1], // digits as numbers
  ['1.010', '1.10', 0],
  ['1.0-a-1', '1.0-a', 1], // revision after the LAST '-'
  ['1:1.35.0-4+deb12u1+b1', '1:1.35.0-4+b3', 1],
  ['2.36-9+deb12u10', '2.36-9+deb12u9', 1],
  ['6.1.0-50', '6.1.0-9', 1],
  ['1A', '1a', -1], // by ASCII code among letters
  ['1.2.3', '1.2.3.0', -1],
  ['0.0001', '0.1', 0],
  ['1:2.3.4', '1:2.3.4-0', 0],
];

test('dpkg ordering rules, handmade cases', () => {
  for (const [a, b, want] of HANDMADE) {
    assert.equal(compareVersions(a, b), want, `${a} vs ${b}`);
    assert.equal(compareVersions(b, a), want === 0 ? 0 : -want, `${b} vs ${a}`);
  }
});

test('parseVersion splits epoch, upstream and revision', () => {
  assert.deepEqual(parseVersion('1:2.0-3-4'), { epoch: 1, upstream: '2.0-3', revision: '4' });
  assert.deepEqual(parseVersion('2.0'), { epoch: 0, upstream: '2.0', revision: '' });
  assert.throws(() => parseVersion(''), UserError);
  assert.throws(() => parseVersion('x:1.0'), UserError);
  assert.throws(() => parseVersion('1:-1'), UserError);
});

test('satisfies: <<, <=, =, >=, >> and the obsolete < and >', () => {
  assert.ok(satisfies('2.34-1', '>=', '2.34'));
  assert.ok(!satisfies('2.33', '>=', '2.34'));
  assert.ok(satisfies('1.0~rc1', '<<', '1.0'));
  assert.ok(!satisfies('1.0', '<<', '1.0'));
  assert.ok(satisfies('1.0', '<=', '1.0'));
  assert.ok(satisfies('1.0-0', '=', '1.0'));
  assert.ok(satisfies('1.1', '>>', '1.0'));
  assert.ok(!satisfies('1.0', '>>', '1.0'));
  assert.ok(satisfies('1.0', '<', '1.0')); // '<' means '<='
  assert.ok(satisfies('1.0', '>', '1.0'));
  assert.throws(() => satisfies('1', '!=', '1'), UserError);
});

function hostVersions(): string[] {
  try {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
    return runTool('dpkg-query', ['-W', '-f=${Version}\n']).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

test('agrees with dpkg --compare-versions on real version pairs', skipUnless('dpkg', 'dpkg'), () => {
  const real = [...new Set(hostVersions())].sort();
  const pairs: [string, string][] = HANDMADE.map(([a, b]) => [a, b]);
  // Neighbours in sorted order share long prefixes (the interesting comparisons); a stride
  // through the list gives unrelated pairs. Deterministic, no randomness.
  for (let i = 0; i + 1 < real.length && pairs.length < 200; i++)
    pairs.push([real[i] as string, real[i + 1] as string]);
  for (let i = 0; i < real.length && pairs.length < 400; i++)
    pairs.push([real[i] as string, real[(i * 37 + 11) % real.length] as string]);
  assert.ok(pairs.length >= 200, `only ${pairs.length} pairs (too few installed packages?)`);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = pairs
    .map(
      ([a, b]) =>
        `if dpkg --compare-versions ${q(a)} lt ${q(b)}; then echo -1; elif dpkg --compare-versions ${q(a)} eq ${q(b)}; then echo 0; else echo 1; fi`,
    )
    .join('\n');
  const dpkg = runTool('sh', ['-c', script]).trim().split('\n').map(Number);
  assert.equal(dpkg.length, pairs.length);
  const wrong = pairs
    .filter(([a, b], i) => compareVersions(a, b) !== dpkg[i])
    .map(([a, b]) => `${a} vs ${b}`);
  assert.deepEqual(wrong, []);
});
