/**
 * `linuxkit build`: YAML -> resolved images -> one system tree -> output files.
 * A pure function of its inputs: the same YAML and images give the same bytes.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeOutputs } from '../formats/outputs.js';
import { ImageStore } from '../oci/layout.js';
import { loadConfigFile } from '../spec/load.js';
import type { ConfigPath, LoadedConfig } from '../spec/types.js';
import { type Problem, SourceError, UserError } from '../util/errors.js';
import { sourceDateEpoch } from '../util/reproducible.js';
import { assemble } from './assemble.js';
import { ImageResolver, type ResolvedImage } from './images.js';

export interface BuildOptions {
  /** The YAML file. */
  file: string;
  formats: string[];
  /** Output directory (default: the current directory). */
  dir?: string;
  /** Output name prefix (default: the YAML file's base name). */
  name?: string;
  cacheDir: string;
  debianMirror?: string;
  log?: (line: string) => void;
}

export interface BuildResult {
  outputs: string[];
}

/** Every image reference in the config, with where it stands in the YAML. */
export function imageRefs(loaded: LoadedConfig): { spec: string; at: ConfigPath }[] {
  const c = loaded.config;
  const refs: { spec: string; at: ConfigPath }[] = [];
  if (c.kernel) refs.push({ spec: c.kernel.image, at: ['kernel', 'image'] });
  for (const [i, spec] of c.init.entries()) refs.push({ spec, at: ['init', i] });
  for (const section of ['onboot', 'onshutdown', 'services'] as const) {
    for (const [i, ct] of c[section].entries()) refs.push({ spec: ct.image, at: [section, i, 'image'] });
  }
  return refs;
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const loaded = await loadConfigFile(opts.file);
  const name = opts.name ?? path.basename(opts.file).replace(/\.ya?ml$/, '');
  const outDir = path.resolve(opts.dir ?? '.');
  const store = new ImageStore(opts.cacheDir);
  await store.init();
  const resolver = new ImageResolver(
    store,
    {
      store,
      debianCacheDir: path.join(opts.cacheDir, 'debian'),
      debianMirror: opts.debianMirror,
      log: opts.log,
    },
    loaded.dir,
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

  const epoch = sourceDateEpoch() ?? 0;
  const system = await assemble(loaded, images, resolver, epoch);
  if (sourceDateEpoch() !== undefined) system.root.clampMtimes(epoch);
  await mkdir(outDir, { recursive: true });
  const outputs = await writeOutputs(system, opts.formats, path.join(outDir, name));
  return { outputs };
}
