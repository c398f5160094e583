/**
 * Turn an unpacked Debian kernel package into a LinuxKit kernel image:
 *   /kernel      the bzImage (boot/vmlinuz-VERSION)
 *   /kernel.tar  lib/modules/VERSION/ with only the wanted modules and their dependencies, a
 *                modules.dep and modules.alias for them (Debian runs depmod in postinst; we
 *                never run scripts), modules.builtin, and etc/modules-load.d/linuxkit.conf
 *                naming the wanted modules for init to load. `extra` modules ship too but are
 *                not loaded at boot: a container may `modprobe NAME`, and the kernel asks for
 *                one by alias when a feature is first used (`fs-vfat`, `rtnl-link-bridge`).
 * Shipping all 1,100 modules would put ~91 MB into every image; the virtio set is ~1 MB.
 */

import { dataBytes } from '../fs/data.js';
import { treeToTar } from '../fs/layer.js';
import { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';
import { indexModules, moduleClosure, moduleKey, modulesAlias, modulesDep } from './kmod.js';

export function kernelImageTree(pkg: FsTree, wanted: string[], extra: string[] = []): FsTree {
  const kernels = pkg.entries().filter((e) => e.kind === 'file' && /^boot\/vmlinuz-/.test(e.path));
  if (kernels.length !== 1) {
    throw new UserError(
      `a kernel package needs exactly one boot/vmlinuz-*, found ${kernels.length ? kernels.map((k) => k.path).join(', ') : 'none'}`,
    );
  }
  const kernel = kernels[0]!;
  const version = kernel.path.slice('boot/vmlinuz-'.length);
  const modRoot = `lib/modules/${version}`;
  const koFiles = pkg
    .entries()
    .filter((e) => e.kind === 'file' && e.path.startsWith(`${modRoot}/`) && e.path.endsWith('.ko'))
    .map((e) => ({ path: e.path.slice(modRoot.length + 1), data: e.data }));
  const index = indexModules(koFiles);
  const builtinEntry = pkg.get(`${modRoot}/modules.builtin`);
  const builtinText = builtinEntry?.data ? dataBytes(builtinEntry.data) : undefined;
  const builtin = new Set(
    builtinText
      ? new TextDecoder()
          .decode(builtinText)
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => moduleKey(l.slice(l.lastIndexOf('/') + 1).replace(/\.ko$/, '')))
      : [],
  );
  const mods = moduleClosure(index, [...wanted, ...extra], builtin);

  const mtime = kernel.mtime;
  const dirs = { mtime };
  const modTree = new FsTree();
  for (const m of mods) {
    const e = pkg.get(`${modRoot}/${m.path}`)!;
    modTree.set({ ...e, path: `${modRoot}/${m.path}` }, dirs);
  }
  const text = (path: string, s: string) =>
    modTree.set(
      { path, kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime, data: new TextEncoder().encode(s) },
      dirs,
    );
  text(`${modRoot}/modules.dep`, modulesDep(index, mods));
  text(`${modRoot}/modules.alias`, modulesAlias(mods));
  if (builtinText) text(`${modRoot}/modules.builtin`, new TextDecoder().decode(builtinText));
  const load = wanted.filter((w) => !builtin.has(moduleKey(w)));
  text('etc/modules-load.d/linuxkit.conf', load.length ? `${load.join('\n')}\n` : '');

  const out = new FsTree();
  out.set({ ...kernel, path: 'kernel', mode: 0o644 });
  out.set({ path: 'kernel.tar', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime, data: treeToTar(modTree) });
  return out;
}
