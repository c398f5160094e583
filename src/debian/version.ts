/**
 * Debian version order, as dpkg implements it (deb-version(7)).
 *
 *   version  = [epoch ":"] upstream ["-" revision]
 *   epoch    = digits (default 0), compared as a number
 *   revision = after the LAST '-' (default "", which sorts like "0")
 *
 * upstream and revision are compared by alternating runs: a run of non-digits compared
 * character by character, where '~' sorts before everything (even the end of the string),
 * then the end, then letters, then all other characters (by their code); then a run of digits
 * compared as a number. So 1.0~rc1 < 1.0 < 1.0a < 1.0+b1 < 1.0.1, 1:0.1 > 9.9, and 1.0-01 = 1.0-1.
 */
import { UserError } from '../util/errors.js';

export interface ParsedVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

export function parseVersion(v: string): ParsedVersion {
  const s = v.trim();
  if (s === '') throw new UserError('empty Debian version');
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!/^[0-9]+$/.test(e)) throw new UserError(`bad epoch in Debian version ${JSON.stringify(v)}`);
    epoch = Number(e);
    rest = s.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : '';
  if (upstream === '') throw new UserError(`empty upstream part in Debian version ${JSON.stringify(v)}`);
  return { epoch, upstream, revision };
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** dpkg's order() for one character code; NaN (past the end) is 0. */
function order(c: number): number {
  if (Number.isNaN(c)) return 0;
  if (c === 126 /* ~ */) return -1;
  if (isDigit(c)) return 0;
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return c;
  return c + 256;
}

/** dpkg's verrevcmp(): compare an upstream or revision string. */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = order(a.charCodeAt(i));
      const bc = order(b.charCodeAt(j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    while (isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charCodeAt(i))) return 1;
    if (isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/** Compare two Debian versions: negative if a < b, 0 if equal, positive if a > b (always -1/0/1). */
export function compareVersions(a: string, b: string): number {
  const va = parseVersion(a);
  const vb = parseVersion(b);
  let r = va.epoch - vb.epoch;
  if (r === 0) r = verrevcmp(va.upstream, vb.upstream);
  if (r === 0) r = verrevcmp(va.revision, vb.revision);
  return Math.sign(r);
}

/** A relation as written in Depends: `<<`, `<=`, `=`, `>=`, `>>` (and the obsolete `<`, `>`). */
export type VersionOp = '<<' | '<=' | '=' | '>=' | '>>' | '<' | '>';

export const VERSION_OPS: readonly string[] = ['<<', '<=', '=', '>=', '>>', '<', '>'];

/** Does `version` satisfy `op ref`? The obsolete `<` and `>` mean `<=` and `>=`, as in dpkg. */
export function satisfies(version: string, op: VersionOp | string, ref: string): boolean {
  const c = compareVersions(version, ref);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
    case '<':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
    case '>':
      return c >= 0;
    case '>>':
      return c > 0;
    default:
      throw new UserError(`unknown version relation ${JSON.stringify(op)} (expected <<, <=, =, >=, >>)`);
  }
}
