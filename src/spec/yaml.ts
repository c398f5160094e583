/**
 * Loading a YAML file against a zod schema: parse with the `yaml` package (which keeps every
 * node's source range), validate, and turn every problem into `FILE:LINE:COL: message`. All
 * problems of one file are collected and thrown together as one SourceError, sorted by
 * position, so the user can fix them in one pass. Used for LinuxKit configs and build.yml.
 */

import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Node as YamlNode,
} from 'yaml';
import type { z } from 'zod';
import { type Problem, SourceError, type SourcePos } from '../util/errors.js';
import { describeValue, plainError } from './schema.js';
import type { ConfigPath } from './types.js';

/** `['onboot', 0, 'command']` -> `onboot[0].command`. */
export function formatPath(path: ConfigPath): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? seg : `.${seg}`;
  }
  return s;
}

function keyText(key: unknown): string {
  if (isScalar(key)) return String(key.value);
  return key == null ? '' : String(key);
}

/** Finds the YAML nodes behind config paths and their positions. */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly file: string,
  ) {}

  at(offset: number): SourcePos {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col };
  }

  /**
   * Walks `path` as far as it exists. Returns the node reached (when the whole path exists)
   * and the offset of the deepest thing found: a value with some source text, else its key.
   */
  walk(path: ConfigPath): { node: unknown; found: boolean; offset: number; keyOffset?: number } {
    let cur: unknown = this.doc.contents;
    let offset = (cur as YamlNode | null)?.range?.[0] ?? 0;
    let keyOffset: number | undefined;
    for (const seg of path) {
      if (isAlias(cur)) cur = cur.resolve(this.doc);
      if (isMap(cur)) {
        const pair = cur.items.find((p) => keyText(p.key) === String(seg));
        if (!pair) return { node: undefined, found: false, offset };
        keyOffset = (pair.key as YamlNode | null)?.range?.[0];
        cur = pair.value;
        const r = (cur as YamlNode | null)?.range;
        // An empty value (`name:`) has no text of its own: point at its key instead.
        if (r && r[1] > r[0]) offset = r[0];
        else if (keyOffset !== undefined) offset = keyOffset;
      } else if (isSeq(cur) && typeof seg === 'number' && seg >= 0 && seg < cur.items.length) {
        cur = cur.items[seg];
        keyOffset = undefined;
        const r = (cur as YamlNode | null)?.range;
        if (r) offset = r[0];
      } else {
        return { node: undefined, found: false, offset };
      }
    }
    return { node: cur, found: true, offset, keyOffset };
  }

  posOf(path: ConfigPath): SourcePos {
    return this.at(this.walk(path).offset);
  }

  /** Position of the key that ends `path` (for unknown keys); falls back like posOf. */
  keyPosOf(path: ConfigPath): SourcePos {
    const w = this.walk(path);
    return this.at(w.found && w.keyOffset !== undefined ? w.keyOffset : w.offset);
  }
}

const AT_START = { line: 1, col: 1 };

/** Plain-words message for one of the yaml package's errors. */
function yamlMessage(code: string, message: string): string {
  const msg = message.charAt(0).toLowerCase() + message.slice(1);
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'tabs are not allowed for indentation (use spaces)';
    case 'BAD_INDENT':
      return `bad indentation: ${msg}`;
    case 'MULTIPLE_DOCS':
      return 'only one YAML document is allowed (found a second "---")';
    default:
      return `invalid YAML: ${msg}`;
  }
}

