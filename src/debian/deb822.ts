/**
 * deb822 control data: Packages indexes, Release/InRelease bodies, apt `.sources` files.
 *
 * Grammar (deb822(5)):
 *   file    = stanza *(blank-line+ stanza)
 *   stanza  = field+                    ; separated by one or more blank (or whitespace-only) lines
 *   field   = NAME ":" [value] LF *(continuation)
 *   continuation = (SP / HTAB) text LF  ; folded/multiline value, e.g. Description, SHA256
 *   comment = "#" text LF               ; at column 0 only; allowed anywhere (used in .sources)
 *
 * Example:
 *   Package: busybox-static
 *   Version: 1:1.35.0-4+b3
 *   Description: Standalone rescue shell
 *    busybox combines tiny versions of many common UNIX utilities
 *    .
 *    (a " ." line is an empty line of the long description)
 *
 * A value is the first line trimmed, then each continuation line on its own line ('\n'-joined)
 * with its single leading space or tab and trailing whitespace removed. Field names keep their
 * spelling; look them up with `field()`, which ignores case as dpkg does.
 */
import { UserError } from '../util/errors.js';

export type Stanza = Record<string, string>;

/** Parse deb822 text into stanzas. `source` names the input in error messages. */
export function parseDeb822(text: string, source = 'deb822 input'): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | null = null;
  let lineNo = 0;
  let pos = 0;
  const n = text.length;
  while (pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    lineNo++;
    const c0 = text.charCodeAt(pos);
    if (c0 === 35 /* # */) {
      pos = end + 1;
      continue;
    }
    if (c0 === 32 || c0 === 9) {
      if (isBlank(text, pos, end)) {
        cur = null;
        pos = end + 1;
        continue;
      }
      throw new UserError(`${source}:${lineNo}: continuation line without a field`);
    }
    if (end === pos || (c0 === 13 && end === pos + 1)) {
      cur = null;
      pos = end + 1;
      continue;
    }
    const colon = text.indexOf(':', pos);
    if (colon < 0 || colon >= end || colon === pos) {
      const line = text.slice(pos, end);
      throw new UserError(
        `${source}:${lineNo}: expected "Field: value", got ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
    const key = text.slice(pos, colon);
    // The value runs over the continuation lines that follow; slicing it once (rather than
    // line by line) is what makes a 50 MB Packages index parse in well under a second.
    let vEnd = end;
    let folded = false;
    let commented = false;
    pos = end + 1;
    while (pos < n) {
      const c = text.charCodeAt(pos);
      if (c === 35) commented = true;
      else if (c !== 32 && c !== 9) break;
      let e = text.indexOf('\n', pos);
      if (e < 0) e = n;
      if (c !== 35 && isBlank(text, pos, e)) break;
      lineNo++;
      folded = true;
      vEnd = e;
      pos = e + 1;
    }
    let value = text.slice(colon + 1, vEnd);
    if (folded) {
      if (commented) value = value.replace(/\n#[^\n]*/g, '');
      value = value.replace(/[ \t\r]*\n[ \t]/g, '\n');
    }
    value = value.trim();
    if (cur === null) {
      // No prototype: a field named `constructor` or `__proto__` is just a field.
      cur = Object.create(null) as Stanza;
      out.push(cur);
    }
    if (Object.hasOwn(cur, key)) throw new UserError(`${source}:${lineNo}: duplicate field ${key}`);
    cur[key] = value;
  }
  return out;
}

function isBlank(text: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

/** A field's value, ignoring the case of its name (`Package`, `package`, `PACKAGE`). */
export function field(stanza: Stanza, name: string): string | undefined {
  if (Object.hasOwn(stanza, name)) return stanza[name];
  const lower = name.toLowerCase();
  for (const k in stanza) if (k.toLowerCase() === lower) return stanza[k];
  return undefined;
}
