/**
 * `linuxkit build`: YAML -> resolved images -> one system tree -> output files.
 * A pure function of its inputs: the same YAML and images give the same bytes.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { inReleaseExpiry } from '../debian/archive.js';
import type { InitrdCompression } from '../formats/compress.js';
import { loadBootloaders, outputFiles, writeOutputs } from '../formats/outputs.js';
import { withDataFiles } from '../fs/data.js';
import { ImageStore } from '../oci/layout.js';
import { SBOM_LABEL } from '../pkg/build.js';
import { encodeSbom, mergeSboms, type SpdxDocument } from '../pkg/sbom.js';
import { loadConfigFiles } from '../spec/load.js';
import { defaultOutputName } from '../spec/naming.js';
import type { ConfigPath, LoadedConfig } from '../spec/types.js';
import { type Problem, SourceError, UserError } from '../util/errors.js';
import { sourceDateEpoch } from '../util/reproducible.js';
import { assemble, fileSourcePath } from './assemble.js';
import { ImageResolver, PKG_PREFIX, type ResolvedImage } from './images.js';
import { stampKey, writeStamp } from './stamp.js';

export interface BuildOptions {
  /** The YAML file, or several merged in order (`-` is stdin, http(s) URLs are fetched). */
  file: string | string[];
  formats: string[];
  /** Disk size in bytes for disk formats (`-size`; default 1024 MiB). */
  size?: number;
  /** How the initrd is compressed (`-compress`; default gzip). */
  compress?: InitrdCompression;
  /** Write NAME-sbom.spdx.json beside the outputs (default true; `--no-sbom`). */
  sbom?: boolean;
  /** Output directory (default: the current directory). */
  dir?: string;
  /** Output name prefix (default: the YAML file's base name). */
  name?: string;
  cacheDir: string;
  debianMirror?: string;
  /** Re-resolve image tags from their registries even when cached (`--pull`). */
  pull?: boolean;
  log?: (line: string) => void;
}

export interface BuildResult {
  outputs: string[];
}

/** Every image reference in the config, with where it stands in the YAML. */
export function imageRefs(loaded: LoadedConfig): { spec: string; at: ConfigPath }[] {
  const c = loaded.config;
  const refs: { spec: string; at: ConfigPath }[] = [];
  if (c.kernel?.image) refs.push({ spec: c.kernel.image, at: ['kernel', 'image'] });
  for (const [i, spec] of c.init.entries()) refs.push({ spec, at: ['init', i] });
  for (const section of ['onboot', 'onshutdown', 'services'] as const) {
    for (const [i, ct] of c[section].entries()) refs.push({ spec: ct.image, at: [section, i, 'image'] });
  }
  for (const [i, v] of c.volumes.entries())
    if (v.image) refs.push({ spec: v.image, at: ['volumes', i, 'image'] });
  return refs;
}

/**
 * One SPDX document for the whole system: the package SBOMs our package images carry in their
 * config label, merged (images without one add nothing), in YAML order.
 */
export function systemSbom(name: string, images: Map<string, ResolvedImage>, epoch: number): Uint8Array {
  const seen = new Set<string>();
  const docs: SpdxDocument[] = [];
  for (const img of images.values()) {
    if (seen.has(img.digest)) continue;
    seen.add(img.digest);
    const label = (img.config.Labels as Record<string, string> | undefined)?.[SBOM_LABEL];
    if (label) docs.push(JSON.parse(label) as SpdxDocument);
  }
  return new TextEncoder().encode(encodeSbom(mergeSboms(name, docs, epoch)));
}

/** The files images and `files:` sources are read from stay open until the outputs are written. */
export function build(opts: BuildOptions): Promise<BuildResult> {
  return withDataFiles(() => buildIn(opts));
}

async function buildIn(opts: BuildOptions): Promise<BuildResult> {
  const files = typeof opts.file === 'string' ? [opts.file] : opts.file;
  const name = opts.name ?? defaultOutputName(files);
  const outDir = path.resolve(opts.dir ?? '.');
  outputFiles(opts.formats, path.join(outDir, name)); // unknown formats, clashes: before any work
  const loaded = await loadConfigFiles(files);
  const store = new ImageStore(opts.cacheDir);
  await store.init();
  const resolver = new ImageResolver(
    store,
    {
      store,
      debianCacheDir: path.join(opts.cacheDir, 'debian'),
      debianMirror: opts.debianMirror,
      ...(opts.pull ? { pull: true } : {}),
      log: opts.log,
    },
    loaded.dir,
    { pull: opts.pull },
  );

  // Resolve every image at once (packages build in parallel); report every failure, each at
  // its place in the YAML, before writing anything.
  const refs = imageRefs(loaded);
  const results = await Promise.allSettled(refs.map((r) => resolver.resolve(r.spec)));
  const problems: Problem[] = [];
  const images = new Map<string, ResolvedImage>();
  results.forEach((res, i) => {
    const r = refs[i]!;
    if (res.status === 'fulfilled') images.set(r.spec, res.value);
    else if (res.reason instanceof UserError) {
      const at = loaded.posOf(r.at);
      if (!problems.some((p) => p.line === at.line && p.col === at.col))
        problems.push({ ...at, message: res.reason.message });
    } else throw res.reason;
  });
  if (problems.length) throw new SourceError(problems);

  // Unpack every image's layers at once (on the thread pool) while assembly takes them in order.
  for (const img of images.values()) resolver.tree(img).catch(() => {});
  const epoch = sourceDateEpoch() ?? 0;
  const system = await assemble(loaded, images, resolver, epoch);
  if (sourceDateEpoch() !== undefined) system.root.clampMtimes(epoch);
  await mkdir(outDir, { recursive: true });
  // Boot loaders come from this repository's package images, resolved like any @pkg: image.
  const boot = await loadBootloaders(opts.formats, async (dir) =>
    resolver.tree(await resolver.resolve(`${PKG_PREFIX}${dir}`)),
  );
  const extra =
    opts.sbom === false ? [] : [{ suffix: '-sbom.spdx.json', data: systemSbom(name, images, epoch) }];
  const outputs = await writeOutputs(system, opts.formats, path.join(outDir, name), {
    boot,
    size: opts.size,
    ...(opts.compress ? { compress: opts.compress } : {}),
    pieceCache: path.join(opts.cacheDir, 'derived', 'deflate'),
    extra,
  });
  const key = stampKey(opts);
  if (key) {
    const inputs = [...key.files, ...resolver.packageDirs, ...resolver.importPaths];
    for (const f of loaded.config.files)
      if (f.source !== undefined) inputs.push(fileSourcePath(loaded, f.source));
    let expires: number | undefined;
    if (resolver.packageDirs.size) {
      // Package tags depend on the Debian InRelease, which a build re-reads once it is stale.
      const debian = path.join(opts.cacheDir, 'debian');
      inputs.push(path.join(debian, 'inrelease'));
      expires = await inReleaseExpiry(debian);
    }
    // Tags from the cache (a pull or build may move them); @pkg: tags follow from their inputs.
    const refs: [string, string][] = [];
    for (const ref of resolver.tags) {
      const desc = await store.resolve(ref);
      if (desc) refs.push([ref, desc.digest]);
    }
    await writeStamp(key, inputs, outputs, expires, refs);
  }
  return { outputs };
}
