/** Options and defaults shared by several commands. */
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
