/**
 * Images in the store: writing one from layer tars (deterministically), loading one by
 * reference, and flattening its layers into an FsTree.
 *
 * What writeImage stores, as upstream LinuxKit's `pkg build` does for a tag:
 *   index    (application/vnd.oci.image.index.v1+json)   -> returned; the caller tags it
 *     manifest (…manifest.v1+json, platform {architecture, os})
 *       config (…config.v1+json: architecture, os, created, config, rootfs.diff_ids; no history)
 *       layers (…layer.v1.tar+gzip: gzip level 6, zlib header MTIME 0)
 * JSON is written compactly with a fixed member order, so identical inputs give identical
 * digests on every run and machine.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { decompress, gzip, pipeThrough, sniffCompression } from '../formats/compress.js';
import { dataBytes, FileSlice, takeMemory } from '../fs/data.js';
import { applyLayer } from '../fs/layer.js';
import { FsTree } from '../fs/tree.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { fileIdentity } from '../util/lru.js';
import { parseDigest, sha256Digest } from './digest.js';
import { corruptBlob, type ImageStore } from './layout.js';
import {
  type ContainerConfig,
  type Descriptor,
  type ImageConfig,
  INDEX_MEDIA_TYPES,
  type Index,
  MANIFEST_MEDIA_TYPES,
  type Manifest,
  MEDIA_TYPE,
  type Platform,
} from './types.js';

export interface WriteImageOptions {
  /** Uncompressed layer tars, lowest first. */
  layers: Uint8Array[];
  config: Pick<ContainerConfig, 'Entrypoint' | 'Cmd' | 'Env' | 'WorkingDir' | 'Labels' | 'User'>;
  /** Seconds since the epoch; default SOURCE_DATE_EPOCH, else 0. */
  created?: number;
  /** Default amd64. */
  arch?: string;
  os?: 'linux';
}

