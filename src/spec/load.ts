/**
 * Loading a LinuxKit YAML config: the generic YAML loader (yaml.ts) with the config schema,
 * plus the checks the schema cannot express (octal modes from source text, unique names).
 */
import { readFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { isScalar } from 'yaml';
import { type SourcePos, UserError } from '../util/errors.js';
import { CONTAINER_SECTIONS, configSchema } from './schema.js';
import type { ConfigPath, LoadedConfig } from './types.js';
import { isPlainObject, type Locator, loadYaml } from './yaml.js';

export { formatPath } from './yaml.js';

/**
 * Parses and validates a config. `file` is the name used in messages (as the user gave it),
 * `dir` the directory relative paths in the config are resolved against.
 * Throws a SourceError listing every problem found.
 */
export function loadConfig(text: string, file: string, dir: string): LoadedConfig {
  const { value, posOf } = loadYaml(text, file, configSchema, {
    expected: 'a mapping with keys such as kernel, init, onboot, services, files',
    prepare: (raw, loc) => useModeSourceText(raw, loc, 'files'),
    check: checkUniqueNames,
  });
  return { config: value, file, dir, posOf };
}

/**
 * YAML 1.2 reads an unquoted `mode: 0600` as the decimal number 600; the user meant octal,
 * as upstream (go-yaml, YAML 1.1) reads it. Hand the schema the scalar's source text instead.
 */
export function useModeSourceText(raw: Record<string, unknown>, loc: Locator, key: string): void {
  const files = raw[key];
  if (!Array.isArray(files)) return;
  files.forEach((f, i) => {
    if (!isPlainObject(f) || typeof f.mode !== 'number') return;
    const { node } = loc.walk([key, i, 'mode']);
    if (isScalar(node) && typeof node.source === 'string') f.mode = node.source;
  });
}

/** Container names are runc ids and directory names: unique across all three sections. */
function checkUniqueNames(
  raw: Record<string, unknown>,
  loc: Locator,
  report: (pos: SourcePos, message: string) => void,
): void {
  const first = new Map<string, ConfigPath>();
  for (const section of CONTAINER_SECTIONS) {
    const list = raw[section];
    if (!Array.isArray(list)) continue;
    list.forEach((c, i) => {
      if (!isPlainObject(c) || typeof c.name !== 'string') return;
      const path = [section, i, 'name'];
      const prev = first.get(c.name);
      if (prev === undefined) first.set(c.name, path);
      else
        report(
          loc.posOf(path),
          `duplicate container name "${c.name}" (first at line ${loc.posOf(prev).line})`,
        );
    });
  }
}

/** Reads and loads a config file; `path` is used as given in messages. */
export async function loadConfigFile(path: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new UserError(`${path}: cannot read config file: ${why}`);
  }
  return loadConfig(text, path, nodePath.resolve(nodePath.dirname(path)));
}
