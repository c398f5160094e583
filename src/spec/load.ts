/**
 * Loading LinuxKit YAML configs: the generic YAML loader (yaml.ts) with the config schema,
 * plus the checks the schema cannot express (octal modes from source text, unique names),
 * and upstream's multi-file merge (`build a.yml b.yml`, moby/config.go AppendConfig): kernel
 * fields set in a later file override, lists append, names stay unique. A file may be `-`
 * (stdin) or an http(s) URL.
 */
import { readFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import { isScalar } from 'yaml';
import { type Problem, SourceError, type SourcePos, UserError } from '../util/errors.js';
import { isUrl } from './naming.js';
import { CONTAINER_SECTIONS, configSchema } from './schema.js';
import type { Config, ConfigPath, KernelSpec, LoadedConfig } from './types.js';
import { isPlainObject, type Locator, loadYaml } from './yaml.js';

export { formatPath } from './yaml.js';

export interface LoadOptions {
  /** Receives warnings (obsolete keys); default: printed on stderr as `FILE:LINE:COL: warning: ...`. */
  warn?: (p: Problem) => void;
}

/** How stdin is named in messages. */
export const STDIN_NAME = '<stdin>';

const printWarning = (p: Problem) =>
  process.stderr.write(`${p.file}:${p.line}:${p.col}: warning: ${p.message}\n`);

/**
 * Parses and validates one config. `file` is the name used in messages (as the user gave it),
 * `dir` the directory relative paths in the config are resolved against.
 * Throws a SourceError listing every problem found.
 */
export function loadConfig(text: string, file: string, dir: string, opts: LoadOptions = {}): LoadedConfig {
  const warnings: Problem[] = [];
  const { value, posOf } = loadYaml(text, file, configSchema, {
    expected: 'a mapping with keys such as kernel, init, onboot, services, files',
    prepare: (raw, loc) => {
      useModeSourceText(raw, loc, 'files');
      for (const section of CONTAINER_SECTIONS) useDeviceModeSourceText(raw, loc, section);
    },
    check: (raw, loc, report) => {
      checkUniqueNames(raw, loc, report);
      checkUniqueVolumes(raw, loc, report);
      if ('trust' in raw) {
        warnings.push({
          ...loc.keyPosOf(['trust']),
          message: 'the "trust" section is obsolete and ignored',
        });
      }
    },
  });
  for (const w of warnings) (opts.warn ?? printWarning)(w);
  return { config: value, file, dir, files: [file], posOf };
}

/**
 * YAML 1.2 reads an unquoted `mode: 0600` as the decimal number 600; the user meant octal,
 * as upstream (go-yaml) reads it. Hand the schema the scalar's source text instead.
 */
export function useModeSourceText(raw: Record<string, unknown>, loc: Locator, key: string): void {
  const files = raw[key];
  if (!Array.isArray(files)) return;
  files.forEach((f, i) => {
    keepSourceText(f, 'mode', loc, [key, i, 'mode']);
  });
}

/** The same for `devices[].mode` of containers (upstream's docs write `mode: 0666`). */
function useDeviceModeSourceText(raw: Record<string, unknown>, loc: Locator, section: string): void {
  const list = raw[section];
  if (!Array.isArray(list)) return;
  list.forEach((c, i) => {
    if (!isPlainObject(c) || !Array.isArray(c.devices)) return;
    c.devices.forEach((d, j) => {
      keepSourceText(d, 'mode', loc, [section, i, 'devices', j, 'mode']);
    });
  });
}

function keepSourceText(obj: unknown, key: string, loc: Locator, path: ConfigPath): void {
  if (!isPlainObject(obj) || typeof obj[key] !== 'number') return;
  const { node } = loc.walk(path);
  if (isScalar(node) && typeof node.source === 'string') obj[key] = node.source;
}

type Report = (pos: SourcePos, message: string) => void;

/** Container names are runc ids and directory names: unique across all three sections. */
function checkUniqueNames(raw: Record<string, unknown>, loc: Locator, report: Report): void {
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

/** Volumes are found by name (binds `NAME:/dst`): unique, as upstream requires. */
function checkUniqueVolumes(raw: Record<string, unknown>, loc: Locator, report: Report): void {
  const list = raw.volumes;
  if (!Array.isArray(list)) return;
  const first = new Map<string, number>();
  list.forEach((v, i) => {
    if (!isPlainObject(v) || typeof v.name !== 'string') return;
    const prev = first.get(v.name);
    if (prev === undefined) first.set(v.name, i);
    else
      report(
        loc.posOf(['volumes', i, 'name']),
        `duplicate volume name "${v.name}" (first at line ${loc.posOf(['volumes', prev, 'name']).line})`,
      );
  });
}

/** The text of one config argument: a file, `-` (stdin) or an http(s) URL. */
export interface ConfigSource {
  text: string;
  /** Name for messages. */
  file: string;
  /** Directory relative paths resolve against (absolute). */
  dir: string;
}

export interface ReadOptions {
  /** Reads all of stdin (default: process.stdin). */
  stdin?: () => Promise<string>;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function readConfigSource(arg: string, opts: ReadOptions = {}): Promise<ConfigSource> {
  if (arg === '-') {
    return { text: await (opts.stdin ?? readStdin)(), file: STDIN_NAME, dir: process.cwd() };
  }
  if (isUrl(arg)) {
    let res: Response;
    try {
      res = await fetch(arg, { signal: AbortSignal.timeout(60_000), redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new UserError(`${arg}: cannot fetch config file: ${cause}`);
    }
    if (!res.ok)
      throw new UserError(`${arg}: cannot fetch config file: HTTP ${res.status} ${res.statusText}`.trim());
    return { text: await res.text(), file: arg, dir: process.cwd() };
  }
  let text: string;
  try {
    text = await readFile(arg, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new UserError(`${arg}: cannot read config file: ${why}`);
  }
  return { text, file: arg, dir: nodePath.resolve(nodePath.dirname(arg)) };
}

/** Reads and loads a config file; `path` is used as given in messages. */
export async function loadConfigFile(
  path: string,
  opts: LoadOptions & ReadOptions = {},
): Promise<LoadedConfig> {
  return loadConfigFiles([path], opts);
}

/**
 * Reads, validates and merges several configs in order. Problems of every file are reported
 * together, each in its own file; then names duplicated across files.
 */
export async function loadConfigFiles(
  args: string[],
  opts: LoadOptions & ReadOptions = {},
): Promise<LoadedConfig> {
  if (args.length === 0) throw new UserError('no config file given');
  const sources: ConfigSource[] = [];
  for (const arg of args) sources.push(await readConfigSource(arg, opts));
  const parts: LoadedConfig[] = [];
  const problems: Problem[] = [];
  for (const s of sources) {
    try {
      parts.push(loadConfig(s.text, s.file, s.dir, opts));
    } catch (e) {
      if (e instanceof SourceError) problems.push(...e.problems);
      else throw e;
    }
  }
  if (problems.length > 0) throw new SourceError(problems);
  return mergeConfigs(parts);
}

const LIST_KEYS = ['init', 'onboot', 'onshutdown', 'services', 'files', 'volumes'] as const;
type ListKey = (typeof LIST_KEYS)[number];
const KERNEL_KEYS = ['image', 'cmdline', 'binary', 'tar', 'ucode'] as const;

const PKG_PREFIX = '@pkg:';

/** Makes a path relative to `from` valid relative to `to` (both absolute directories). */
function rebasePath(p: string, from: string, to: string): string {
  if (from === to || nodePath.isAbsolute(p) || p === '~' || p.startsWith('~/')) return p;
  return nodePath.relative(to, nodePath.resolve(from, p)) || '.';
}

function rebaseRef(ref: string, from: string, to: string): string {
  return ref.startsWith(PKG_PREFIX) ? PKG_PREFIX + rebasePath(ref.slice(PKG_PREFIX.length), from, to) : ref;
}

function rebaseItem(key: ListKey, item: unknown, from: string, to: string): unknown {
  if (from === to) return item;
  switch (key) {
    case 'init':
      return rebaseRef(item as string, from, to);
    case 'files': {
      const f = item as Config['files'][number];
      return f.source === undefined ? f : { ...f, source: rebasePath(f.source, from, to) };
    }
    case 'volumes': {
      const v = item as Config['volumes'][number];
      return v.image === undefined ? v : { ...v, image: rebaseRef(v.image, from, to) };
    }
    default: {
      const c = item as Config['onboot'][number];
      return { ...c, image: rebaseRef(c.image, from, to) };
    }
  }
}

/**
 * Merges loaded configs in order as upstream's AppendConfig does. Relative paths of later
 * files are rewritten relative to the first file's directory; positions stay in each file.
 */
export function mergeConfigs(parts: LoadedConfig[]): LoadedConfig {
  const base = parts[0];
  if (!base) throw new UserError('no config file given');
  if (parts.length === 1) return base;

  const merged: Config = { init: [], onboot: [], onshutdown: [], services: [], files: [], volumes: [] };
  const origins = Object.fromEntries(
    LIST_KEYS.map((k) => [k, [] as { part: number; index: number }[]]),
  ) as Record<ListKey, { part: number; index: number }[]>;
  const kernel: KernelSpec = {};
  const kernelFrom = new Map<string, number>();
  let lastKernel: number | undefined;
  parts.forEach((p, pi) => {
    const k = p.config.kernel;
    if (k) {
      lastKernel = pi;
      for (const key of KERNEL_KEYS) {
        const v = k[key];
        // upstream: an empty cmdline/binary does not override; tar/ucode do when present.
        if (v === undefined || (v === '' && key !== 'tar' && key !== 'ucode')) continue;
        kernel[key] = key === 'image' ? rebaseRef(v, p.dir, base.dir) : v;
        kernelFrom.set(key, pi);
      }
    }
    for (const key of LIST_KEYS) {
      (p.config[key] as unknown[]).forEach((item, index) => {
        (merged[key] as unknown[]).push(rebaseItem(key, item, p.dir, base.dir));
        origins[key].push({ part: pi, index });
      });
    }
  });
  if (lastKernel !== undefined) {
    merged.kernel = Object.fromEntries(
      KERNEL_KEYS.filter((k) => kernel[k] !== undefined).map((k) => [k, kernel[k]]),
    ) as KernelSpec;
  }

  const posOf = (path: ConfigPath): SourcePos => {
    const [head, index, ...rest] = path;
    if ((LIST_KEYS as readonly unknown[]).includes(head)) {
      const key = head as ListKey;
      if (typeof index === 'number') {
        const o = origins[key][index];
        if (o) return (parts[o.part] as LoadedConfig).posOf([key, o.index, ...rest]);
      }
      const first = origins[key][0];
      return (parts[first?.part ?? 0] as LoadedConfig).posOf([key]);
    }
    if (head === 'kernel') {
      const from = typeof index === 'string' ? kernelFrom.get(index) : undefined;
      return (parts[from ?? lastKernel ?? 0] as LoadedConfig).posOf(path);
    }
    return base.posOf(path);
  };

  const loaded: LoadedConfig = {
    config: merged,
    file: base.file,
    dir: base.dir,
    files: parts.flatMap((p) => p.files),
    posOf,
  };
  checkMergedNames(loaded);
  return loaded;
}

/** Names duplicated across files (within one file, loadConfig has reported them already). */
function checkMergedNames(loaded: LoadedConfig): void {
  const problems: Problem[] = [];
  const where = (at: SourcePos, other: SourcePos) =>
    at.file === other.file ? `line ${other.line}` : `${other.file}:${other.line}:${other.col}`;
  const check = (kind: string, entries: { name: string; path: ConfigPath }[]) => {
    const first = new Map<string, ConfigPath>();
    for (const e of entries) {
      const prev = first.get(e.name);
      if (prev === undefined) {
        first.set(e.name, e.path);
        continue;
      }
      const at = loaded.posOf(e.path);
      const before = loaded.posOf(prev);
      problems.push({ ...at, message: `duplicate ${kind} name "${e.name}" (first at ${where(at, before)})` });
    }
  };
  const c = loaded.config;
  check(
    'container',
    CONTAINER_SECTIONS.flatMap((s) => c[s].map((ct, i) => ({ name: ct.name, path: [s, i, 'name'] }))),
  );
  check(
    'volume',
    c.volumes.map((v, i) => ({ name: v.name, path: ['volumes', i, 'name'] })),
  );
  if (problems.length > 0) throw new SourceError(problems);
}
