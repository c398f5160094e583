/**
 * .deb packages (deb(5)): an ar archive whose members are, in this order,
 *
 *   debian-binary        "2.0\n" (the format version; any 2.x is accepted)
 *   control.tar[.gz|.xz|.zst]   ./control (the package's stanza), maintainer scripts, md5sums
 *   data.tar[.gz|.xz|.zst|.bz2] the files, relative to / ("./usr/sbin/runc")
 *   _*                   optional extra members, ignored (dpkg ignores them too)
 *
 * We read the control stanza and turn the data tar into an FsTree. Maintainer scripts are
 * never run; the caller writes what they would have done.
 */

import { readAr } from '../formats/ar.js';
import { decompress, decompressStream } from '../formats/compress.js';
import { dataBytes, type FileData } from '../fs/data.js';
import { treeFromTar } from '../fs/layer.js';
import type { FsTree } from '../fs/tree.js';
import { scratchFile } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { parseDeb822, type Stanza } from './deb822.js';

export interface DebContents {
  control: Stanza;
  data: FsTree;
}

/**
 * Read a .deb from memory. `name` labels error messages (e.g. the package file name). With
 * `scratchDir`, the data tar is unpacked (streamed) to a scratch file there and the tree's file
 * data are slices of it: a big package is not held in memory.
 */
export async function readDeb(deb: Uint8Array, name = '.deb', scratchDir?: string): Promise<DebContents> {
  const wrap = (e: unknown): never => {
    if (e instanceof UserError) throw new UserError(`${name}: ${e.message}`);
    throw e;
  };
  let members: { name: string; data: Uint8Array }[];
  try {
    members = readAr(deb);
  } catch (e) {
    return wrap(e);
  }
  const main = members.filter((m) => !m.name.startsWith('_'));
  const [bin, ctl, dat] = main;
  if (bin?.name !== 'debian-binary')
    throw new UserError(`${name}: not a .deb (first member is not debian-binary)`);
  const ver = new TextDecoder().decode(bin.data).trim();
  if (!/^2\.\d+$/.test(ver))
    throw new UserError(`${name}: unsupported .deb format version ${JSON.stringify(ver)}`);
  if (!ctl || !/^control\.tar(\.(gz|xz|zst))?$/.test(ctl.name))
    throw new UserError(`${name}: second member is not control.tar`);
  if (!dat || !/^data\.tar(\.(gz|xz|zst|bz2|lzma))?$/.test(dat.name))
    throw new UserError(`${name}: third member is not data.tar`);
  if (main.length > 3) throw new UserError(`${name}: unexpected member ${main[3]?.name}`);
  try {
    // The control tar first (it is tiny): a bad .deb is refused before its data are unpacked.
    const ctlTree = treeFromTar(await decompress(ctl.data));
    const ctlFile = ctlTree.get('control');
    if (ctlFile?.kind !== 'file' || !ctlFile.data) throw new UserError(`${ctl.name} has no control file`);
    const stanzas = parseDeb822(new TextDecoder().decode(dataBytes(ctlFile.data)), 'control');
    if (stanzas.length !== 1) throw new UserError(`control file has ${stanzas.length} stanzas, expected 1`);
    return { control: stanzas[0] as Stanza, data: treeFromTar(await unpackData(dat.data, scratchDir)) };
  } catch (e) {
    return wrap(e);
  }
}

/** The data tar, unpacked into a scratch file in `dir` (see scratchFile) when there is one. */
async function unpackData(data: Uint8Array, dir: string | undefined): Promise<FileData> {
  return dir === undefined ? decompress(data) : scratchFile(dir, decompressStream(data));
}