/** Start of the last quoted scalar that runs up to `end` (an unclosed quote). */
function openingQuote(doc: Document, end: number): number | undefined {
  let found: number | undefined;
  visit(doc, {
    Scalar(_, s) {
      const r = s.range;
      if ((s.type === 'QUOTE_DOUBLE' || s.type === 'QUOTE_SINGLE') && r && r[0] < end && r[1] >= end) {
        if (found === undefined || r[0] > found) found = r[0];
      }
    },
  });
  return found;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface YamlChecks {
  /** What the file should hold, for the message about an empty file. */
  expected: string;
  /** Adjust the plain JS value before validation (e.g. take a scalar's source text). */
  prepare?: (raw: Record<string, unknown>, loc: Locator) => void;
  /** Checks the schema cannot express, run on the raw value. */
  check?: (
    raw: Record<string, unknown>,
    loc: Locator,
    report: (pos: SourcePos, message: string) => void,
  ) => void;
}

/**
 * Parses `text` and validates it with `schema`. `file` is the name used in messages (as the
 * user gave it). Throws a SourceError listing every problem found.
 */
export function loadYaml<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  checks: YamlChecks,
): { value: z.output<S>; posOf: (path: ConfigPath) => SourcePos } {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter: lines,
    keepSourceTokens: true,
    prettyErrors: false,
    uniqueKeys: true,
    // `<<` merge keys, as go-yaml (upstream) accepts them.
    merge: true,
  });
  const loc = new Locator(doc, lines, file);
  const problems: Problem[] = [];
  const report = (pos: SourcePos, message: string) => problems.push({ ...pos, message });

  // Duplicate mapping keys: name the key and where it first appeared.
  const firstKeyLine = new Map<number, { key: string; line: number }>();
  visit(doc, {
    Map(_, map) {
      const seen = new Map<string, number>();
      for (const pair of map.items) {
        const offset = (pair.key as YamlNode | null)?.range?.[0];
        if (offset === undefined) continue;
        const key = keyText(pair.key);
        const first = seen.get(key);
        if (first === undefined) seen.set(key, offset);
        else firstKeyLine.set(offset, { key, line: loc.at(first).line });
      }
    },
  });

  let structureOk = true;
  for (const e of doc.errors) {
    const dup = e.code === 'DUPLICATE_KEY' ? firstKeyLine.get(e.pos[0]) : undefined;
    if (dup) {
      report(loc.at(e.pos[0]), `duplicate key "${dup.key}" (first at line ${dup.line})`);
    } else if (e.code === 'MISSING_CHAR' && /quote/.test(e.message)) {
      // yaml reports it where the input ends; the opening quote is where the fix goes.
      structureOk = false;
      report(
        loc.at(openingQuote(doc, e.pos[0]) ?? e.pos[0]),
        'invalid YAML: this quoted string is never closed',
      );
    } else {
      // Anything else may have misread the structure: checking it would only add noise.
      structureOk = false;
      report(loc.at(e.pos[0]), yamlMessage(e.code, e.message));
    }
  }
  for (const w of doc.warnings) report(loc.at(w.pos[0]), yamlMessage(w.code, w.message));

  // toJS throws on an alias to an anchor that was never set; report it where it stands.
  visit(doc, {
    Alias(_, alias) {
      if (!alias.resolve(doc)) {
        structureOk = false;
        report(
          loc.at(alias.range?.[0] ?? 0),
          `unknown alias "*${alias.source}" (no anchor "&${alias.source}" before it)`,
        );
      }
    },
  });

  let value: z.output<S> | undefined;
  if (structureOk) {
    let raw: unknown;
    try {
      raw = doc.toJS({ maxAliasCount: 1000 });
    } catch (e) {
      report({ file, ...AT_START }, `invalid YAML: ${(e as Error).message}`);
      structureOk = false;
    }
    if (structureOk) {
      if (doc.contents === null || raw === null || raw === undefined) {
        report({ file, ...AT_START }, `the file is empty: expected ${checks.expected}`);
      } else if (!isPlainObject(raw)) {
        report({ file, ...AT_START }, `expected a mapping at the top level, got ${describeValue(raw)}`);
      } else {
        checks.prepare?.(raw, loc);
        const result = schema.safeParse(raw, { error: plainError, reportInput: true });
        if (result.success) value = result.data;
        else {
          for (const iss of result.error.issues) {
            const path = iss.path as ConfigPath;
            if (iss.code === 'unrecognized_keys') {
              for (const key of iss.keys) {
                const where = path.length === 0 ? 'at the top level' : `in ${formatPath(path)}`;
                report(loc.keyPosOf([...path, key]), `unknown key "${key}" ${where}`);
              }
            } else if (iss.code === 'invalid_type' && iss.input === undefined && path.length > 0) {
              const parent = path.slice(0, -1);
              const where = parent.length === 0 ? 'top level' : formatPath(parent);
              report(loc.posOf(parent), `${where}: missing required key "${String(path[path.length - 1])}"`);
            } else {
              report(loc.posOf(path), `${formatPath(path) || 'top level'}: ${iss.message}`);
            }
          }
        }
        checks.check?.(raw, loc, report);
      }
    }
  }

  if (problems.length > 0 || value === undefined) {
    throw new SourceError(
      sortProblems(problems.length > 0 ? problems : [{ file, ...AT_START, message: 'invalid file' }]),
    );
  }
  return { value, posOf: (path) => loc.posOf(path) };
}

function sortProblems(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.col - b.p.col || a.i - b.i)
    .map(({ p }) => p)
    .filter((p) => {
      const k = `${p.line}:${p.col}:${p.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
}
