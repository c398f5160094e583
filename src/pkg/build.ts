/**
 * The package builder: build.yml + Debian packages + files -> an OCI image in the cache, tagged
 * linuxkit/NAME:<hash>, where the hash covers everything that determines the image's bytes.
 * No Docker, no root, no maintainer scripts.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DebianArchive, type PackageInfo } from '../debian/archive.js';
import { readDeb } from '../debian/deb.js';
import { resolve as resolveDeps } from '../debian/resolve.js';
import { dataBytes } from '../fs/data.js';
import { treeToTar } from '../fs/layer.js';
import { FsTree } from '../fs/tree.js';
import { writeImage } from '../oci/image.js';
import type { ImageStore } from '../oci/layout.js';
import { readFileChecked, writeFileChecked } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { sourceDateEpoch } from '../util/reproducible.js';
import type { BuildYml } from './buildyml.js';
import { loadBuildYml, parseMode } from './buildyml.js';
import { kernelImageTree } from './kernel.js';
import { LOCK_FILE, lockedPackages, readLock } from './lock.js';
import { encodeSbom, licenceFromCopyright, packageSbom } from './sbom.js';
import { addUserFiles, userFiles } from './users.js';

/** Image config label holding the package's SPDX 2.3 JSON SBOM (in the config, not in a layer: no bytes in the initrd). */
export const SBOM_LABEL = 'org.linuxkit.sbom.spdx';

/** Bumped when the builder's output for the same inputs changes, so old tags are not reused (3: modules.alias). */
const BUILDER_VERSION = '3';

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
  /** Ignore build.lock and resolve afresh (what `pkg lock` does). */
  ignoreLock?: boolean;
  /** Ask the mirror for the suite's InRelease even when the cached one is recent. */
  pull?: boolean;
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
  /** The packages came from build.lock (not from resolving build.yml against the index). */
  locked: boolean;
  /** package -> the chain that pulled it in (resolved plans only). */
  why?: Map<string, string[]>;
}

function sha256hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Bumped when the cached resolution's format or the resolver's answers change. */
const RESOLUTION_FORMAT = 2;

/**
 * Resolve build.yml's Debian packages, remembering the answer by what determines it (the
 * InRelease's bytes, the wanted and excluded packages): parsing a suite's index costs ~0.5 s
 * and ~100 MB, which a rebuild against the same InRelease does not need to pay again.
 * An answer is only stored after its InRelease was verified (to load the index).
 */
