/**
 * Image archives, written and read as tar files (our own tar codec; every member root-owned,
 * mtime 0, mode 0644/0755, in a fixed order, so the same images give the same archive bytes):
 *
 * OCI archive (what `skopeo copy ... oci-archive:FILE` makes): an OCI image layout in a tar
 *   oci-layout                 {"imageLayoutVersion":"1.0.0"}
 *   index.json                 one descriptor per image, "org.opencontainers.image.ref.name"
 *                              annotation = the fully expanded reference
 *   blobs/sha256/HEX           manifests, indexes, configs, layers
 *
 * Docker archive (what `docker save` wrote before Docker 25, and `docker load` reads):
 *   manifest.json              [{"Config":"HEX.json","RepoTags":["name:tag"],"Layers":["DIFF/layer.tar",...]}]
 *   HEX.json                   the image config, HEX = its sha256
 *   DIFF/layer.tar             each layer uncompressed; DIFF = hex of its diff_id
 *   repositories               {"name":{"tag":"DIFF of the top layer"}} (legacy, for old loaders)
 * Import also reads Docker 25+ archives (OCI layout plus manifest.json; we use manifest.json's
 * paths, whatever they are) and compressed layers.
 */
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { decompress, sniffCompression } from '../formats/compress.js';
import { encodeTarHeader, readTar, TAR_END, tarPadding } from '../formats/tar.js';
import { UserError } from '../util/errors.js';
import { digestLike, isDigest, parseDigest } from './digest.js';
import { loadImage } from './image.js';
import {
  ANNOTATION,
  type Descriptor,
  ImageStore,
  type Index,
  type Manifest,
  MEDIA_TYPE,
  orderDescriptor,
} from './layout.js';
import { closure } from './maintain.js';
import { parseRef } from './reference.js';

/** Writes tar members to a temp file that replaces `out` only when the archive is complete. */
class TarFileWriter {
  private constructor(
    private readonly fh: Awaited<ReturnType<typeof open>>,
    private readonly tmp: string,
    private readonly out: string,
  ) {}

