/**
 * Applying OCI image layers (uncompressed tars) to an FsTree, per the OCI image spec's
 * "Applying Changesets": whiteouts `DIR/.wh.NAME` remove NAME (and all below it) from the lower
 * layers, `DIR/.wh..wh..opq` removes everything the lower layers put in DIR; neither touches
 * entries of the same layer. A directory over a directory merges (the new attributes win),
 * anything else replaces what was there. Hard links become a second 'file' entry sharing the
 * target's `data` object.
 *
 * Confinement: every path is normalised (a leading '/' and '.' components dropped, '..'
 * rejected) and no entry may be written below a path that is not a directory (a symlink parent
 * is how a crafted layer would write outside its root), so nothing ever leaves the tree.
 */
import type { Buffer } from 'node:buffer';
import { readTar, writeTar } from '../formats/tar.js';
import { UserError } from '../util/errors.js';
import type { FileData } from './data.js';
import { type FsEntry, FsTree, normalisePath, parentOf } from './tree.js';

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** Reject a path whose ancestors include a non-directory (e.g. a symlink). */
function checkParents(tree: FsTree, path: string, raw: string): void {
  for (let p = parentOf(path); p !== ''; p = parentOf(p)) {
    const e = tree.get(p);
    if (e && e.kind !== 'dir') {
      throw new UserError(
        `layer entry ${JSON.stringify(raw)}: its parent ${JSON.stringify(p)} is a ${e.kind}, not a directory`,
      );
    }
  }
}

/**
 * Apply one already decompressed layer tar to `tree`. From a slice of a file on disk, entries'
 * data stay slices of that file: the layer's contents are not read into memory.
 */
export function applyLayer(tree: FsTree, tar: FileData): void {
  // Pass 1: the whiteouts, which only ever apply to lower layers, so they go first whatever
  // their place in the tar (a layer may list `d/x` before `d/.wh..wh..opq`).
  for (const t of readTar(tar)) {
    const path = normalisePath(t.name, 'layer entry');
    const base = baseName(path);
    if (!base.startsWith(WH)) continue;
    const dir = parentOf(path);
    if (base === OPAQUE) {
      if (tree.get(dir)?.kind === 'dir') tree.clearDir(dir);
    } else if (base.startsWith(`${WH}${WH}`)) {
      // other `.wh..wh.` names are AUFS metadata (e.g. .wh..wh.plnk): nothing to apply
    } else {
      const victim = dir === '' ? base.slice(WH.length) : `${dir}/${base.slice(WH.length)}`;
      // A whiteout below a non-directory names nothing that exists: it must not delete
      // whatever such a parent (a symlink) points to.
      if (tree.has(victim)) tree.delete(victim);
    }
  }
  // Pass 2: the entries.
  for (const t of readTar(tar)) {
    const path = normalisePath(t.name, 'layer entry');
    if (path === '') continue; // the root itself ("./"): it is implicit
    if (baseName(path).startsWith(WH)) continue;
    checkParents(tree, path, t.name);
    const common = { path, mode: t.mode, uid: t.uid, gid: t.gid, mtime: t.mtime };
    const xattrs = t.xattrs ? { xattrs: t.xattrs } : {};
    let entry: FsEntry;
    switch (t.kind) {
      case 'hardlink': {
        const target = normalisePath(
          t.linkname ?? '',
          `hard link target of layer entry ${JSON.stringify(t.name)}`,
        );
        const te = tree.get(target);
        if (te?.kind !== 'file') {
          throw new UserError(
            `layer entry ${JSON.stringify(t.name)}: hard link target ${JSON.stringify(t.linkname)} ${te ? `is a ${te.kind}, not a file` : 'does not exist'}`,
          );
        }
        if (target === path) continue;
        // A hard link is the same inode: same data object, and the target's attributes.
        entry = { ...te, path };
        break;
      }
      case 'file':
        entry = { ...common, kind: 'file', data: t.data, ...xattrs };
        break;
      case 'symlink':
        entry = { ...common, kind: 'symlink', target: t.linkname ?? '', ...xattrs };
        break;
      case 'char':
      case 'block':
        entry = { ...common, kind: t.kind, devmajor: t.devmajor ?? 0, devminor: t.devminor ?? 0, ...xattrs };
        break;
      case 'dir':
      case 'fifo':
        entry = { ...common, kind: t.kind, ...xattrs };
        break;
    }
    // FsTree.set merges a dir over a dir (children stay) and replaces anything else.
    tree.set(entry);
  }
}

/** A fresh tree holding one layer. */
export function treeFromTar(tar: FileData): FsTree {
  const tree = new FsTree();
  applyLayer(tree, tar);
  return tree;
}

/** The tree as a deterministic tar (hard links for entries sharing a data object). */
export function treeToTar(tree: FsTree): Buffer {
  return writeTar(tree.entries());
}