async function resolveCached(
  archive: DebianArchive,
  debian: NonNullable<BuildYml['debian']>,
  cacheDir: string,
): Promise<{ packages: PackageInfo[]; why: Map<string, string[]> }> {
  const key = sha256hex(
    JSON.stringify([
      RESOLUTION_FORMAT,
      await archive.releaseDigest(),
      archive.mirror,
      archive.components,
      archive.arch,
      debian.packages,
      debian.exclude,
    ]),
  );
  const file = path.join(cacheDir, 'resolved', `${key}.json`);
  const stored = await readFileChecked(file);
  if (stored) {
    const saved = JSON.parse(stored.toString('utf8')) as {
      packages: PackageInfo[];
      why: [string, string[]][];
    };
    return { packages: saved.packages, why: new Map(saved.why) };
  }
  const r = resolveDeps(await archive.packages(), debian.packages, { exclude: debian.exclude });
  await writeFileChecked(file, Buffer.from(JSON.stringify({ packages: r.packages, why: [...r.why] })));
  return { packages: r.packages, why: r.why };
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
  let why: Map<string, string[]> | undefined;
  const lock = opts.ignoreLock ? undefined : await readLock(dir);
  if (lock && !yml.debian && lock.packages.length > 0)
    throw new UserError(`${path.join(dir, LOCK_FILE)} lists packages but build.yml has no debian: section`);
  if (yml.debian) {
    archive = new DebianArchive({
      mirror: opts.debianMirror,
      suite: yml.debian.suite,
      components: yml.debian.components,
      cacheDir: opts.debianCacheDir,
      ...(opts.pull ? { maxAge: 0 } : {}),
    });
    if (lock) debs = lockedPackages(lock, yml, dir);
    else ({ packages: debs, why } = await resolveCached(archive, yml.debian, opts.debianCacheDir));
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
  return {
    dir,
    yml,
    ref: `docker.io/${org}/${yml.image}:${tag}`,
    tag,
    debs,
    files,
    archive,
    locked: lock !== undefined,
    ...(why ? { why } : {}),
  };
}

/**
 * Why `name` is in the package: the dependency chain from a wanted package, as the resolver
 * finds it for build.yml now (build.lock, if any, is compared and a difference said).
 */
export async function whyPackage(dir: string, name: string, opts: PkgOptions): Promise<string> {
  const plan = await planPackage(dir, { ...opts, ignoreLock: true });
  if (!plan.yml.debian) throw new UserError(`${path.join(plan.dir, 'build.yml')} has no debian: section`);
  const chain = plan.why?.get(name);
  const excluded = plan.yml.debian.exclude.includes(name);
  let out: string;
  if (chain) {
    const p = plan.debs.find((d) => d.name === name)!;
    out = `${name} ${p.version}: ${chain.length === 1 ? 'wanted in build.yml' : chain.join(' -> ')}`;
  } else if (excluded) out = `${name} is not installed: build.yml excludes it`;
  else out = `${name} is not installed: nothing in build.yml depends on it`;
  const lock = await readLock(plan.dir);
  if (lock) {
    const l = lock.packages.find((p) => p.name === name);
    const now = plan.debs.find((d) => d.name === name);
    if ((l?.version ?? '') !== (now?.version ?? ''))
      out += `\n(build.lock pins ${l ? `${name} ${l.version}` : `no ${name}`}; run \`linuxkit pkg lock\` to update it)`;
  }
  return out;
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
  const licences = new Map<string, string>();
  const tree = await packageTree(plan, licences, path.join(opts.store.dir, 'derived'));
  const yml = plan.yml;
  const labels: Record<string, string> = {};
  if (yml.config) labels['org.mobyproject.config'] = JSON.stringify(yml.config);
  if (plan.debs.length > 0) {
    const sbom = packageSbom(plan.ref.replace(/^docker\.io\//, ''), plan.debs, licences, {
      suite: yml.debian?.suite ?? 'bookworm',
      epoch: sourceDateEpoch() ?? 0,
    });
    labels[SBOM_LABEL] = encodeSbom(sbom);
  }
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
async function packageTree(
  plan: PkgPlan,
  licences: Map<string, string>,
  derivedDir: string,
): Promise<FsTree> {
  let tree = new FsTree();
  const archive = plan.archive;
  if (archive) {
    // Fetch in parallel (bounded), then unpack in name order so overlaps resolve the same way.
    const debs = await mapLimit(plan.debs, 4, async (d) => {
      try {
        return await archive.fetchDeb(d);
      } catch (e) {
        if (!plan.locked) throw e;
        throw new UserError(
          `package ${d.name} ${d.version} pinned by ${path.join(plan.dir, LOCK_FILE)} cannot be fetched from ` +
            `${archive.mirror} (${(e as Error).message}): the mirror no longer has that version. Run ` +
            `\`linuxkit pkg lock ${plan.dir}\` to move to the versions it has now, or use --debian-mirror ` +
            'with a mirror that keeps old versions (e.g. https://snapshot.debian.org/archive/debian/TIMESTAMP)',
        );
      }
    });
    const pruned = globMatcher([...DEFAULT_PRUNE, ...(plan.yml.debian?.prune ?? [])]);
    for (let i = 0; i < debs.length; i++) {
      const name = plan.debs[i]!.name;
      // Unpacked to a scratch file beside the cache: a kernel package's ~100 MB of modules stay
      // on disk, not in memory.
      const { data } = await readDeb(debs[i]!, name, path.join(derivedDir, 'unpack'));
      const copyright = data.get(`usr/share/doc/${name}/copyright`)?.data;
      if (copyright) licences.set(name, licenceFromCopyright(new TextDecoder().decode(dataBytes(copyright))));
      for (const e of data.entries()) if (!pruned(e.path)) tree.set(e);
    }
  }
  if (plan.yml.kernel) tree = kernelImageTree(tree, plan.yml.kernel.modules, plan.yml.kernel.extra);
  const epoch = sourceDateEpoch() ?? 0;
  if (plan.yml.users || plan.yml.groups)
    addUserFiles(tree, userFiles(plan.yml.users ?? [], plan.yml.groups ?? []), epoch);
  for (const f of plan.yml.files) {
    const base = { path: f.path, uid: f.uid ?? 0, gid: f.gid ?? 0, mtime: epoch };
    if (f.directory) tree.set({ ...base, kind: 'dir', mode: parseMode(f.mode, 0o755) });
    else if (f.symlink !== undefined) tree.set({ ...base, kind: 'symlink', mode: 0o777, target: f.symlink });
    else if (f.concat !== undefined) {
      const m = globMatcher([f.concat]);
      const parts = tree.entries().filter((e) => e.kind === 'file' && m(e.path));
      if (parts.length === 0)
        throw new UserError(`${f.path}: concat ${JSON.stringify(f.concat)} matches no file`);
      const chunks: Uint8Array[] = [];
      for (const e of parts) {
        const d = dataBytes(e.data);
        chunks.push(d);
        if (d.length > 0 && d[d.length - 1] !== 0x0a) chunks.push(new Uint8Array([0x0a]));
      }
      tree.set({ ...base, kind: 'file', mode: parseMode(f.mode, 0o644), data: Buffer.concat(chunks) });
    } else {
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
