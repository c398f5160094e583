/**
 * The metadata ISO that `run qemu -data` attaches and `linuxkit metadata create` writes: an
 * ISO9660 image, volume id `config`, holding one file `config` with the user data as given.
 * The guest's metadata package reads that file into /run/config/userdata (and, when it is
 * JSON of upstream's entries shape, into files under /run/config).
 */

import { writeIso9660 } from '../formats/iso9660.js';
import { FsTree } from '../fs/tree.js';

export function metadataIso(data: Uint8Array): Uint8Array {
  const tree = new FsTree();
  tree.set({ path: 'config', kind: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, data });
  return writeIso9660(tree, { volumeId: 'config' });
}
