/**
 * The package builder: build.yml + Debian packages + files -> an OCI image in the cache, tagged
 * linuxkit/NAME:<hash>, where the hash covers everything that determines the image's bytes.
 * No Docker, no root, no maintainer scripts.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DebianArchive, type PackageInfo } from '../debian/archive.js';
import { readDeb } from '../debian/deb.js';
import { resolve as resolveDeps } from '../debian/resolve.js';
import { treeToTar } from '../fs/layer.js';
import { FsTree } from '../fs/tree.js';
import { writeImage } from '../oci/image.js';
import type { ImageStore } from '../oci/layout.js';
import { UserError } from '../util/errors.js';
import { sourceDateEpoch } from '../util/reproducible.js';
import type { BuildYml } from './buildyml.js';
import { loadBuildYml, parseMode } from './buildyml.js';
import { kernelImageTree } from './kernel.js';

/** Bumped when the builder's output for the same inputs changes, so old tags are not reused. */
const BUILDER_VERSION = '1';

/** Paths Debian packages ship that a minimal image never needs (build.yml's prune adds more). */
const DEFAULT_PRUNE = [
  'usr/share/doc',
  'usr/share/man',
  'usr/share/info',
  'usr/share/locale',
  'usr/share/lintian',
  'usr/share/bug',
  'usr/share/bash-completion',
];

/**
 * A path glob as a matcher: `*` matches within one path component, `**` any number of them;
 * a pattern also matches everything below what it matches (pruning a dir prunes its contents).
 */
export function globMatcher(patterns: string[]): (path: string) => boolean {
  const res = patterns.map((g) => {
    const body = g
      .replace(/^\/+/, '')
      .split(/(\*\*\/?|\*|\?)/)
      .map((part) => {
        if (part === '**' || part === '**/') return '.*';
        if (part === '*') return '[^/]*';
        if (part === '?') return '[^/]';
        return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      })
      .join('');
    return new RegExp(`^${body}(?:/.*)?$`);
  });
  return (path) => res.some((r) => r.test(path));
}

export interface PkgOptions {
  /** The OCI image-layout cache. */
  store: ImageStore;
  /** Where .debs and Debian indexes are cached. */
  debianCacheDir: string;
  debianMirror?: string;
  force?: boolean;
  log?: (line: string) => void;
}

export interface PkgPlan {
  dir: string;
  yml: BuildYml;
  /** Fully expanded reference, e.g. docker.io/linuxkit/init:0123abcd... */
  ref: string;
  tag: string;
  /** The exact Debian packages, sorted by name. */
  debs: PackageInfo[];
  files: Map<string, Uint8Array>;
  /** The archive client the packages were resolved against (it fetches them too). */
  archive?: DebianArchive;
}

function sha256hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Work out what the package would contain and its tag, without building it. */
export async function planPackage(dir: string, opts: PkgOptions): Promise<PkgPlan> {
  dir = path.resolve(dir);
  const { yml, text } = await loadBuildYml(dir);
  const files = new Map<string, Uint8Array>();
  for (const f of yml.files) {
    if (f.source === undefined) continue;
    const p = path.resolve(dir, f.source);
    if (p !== dir && !p.startsWith(dir + path.sep)) {
      throw new UserError(
        `${path.join(dir, 'build.yml')}: file source ${JSON.stringify(f.source)} is outside the package directory`,
      );
    }
    try {
      files.set(f.source, await readFile(p));
    } catch (e) {
      throw new UserError(
        `${path.join(dir, 'build.yml')}: cannot read file source ${JSON.stringify(f.source)}: ${(e as Error).message}`,
      );
    }
  }
  let debs: PackageInfo[] = [];
  let archive: DebianArchive | undefined;
  if (yml.debian) {
    archive = new DebianArchive({
      mirror: opts.debianMirror,
      suite: yml.debian.suite,
      components: yml.debian.components,
      cacheDir: opts.debianCacheDir,
    });
    const index = await archive.packages();
    debs = resolveDeps(index, yml.debian.packages, { exclude: yml.debian.exclude }).packages;
  }
  const h = createHash('sha256');
  h.update(`linuxkit-ts pkg ${BUILDER_VERSION}\n`);
  h.update(`build.yml ${sha256hex(text)}\n`);
  for (const [name, data] of [...files].sort(([a], [b]) => (a < b ? -1 : 1)))
    h.update(`file ${name} ${sha256hex(data)}\n`);
  for (const d of debs) h.update(`deb ${d.name} ${d.version} ${d.sha256}\n`);
  const epoch = sourceDateEpoch();
  if (epoch !== undefined) h.update(`epoch ${epoch}\n`);
  const tag = h.digest('hex').slice(0, 40);
  const org = yml.org ?? 'linuxkit';
  return { dir, yml, ref: `docker.io/${org}/${yml.image}:${tag}`, tag, debs, files, archive };
}

