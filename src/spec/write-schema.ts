/**
 * `npm run schema`: writes the JSON Schema of the YAML format to schema/linuxkit.schema.json
 * (run from the repository root, after tsc).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configJsonSchemaText, SCHEMA_FILE } from './json-schema.js';

const out = path.resolve(SCHEMA_FILE);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, configJsonSchemaText());
process.stderr.write(`wrote ${SCHEMA_FILE}\n`);
