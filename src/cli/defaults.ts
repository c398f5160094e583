/**
 * Defaults and argument rules shared by the commands, without commander: the no-op build check
 * (build-noop.ts) uses them before commander is loaded.
 */
import os from 'node:os';
import path from 'node:path';

/** The image cache: --cache, else LINUXKIT_CACHE, else ~/.linuxkit/cache (as upstream). */
export function cacheDir(flag?: string): string {
  const dir = flag ?? process.env.LINUXKIT_CACHE ?? path.join(os.homedir(), '.linuxkit', 'cache');
  return path.resolve(dir);
}

export function debianMirror(flag?: string): string | undefined {
  return flag ?? process.env.LINUXKIT_DEBIAN_MIRROR ?? undefined;
}

/** Progress lines go to stderr so stdout stays for results (e.g. a tag). */
export const log = (line: string) => process.stderr.write(`${line}\n`);

/** `-format a,b -format c` -> [a, b, c] */
export function collectList(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').filter((v) => v !== '')];
}

/** Upstream's -size in bytes: a number with an optional K, M or G suffix (binary units); bare numbers are MB. */
export function sizeBytes(v: string): number | undefined {
  const m = /^(\d+)([KMG]?)B?$/i.exec(v.trim());
  if (!m || Number(m[1]) === 0) return undefined;
  const unit = { '': 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[
    m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'
  ];
  return Number(m[1]) * unit;
}

/**
 * Upstream LinuxKit is written in Go, whose flags take one dash (`-format`, `-dir`). Accept those
 * by turning `-word` into `--word` before commander sees them; single-letter flags stay as they are.
 */
export function goStyleFlags(argv: string[]): string[] {
  const out: string[] = [];
  let rest = false;
  for (const a of argv) {
    if (rest || a === '--') {
      rest = true;
      out.push(a);
    } else if (/^-[A-Za-z][A-Za-z0-9-]+(=.*)?$/s.test(a)) out.push(`-${a}`);
    else out.push(a);
  }
  return out;
}
