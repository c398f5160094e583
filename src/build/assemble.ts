/**
 * Assembling the whole system as one FsTree, in upstream LinuxKit's layout:
 *   /                                    init images (and the kernel's modules tar)
 *   /containers/onboot/NNN-NAME/          config.json, runtime.json, runtime.sh, rootfs/ (or lower/)
 *   /containers/onshutdown/NNN-NAME/      the same
 *   /containers/services/NAME/            the same
 *   /containers/volumes/NAME/             lower/ (contents), merged/ (mount point), tmp/ if writable
 *   the YAML's `files:`
 */
import os from 'node:os';
import path from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { dataBytes, type FileData, FileSlice } from '../fs/data.js';
import { applyLayer } from '../fs/layer.js';
import { FsTree, normalisePath, parentOf } from '../fs/tree.js';
import { ANNOTATION, type Manifest, MEDIA_TYPE } from '../oci/layout.js';
import type { Config, ContainerSpec, LoadedConfig } from '../spec/types.js';
import { UserError } from '../util/errors.js';
import { imageRootfs, RESOLVCONF_SYMLINK } from './image-rootfs.js';
import type { ImageResolver, ResolvedImage } from './images.js';
import {
  containerConfig,
  containerIdMap,
  encodeGoJson,
  idNumeric,
  imageRoot,
  SETTINGS_KEYS,
  VOLUMES_DIR,
} from './oci-config.js';
import { runtimeScript } from './runtime-script.js';

export interface Assembled {
  kernel?: Uint8Array;
  cmdline: string;
  root: FsTree;
}

const utf8 = (s: string) => new TextEncoder().encode(s);

export async function assemble(
  loaded: LoadedConfig,
  images: Map<string, ResolvedImage>,
  resolver: ImageResolver,
  mtime: number,
): Promise<Assembled> {
  const { config } = loaded;
  const root = new FsTree();
  const dirs = { mtime };
  const file = (p: string, data: Uint8Array, mode = 0o644) =>
    root.set({ path: p, kind: 'file', mode, uid: 0, gid: 0, mtime, data }, dirs);

  let kernel: Uint8Array | undefined;
  if (config.kernel?.image) {
    const img = images.get(config.kernel.image)!;
    const t = await resolver.tree(img);
    // upstream's names: `binary` (default kernel) and `tar` (default kernel.tar; none or '': no tar)
    const binary = config.kernel.binary || 'kernel';
    const k = t.get(binary);
    if (k?.kind !== 'file') throw new UserError(`kernel image ${img.spec} has no /${binary} file`);
    kernel = dataBytes(k.data);
    const tarName = config.kernel.tar ?? 'kernel.tar';
    if (tarName !== '' && tarName !== 'none') {
      const modules = t.get(tarName);
      if (modules?.kind === 'file') applyLayer(root, modules.data!);
      else if (config.kernel.tar !== undefined) {
        throw new UserError(`kernel image ${img.spec} has no /${tarName} file`);
      }
    }
  }

  for (const spec of config.init) {
    const img = images.get(spec)!;
    for (const e of imageRootfs(await resolver.tree(img), { resolv: RESOLVCONF_SYMLINK, mtime }).entries()) {
      root.set(e, dirs);
    }
  }

  // An image used by several containers is stored once; the others bind or overlay it.
  const extracted = new Map<string, string>();
  const idMap = containerIdMap(config);
  const bundle = async (section: string, prefix: string, spec: ContainerSpec) => {
    const img = images.get(spec.image)!;
    const dir = `containers/${section}/${prefix}${spec.name}`;
    const plan = containerConfig(spec, img.config, {
      idMap,
      bundle: dir,
      sharedRoot: extracted.get(img.digest),
      volumes: config.volumes ?? [],
    });
    if (plan.extractTo !== null) {
      root.graft(imageRootfs(await resolver.tree(img), { mtime }), `${dir}/${plan.extractTo}`, dirs);
      extracted.set(img.digest, imageRoot(dir, plan.readonly));
    }
    for (const d of plan.emptyDirs) root.ensureDir(`${dir}/${d}`, dirs);
    file(`${dir}/config.json`, utf8(plan.configJson));
    file(`${dir}/runtime.json`, utf8(plan.runtimeJson));
    file(`${dir}/runtime.sh`, utf8(runtimeScript(plan.runtime, { bundle: dir })));
  };
  const seq = (i: number) => `${String(i).padStart(3, '0')}-`;
  for (const [i, c] of config.onboot.entries()) await bundle('onboot', seq(i), c);
  for (const [i, c] of config.onshutdown.entries()) await bundle('onshutdown', seq(i), c);
  for (const c of config.services) await bundle('services', '', c);

  // Volumes (upstream moby/build volume handling): lower/ holds the image's files (or nothing),
  // merged/ is where init mounts them at boot, tmp/ (writable volumes only) takes an overlay's
  // upper layer.
  for (const v of config.volumes ?? []) {
    const dir = `${VOLUMES_DIR}/${v.name}`;
    if (v.image) {
      const img = images.get(v.image) ?? (await resolver.resolve(v.image));
      if (v.format === 'oci') await ociLayout(root, `${dir}/lower`, img, resolver, mtime);
      else root.graft(await resolver.tree(img), `${dir}/lower`, dirs);
    } else root.ensureDir(`${dir}/lower`, dirs);
    root.ensureDir(`${dir}/merged`, dirs);
    if (!v.readonly) root.ensureDir(`${dir}/tmp`, dirs);
  }

  const refOf = (spec: string) => images.get(spec)?.ref ?? spec;
  await addFiles(root, loaded, mtime, idMap, refOf);

  // The kernel opens /dev/console for init's stdio before anything mounts devtmpfs.
  if (!root.has('dev/console')) {
    root.set(
      { path: 'dev/console', kind: 'char', mode: 0o600, uid: 0, gid: 0, mtime, devmajor: 5, devminor: 1 },
      dirs,
    );
  }
  return { kernel, cmdline: config.kernel?.cmdline ?? '', root };
}