  static async create(out: string): Promise<TarFileWriter> {
    const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}-1`);
    try {
      return new TarFileWriter(await open(tmp, 'w', 0o644), tmp, out);
    } catch (e) {
      throw new UserError(`cannot write ${out}: ${(e as Error).message}`);
    }
  }

  async dir(name: string): Promise<void> {
    await this.fh.write(
      encodeTarHeader({ path: `${name}/`, kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0 }),
    );
  }

  async file(name: string, data: Uint8Array): Promise<void> {
    await this.fh.write(
      encodeTarHeader({
        path: name,
        kind: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: data.byteLength,
      }),
    );
    await this.fh.write(data);
    await this.fh.write(tarPadding(data.byteLength));
  }

  async finish(): Promise<void> {
    await this.fh.write(TAR_END);
    await this.fh.sync();
    await this.fh.close();
    await rename(this.tmp, this.out);
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await unlink(this.tmp).catch(() => {});
  }
}

async function withWriter(out: string, fn: (w: TarFileWriter) => Promise<void>): Promise<void> {
  const w = await TarFileWriter.create(out);
  try {
    await fn(w);
    await w.finish();
  } catch (e) {
    await w.abort();
    throw e;
  }
}

async function rootOf(store: ImageStore, ref: string): Promise<{ name: string; desc: Descriptor }> {
  const name = parseRef(ref).toString();
  const desc = await store.resolve(name);
  if (!desc) throw new UserError(`${name} is not in the image cache`);
  return { name, desc };
}

/** Write `refs` (from the cache) as an OCI archive (a tarred image layout). */
export async function exportOciArchive(store: ImageStore, refs: string[], out: string): Promise<void> {
  if (refs.length === 0) throw new UserError('name at least one image to export');
  const entries: Descriptor[] = [];
  const blobs = new Set<string>();
  for (const r of refs) {
    const { name, desc } = await rootOf(store, r);
    const c = await closure(store, desc);
    if (c.missing.length) throw new UserError(`${name}: blob ${c.missing[0]} is missing from the cache`);
    for (const b of c.present) blobs.add(b);
    const { annotations: _drop, ...top } = c.top;
    entries.push(orderDescriptor({ ...top, annotations: { [ANNOTATION.refName]: name } }));
  }
  const index: Index = { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: entries };
  await withWriter(out, async (w) => {
    await w.file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    await w.file('index.json', Buffer.from(JSON.stringify(index)));
    await w.dir('blobs');
    await w.dir('blobs/sha256');
    for (const d of [...blobs].sort()) {
      const { algorithm, hex } = parseDigest(d);
      await w.file(`blobs/${algorithm}/${hex}`, await store.readBlob(d));
    }
  });
}

/** `docker.io/library/alpine:3` -> `alpine:3`, as `docker save` names images. */
function familiar(ref: string): string {
  return ref.replace(/^docker\.io\/(library\/)?/, '');
}

/** Write `refs` as a `docker load` archive: uncompressed layers named by their diff_id. */
export async function exportDockerArchive(
  store: ImageStore,
  refs: string[],
  out: string,
  platform = { os: 'linux', architecture: 'amd64' },
): Promise<void> {
  if (refs.length === 0) throw new UserError('name at least one image to export');
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  await withWriter(out, async (w) => {
    const written = new Set<string>();
    for (const r of refs) {
      const { name } = await rootOf(store, r);
      const img = await loadImage(store, name, platform);
      if (!img) throw new UserError(`${name} is not in the image cache`);
      const configBytes = await store.readBlob(img.manifest.config.digest);
      const configName = `${parseDigest(img.manifest.config.digest).hex}.json`;
      const diffIds = img.config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== img.manifest.layers.length)
        throw new UserError(
          `${name}: its config lists ${diffIds.length} diff_ids for ${img.manifest.layers.length} layers`,
        );
      const layers: string[] = [];
      for (const [i, l] of img.manifest.layers.entries()) {
        const diff = diffIds[i]!;
        const member = `${parseDigest(diff, 'diff_id').hex}/layer.tar`;
        layers.push(member);
        if (written.has(member)) continue;
        const tar = await decompress(await store.readBlob(l.digest));
        if (digestLike(diff, tar) !== diff)
          throw new UserError(`${name}: layer ${l.digest} does not uncompress to its diff_id ${diff}`);
        await w.dir(path.dirname(member));
        await w.file(member, tar);
        written.add(member);
      }
      if (!written.has(configName)) {
        await w.file(configName, configBytes);
        written.add(configName);
      }
      const ref = parseRef(name);
      const tags = ref.tag !== undefined ? [familiar(`${ref.name}:${ref.tag}`)] : [];
      manifest.push({ Config: configName, RepoTags: tags, Layers: layers });
      if (ref.tag !== undefined && layers.length) {
        repositories[familiar(ref.name)] = {
          ...repositories[familiar(ref.name)],
          [ref.tag]: path.dirname(layers[layers.length - 1]!),
        };
      }
    }
    await w.file('manifest.json', Buffer.from(JSON.stringify(manifest)));
    await w.file('repositories', Buffer.from(JSON.stringify(repositories)));
  });
}

export interface Imported {
  ref?: string;
  desc: Descriptor;
}

const cleanName = (n: string) => n.replace(/^(\.\/)+/, '').replace(/\/+$/, '');

function jsonMember<T>(files: Map<string, Uint8Array>, name: string, what: string): T {
  const data = files.get(name);
  if (!data) throw new UserError(`${what}: no ${name}`);
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as T;
  } catch (e) {
    throw new UserError(`${what}: ${name} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Import an OCI or Docker archive into the cache. Every blob is verified against its digest
 * before it is stored; each image is tagged with its name in the archive, else with `ref`.
 */
export async function importArchive(
  store: ImageStore,
  file: string,
  opts: { ref?: string } = {},
): Promise<Imported[]> {
  let data: Buffer;
  const fh = await open(file).catch((e: Error) => {
    throw new UserError(`cannot read ${file}: ${e.message}`);
  });
  try {
    data = await fh.readFile();
  } finally {
    await fh.close();
  }
  const files = new Map<string, Uint8Array>();
  for (const e of readTar(data)) if (e.kind === 'file') files.set(cleanName(e.name), e.data);
  const what = `archive ${path.basename(file)}`;
  if (files.has('index.json') && files.has('oci-layout') && !files.has('manifest.json')) {
    return importOciFiles(store, files, what, opts.ref);
  }
  if (files.has('manifest.json')) return importDockerFiles(store, files, what, opts.ref);
  throw new UserError(
    `${what} is neither an OCI archive (oci-layout, index.json) nor a Docker archive (manifest.json)`,
  );
}

async function importOciFiles(
  store: ImageStore,
  files: Map<string, Uint8Array>,
  what: string,
  ref?: string,
): Promise<Imported[]> {
  const source = {
    has: async (d: string) => files.has(blobMember(d)),
    read: async (d: string) => {
      const b = files.get(blobMember(d));
      if (!b) throw new UserError(`${what}: blob ${d} is missing`);
      return b;
    },
  };
  const index = jsonMember<Index>(files, 'index.json', what);
  return importIndexEntries(store, index, source, what, ref);
}

function blobMember(d: string): string {
  const { algorithm, hex } = parseDigest(d);
  return `blobs/${algorithm}/${hex}`;
}

interface BlobSource {
  has(digest: string): Promise<boolean>;
  read(digest: string): Promise<Uint8Array>;
}

/** Copy every image an index names from `src` into the store and tag it. */
export async function importIndexEntries(
  store: ImageStore,
  index: Index,
  src: BlobSource,
  what: string,
  ref?: string,
  only?: string,
): Promise<Imported[]> {
  if (!Array.isArray(index?.manifests)) throw new UserError(`${what}: index.json has no manifests list`);
  let entries = index.manifests;
  if (only !== undefined) {
    const expanded = (n: string | undefined) => {
      try {
        return n === undefined ? undefined : parseRef(n).toString();
      } catch {
        return undefined;
      }
    };
    const want = expanded(only);
    entries = entries.filter((d) => {
      const n = d.annotations?.[ANNOTATION.refName];
      return n === only || d.digest === only || (want !== undefined && expanded(n) === want);
    });
    if (!entries.length) throw new UserError(`${what} has no image named ${JSON.stringify(only)}`);
  }
  if (ref !== undefined && entries.length !== 1)
    throw new UserError(`${what} holds ${entries.length} images: a name fits only one`);
  const out: Imported[] = [];
  for (const d of entries) {
    if (!isDigest(d?.digest)) throw new UserError(`${what}: index.json has an invalid digest`);
    await copyClosure(store, src, d, what);
    const { annotations, ...rest } = d;
    const name = ref ?? annotations?.[ANNOTATION.refName];
    const desc = orderDescriptor(rest);
    let tagged: string | undefined;
    if (name !== undefined) {
      tagged = parseRef(name).toString();
      await store.tag(tagged, desc);
    }
    out.push({ ref: tagged, desc });
  }
  return out;
}

/** Blobs first, manifests after their blobs, so nothing visible points at a missing blob. */
async function copyClosure(
  store: ImageStore,
  src: BlobSource,
  d: Descriptor,
  what: string,
  depth = 0,
): Promise<void> {
  if (depth > 4) throw new UserError(`${what}: image indexes nest too deeply`);
  const bytes = await src.read(d.digest);
  const got = digestLike(d.digest, bytes);
  if (got !== d.digest)
    throw new UserError(`${what}: blob ${d.digest} is corrupt (its content hashes to ${got})`);
  let doc: Manifest & Index;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new UserError(`${what}: ${d.digest} is not a manifest`);
  }
  if (Array.isArray(doc.manifests) && !doc.config) {
    let any = false;
    for (const m of doc.manifests) {
      if (!isDigest(m?.digest) || !(await src.has(m.digest))) continue;
      await copyClosure(store, src, m, what, depth + 1);
      any = true;
    }
    if (!any) throw new UserError(`${what}: index ${d.digest} has none of its manifests`);
  } else {
    if (!doc.config || !Array.isArray(doc.layers))
      throw new UserError(`${what}: ${d.digest} is not an image manifest`);
    for (const b of [doc.config, ...doc.layers]) {
      if (await store.hasBlob(b.digest)) continue;
      await store.writeBlob(await src.read(b.digest), b.digest);
    }
  }
  await store.writeBlob(bytes, d.digest);
}

