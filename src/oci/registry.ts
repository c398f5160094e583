/**
 * A client for the OCI distribution spec (the registry HTTP API), enough to pull images into
 * the cache and push them out again:
 *
 *   GET/HEAD /v2/NAME/manifests/REF      Accept: OCI + Docker manifest and index types;
 *                                        Docker-Content-Digest names the digest
 *   GET      /v2/NAME/blobs/DIGEST       may redirect (to storage); Range: bytes=N- resumes
 *   HEAD     /v2/NAME/blobs/DIGEST       200 = already there (push skips it)
 *   POST     /v2/NAME/blobs/uploads/?mount=DIGEST&from=OTHER   201 = mounted, 202 = upload
 *   POST     /v2/NAME/blobs/uploads/     202, Location: upload URL
 *   PATCH    LOCATION                    Content-Range: START-END, one chunk; 202 + Location
 *   PUT      LOCATION?digest=DIGEST      the last (or only, monolithic) bytes; 201
 *   PUT      /v2/NAME/manifests/REF      Content-Type: the manifest's media type; 201
 *
 * Every byte that reaches the cache is checked against its digest while it streams into a
 * temp file (ImageStore.writeBlobStream), so a tampering proxy or a truncated download never
 * leaves a visible blob. Requests are retried with exponential backoff (honouring Retry-After)
 * on network errors, 429 and 5xx; an interrupted blob download resumes with a Range request.
 * Loopback and localhost registries are spoken to over plain HTTP, as Docker does.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { UserError } from '../util/errors.js';
import { BlobProgress } from '../util/progress.js';
import {
  basicHeader,
  type Challenge,
  type Credentials,
  credentialsFor,
  fetchToken,
  parseChallenge,
} from './auth.js';
import { digestLike, parseDigest, sha256Digest } from './digest.js';
import { platformManifest } from './image.js';
import type { ImageStore } from './layout.js';
import { type ImageRef, parseRef } from './reference.js';
import {
  type Descriptor,
  INDEX_MEDIA_TYPES,
  type Index,
  MANIFEST_MEDIA_TYPES,
  type Manifest,
  MEDIA_TYPE,
  type Platform,
} from './types.js';

const ACCEPT = [
  MEDIA_TYPE.index,
  MEDIA_TYPE.manifest,
  MEDIA_TYPE.dockerManifestList,
  MEDIA_TYPE.dockerManifest,
].join(', ');

/** Manifests are small; a larger answer is not one (and must not fill memory). */
const MAX_MANIFEST = 8 << 20;

export interface RegistryOptions {
  /** `HOST=URL`: fetch HOST's images from URL instead (pull only). */
  mirrors?: Record<string, string>;
  /** Where credentials come from (default $DOCKER_CONFIG/config.json or ~/.docker/config.json). */
  dockerConfig?: string;
  /** Hosts to speak plain HTTP to, besides loopback ones. */
  insecure?: string[];
  /** Attempts per request (default 5). */
  attempts?: number;
  /** First backoff in ms (default 250), doubled each attempt. */
  backoffMs?: number;
  /** Parallel blob transfers (default 4). */
  concurrency?: number;
  /** Blobs larger than this are uploaded in PATCH chunks of this size (default 32 MiB). */
  chunkSize?: number;
  log?: (line: string) => void;
  fetch?: typeof fetch;
}

export interface PullOptions {
  platform?: Pick<Platform, 'os' | 'architecture'>;
}

export interface PullResult {
  /** The fully expanded reference that was tagged in the cache. */
  ref: string;
  /** What the reference points at (an index or a manifest). */
  desc: Descriptor;
  /** The platform manifest's digest. */
  manifestDigest: string;
  /** Bytes downloaded (blobs already in the cache are not fetched). */
  bytes: number;
}