export interface PkgResult {
  ref: string;
  digest: string;
  built: boolean;
}

/** Build the package unless its tag is already in the cache (or `force`). */
export async function buildPackage(dir: string, opts: PkgOptions): Promise<PkgResult> {
  const plan = await planPackage(dir, opts);
  if (!opts.force) {
    const have = await opts.store.resolve(plan.ref);
    if (have) return { ref: plan.ref, digest: have.digest, built: false };
  }
  opts.log?.(`building ${plan.ref}`);
  const tree = await packageTree(plan);
  const yml = plan.yml;
  const labels: Record<string, string> = {};
  if (yml.config) labels['org.mobyproject.config'] = JSON.stringify(yml.config);
  const desc = await writeImage(opts.store, {
    layers: [treeToTar(tree)],
    config: {
      ...(yml.entrypoint ? { Entrypoint: yml.entrypoint } : {}),
      ...(yml.cmd ? { Cmd: yml.cmd } : {}),
      ...(yml.env ? { Env: yml.env } : {}),
      ...(yml.workdir ? { WorkingDir: yml.workdir } : {}),
      ...(Object.keys(labels).length ? { Labels: labels } : {}),
    },
  });
  await opts.store.tag(plan.ref, desc);
  return { ref: plan.ref, digest: desc.digest, built: true };
}

/** The image's file system: the packages' data, pruned, then build.yml's files. */
async function packageTree(plan: PkgPlan): Promise<FsTree> {
  let tree = new FsTree();
  const archive = plan.archive;
  if (archive) {
    // Fetch in parallel (bounded), then unpack in name order so overlaps resolve the same way.
    const debs = await mapLimit(plan.debs, 4, (d) => archive.fetchDeb(d));
    const pruned = globMatcher([...DEFAULT_PRUNE, ...(plan.yml.debian?.prune ?? [])]);
    for (let i = 0; i < debs.length; i++) {
      const { data } = await readDeb(debs[i]!, plan.debs[i]!.name);
      for (const e of data.entries()) if (!pruned(e.path)) tree.set(e);
    }
  }
  if (plan.yml.kernel) tree = kernelImageTree(tree, plan.yml.kernel.modules);
  const epoch = sourceDateEpoch() ?? 0;
  for (const f of plan.yml.files) {
    const base = { path: f.path, uid: f.uid ?? 0, gid: f.gid ?? 0, mtime: epoch };
    if (f.directory) tree.set({ ...base, kind: 'dir', mode: parseMode(f.mode, 0o755) });
    else if (f.symlink !== undefined) tree.set({ ...base, kind: 'symlink', mode: 0o777, target: f.symlink });
    else {
      const data =
        f.source !== undefined ? plan.files.get(f.source)! : new TextEncoder().encode(f.contents ?? '');
      tree.set({ ...base, kind: 'file', mode: parseMode(f.mode, 0o644), data });
    }
  }
  const sde = sourceDateEpoch();
  if (sde !== undefined) tree.clampMtimes(sde);
  return tree;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
