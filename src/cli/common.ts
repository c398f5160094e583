/** Options and defaults shared by several commands. */

import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';

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

/** Upstream's -size: a number with an optional K, M or G suffix (binary units); bare numbers are MB. */
export function parseSize(v: string): number {
  const m = /^(\d+)([KMG]?)B?$/i.exec(v.trim());
  if (!m || Number(m[1]) === 0) throw new InvalidArgumentError('expected a size like 1024M or 4G');
  const unit = { '': 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[
    m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'
  ];
  return Number(m[1]) * unit;
}
