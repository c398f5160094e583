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
import { decompress, gzip } from '../formats/compress.js';
import { applyLayer } from '../fs/layer.js';
import { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { sha256Digest } from './digest.js';
import type { ImageStore } from './layout.js';
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

/** The image's filesystem: every layer decompressed and applied in order (whiteouts honoured). */
export async function imageTree(store: ImageStore, manifest: Manifest): Promise<FsTree> {
  const tree = new FsTree();
  for (const layer of manifest.layers) {
    const blob = await store.readBlob(layer.digest);
    applyLayer(tree, await decompress(blob));
  }
  return tree;
}
