/**
 * No-op rebuilds. After a build, a stamp in the cache records what the outputs were made from:
 * a key of the options, a signature of every input (YAML files, package directories, `files:`
 * sources, local image archives, the Debian InRelease files), the digest each image tag pointed
 * at in the cache, and a signature of every output. A later build whose key and signatures all still match has nothing to do.
 *
 * Signatures are content hashes for files up to 4 MiB (so an edit inside the file system's
 * timestamp granularity is still seen) and size+mtime+inode+ctime above that; a directory's is
 * the signatures of everything below it. Outputs are written by rename, so a rewrite changes the
 * inode.
 *
 * The CLI checks a stamp before it loads anything else, so the check avoids even node:crypto
 * (~10 ms to load here): as git's index does, the stamp also keeps each hashed file's and
 * directory's stat, and a path whose stat is unchanged keeps its recorded signature without
 * being read. Only a stat taken when the path had been still for SETTLED_MS is kept: an edit
 * within the file system's timestamp granularity of the hash would not show in the stat.
 */
import { Buffer } from 'node:buffer';
import type { BigIntStats } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ANNOTATION } from '../oci/types.js';
import { defaultOutputName, isUrl } from '../spec/naming.js';
import type { BuildOptions } from './build.js';

const FORMAT = 2;
const HASHED_MAX = 4 << 20;
/** How long a path must have been unchanged (by ctime) for its stat to stand in for its content. */
const SETTLED_MS = 2000;

/** What determines a build's outputs, apart from its input files. */
export interface StampKey {
  /** YAML files, absolute. */
  files: string[];
  formats: string[];
  /** DIR/NAME of the outputs, absolute. */
  prefix: string;
  cacheDir: string;
  size?: number;
  compress?: string;
  sbom?: boolean;
  debianMirror?: string;
}

interface Stamp {
  format: number;
  /** keyOf(the StampKey) */
  key: string;
  /** ms since the epoch after which the stamp is void (a cached Debian InRelease went stale). */
  expires?: number;
  inputs: [string, string][];
  outputs: [string, string][];
  /** Image tags the build took from the cache, with the digest each pointed at. */
  refs?: [string, string][];
  /** statKey -> signature of the settled files and directories below the inputs. */
  stats?: [string, string][];
}

/** The stamp's key for a build, or undefined when its YAML is not all files (stdin, URLs). */
export function stampKey(opts: BuildOptions): StampKey | undefined {
  const files = typeof opts.file === 'string' ? [opts.file] : opts.file;
  if (files.some((f) => f === '-' || isUrl(f))) return undefined;
  return {
    files: files.map((f) => path.resolve(f)),
    formats: opts.formats,
    prefix: path.resolve(opts.dir ?? '.', opts.name ?? defaultOutputName(files)),
    cacheDir: path.resolve(opts.cacheDir),
    ...(opts.size !== undefined ? { size: opts.size } : {}),
    ...(opts.compress !== undefined ? { compress: opts.compress } : {}),
    ...(opts.sbom !== undefined ? { sbom: opts.sbom } : {}),
    ...(opts.debianMirror !== undefined ? { debianMirror: opts.debianMirror } : {}),
  };
}

async function sha256(d: string | Uint8Array): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(d).digest('hex');
}

let toolId: Promise<string> | undefined;
/** The builder's identity: package.json and this compiled file's stat (rewritten by every compile). */
function tool(): Promise<string> {
  toolId ??= (async () => {
    const here = fileURLToPath(import.meta.url);
    const st = await stat(here, { bigint: true });
    const pkg = await readFile(path.join(path.dirname(here), '..', '..', '..', 'package.json'), 'utf8').catch(
      () => '',
    );
    return `${pkg}\0${st.size}\0${st.mtimeNs}\0${st.ino}`;
  })();
  return toolId;
}

/** Everything of the key and the builder that the outputs depend on, as one string (kept whole, not hashed). */
async function keyOf(k: StampKey): Promise<string> {
  return JSON.stringify([
    FORMAT,
    await tool(),
    k.files,
    k.formats,
    k.prefix,
    k.cacheDir,
    k.size ?? null,
    k.compress ?? 'gzip',
    k.sbom ?? true,
    k.debianMirror ?? process.env.LINUXKIT_DEBIAN_MIRROR ?? null,
    process.env.SOURCE_DATE_EPOCH ?? null,
  ]);
}