export interface PushResult {
  ref: string;
  desc: Descriptor;
  /** Blobs uploaded, found in place (HEAD) and mounted from another repository. */
  uploaded: number;
  existing: number;
  mounted: number;
  bytes: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A registry host that Docker speaks plain HTTP to without being told. */
export function isLoopbackHost(domain: string): boolean {
  const host = domain.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1';
}

/** Retry-After: seconds or an HTTP date; capped so a hostile server cannot stall us forever. */
function retryAfterMs(res: Response): number | undefined {
  const v = res.headers.get('retry-after');
  if (!v) return undefined;
  const ms = /^\d+$/.test(v.trim()) ? Number(v) * 1000 : Date.parse(v) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : undefined;
}

const retryable = (status: number) => status === 429 || status === 408 || status >= 500;

class HttpError extends UserError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Run `fn` on every item with at most `n` running at once; the first failure is thrown. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  });
  await Promise.all(workers);
  return out;
}

function isIndexDoc(mediaType: string | undefined, doc: { manifests?: unknown }): boolean {
  return mediaType !== undefined && mediaType !== ''
    ? INDEX_MEDIA_TYPES.includes(mediaType)
    : Array.isArray(doc.manifests);
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
  } catch (e) {
    throw new UserError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
}

export class RegistryClient {
  private readonly fetch: typeof fetch;
  private readonly creds = new Map<string, Promise<Credentials | undefined>>();
  /** Authorization header per host + scope, learned from a 401 challenge. */
  private readonly authCache = new Map<string, string>();
  /** The last challenge seen per host, so later scopes can get a token without a 401 first. */
  private readonly challenges = new Map<string, Challenge>();
  readonly stats = { requests: 0, retries: 0, resumed: 0 };

  constructor(readonly opts: RegistryOptions = {}) {
    this.fetch = opts.fetch ?? fetch;
  }

  /** The base URL of a registry host's API (mirror, plain HTTP for loopback, Docker Hub's API host). */
  baseUrl(domain: string, forPull = true): string {
    const mirror = forPull ? this.opts.mirrors?.[domain] : undefined;
    if (mirror) return mirror.replace(/\/+$/, '');
    const host = domain === 'docker.io' ? 'registry-1.docker.io' : domain;
    const plain = isLoopbackHost(domain) || (this.opts.insecure ?? []).includes(domain);
    return `${plain ? 'http' : 'https'}://${host}`;
  }

  private credentials(domain: string): Promise<Credentials | undefined> {
    let p = this.creds.get(domain);
    if (!p) {
      p = credentialsFor(domain, this.opts.dockerConfig);
      this.creds.set(domain, p);
    }
    return p;
  }