/**
 * A volume with `format: oci`: the image as an OCI image layout (oci-layout, index.json naming
 * it by its reference, blobs/sha256/...) instead of its files. Only the platform the build
 * resolved (linux/amd64) is included.
 */
async function ociLayout(
  root: FsTree,
  dir: string,
  img: ResolvedImage,
  resolver: ImageResolver,
  mtime: number,
): Promise<void> {
  const store = resolver.store;
  const put = (p: string, data: Uint8Array) =>
    root.set({ path: `${dir}/${p}`, kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime, data }, { mtime });
  const manifest = img.manifest as Manifest;
  const manifestBytes = await store.readBlob(img.digest);
  for (const d of [img.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
    const [alg, hex] = d.split(':') as [string, string];
    put(`blobs/${alg}/${hex}`, d === img.digest ? manifestBytes : await store.readBlob(d));
  }
  put('oci-layout', utf8('{"imageLayoutVersion":"1.0.0"}'));
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: [
      {
        mediaType: manifest.mediaType ?? MEDIA_TYPE.manifest,
        digest: img.digest,
        size: manifestBytes.length,
        annotations: { [ANNOTATION.refName]: img.ref },
        platform: { architecture: 'amd64', os: 'linux' },
      },
    ],
  };
  put('index.json', utf8(JSON.stringify(index)));
}