/** FNV-1a, 64 bits: only names the stamp file (the key inside is compared whole). */
function fnv64(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(s)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

function stampFile(k: StampKey): string {
  return path.join(k.cacheDir, 'builds', `${fnv64(k.prefix)}.json`);
}

/** What identifies a path's state without reading it. */
const statPart = (st: BigIntStats) => `${st.mode}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`;
const statKey = (p: string, st: BigIntStats) => `${p}\0${statPart(st)}`;

/**
 * Known signatures by statKey (from a stamp), and where to record new settled ones (for the
 * next stamp). `settledBefore` is in ns since the epoch.
 */
interface StatMemo {
  known?: Map<string, string>;
  record?: Map<string, string>;
  settledBefore?: bigint;
}

/** A path's signature (see the header); `follow` reads through a symlink at the top. */
export async function signature(p: string, follow = true, memo: StatMemo = {}): Promise<string> {
  return (await signatureOf(p, follow, memo)).sig;
}

/** The signature, and whether it came from the memo (nothing below p was read). */
async function signatureOf(
  p: string,
  follow: boolean,
  memo: StatMemo,
): Promise<{ sig: string; memo: boolean }> {
  let st: BigIntStats;
  try {
    st = follow ? await stat(p, { bigint: true }) : await lstat(p, { bigint: true });
  } catch {
    return { sig: 'absent', memo: true };
  }
  if (st.isSymbolicLink()) return { sig: `l:${await readlink(p)}`, memo: true };
  if (!st.isDirectory() && !(st.isFile() && st.size <= HASHED_MAX))
    return { sig: `s:${statPart(st)}`, memo: true };
  const sk = statKey(p, st);
  let children: { name: string; sig: string; memo: boolean }[] = [];
  if (st.isDirectory()) {
    const names = (await readdir(p)).sort();
    children = await Promise.all(
      names.map(async (name) => ({ name, ...(await signatureOf(path.join(p, name), false, memo)) })),
    );
  }
  // A directory's stat covers its entries' names only, so its children must be unchanged too.
  const known = children.every((c) => c.memo) ? memo.known?.get(sk) : undefined;
  const sig =
    known ??
    (st.isDirectory()
      ? `d:${st.mode}:${await sha256(children.map((c) => `${c.name}\0${c.sig}`).join('\n'))}`
      : `f:${st.mode}:${await sha256(await readFile(p))}`);
  if (memo.record && memo.settledBefore !== undefined && st.ctimeNs < memo.settledBefore)
    memo.record.set(sk, sig);
  return { sig, memo: known !== undefined };
}

/** An output's signature: it is only ever replaced by rename, so stat says enough. */
async function outputSignature(p: string): Promise<string> {
  try {
    const st = await stat(p, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ino}`;
  } catch {
    return 'absent';
  }
}

/**
 * The outputs of the last build with this key, if nothing it was made from has changed since,
 * the outputs are as it left them and the stamp has not expired; else undefined.
 */
export async function upToDate(k: StampKey | undefined): Promise<string[] | undefined> {
  if (!k) return undefined;
  let s: Stamp;
  try {
    s = JSON.parse(await readFile(stampFile(k), 'utf8')) as Stamp;
  } catch {
    return undefined;
  }
  if (s.format !== FORMAT || s.key !== (await keyOf(k))) return undefined;
  if (s.expires !== undefined && Date.now() >= s.expires) return undefined;
  if (s.refs?.length && !(await refsUnchanged(k.cacheDir, s.refs))) return undefined;
  const memo: StatMemo = { known: new Map(s.stats ?? []) };
  const same = await Promise.all([
    ...s.inputs.map(async ([p, sig]) => (await signature(p, true, memo)) === sig),
    ...s.outputs.map(async ([p, sig]) => (await outputSignature(p)) === sig),
  ]);
  return same.every(Boolean) ? s.outputs.map(([p]) => p) : undefined;
}

/**
 * Do the cache's tags still point where they did? Read from index.json directly (a JSON file
 * whose entries name their tag in an annotation), not through the image store, which would
 * load more than this check is worth.
 */
async function refsUnchanged(cacheDir: string, refs: [string, string][]): Promise<boolean> {
  let index: { manifests?: { digest?: string; annotations?: Record<string, string> }[] };
  try {
    index = JSON.parse(await readFile(path.join(cacheDir, 'index.json'), 'utf8'));
  } catch {
    return false;
  }
  const now = new Map<string, string | undefined>();
  for (const d of index.manifests ?? []) {
    const name = d.annotations?.[ANNOTATION.refName];
    if (name !== undefined) now.set(name, d.digest); // the last entry for a name wins, as in the store
  }
  return refs.every(([ref, digest]) => now.get(ref) === digest);
}

/** Record a finished build (after its outputs are written). */
export async function writeStamp(
  k: StampKey,
  inputs: Iterable<string>,
  outputs: string[],
  expires?: number,
  refs: [string, string][] = [],
): Promise<void> {
  const ins = [...new Set(inputs)].sort();
  const memo: StatMemo = {
    record: new Map(),
    settledBefore: BigInt(Date.now() - SETTLED_MS) * 1_000_000n,
  };
  const s: Stamp = {
    format: FORMAT,
    key: await keyOf(k),
    ...(expires !== undefined ? { expires } : {}),
    inputs: await Promise.all(ins.map(async (p) => [p, await signature(p, true, memo)] as [string, string])),
    outputs: await Promise.all(outputs.map(async (p) => [p, await outputSignature(p)] as [string, string])),
    ...(refs.length ? { refs } : {}),
  };
  if (memo.record!.size) s.stats = [...memo.record!].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const file = stampFile(k);
  await mkdir(path.dirname(file), { recursive: true });
  const { writeFileAtomic } = await import('../util/atomic.js');
  await writeFileAtomic(file, Buffer.from(JSON.stringify(s)));
}