  /**
   * One API request with auth and retries. `scopes` are the token scopes this request needs
   * (e.g. `repository:x/y:pull,push`). Redirects (blob storage) are followed by fetch.
   */
  async request(
    domain: string,
    scopes: string[],
    url: string,
    init: RequestInit & { headers?: Record<string, string> } = {},
    opts: { forPull?: boolean; body?: () => RequestInit['body'] } = {},
  ): Promise<Response> {
    const attempts = this.opts.attempts ?? 5;
    const authKey = `${domain} ${scopes.join(' ')}`;
    let authTried = false;
    let lastErr: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) this.stats.retries++;
      const headers: Record<string, string> = { ...init.headers };
      let auth = this.authCache.get(authKey);
      if (!auth && !authTried) auth = await this.authFromKnownChallenge(domain, scopes);
      if (auth) headers.authorization = auth;
      let res: Response;
      try {
        this.stats.requests++;
        res = await this.fetch(url, {
          ...init,
          headers,
          body: opts.body ? opts.body() : init.body,
          redirect: 'follow',
          ...(opts.body || init.body ? { duplex: 'half' } : {}),
        } as RequestInit);
      } catch (e) {
        lastErr = e;
        // A name that does not resolve will not resolve on a retry either.
        if ((e as { cause?: { code?: string } }).cause?.code === 'ENOTFOUND') {
          throw new UserError(
            `cannot reach the registry at ${new URL(url).origin}: its name does not resolve`,
          );
        }
        await sleep(this.backoff(attempt));
        continue;
      }
      if (res.status === 401 && !authTried) {
        authTried = true;
        const header = res.headers.get('www-authenticate');
        await res.body?.cancel();
        const challenge = header ? parseChallenge(header) : undefined;
        if (!challenge)
          throw new HttpError(`${url}: the registry refused access (HTTP 401) without a challenge`, 401);
        this.challenges.set(domain, challenge);
        this.authCache.set(authKey, await this.answer(domain, challenge, scopes));
        attempt--; // answering a challenge is not a failed attempt
        continue;
      }
      if (retryable(res.status) && attempt < attempts - 1) {
        const wait = retryAfterMs(res) ?? this.backoff(attempt);
        await res.body?.cancel();
        await sleep(wait);
        continue;
      }
      return res;
    }
    const cause = (lastErr as { cause?: Error })?.cause?.message;
    throw new UserError(
      `cannot reach the registry at ${new URL(url).origin}: ${cause ?? (lastErr as Error)?.message ?? 'no answer'} (after ${attempts} attempts)`,
    );
  }

  private backoff(attempt: number): number {
    return Math.min((this.opts.backoffMs ?? 250) * 2 ** attempt, 10_000);
  }

  private async authFromKnownChallenge(domain: string, scopes: string[]): Promise<string | undefined> {
    const c = this.challenges.get(domain);
    if (!c) return undefined;
    const h = await this.answer(domain, c, scopes);
    this.authCache.set(`${domain} ${scopes.join(' ')}`, h);
    return h;
  }

  private async answer(domain: string, c: Challenge, scopes: string[]): Promise<string> {
    const creds = await this.credentials(domain);
    if (c.scheme === 'basic') {
      if (!creds || creds.identityToken) {
        throw new HttpError(
          `${domain} needs a user name and password: add them with \`docker login ${domain}\` (or to ~/.docker/config.json "auths")`,
          401,
        );
      }
      return basicHeader(creds);
    }
    if (c.scheme === 'bearer') return `Bearer ${await fetchToken(c, scopes, creds, this.fetch)}`;
    throw new HttpError(`${domain} asks for unsupported authentication "${c.scheme}"`, 401);
  }

  private async failure(res: Response, what: string): Promise<never> {
    let detail = '';
    try {
      const j = (await res.json()) as { errors?: { code?: string; message?: string }[] };
      detail = (j.errors ?? []).map((e) => `${e.code}: ${e.message}`).join('; ');
    } catch {
      // not a registry error document
    }
    const hint =
      res.status === 401 || res.status === 403
        ? ' (check the credentials in ~/.docker/config.json)'
        : res.status === 404
          ? ' (not found)'
          : '';
    throw new HttpError(`${what}: HTTP ${res.status}${hint}${detail ? `: ${detail}` : ''}`, res.status);
  }

  /** Fetch a manifest or index by tag or digest; its digest is verified when one is known. */
  async getManifest(ref: ImageRef, reference: string): Promise<{ bytes: Buffer; desc: Descriptor }> {
    const url = `${this.baseUrl(ref.domain)}/v2/${ref.path}/manifests/${reference}`;
    const res = await this.request(ref.domain, [`repository:${ref.path}:pull`], url, {
      headers: { accept: ACCEPT },
    });
    if (!res.ok) await this.failure(res, `cannot get the manifest ${ref.name}:${reference}`);
    const len = Number(res.headers.get('content-length') ?? 0);
    if (len > MAX_MANIFEST)
      throw new UserError(`${ref.name}:${reference}: the manifest is too large (${len} bytes)`);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_MANIFEST)
      throw new UserError(`${ref.name}:${reference}: the manifest is too large`);
    const want = reference.includes(':')
      ? reference
      : (res.headers.get('docker-content-digest') ?? undefined);
    const digest = want ? digestLike(want, bytes) : sha256Digest(bytes);
    if (want && digest !== want) {
      throw new UserError(
        `the registry served manifest ${want} of ${ref.name} with content that hashes to ${digest}: refusing it`,
      );
    }
    const doc = parseJson<{ mediaType?: string }>(bytes, `manifest ${digest} of ${ref.name}`);
    const ct = res.headers.get('content-type')?.split(';')[0]?.trim();
    const mediaType = doc.mediaType ?? (ct && ct !== 'application/json' ? ct : MEDIA_TYPE.manifest);
    return { bytes, desc: { mediaType, digest, size: bytes.length } };
  }

  /**
   * A blob's bytes as a stream; if the connection breaks, the download resumes where it stopped
   * (Range), or starts over by skipping what was already delivered when the server ignores Range.
   */
  async *blobStream(ref: ImageRef, digest: string, forPull = true): AsyncGenerator<Uint8Array> {
    const url = `${this.baseUrl(ref.domain, forPull)}/v2/${ref.path}/blobs/${digest}`;
    const attempts = this.opts.attempts ?? 5;
    let delivered = 0;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = delivered > 0 ? { range: `bytes=${delivered}-` } : {};
      const res = await this.request(ref.domain, [`repository:${ref.path}:pull`], url, { headers });
      if (!res.ok) await this.failure(res, `cannot download blob ${digest} of ${ref.name}`);
      if (delivered > 0) this.stats.resumed++;
      let skip = delivered > 0 && res.status !== 206 ? delivered : 0;
      try {
        for await (const chunk of res.body! as unknown as AsyncIterable<Uint8Array>) {
          let c = chunk;
          if (skip > 0) {
            const n = Math.min(skip, c.byteLength);
            skip -= n;
            c = c.subarray(n);
            if (c.byteLength === 0) continue;
          }
          delivered += c.byteLength;
          yield c;
        }
        return;
      } catch (e) {
        if (e instanceof UserError || attempt >= attempts - 1) {
          if (e instanceof UserError) throw e;
          throw new UserError(`download of blob ${digest} from ${ref.name} failed: ${(e as Error).message}`);
        }
        await sleep(this.backoff(attempt));
      }
    }
  }

  /**
   * Pull `refStr` into the store and tag it there: the manifest (or index and the platform's
   * manifest), the config and the layers, in parallel, each verified while it streams in.
   */
  async pull(store: ImageStore, refStr: string, opts: PullOptions = {}): Promise<PullResult> {
    const ref = parseRef(refStr);
    try {
      return await this.doPull(store, ref, opts);
    } catch (e) {
      // Name the image, unless the message already does.
      if (e instanceof UserError && !e.message.includes(ref.name))
        throw new UserError(`cannot pull ${ref}: ${e.message}`);
      throw e;
    }
  }

  private async doPull(store: ImageStore, ref: ImageRef, opts: PullOptions): Promise<PullResult> {
    const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
    const log = this.opts.log;
    const root = await this.getManifest(ref, ref.digest ?? ref.tag ?? 'latest');
    let bytes = 0;
    let manifestBytes = root.bytes;
    let manifestDesc = root.desc;
    const docs: { bytes: Buffer; desc: Descriptor }[] = [root];
    for (let depth = 0; ; depth++) {
      const doc = parseJson<Manifest & Index>(manifestBytes, `manifest of ${ref}`);
      if (!isIndexDoc(doc.mediaType ?? manifestDesc.mediaType, doc)) break;
      if (depth > 3) throw new UserError(`${ref}: image indexes nest too deeply`);
      if (!Array.isArray(doc.manifests))
        throw new UserError(`${ref}: index ${manifestDesc.digest} has no manifests`);
      const hit = platformManifest(ref, doc.manifests, platform);
      parseDigest(hit.digest, `manifest digest in ${ref}`);
      const next = await this.getManifest(ref, hit.digest);
      docs.push(next);
      manifestBytes = next.bytes;
      manifestDesc = next.desc;
    }
    const manifest = parseJson<Manifest>(manifestBytes, `manifest ${manifestDesc.digest}`);
    if (
      !MANIFEST_MEDIA_TYPES.includes(manifest.mediaType ?? manifestDesc.mediaType) ||
      !manifest.config ||
      !Array.isArray(manifest.layers)
    ) {
      throw new UserError(
        `${ref}: ${manifestDesc.digest} is not an image manifest (${manifest.mediaType ?? manifestDesc.mediaType})`,
      );
    }
    const blobs = [manifest.config, ...manifest.layers];
    for (const b of blobs) parseDigest(b.digest, `blob digest in ${ref}`);
    const total = blobs.reduce((s, b) => s + (b.size ?? 0), 0);
    log?.(`pulling ${ref} (${blobs.length} blobs, ${(total / 1e6).toFixed(1)} MB)`);
    const progress = new BlobProgress();
    await pool(blobs, this.opts.concurrency ?? 4, async (b) => {
      if (await store.hasBlob(b.digest)) return;
      const r = await store.writeBlobStream(
        progress.track(b.digest, b.size ?? 0, this.blobStream(ref, b.digest)),
        {
          digest: b.digest,
          size: b.size,
        },
      );
      bytes += r.size;
    });
    // Manifests last, children before parents: a visible manifest always has its blobs.
    for (const d of docs.reverse()) await store.writeBlob(d.bytes, d.desc.digest);
    const name = ref.toString();
    await store.tag(name, root.desc);
    return { ref: name, desc: root.desc, manifestDigest: manifestDesc.digest, bytes };
  }

  /**
   * Push the image `srcRef` names in the store to `dstRef` (default: srcRef itself). Blobs the
   * registry has are skipped (HEAD); with `mountFrom` (another repository on the same registry)
   * blobs are mounted instead of uploaded when the registry allows.
   */
  async push(
    store: ImageStore,
    srcRef: string,
    dstRef?: string,
    opts: { mountFrom?: string } = {},
  ): Promise<PushResult> {
    const src = parseRef(srcRef);
    const dst = parseRef(dstRef ?? srcRef);
    const root = await store.resolve(src.toString());
    if (!root) throw new UserError(`${src} is not in the image cache`);
    const result: PushResult = {
      ref: dst.toString(),
      desc: root,
      uploaded: 0,
      existing: 0,
      mounted: 0,
      bytes: 0,
    };
    let mountFrom: ImageRef | undefined;
    if (opts.mountFrom) {
      mountFrom = parseRef(opts.mountFrom);
      if (mountFrom.domain !== dst.domain)
        throw new UserError('a blob can only be mounted from the same registry');
    }
    // The manifests to push by digest before the top one, and every blob they name.
    let top = root;
    let children: Descriptor[] = [];
    const rootDoc = await store.readJson<Manifest & Index>(root.digest, `manifest of ${src}`);
    if (isIndexDoc(rootDoc.mediaType ?? root.mediaType, rootDoc)) {
      const all = rootDoc.manifests ?? [];
      const present: Descriptor[] = [];
      for (const m of all) if (await store.hasBlob(m.digest)) present.push(m);
      if (present.length === all.length) children = all;
      else if (present.length === 1) {
        // A pulled index holds only our platform's manifest: push that manifest alone.
        top = present[0]!;
        this.opts.log?.(`${src}: only one platform of its index is in the cache; pushing that manifest`);
      } else throw new UserError(`${src}: the index names manifests that are not in the cache`);
    }
    const blobs = new Map<string, Descriptor>();
    for (const m of top === root && children.length ? children : [top]) {
      const doc = await store.readJson<Manifest>(m.digest, `manifest of ${src}`);
      if (!doc.config || !Array.isArray(doc.layers))
        throw new UserError(`${src}: ${m.digest} is not an image manifest (nested indexes are not pushed)`);
      for (const b of [doc.config, ...doc.layers]) blobs.set(b.digest, b);
    }
    const scopes = [
      `repository:${dst.path}:pull,push`,
      ...(mountFrom ? [`repository:${mountFrom.path}:pull`] : []),
    ];
    const base = this.baseUrl(dst.domain, false);
    await pool([...blobs.values()], this.opts.concurrency ?? 4, async (b) => {
      const how = await this.pushBlob(store, dst, b, scopes, base, mountFrom);
      result[how]++;
      if (how === 'uploaded') result.bytes += b.size;
    });
    const putManifest = async (d: Descriptor, reference: string) => {
      const bytes = await store.readBlob(d.digest);
      const res = await this.request(
        dst.domain,
        scopes,
        `${base}/v2/${dst.path}/manifests/${reference}`,
        { method: 'PUT', headers: { 'content-type': d.mediaType } },
        { body: () => bytes },
      );
      if (!res.ok) await this.failure(res, `cannot push manifest ${d.digest} to ${dst.name}`);
      await res.body?.cancel();
    };
    for (const m of top === root ? children : []) await putManifest(m, m.digest);
    await putManifest(top, dst.digest ?? dst.tag ?? top.digest);
    result.desc = top;
    this.opts.log?.(
      `pushed ${dst} (${result.uploaded} blobs uploaded, ${result.existing} already there, ${result.mounted} mounted)`,
    );
    return result;
  }

  private async pushBlob(
    store: ImageStore,
    dst: ImageRef,
    b: Descriptor,
    scopes: string[],
    base: string,
    mountFrom?: ImageRef,
  ): Promise<'uploaded' | 'existing' | 'mounted'> {
    const head = await this.request(dst.domain, scopes, `${base}/v2/${dst.path}/blobs/${b.digest}`, {
      method: 'HEAD',
    });
    if (head.ok) return 'existing';
    if (head.status !== 404) await this.failure(head, `cannot check blob ${b.digest} on ${dst.name}`);
    const q = mountFrom
      ? `?mount=${encodeURIComponent(b.digest)}&from=${encodeURIComponent(mountFrom.path)}`
      : '';
    const start = await this.request(dst.domain, scopes, `${base}/v2/${dst.path}/blobs/uploads/${q}`, {
      method: 'POST',
    });
    if (start.status === 201) {
      await start.body?.cancel();
      return 'mounted';
    }
    if (start.status !== 202)
      await this.failure(start, `cannot start uploading blob ${b.digest} to ${dst.name}`);
    await start.body?.cancel();
    let location = this.location(start, base);
    const data = await store.readBlob(b.digest); // re-verified: we never push bytes that do not match
    const chunk = this.opts.chunkSize ?? 32 << 20;
    let offset = 0;
    if (data.length > chunk) {
      while (offset < data.length) {
        const piece = data.subarray(offset, Math.min(offset + chunk, data.length));
        const res = await this.request(
          dst.domain,
          scopes,
          location,
          {
            method: 'PATCH',
            headers: {
              'content-type': 'application/octet-stream',
              'content-range': `${offset}-${offset + piece.length - 1}`,
              'content-length': String(piece.length),
            },
          },
          { body: () => piece },
        );
        if (res.status !== 202) await this.failure(res, `cannot upload a chunk of blob ${b.digest}`);
        await res.body?.cancel();
        location = this.location(res, base);
        offset += piece.length;
      }
    }
    const rest = data.subarray(offset);
    const url = new URL(location);
    url.searchParams.set('digest', b.digest);
    const put = await this.request(
      dst.domain,
      scopes,
      url.toString(),
      {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(rest.length) },
      },
      { body: () => rest },
    );
    if (put.status !== 201)
      await this.failure(put, `cannot finish uploading blob ${b.digest} to ${dst.name}`);
    await put.body?.cancel();
    return 'uploaded';
  }

  private location(res: Response, base: string): string {
    const loc = res.headers.get('location');
    if (!loc) throw new UserError('the registry started an upload but gave no Location');
    return new URL(loc, base).toString();
  }
}

/** sha256 of a file, streamed (for tests and tools that check what a registry holds). */
export async function fileDigest(path: string): Promise<string> {
  const fh = await open(path);
  const h = createHash('sha256');
  try {
    for await (const c of fh.createReadStream()) h.update(c as Buffer);
  } finally {
    await fh.close();
  }
  return `sha256:${h.digest('hex')}`;
}