/** SOURCE_DATE_EPOCH if set (it must be a whole number of seconds), else 0. */
export function sourceDateEpoch(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v))
    throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(v)}`);
  return Number(v);
}

function rfc3339(seconds: number): string {
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > 253402300799) {
    throw new UserError(`image creation time ${seconds} is not a valid number of seconds since 1970`);
  }
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

const sortedRecord = (r: Record<string, string>) =>
  Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

function containerConfig(c: WriteImageOptions['config']): ContainerConfig {
  const out: ContainerConfig = {};
  // Member order fixed here (not the caller's), so the digest depends only on the values.
  if (c.User !== undefined) out.User = c.User;
  if (c.Env !== undefined) out.Env = [...c.Env];
  if (c.Entrypoint !== undefined) out.Entrypoint = [...c.Entrypoint];
  if (c.Cmd !== undefined) out.Cmd = [...c.Cmd];
  if (c.WorkingDir !== undefined) out.WorkingDir = c.WorkingDir;
  if (c.Labels !== undefined) out.Labels = sortedRecord(c.Labels);
  return out;
}

async function putJson(store: ImageStore, mediaType: string, doc: unknown): Promise<Descriptor> {
  const { digest, size } = await store.writeBlob(Buffer.from(JSON.stringify(doc), 'utf8'));
  return { mediaType, digest, size };
}

/**
 * Write an image (layers, config, manifest, and an index holding that one manifest) and return
 * the index's descriptor, which is what upstream records for a tag.
 */
export async function writeImage(store: ImageStore, opts: WriteImageOptions): Promise<Descriptor> {
  const arch = opts.arch ?? 'amd64';
  const os = opts.os ?? 'linux';
  if (!/^[a-z0-9_]+$/.test(arch)) throw new UserError(`invalid image architecture ${JSON.stringify(arch)}`);
  const created = rfc3339(opts.created ?? sourceDateEpoch());

  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const tar of opts.layers) {
    diffIds.push(sha256Digest(tar));
    const { digest, size } = await store.writeBlob(gzip(tar, 6));
    layers.push({ mediaType: MEDIA_TYPE.layerGzip, digest, size });
    // The tar we have is the one imageTree would unpack again: keep it (see layerFile).
    const file = await derivedLayerPath(store, digest);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, tar);
  }
  const config: ImageConfig = {
    created,
    architecture: arch,
    os,
    config: containerConfig(opts.config),
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  const configDesc = await putJson(store, MEDIA_TYPE.config, config);
  const manifest: Manifest = { schemaVersion: 2, mediaType: MEDIA_TYPE.manifest, config: configDesc, layers };
  const manifestDesc = await putJson(store, MEDIA_TYPE.manifest, manifest);
  const index: Index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: [{ ...manifestDesc, platform: { architecture: arch, os } }],
  };
  return putJson(store, MEDIA_TYPE.index, index);
}

export interface LoadedImage {
  /** Digest of the manifest (not of an index that led to it). */
  digest: string;
  manifest: Manifest;
  config: ImageConfig;
}

function isIndex(mediaType: string | undefined, doc: { manifests?: unknown }): boolean {
  return mediaType !== undefined ? INDEX_MEDIA_TYPES.includes(mediaType) : Array.isArray(doc.manifests);
}

/**
 * The entry of an index's `manifests` for `platform`; a UserError naming the platforms the
 * index does have (leaving out `unknown/unknown`, attestation entries) when none matches.
 */
export function platformManifest(
  ref: { toString(): string },
  manifests: Descriptor[],
  platform: Pick<Platform, 'os' | 'architecture'>,
): Descriptor {
  const hit = manifests.find(
    (m) => m?.platform?.os === platform.os && m.platform.architecture === platform.architecture,
  );
  if (hit) return hit;
  const have = manifests
    .map((m) => (m?.platform ? `${m.platform.os}/${m.platform.architecture}` : undefined))
    .filter((p) => p !== undefined && p !== 'unknown/unknown');
  throw new UserError(
    `${ref} has no image for ${platform.os}/${platform.architecture} (it has: ${have.join(', ') || 'none'})`,
  );
}

/**
 * Load the image a reference points at, following an index to the manifest for the platform
 * (default linux/amd64). Undefined if the reference is not in the store.
 */
export async function loadImage(
  store: ImageStore,
  ref: string,
  platform: Pick<Platform, 'os' | 'architecture'> = { os: 'linux', architecture: 'amd64' },
): Promise<LoadedImage | undefined> {
  const root = await store.resolve(ref);
  if (!root) return undefined;
  let desc = root;
  for (let depth = 0; ; depth++) {
    if (depth > 4) throw new UserError(`${ref}: image indexes nest too deeply`);
    const doc = await store.readJson<Manifest & Index>(desc.digest, `manifest of ${ref}`);
    if (typeof doc !== 'object' || doc === null)
      throw new UserError(`${ref}: ${desc.digest} is not a manifest or an index`);
    const mediaType = doc.mediaType ?? desc.mediaType;
    if (isIndex(mediaType, doc)) {
      if (!Array.isArray(doc.manifests))
        throw new UserError(`${ref}: index ${desc.digest} has no "manifests" list`);
      desc = platformManifest(ref, doc.manifests, platform);
      continue;
    }
    if (!MANIFEST_MEDIA_TYPES.includes(mediaType ?? MEDIA_TYPE.manifest)) {
      throw new UserError(`${ref}: ${desc.digest} has media type ${mediaType}, not an image manifest`);
    }
    if (!doc.config || !Array.isArray(doc.layers)) {
      throw new UserError(`${ref}: manifest ${desc.digest} lacks a config or a layers list`);
    }
    const config = await store.readJson<ImageConfig>(doc.config.digest, `config of ${ref}`);
    return { digest: desc.digest, manifest: doc, config };
  }
}

/**
 * The image's filesystem: every layer applied in order (whiteouts honoured). The layers'
 * uncompressed tars are files on disk (see layerFile). Beyond the build's memory budget, the
 * tree's file data are slices of them, read only when the outputs are written.
 */
export async function imageTree(store: ImageStore, manifest: Manifest): Promise<FsTree> {
  const tree = new FsTree();
  const tars = await Promise.all(manifest.layers.map((l) => layerFile(store, l.digest)));
  // Layers that fit the build's memory budget are read whole: one read instead of one per file.
  for (const tar of tars) applyLayer(tree, takeMemory(tar.length) ? dataBytes(tar) : tar);
  return tree;
}

/**
 * Where a layer's uncompressed tar is kept: derived/layers/, named by the blob's digest and by
 * its file's identity (inode, change time, size). A blob that is written again (repaired, or
 * tampered with) so no longer matches, and its tar is made again from it, checking its digest.
 */
async function derivedLayerPath(store: ImageStore, digest: string): Promise<string> {
  const blob = store.blobPath(digest);
  let st: BigIntStats;
  try {
    st = await stat(blob, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UserError(`blob ${digest} is not in the image cache (${blob})`);
    throw e;
  }
  const { algorithm, hex } = parseDigest(digest);
  return path.join(store.dir, 'derived', 'layers', `${algorithm}-${hex}-${fileIdentity(st)}.tar`);
}

/** A layer's uncompressed tar as a file on disk: made from its blob (digest checked) the first time. */
export async function layerFile(store: ImageStore, digest: string): Promise<FileSlice> {
  const file = await derivedLayerPath(store, digest);
  try {
    return FileSlice.of(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(path.dirname(file), { recursive: true });
  const blob = store.blobPath(digest);
  const head = Buffer.alloc(6);
  const fh = await open(blob, 'r');
  try {
    await fh.read(head, 0, 6, 0);
  } finally {
    await fh.close();
  }
  const kind = sniffCompression(head);
  if (kind === 'gzip' || kind === 'none') {
    // Streamed: hashed as it is read, unpacked as it is written; flat in memory however big.
    const { algorithm } = parseDigest(digest);
    const hash = createHash(algorithm);
    const check = async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        hash.update(c);
        yield c;
      }
    };
    const read = check(createReadStream(blob, { highWaterMark: 1 << 20 }));
    const tar = kind === 'gzip' ? pipeThrough(read, createGunzip({ chunkSize: 1 << 20 })) : read;
    await writeFileAtomic(file, {
      async *[Symbol.asyncIterator]() {
        try {
          yield* tar;
        } catch (e) {
          throw new UserError(`layer ${digest}: corrupt ${kind} data: ${(e as Error).message}`);
        }
        const actual = `${algorithm}:${hash.digest('hex')}`;
        if (actual !== digest) throw corruptBlob(digest, actual, blob);
      },
    });
  } else {
    // xz and zstd (Node 20 has no zstd stream): in memory, as the blob's digest is checked.
    await writeFileAtomic(file, await decompress(await store.readBlob(digest)));
  }
  return FileSlice.of(file);
}
