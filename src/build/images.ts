/**
 * Resolving the YAML's `image:` references to images in the cache:
 * - `@pkg:DIR` builds the package in DIR when its tag is missing;
 * - `name:tag` comes from the cache, else is pulled from its registry (`pull` re-resolves tags
 *   from the registry even when cached); `name@sha256:...` is used from the cache when present
 *   and never re-resolved;
 * - `oci-archive:PATH` and `oci:DIR[:NAME]` import the image from an OCI archive or image layout
 *   (paths relative to the YAML file) into the cache.
 * Each image's file system is read once per build.
 */
import path from 'node:path';
import type { FsTree } from '../fs/tree.js';
import { importArchive, importLayout } from '../oci/archive.js';
import { imageTree, loadImage } from '../oci/image.js';
import type { ImageStore } from '../oci/layout.js';
import { parseRef } from '../oci/reference.js';
import { RegistryClient, type RegistryOptions } from '../oci/registry.js';
import { buildPackage, type PkgOptions } from '../pkg/build.js';
import { UserError } from '../util/errors.js';

export const PKG_PREFIX = '@pkg:';

export interface ResolvedImage {
  /** The reference as written in the YAML. */
  spec: string;
  /** Fully expanded reference, e.g. docker.io/linuxkit/init:abc... */
  ref: string;
  /** Digest of the image manifest. */
  digest: string;
  /** The image config's `config` object (Entrypoint, Cmd, Env, WorkingDir, Labels, ...). */
  config: Record<string, unknown>;
  manifest: unknown;
}

export interface ResolveOptions {
  /** Re-resolve tags from their registry even when they are in the cache. */
  pull?: boolean;
  registry?: RegistryOptions;
  /** Default linux/amd64. */
  platform?: { os: string; architecture: string };
}

export class ImageResolver {
  private readonly resolved = new Map<string, Promise<ResolvedImage>>();
  private readonly trees = new Map<string, Promise<FsTree>>();
  /** Package directories (`@pkg:`) and local archives or layouts images were made from. */
  readonly packageDirs = new Set<string>();
  readonly importPaths = new Set<string>();
  /** Image tags (not digests) resolved from the cache or a registry, fully expanded. */
  readonly tags = new Set<string>();

  constructor(
    readonly store: ImageStore,
    private readonly pkg: PkgOptions,
    /** Directory `@pkg:` paths are relative to (the YAML file's). */
    private readonly baseDir: string,
    private readonly opts: ResolveOptions = {},
  ) {}

  private client?: RegistryClient;
  private registry(): RegistryClient {
    this.client ??= new RegistryClient({ log: this.pkg.log, ...this.opts.registry });
    return this.client;
  }

  /** Resolve one reference; the same reference is resolved (and a package built) only once. */
  resolve(spec: string): Promise<ResolvedImage> {
    let p = this.resolved.get(spec);
    if (!p) {
      p = this.doResolve(spec);
      this.resolved.set(spec, p);
    }
    return p;
  }

  private async doResolve(spec: string): Promise<ResolvedImage> {
    let ref: string;
    if (spec.startsWith(PKG_PREFIX)) {
      const dir = path.resolve(this.baseDir, spec.slice(PKG_PREFIX.length));
      this.packageDirs.add(dir);
      ref = (await buildPackage(dir, this.pkg)).ref;
    } else if (spec.startsWith('oci-archive:') || spec.startsWith('oci:')) {
      ref = await this.importLocal(spec);
    } else {
      const r = parseRef(spec);
      ref = r.toString();
      if (r.digest === undefined) this.tags.add(ref);
      // A digest names fixed content: the cached copy is as good as the registry's.
      const cached = this.opts.pull && r.digest === undefined ? undefined : await this.tryLoad(ref);
      if (!cached) await this.registry().pull(this.store, ref, { platform: this.opts.platform });
    }
    const img = await loadImage(this.store, ref, this.opts.platform);
    if (!img) throw new UserError(`image ${JSON.stringify(spec)} is not in the cache (${this.store.dir})`);
    const config = ((img.config as { config?: Record<string, unknown> }).config ?? {}) as Record<
      string,
      unknown
    >;
    return { spec, ref, digest: img.digest, config, manifest: img.manifest };
  }

  /** Loaded from the cache, or undefined when absent or incomplete (then it is pulled again). */
  private async tryLoad(ref: string) {
    try {
      return await loadImage(this.store, ref, this.opts.platform);
    } catch (e) {
      if (e instanceof UserError) return undefined;
      throw e;
    }
  }

  /** Import `oci-archive:PATH` or `oci:DIR[:NAME]`; returns a digest reference to the image. */
  private async importLocal(spec: string): Promise<string> {
    let imported: { desc: { digest: string } }[];
    if (spec.startsWith('oci-archive:')) {
      const file = path.resolve(this.baseDir, spec.slice('oci-archive:'.length));
      this.importPaths.add(file);
      imported = await importArchive(this.store, file);
      if (imported.length !== 1)
        throw new UserError(`${spec} holds ${imported.length} images; give an archive with one`);
    } else {
      const rest = spec.slice('oci:'.length);
      // As skopeo's oci: transport: DIR ends at the first ':', NAME (which may hold ':') follows.
      const i = rest.indexOf(':');
      const hasName = i > 0;
      const dir = path.resolve(this.baseDir, hasName ? rest.slice(0, i) : rest);
      this.importPaths.add(dir);
      imported = await importLayout(this.store, dir, hasName ? rest.slice(i + 1) : undefined);
    }
    return `imported@${imported[0]!.desc.digest}`;
  }

  /** The image's flattened file system (shared: callers must not modify it). */
  tree(img: ResolvedImage): Promise<FsTree> {
    let p = this.trees.get(img.digest);
    if (!p) {
      p = imageTree(this.store, img.manifest as never);
      this.trees.set(img.digest, p);
    }
    return p;
  }
}
