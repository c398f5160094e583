/**
 * The image cache: an OCI image layout directory (image-spec image-layout.md), laid out and
 * named as upstream LinuxKit's cache so skopeo and upstream can read it:
 *
 *   DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
 *   DIR/index.json            an image index; one entry per reference, each a descriptor whose
 *                             annotation "org.opencontainers.image.ref.name" is the fully
 *                             expanded reference (docker.io/linuxkit/init:TAG). Upstream points
 *                             a built package's tag at an image index (per-platform manifests
 *                             with `platform`), and a pulled tag at whatever the registry served.
 *   DIR/blobs/sha256/HEX      content, named by its digest
 *   DIR/index.json.lock       held while index.json is rewritten (our lock: upstream locks with
 *                             fcntl, which Node cannot; its lock file is DIR/.lock, never ours)
 *
 * Blobs are written to a temp file beside their final name, fsynced, checked against their
 * digest and renamed, so a blob name never holds partial or wrong bytes, even after kill -9.
 * index.json is replaced by rename under the lock, so concurrent writers never lose an update
 * and readers (who take no lock) always see a whole file. A registry pull lands through the
 * same writeBlob / writeBlobStream and tag.
 */
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { link, lstat, mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { UserError } from '../util/errors.js';
import { digestLike, parseDigest, sha256Digest } from './digest.js';
import { parseRef } from './reference.js';
import { ANNOTATION, type Descriptor, type Index, MEDIA_TYPE } from './types.js';

export * from './types.js';

const LOCK_NAME = 'index.json.lock';
/** How long we wait for another process's lock before giving up with a message. */
const LOCK_TIMEOUT_MS = 60_000;
/** A lock file we cannot attribute to a pid (empty, or a breaker) is stale after this long. */
const UNOWNED_LOCK_STALE_MS = 10_000;

let tmpCounter = 0;
const tmpSuffix = () => `${process.pid}-${++tmpCounter}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errCode(e) === 'EPERM'; // exists, but belongs to someone else
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write `data` to `path` via a temp file in the same directory: fsync, rename, fsync the dir. */
async function atomicWrite(dir: string, name: string, data: Uint8Array | string): Promise<void> {
  const tmp = join(dir, `.${name}.tmp-${tmpSuffix()}`);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, join(dir, name));
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dir);
}

/** One promise chain per directory, so async callers in one process queue instead of polling. */
const localQueues = new Map<string, Promise<unknown>>();

function checkDescriptor(desc: Descriptor, what: string): void {
  if (typeof desc !== 'object' || desc === null) throw new UserError(`${what}: not a descriptor`);
  if (typeof desc.mediaType !== 'string' || desc.mediaType === '')
    throw new UserError(`${what}: missing mediaType`);
  parseDigest(desc.digest, `${what} digest`);
  if (!Number.isSafeInteger(desc.size) || desc.size < 0)
    throw new UserError(`${what}: invalid size ${desc.size}`);
}

/** Fixed member order, so index.json and our blobs do not depend on how a caller built them. */
export function orderDescriptor(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls) out.urls = d.urls;
  if (d.annotations)
    out.annotations = Object.fromEntries(
      Object.entries(d.annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  if (d.data !== undefined) out.data = d.data;
  if (d.platform) out.platform = d.platform;
  if (d.artifactType !== undefined) out.artifactType = d.artifactType;
  // keep members a newer spec or another tool added
  for (const [k, v] of Object.entries(d)) if (!(k in out)) (out as unknown as Record<string, unknown>)[k] = v;
  return out;
}

export class ImageStore {
  readonly dir: string;
  private initDone?: Promise<void>;

  constructor(dir: string) {
    this.dir = resolvePath(dir);
  }

  /** Create the layout if missing (idempotent; also done by every write). */
  init(): Promise<void> {
    this.initDone ??= this.doInit().catch((e) => {
      this.initDone = undefined;
      throw e;
    });
    return this.initDone;
  }

  private async doInit(): Promise<void> {
    try {
      await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    } catch (e) {
      throw new UserError(`cannot create the image cache ${this.dir}: ${(e as Error).message}`);
    }
    await this.createIfMissing('oci-layout', `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}`);
    await this.createIfMissing('index.json', `${JSON.stringify(emptyIndex())}`);
  }

  /** Publish a whole file under `name` unless one exists (link fails on an existing name). */
  private async createIfMissing(name: string, text: string): Promise<void> {
    const path = join(this.dir, name);
    if (await exists(path)) return;
    const tmp = join(this.dir, `.${name}.tmp-${tmpSuffix()}`);
    await writeFile(tmp, text, { mode: 0o644, flag: 'wx' });
    try {
      await link(tmp, path);
    } catch (e) {
      if (errCode(e) !== 'EEXIST') throw e;
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, hex);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /** The blob's bytes, re-verified against its digest on every read. */
  async readBlob(digest: string): Promise<Buffer> {
    const path = this.blobPath(digest);
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if (errCode(e) === 'ENOENT') throw new UserError(`blob ${digest} is not in the image cache (${path})`);
      throw e;
    }
    const actual = digestLike(digest, data);
    if (actual !== digest) throw corruptBlob(digest, actual, path);
    return data;
  }

  /** A JSON blob (manifest, index, config), with a UserError if it does not parse. */
  async readJson<T>(digest: string, what = 'document'): Promise<T> {
    const data = await this.readBlob(digest);
    try {
      return JSON.parse(data.toString('utf8')) as T;
    } catch (e) {
      throw new UserError(`${what} ${digest} in the image cache is not valid JSON: ${(e as Error).message}`);
    }
  }

  /**
   * Store `data` under its digest (sha256, or the algorithm of `expectDigest`). A mismatch with
   * `expectDigest` is refused before anything becomes visible; an existing blob is kept.
   */
  async writeBlob(data: Uint8Array, expectDigest?: string): Promise<{ digest: string; size: number }> {
    const digest = expectDigest !== undefined ? digestLike(expectDigest, data) : sha256Digest(data);
    if (expectDigest !== undefined && digest !== expectDigest) {
      throw new UserError(`blob content does not match its digest: expected ${expectDigest}, got ${digest}`);
    }
    const size = data.byteLength;
    if (await this.present(digest, size)) return { digest, size };
    await this.init();
    const { algorithm, hex } = parseDigest(digest);
    const dir = join(this.dir, 'blobs', algorithm);
    await mkdir(dir, { recursive: true });
    await atomicWrite(dir, hex, data);
    return { digest, size };
  }

  /**
   * Store a blob that arrives in chunks (a registry download), hashing as it is written; it
   * becomes visible only if its digest (and size, if given) match. If the blob is already
   * present the source is not read.
   */
  async writeBlobStream(
    source: AsyncIterable<Uint8Array>,
    expect: { digest: string; size?: number },
  ): Promise<{ digest: string; size: number }> {
    const { algorithm, hex } = parseDigest(expect.digest, 'expected digest');
    if (await this.present(expect.digest, expect.size)) {
      return { digest: expect.digest, size: expect.size ?? (await stat(this.blobPath(expect.digest))).size };
    }
    await this.init();
    const dir = join(this.dir, 'blobs', algorithm);
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.${hex}.tmp-${tmpSuffix()}`);
    const hash = createHash(algorithm);
    let size = 0;
    const fh = await open(tmp, 'wx', 0o644);
    let ok = false;
    try {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.byteLength;
        if (expect.size !== undefined && size > expect.size) {
          throw new UserError(`blob ${expect.digest} is larger than its descriptor's size ${expect.size}`);
        }
        await fh.write(chunk);
      }
      await fh.sync();
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== expect.digest)
        throw new UserError(
          `blob content does not match its digest: expected ${expect.digest}, got ${actual}`,
        );
      if (expect.size !== undefined && size !== expect.size) {
        throw new UserError(`blob ${expect.digest} has ${size} bytes, its descriptor says ${expect.size}`);
      }
      ok = true;
    } finally {
      await fh.close();
      if (!ok) await unlink(tmp).catch(() => {});
    }
    await rename(tmp, join(dir, hex));
    await fsyncDir(dir);
    return { digest: expect.digest, size };
  }

  /** Present with the right size: a truncated leftover is rewritten rather than trusted. */
  private async present(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.blobPath(digest));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  /** The root index (index.json); an absent one reads as empty. */
  async readIndex(): Promise<Index> {
    const path = join(this.dir, 'index.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if (errCode(e) === 'ENOENT') return emptyIndex();
      throw e;
    }
    let index: Index;
    try {
      index = JSON.parse(text) as Index;
    } catch (e) {
      throw new UserError(`the image cache index ${path} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof index !== 'object' || index === null || !Array.isArray(index.manifests)) {
      throw new UserError(`the image cache index ${path} has no "manifests" list`);
    }
    return index;
  }

  /**
   * The descriptor a reference points at, or undefined. A tag is looked up by its fully
   * expanded name; entries another tool recorded in short form (`alpine`) match too. A digest
   * reference matches any entry with that digest, else a blob stored under it.
   */
  async resolve(ref: string): Promise<Descriptor | undefined> {
    const r = parseRef(ref);
    const index = await this.readIndex();
    if (r.digest !== undefined) {
      const hit = index.manifests.find((d) => d.digest === r.digest);
      if (hit) return { ...hit };
      if (!(await this.hasBlob(r.digest))) return undefined;
      const doc = await this.readJson<{ mediaType?: string }>(r.digest, 'manifest');
      const size = (await stat(this.blobPath(r.digest))).size;
      return { mediaType: doc.mediaType ?? MEDIA_TYPE.manifest, digest: r.digest, size };
    }
    const name = r.toString();
    const named = index.manifests.filter((d) => typeof d.annotations?.[ANNOTATION.refName] === 'string');
    let hit = named.findLast((d) => d.annotations?.[ANNOTATION.refName] === name);
    hit ??= named.findLast((d) => {
      try {
        return parseRef(d.annotations?.[ANNOTATION.refName] as string).toString() === name;
      } catch {
        return false;
      }
    });
    return hit ? { ...hit } : undefined;
  }

  /**
   * Point `ref` (recorded fully expanded, as upstream does) at `desc`, replacing what it pointed
   * at before. The blob must be present.
   */
  async tag(ref: string, desc: Descriptor): Promise<void> {
    const name = parseRef(ref).toString();
    checkDescriptor(desc, `descriptor for ${name}`);
    if (!(await this.hasBlob(desc.digest))) {
      throw new UserError(`cannot tag ${name}: blob ${desc.digest} is not in the image cache`);
    }
    const entry = orderDescriptor({
      ...desc,
      annotations: { ...desc.annotations, [ANNOTATION.refName]: name },
    });
    await this.updateIndex((index) => {
      index.manifests = index.manifests.filter((d) => d.annotations?.[ANNOTATION.refName] !== name);
      index.manifests.push(entry);
    });
  }

  /** Remove a reference; true if it was there. Blobs are kept (a later gc may remove them). */
  async untag(ref: string): Promise<boolean> {
    const name = parseRef(ref).toString();
    let removed = false;
    await this.updateIndex((index) => {
      const before = index.manifests.length;
      index.manifests = index.manifests.filter((d) => d.annotations?.[ANNOTATION.refName] !== name);
      removed = index.manifests.length !== before;
    });
    return removed;
  }

  /** Every named entry of index.json, in file order. */
  async list(): Promise<{ ref: string; desc: Descriptor }[]> {
    const index = await this.readIndex();
    const out: { ref: string; desc: Descriptor }[] = [];
    for (const d of index.manifests) {
      const ref = d.annotations?.[ANNOTATION.refName];
      if (typeof ref === 'string') out.push({ ref, desc: { ...d } });
    }
    return out;
  }

  /** Read-modify-write index.json under the lock; the new file replaces the old by rename. */
  async updateIndex(change: (index: Index) => void): Promise<void> {
    await this.init();
    const prev = localQueues.get(this.dir) ?? Promise.resolve();
    const run = prev
      .catch(() => {})
      .then(() =>
        this.withLock(async () => {
          const index = await this.readIndex();
          change(index);
          await atomicWrite(this.dir, 'index.json', `${JSON.stringify(index, null, 2)}\n`);
        }),
      );
    localQueues.set(this.dir, run);
    try {
      await run;
    } finally {
      if (localQueues.get(this.dir) === run) localQueues.delete(this.dir);
    }
  }

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const lockPath = join(this.dir, LOCK_NAME);
    const deadline = Date.now() + LOCK_TIMEOUT_MS;
    let wait = 2;
    for (;;) {
      try {
        // O_EXCL create: exactly one process wins; the pid lets others detect a dead holder.
        const fh = await open(lockPath, 'wx', 0o644);
        try {
          await fh.writeFile(`${process.pid}\n`);
        } finally {
          await fh.close();
        }
        break;
      } catch (e) {
        if (errCode(e) !== 'EEXIST') throw e;
      }
      if (await this.breakStaleLock(lockPath)) continue;
      if (Date.now() > deadline) {
        const holder = (await readFile(lockPath, 'utf8').catch(() => '')).trim();
        throw new UserError(
          `the image cache ${this.dir} is locked by process ${holder || '?'} (${lockPath}); if no linuxkit is running, delete that file`,
        );
      }
      await sleep(wait);
      wait = Math.min(wait * 2, 50);
    }
    try {
      return await fn();
    } finally {
      await unlink(lockPath).catch(() => {});
    }
  }

  /**
   * Remove the lock if its holder is dead. Two waiters may both see it stale; a second O_EXCL
   * file ("breaker") makes sure only one removes it, and only if it is still the same file, so a
   * fresh lock taken meanwhile is never removed.
   */
  private async breakStaleLock(lockPath: string): Promise<boolean> {
    const seen = await lockInfo(lockPath);
    if (!seen) return true; // released meanwhile: try again at once
    if (!seen.stale) return false;
    const breaker = `${lockPath}.break`;
    try {
      await writeFile(breaker, `${process.pid}\n`, { flag: 'wx' });
    } catch (e) {
      if (errCode(e) !== 'EEXIST') throw e;
      const st = await lstat(breaker).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > UNOWNED_LOCK_STALE_MS) await unlink(breaker).catch(() => {});
      return false;
    }
    try {
      const now = await lockInfo(lockPath);
      if (now && now.ino === seen.ino && now.mtimeMs === seen.mtimeMs && now.stale)
        await unlink(lockPath).catch(() => {});
    } finally {
      await unlink(breaker).catch(() => {});
    }
    return true;
  }
}

async function lockInfo(path: string): Promise<{ ino: number; mtimeMs: number; stale: boolean } | undefined> {
  let st: Awaited<ReturnType<typeof stat>>;
  let text: string;
  try {
    st = await stat(path);
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (errCode(e) === 'ENOENT') return undefined;
    throw e;
  }
  const pid = /^\d+$/.test(text.trim()) ? Number(text.trim()) : 0;
  // Without a pid (its writer died between create and write) only age tells.
  const stale = pid > 0 ? !pidAlive(pid) : Date.now() - st.mtimeMs > UNOWNED_LOCK_STALE_MS;
  return { ino: st.ino, mtimeMs: st.mtimeMs, stale };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The error for a blob whose content does not hash to its name. */
export function corruptBlob(digest: string, actual: string, path: string): UserError {
  return new UserError(
    `blob ${digest} in the image cache is corrupt: its content hashes to ${actual} (${path}); delete the file and pull or build again`,
  );
}

export function emptyIndex(): Index {
  return { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: [] };
}
