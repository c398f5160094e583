/**
 * Cache upkeep: what a reference needs (its closure), `verify` (re-hash every blob, find
 * references whose blobs are missing, find temp files of dead writers) with optional repair,
 * and `clean` (remove blobs no reference needs).
 *
 * Temp files are the layout writer's `.NAME.tmp-PID-N`: one whose PID is alive belongs to a
 * write in progress and is left alone.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../util/errors.js';
import { isDigest } from './digest.js';
import {
  ANNOTATION,
  type Descriptor,
  type ImageStore,
  INDEX_MEDIA_TYPES,
  type Index,
  type Manifest,
} from './layout.js';

export interface Closure {
  /** Every blob the reference reaches that is present (including the root). */
  present: Set<string>;
  /** Blobs it needs that are absent: a non-empty list makes the reference dangling. */
  missing: string[];
  /** What to export or push: the root, or the one present manifest of an incomplete index. */
  top: Descriptor;
}

function isIndex(desc: Descriptor, doc: { mediaType?: string; manifests?: unknown }): boolean {
  const mt = doc.mediaType ?? desc.mediaType;
  return INDEX_MEDIA_TYPES.includes(mt) || (!('config' in doc) && Array.isArray(doc.manifests));
}

/**
 * The blobs a descriptor reaches. An index pulled from a registry holds only our platform's
 * manifest (as upstream's cache does), so absent children of an index are not "missing" as
 * long as one is present.
 */
export async function closure(store: ImageStore, desc: Descriptor): Promise<Closure> {
  const present = new Set<string>();
  const missing: string[] = [];
  let top = desc;
  const walk = async (d: Descriptor, depth: number): Promise<void> => {
    if (!(await store.hasBlob(d.digest))) {
      missing.push(d.digest);
      return;
    }
    present.add(d.digest);
    if (depth > 4) throw new UserError(`${d.digest}: image indexes nest too deeply`);
    const doc = await store.readJson<Manifest & Index>(d.digest, 'manifest');
    if (isIndex(d, doc)) {
      const kids = (doc.manifests ?? []).filter((m) => isDigest(m?.digest));
      const have: Descriptor[] = [];
      for (const m of kids) if (await store.hasBlob(m.digest)) have.push(m);
      if (have.length === 0) missing.push(...kids.map((m) => m.digest));
      if (depth === 0 && have.length === 1 && have.length !== kids.length) top = have[0]!;
      for (const m of have) await walk(m, depth + 1);
      return;
    }
    for (const b of [doc.config, ...(doc.layers ?? [])]) {
      if (!b || !isDigest(b.digest)) continue;
      if (await store.hasBlob(b.digest)) present.add(b.digest);
      else missing.push(b.digest);
    }
  };
  await walk(desc, 0);
  return { present, missing, top };
}

export interface VerifyReport {
  blobs: number;
  bytes: number;
  /** Blobs whose content does not hash to their name (removed with repair). */
  corrupt: string[];
  /** References whose blobs are missing (removed with repair). */
  dangling: { ref: string; missing: string[] }[];
  /** Temp files of writers that died (removed with repair). */
  leftovers: string[];
}

async function hashFile(file: string, algorithm: string): Promise<string> {
  const h = createHash(algorithm);
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/** Temp files in `dir` whose writer is dead. */
async function deadTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      const m = /^\..*\.tmp-(\d+)-\d+$/.exec(n);
      return m !== null && !pidAlive(Number(m[1]));
    })
    .sort()
    .map((n) => path.join(dir, n));
}

/** Re-hash every blob, check every reference's closure, and optionally repair what is wrong. */
export async function verifyStore(store: ImageStore, opts: { repair?: boolean } = {}): Promise<VerifyReport> {
  const report: VerifyReport = { blobs: 0, bytes: 0, corrupt: [], dangling: [], leftovers: [] };
  const blobsDir = path.join(store.dir, 'blobs');
  for (const algorithm of (await readdir(blobsDir).catch(() => [] as string[])).sort()) {
    const dir = path.join(blobsDir, algorithm);
    for (const name of (await readdir(dir)).sort()) {
      if (name.startsWith('.')) continue;
      const file = path.join(dir, name);
      const st = await stat(file);
      if (!st.isFile()) continue;
      report.blobs++;
      report.bytes += st.size;
      const digest = `${algorithm}:${name}`;
      if (!isDigest(digest) || (await hashFile(file, algorithm)) !== name) {
        report.corrupt.push(digest);
        if (opts.repair) await unlink(file).catch(() => {});
      }
    }
    report.leftovers.push(...(await deadTemps(dir)));
  }
  report.leftovers.push(...(await deadTemps(store.dir)));
  for (const { ref, desc } of await store.list()) {
    let c: Closure;
    try {
      c = await closure(store, desc);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      report.dangling.push({ ref, missing: [desc.digest] });
      continue;
    }
    if (c.missing.length) report.dangling.push({ ref, missing: c.missing });
  }
  if (opts.repair) {
    for (const f of report.leftovers) await unlink(f).catch(() => {});
    if (report.dangling.length) {
      const bad = new Set(report.dangling.map((d) => d.ref));
      await store.updateIndex((index) => {
        index.manifests = index.manifests.filter(
          (d) => !bad.has(d.annotations?.[ANNOTATION.refName] as string),
        );
      });
    }
  }
  report.leftovers = report.leftovers.map((f) => path.relative(store.dir, f));
  return report;
}

/**
 * Remove blobs that no reference reaches, dead writers' temp files and the data builds derive
 * (compressed initrd pieces, no-op stamps: the next build makes what it needs again); returns
 * what went.
 */
export async function cleanStore(store: ImageStore): Promise<{ removed: number; bytes: number }> {
  const keep = new Set<string>();
  const index = await store.readIndex();
  for (const d of index.manifests) {
    if (!isDigest(d.digest)) continue;
    for (const b of (await closure(store, d)).present) keep.add(b);
  }
  let removed = 0;
  let bytes = 0;
  const blobsDir = path.join(store.dir, 'blobs');
  for (const algorithm of await readdir(blobsDir).catch(() => [] as string[])) {
    const dir = path.join(blobsDir, algorithm);
    for (const name of await readdir(dir)) {
      if (name.startsWith('.') || keep.has(`${algorithm}:${name}`)) continue;
      const file = path.join(dir, name);
      const st = await stat(file);
      await unlink(file);
      removed++;
      bytes += st.size;
    }
    for (const f of await deadTemps(dir)) await unlink(f).catch(() => {});
  }
  for (const f of await deadTemps(store.dir)) await unlink(f).catch(() => {});
  for (const derived of ['derived', 'builds']) {
    const dir = path.join(store.dir, derived);
    for (const name of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
      const st = await stat(path.join(dir, name)).catch(() => undefined);
      if (!st?.isFile()) continue;
      bytes += st.size;
      removed++;
    }
    await rm(dir, { recursive: true, force: true });
  }
  return { removed, bytes };
}
