/** Options and defaults shared by several commands. */

import { InvalidArgumentError } from 'commander';
import { sizeBytes } from './defaults.js';

export { cacheDir, collectList, debianMirror, log } from './defaults.js';

/** Upstream's -size: a number with an optional K, M or G suffix (binary units); bare numbers are MB. */
export function parseSize(v: string): number {
  const n = sizeBytes(v);
  if (n === undefined) throw new InvalidArgumentError('expected a size like 1024M or 4G');
  return n;
}
