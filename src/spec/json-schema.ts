/**
 * The JSON Schema of the LinuxKit YAML format, for editors (yaml-language-server and others):
 * generated from the same zod schema the loader validates with, then adjusted where the
 * loader accepts more than the zod input type says (an unquoted octal `mode: 0644` is a
 * number to an editor) and where a list of names helps completion (capabilities).
 * `npm run schema` writes it to schema/linuxkit.schema.json; a test keeps that file current.
 */
import { z } from 'zod';
import { ALL_CAPABILITIES } from '../build/capabilities.js';
import { configSchema, OCTAL_MODE_RE } from './schema.js';

/** Where the shipped copy lives, relative to the repository root. */
export const SCHEMA_FILE = 'schema/linuxkit.schema.json';

type Json = Record<string, unknown>;

const CAPABILITY_KEYS = new Set(['capabilities', 'capabilities.add', 'ambient']);

/** Walks every subschema, applying the adjustments to each `properties` map. */
function adjust(node: unknown): void {
  if (Array.isArray(node)) {
    for (const n of node) adjust(n);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const obj = node as Json;
  // `x | null` as anyOf makes validators report "not valid under any of the given schemas"
  // for a mistake deep inside x; a type list keeps their messages precise.
  const any = obj.anyOf as Json[] | undefined;
  if (any?.length === 2 && any[1]?.type === 'null' && typeof any[0]?.type === 'string' && !any[0].anyOf) {
    const [first] = any as [Json];
    delete obj.anyOf;
    Object.assign(obj, first, { type: [first.type, 'null'] });
  }
  const props = obj.properties as Record<string, Json> | undefined;
  if (props) {
    const mode = props.mode;
    if (mode && mode.type === 'string') {
      props.mode = {
        description: 'Octal permission bits, e.g. "0644" (an unquoted 0644 is read as octal too)',
        anyOf: [
          { type: 'string', pattern: OCTAL_MODE_RE.source },
          { type: 'integer', minimum: 0 },
        ],
      };
    }
    for (const key of CAPABILITY_KEYS) {
      const list = props[key];
      if (list && list.type === 'array') {
        list.items = { type: 'string', enum: [...ALL_CAPABILITIES, 'all', 'none'] };
      }
    }
  }
  for (const v of Object.values(obj)) adjust(v);
}

/** The JSON Schema (draft-07, which every YAML editor plugin supports). */
export function configJsonSchema(): Json {
  const js = z.toJSONSchema(configSchema, {
    io: 'input',
    target: 'draft-7',
    // Schemas with a meta id (the container) become one definition instead of three copies.
    // Refinements (unique names, known capabilities, bind syntax) have no JSON Schema form;
    // the loader checks them.
    unrepresentable: 'any',
  }) as Json;
  adjust(js);
  const { $schema, ...rest } = js;
  return {
    $schema,
    title: 'LinuxKit YAML configuration',
    description: 'A system built by `linuxkit build`: kernel, init images, containers, files and volumes.',
    ...rest,
  };
}

/** The file's text: 2-space JSON with a final newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