async function importDockerFiles(
  store: ImageStore,
  files: Map<string, Uint8Array>,
  what: string,
  ref?: string,
): Promise<Imported[]> {
  const list = jsonMember<{ Config?: string; RepoTags?: string[] | null; Layers?: string[] }[]>(
    files,
    'manifest.json',
    what,
  );
  if (!Array.isArray(list) || list.length === 0)
    throw new UserError(`${what}: manifest.json lists no images`);
  if (ref !== undefined && list.length !== 1)
    throw new UserError(`${what} holds ${list.length} images: a name fits only one`);
  const out: Imported[] = [];
  for (const entry of list) {
    if (typeof entry?.Config !== 'string' || !Array.isArray(entry.Layers))
      throw new UserError(`${what}: a manifest.json entry lacks Config or Layers`);
    const configBytes = files.get(cleanName(entry.Config));
    if (!configBytes) throw new UserError(`${what}: ${entry.Config} is missing`);
    const config = jsonMember<{ rootfs?: { diff_ids?: string[] } }>(files, cleanName(entry.Config), what);
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== entry.Layers.length)
      throw new UserError(
        `${what}: ${entry.Config} lists ${diffIds.length} diff_ids for ${entry.Layers.length} layers`,
      );
    const layers: Descriptor[] = [];
    for (const [i, member] of entry.Layers.entries()) {
      const blob = files.get(cleanName(member));
      if (!blob) throw new UserError(`${what}: layer ${member} is missing`);
      const kind = sniffCompression(blob);
      const tar = kind === 'none' ? blob : await decompress(blob);
      if (digestLike(diffIds[i]!, tar) !== diffIds[i])
        throw new UserError(`${what}: layer ${member} does not match its diff_id ${diffIds[i]}`);
      // Stored as it came (uncompressed layers stay uncompressed: no recompression cost).
      const mediaType =
        kind === 'none'
          ? MEDIA_TYPE.layer
          : kind === 'gzip'
            ? MEDIA_TYPE.layerGzip
            : kind === 'zstd'
              ? MEDIA_TYPE.layerZstd
              : undefined;
      if (!mediaType)
        throw new UserError(`${what}: layer ${member} is ${kind}-compressed, which images cannot use`);
      const { digest, size } = await store.writeBlob(blob);
      layers.push({ mediaType, digest, size });
    }
    const cfg = await store.writeBlob(configBytes);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.manifest,
      config: { mediaType: MEDIA_TYPE.config, digest: cfg.digest, size: cfg.size },
      layers,
    };
    const mbytes = Buffer.from(JSON.stringify(manifest));
    const m = await store.writeBlob(mbytes);
    const desc: Descriptor = { mediaType: MEDIA_TYPE.manifest, digest: m.digest, size: m.size };
    const tags = ref !== undefined ? [ref] : (entry.RepoTags ?? []);
    if (tags.length === 0) out.push({ desc });
    for (const t of tags) {
      const name = parseRef(t).toString();
      await store.tag(name, desc);
      out.push({ ref: name, desc });
    }
  }
  return out;
}

/** Import from an OCI image layout directory (`oci:DIR[:REF]`): REF, or its only image. */
export async function importLayout(
  store: ImageStore,
  dir: string,
  name?: string,
  ref?: string,
): Promise<Imported[]> {
  const src = new ImageStore(dir);
  const index = await src.readIndex();
  const what = `OCI layout ${dir}`;
  if (name === undefined && index.manifests.length !== 1)
    throw new UserError(`${what} holds ${index.manifests.length} images: name one as oci:DIR:NAME`);
  return importIndexEntries(
    store,
    index,
    { has: (d) => src.hasBlob(d), read: (d) => src.readBlob(d) },
    what,
    ref,
    name,
  );
}
