/** Where a build's YAML comes from and what its outputs are called (light: the CLI loads it first). */
import path from 'node:path';

/** A YAML argument that is fetched rather than read from disk. */
export function isUrl(arg: string): boolean {
  return /^https?:\/\//.test(arg);
}

/**
 * Output name prefix by default, as upstream: the last file's base name without its
 * extension; `moby` for stdin.
 */
export function defaultOutputName(files: string[]): string {
  const last = files[files.length - 1] ?? '-';
  if (last === '-') return 'moby';
  const base = path.posix.basename(isUrl(last) ? new URL(last).pathname : last.split(path.sep).join('/'));
  return base.slice(0, base.length - path.extname(base).length) || 'moby';
}
