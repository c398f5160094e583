/**
 * Resolving the YAML's `image:` references to images in the cache: `@pkg:DIR` builds the
 * package in DIR when its tag is missing; `name:tag` and `name@sha256:...` must be in the cache
 * (registry pulls are a later step). Each image's file system is read once per build.
 */
import path from 'node:path';
import type { FsTree } from '../fs/tree.js';
import { imageTree, loadImage } from '../oci/image.js';
import type { ImageStore } from '../oci/layout.js';
import { parseRef } from '../oci/reference.js';
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

export class ImageResolver {
  private readonly resolved = new Map<string, Promise<ResolvedImage>>();
  private readonly trees = new Map<string, Promise<FsTree>>();

  constructor(
    private readonly store: ImageStore,
    private readonly pkg: PkgOptions,
    /** Directory `@pkg:` paths are relative to (the YAML file's). */
    private readonly baseDir: string,
  ) {}

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
      ref = (await buildPackage(dir, this.pkg)).ref;
    } else {
      ref = parseRef(spec).toString();
    }
    const img = await loadImage(this.store, ref);
    if (!img) {
      throw new UserError(
        `image ${JSON.stringify(spec)} is not in the cache (${this.store.dir}); pulling from registries is not supported yet: build it with \`linuxkit pkg build\` or use @pkg:DIR`,
      );
    }
    const config = ((img.config as { config?: Record<string, unknown> }).config ?? {}) as Record<
      string,
      unknown
    >;
    return { spec, ref, digest: img.digest, config, manifest: img.manifest };
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
