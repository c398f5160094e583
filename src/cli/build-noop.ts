/**
 * `linuxkit build` when there is nothing to do, checked before commander and the builder are
 * loaded (bin/linuxkit.js calls this first): with Node's own start-up at ~110 ms here, loading
 * commander and the command modules was a third of a no-op rebuild. Only plain argument lists
 * are understood here; anything else (help, --pull, --dry-run, an unknown or repeated flag, a
 * value that looks like a flag) goes to the full CLI, which also checks the stamp.
 */
import type { BuildOptions } from '../build/build.js';
import { stampKey, upToDate } from '../build/stamp.js';
import type { InitrdCompression } from '../formats/compress.js';
import { cacheDir, collectList, debianMirror, goStyleFlags, log, sizeBytes } from './defaults.js';

/** `build`'s flags as commander gives them to its action. */
export interface BuildFlags {
  format?: string[];
  dir?: string;
  name?: string;
  cache?: string;
  debianMirror?: string;
  dryRun?: boolean;
  pull?: boolean;
  size?: number;
  compress: InitrdCompression;
  sbom: boolean;
}

/** The library's options for `build FILE... FLAGS`: one place, so both paths key stamps alike. */
export function buildOptions(file: string[], o: BuildFlags): BuildOptions {
  return {
    file,
    formats: o.format?.length ? o.format : ['kernel+initrd'],
    dir: o.dir,
    name: o.name,
    cacheDir: cacheDir(o.cache),
    debianMirror: debianMirror(o.debianMirror),
    pull: o.pull,
    size: o.size,
    compress: o.compress,
    sbom: o.sbom,
    log,
  };
}

/** The value flags understood here, with their commander attribute names. */
const VALUE_FLAGS: Record<
  string,
  'format' | 'dir' | 'name' | 'cache' | 'debianMirror' | 'size' | 'compress'
> = {
  '--format': 'format',
  '--dir': 'dir',
  '--name': 'name',
  '--cache': 'cache',
  '--debian-mirror': 'debianMirror',
  '--size': 'size',
  '--compress': 'compress',
};
/** Every flag of `build` this check understands (a test holds it to the command's own list). */
export const PLAIN_BUILD_FLAGS = [...Object.keys(VALUE_FLAGS), '--no-sbom'];

/** The files and flags of a plain `build` argument list (after the word `build`), else undefined. */
export function plainBuildArgs(argv: string[]): { files: string[]; flags: BuildFlags } | undefined {
  const flags: BuildFlags = { compress: 'gzip', sbom: true };
  const files: string[] = [];
  const seen = new Set<string>();
  const args = goStyleFlags(argv);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-') || a === '-') {
      files.push(a);
      continue;
    }
    if (a === '--no-sbom') {
      flags.sbom = false;
      continue;
    }
    const eq = a.indexOf('=');
    const flag = eq < 0 ? a : a.slice(0, eq);
    const key = VALUE_FLAGS[flag];
    if (key === undefined || (seen.has(flag) && key !== 'format')) return undefined;
    seen.add(flag);
    const value = eq < 0 ? args[++i] : a.slice(eq + 1);
    if (value === undefined || value.startsWith('-')) return undefined;
    if (key === 'format') flags.format = collectList(value, flags.format);
    else if (key === 'size') {
      const n = sizeBytes(value);
      if (n === undefined) return undefined;
      flags.size = n;
    } else if (key === 'compress') flags.compress = value as InitrdCompression;
    else flags[key] = value;
  }
  return files.length ? { files, flags } : undefined;
}

/** The stamp key this process last found stale: the full CLI then does not check it again. */
let staleKey: string | undefined;

/**
 * If the stamp says the outputs of a build with these options are current, say so and return
 * true. Both CLI paths use this; a key already found stale in this process is not read again.
 */
export async function reportUpToDate(opts: BuildOptions): Promise<boolean> {
  const key = stampKey(opts);
  const id = JSON.stringify(key);
  if (opts.pull || id === staleKey) return false;
  const same = await upToDate(key);
  if (!same) {
    staleKey = id;
    return false;
  }
  for (const out of same) log(`up to date ${out}`);
  return true;
}

/**
 * If argv (after `build`) asks for a build whose stamp says its outputs are current, say so and
 * return true. A value no build accepts (a bad -compress or -format) cannot match a stamp, so
 * the full CLI is left to report it.
 */
export async function upToDateBuild(argv: string[]): Promise<boolean> {
  const plain = plainBuildArgs(argv);
  return plain !== undefined && reportUpToDate(buildOptions(plain.files, plain.flags));
}
