/**
 * Assembling the whole system as one FsTree, in upstream LinuxKit's layout:
 *   /                                    init images (and the kernel's modules tar)
 *   /containers/onboot/NNN-NAME/          config.json, runtime.json, runtime.sh, rootfs/ (or lower/)
 *   /containers/onshutdown/NNN-NAME/      the same
 *   /containers/services/NAME/            the same
 *   the YAML's `files:`
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { applyLayer } from '../fs/layer.js';
import { FsTree, normalisePath, parentOf } from '../fs/tree.js';
import type { ContainerSpec, LoadedConfig } from '../spec/types.js';
import { UserError } from '../util/errors.js';
import { imageRootfs, RESOLVCONF_SYMLINK } from './image-rootfs.js';
import type { ImageResolver, ResolvedImage } from './images.js';
import { containerConfig, containerIdMap, imageRoot } from './oci-config.js';
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
  if (config.kernel) {
    const img = images.get(config.kernel.image)!;
    const t = await resolver.tree(img);
    const k = t.get('kernel');
    if (k?.kind !== 'file') throw new UserError(`kernel image ${img.spec} has no /kernel file`);
    kernel = k.data!;
    const modules = t.get('kernel.tar');
    if (modules?.kind === 'file') applyLayer(root, modules.data!);
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
    });
    if (plan.extractTo !== null) {
      root.graft(imageRootfs(await resolver.tree(img), { mtime }), `${dir}/${plan.extractTo}`, dirs);
      extracted.set(img.digest, imageRoot(dir, plan.readonly));
    }
    for (const d of plan.emptyDirs) root.ensureDir(`${dir}/${d}`, dirs);
    file(`${dir}/config.json`, utf8(plan.configJson));
    file(`${dir}/runtime.json`, utf8(plan.runtimeJson));
    file(`${dir}/runtime.sh`, utf8(runtimeScript(plan.runtime)));
  };
  const seq = (i: number) => `${String(i).padStart(3, '0')}-`;
  for (const [i, c] of config.onboot.entries()) await bundle('onboot', seq(i), c);
  for (const [i, c] of config.onshutdown.entries()) await bundle('onshutdown', seq(i), c);
  for (const c of config.services) await bundle('services', '', c);

  await addFiles(root, loaded, mtime);

  // The kernel opens /dev/console for init's stdio before anything mounts devtmpfs.
  if (!root.has('dev/console')) {
    root.set(
      { path: 'dev/console', kind: 'char', mode: 0o600, uid: 0, gid: 0, mtime, devmajor: 5, devminor: 1 },
      dirs,
    );
  }
  return { kernel, cmdline: config.kernel?.cmdline ?? '', root };
}

/** The YAML's `files:`, with upstream's defaults: files 0600, directories 0700. */
async function addFiles(root: FsTree, loaded: LoadedConfig, mtime: number): Promise<void> {
  for (const [i, f] of loaded.config.files.entries()) {
    const p = normalisePath(f.path, `files[${i}].path`);
    const mode = f.mode ?? (f.directory ? 0o700 : 0o600);
    // Parent directories we create get the mode's read bits plus search (x) bits, as upstream.
    let dirMode = mode;
    if (dirMode & 0o700) dirMode |= 0o100;
    if (dirMode & 0o070) dirMode |= 0o010;
    if (dirMode & 0o007) dirMode |= 0o001;
    root.ensureDir(parentOf(p), { mode: dirMode, mtime });
    const base = { path: p, uid: 0, gid: 0, mtime };
    if (f.directory) root.set({ ...base, kind: 'dir', mode });
    else if (f.symlink !== undefined) root.set({ ...base, kind: 'symlink', mode: 0o777, target: f.symlink });
    else {
      let data: Uint8Array;
      if (f.source !== undefined) {
        const src = f.source.startsWith('~/')
          ? path.join(os.homedir(), f.source.slice(2))
          : path.resolve(loaded.dir, f.source);
        try {
          data = await readFile(src);
        } catch (e) {
          const pos = loaded.posOf(['files', i, 'source']);
          throw new UserError(
            `${pos.file}:${pos.line}:${pos.col}: cannot read ${f.source}: ${(e as NodeJS.ErrnoException).code ?? e}`,
          );
        }
      } else data = utf8(f.contents ?? '');
      root.set({ ...base, kind: 'file', mode, data });
    }
  }
}