/** The YAML's `files:`, with upstream's defaults: files 0600, directories 0700. */
async function addFiles(
  root: FsTree,
  loaded: LoadedConfig,
  mtime: number,
  idMap: Record<string, number>,
  refOf: (spec: string) => string,
): Promise<void> {
  for (const [i, f] of loaded.config.files.entries()) {
    const fail = (key: string, msg: string): never => {
      const pos = loaded.posOf(['files', i, key]);
      throw new UserError(`${pos.file}:${pos.line}:${pos.col}: ${msg}`);
    };
    const p = normalisePath(f.path, `files[${i}].path`);
    const mode = f.mode ?? (f.directory ? 0o700 : 0o600);
    const uid = idNumeric(f.uid, idMap, (m) => fail('uid', m), 'uid');
    const gid = idNumeric(f.gid, idMap, (m) => fail('gid', m), 'gid');
    let data: FileData | undefined;
    if (!f.directory && f.symlink === undefined && f.contents === undefined) {
      if (f.source !== undefined) {
        const src = fileSourcePath(loaded, f.source);
        try {
          // Read when the outputs are written, not now: a big source is never whole in memory.
          data = FileSlice.of(src);
        } catch (e) {
          // upstream: an optional source that cannot be read is skipped
          if (f.optional) continue;
          fail('source', `cannot read ${f.source}: ${(e as NodeJS.ErrnoException).code ?? e}`);
        }
      } else if (f.metadata !== undefined) {
        data = utf8(configMetadata(loaded.config, f.metadata, refOf));
      }
    }
    // Parent directories we create get the mode's read bits plus search (x) bits and the
    // file's owner, as upstream; directories that exist already are left as they are.
    let dirMode = mode;
    if (dirMode & 0o700) dirMode |= 0o100;
    if (dirMode & 0o070) dirMode |= 0o010;
    if (dirMode & 0o007) dirMode |= 0o001;
    root.ensureDir(parentOf(p), { mode: dirMode, uid, gid, mtime });
    const base = { path: p, uid, gid, mtime };
    if (f.directory) root.set({ ...base, kind: 'dir', mode });
    else if (f.symlink !== undefined) root.set({ ...base, kind: 'symlink', mode: 0o777, target: f.symlink });
    else root.set({ ...base, kind: 'file', mode, data: data ?? utf8(f.contents ?? '') });
  }
}

/**
 * The config written by `metadata: yaml|json` files, as upstream's metadata(): the parsed YAML
 * with image references replaced by their resolved form, keys in upstream's struct order;
 * json as Go's MarshalIndent with 4 spaces, yaml with yaml.v3's 4-space indent.
 */
export function configMetadata(
  config: Config,
  format: 'yaml' | 'json',
  refOf: (spec: string) => string,
): string {
  const json = format === 'json';
  const container = (c: ContainerSpec) => {
    const src = c as unknown as Record<string, unknown>;
    const o: Record<string, unknown> = { name: c.name, image: refOf(c.image) };
    for (const k of SETTINGS_KEYS) if (src[k] !== undefined) o[k] = src[k];
    return o;
  };
  const mode = (m: number | undefined) => (m === undefined ? undefined : `0${m.toString(8)}`);
  const k = config.kernel;
  const m: Record<string, unknown> = {
    kernel: k
      ? {
          image: k.image ? refOf(k.image) : '',
          cmdline: k.cmdline || undefined,
          binary: k.binary || undefined,
          tar: k.tar,
          ucode: k.ucode,
        }
      : { image: '' },
    init: config.init.map(refOf),
    onboot: config.onboot.map(container),
    onshutdown: config.onshutdown.map(container),
    services: config.services.map(container),
    files: config.files.map((f) => ({
      path: f.path,
      directory: f.directory ?? false,
      symlink: f.symlink || undefined,
      contents: f.contents,
      source: f.source || undefined,
      metadata: f.metadata || undefined,
      optional: f.optional ?? false,
      mode: mode(f.mode),
      uid: f.uid,
      gid: f.gid,
    })),
    volumes: (config.volumes ?? []).map((v) => ({
      name: v.name,
      image: v.image || undefined,
      readonly: v.readonly || undefined,
      format: v.format || undefined,
      platforms: v.platforms?.length ? v.platforms : undefined,
    })),
  };
  if (json) {
    // Go writes nil slices as null
    for (const key of ['onboot', 'onshutdown', 'services', 'files', 'volumes']) {
      if ((m[key] as unknown[]).length === 0) m[key] = null;
    }
    return encodeGoJson(m);
  }
  return stringifyYaml(JSON.parse(JSON.stringify(m)), { indent: 4, indentSeq: true, lineWidth: 0 });
}

/** Where a `files:` entry's `source:` is read from: relative to the YAML file, or `~/`. */
export function fileSourcePath(loaded: LoadedConfig, source: string): string {
  return source.startsWith('~/')
    ? path.join(os.homedir(), source.slice(2))
    : path.resolve(loaded.dir, source);
}
