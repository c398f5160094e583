/**
 * cpio, SVR4 "newc" format, as the Linux kernel's initramfs unpacker (init/initramfs.c) reads it
 * (see Documentation/driver-api/early-userspace/buffer-format.rst).
 *
 *   member = header, name, NUL, pad to 4, data, pad to 4   (padding counts from archive start)
 *   header (110 bytes of ASCII):
 *   off len field
 *     0   6 c_magic     "070701" ("070702" = with checksum, also read)
 *     6   8 c_ino       every number below: 8 hex digits, upper or lower case
 *    14   8 c_mode      full st_mode: file type bits | permission bits
 *    22   8 c_uid
 *    30   8 c_gid
 *    38   8 c_nlink
 *    46   8 c_mtime
 *    54   8 c_filesize  data bytes that follow (a symlink's data is its target, no NUL)
 *    62   8 c_maj       device the file lived on (we write 0)
 *    70   8 c_min
 *    78   8 c_rmaj      device numbers of a char/block special file
 *    86   8 c_rmin
 *    94   8 c_namesize  name length including the NUL
 *   102   8 c_chksum    0 for 070701
 *   the archive ends with a member named "TRAILER!!!" (nlink 1, everything else 0).
 *
 * Hard links: members with the same (c_maj, c_min, c_ino) and nlink >= 2 are one inode. The
 * kernel creates the first one and links the others to it, so (as GNU cpio writes them) all but
 * the last carry no data and the last one carries it; they share mode, owner and mtime.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { dataChunks, type FileData, gatherChunks } from '../fs/data.js';
import { FILE_TYPE_BITS, type FsEntry } from '../fs/tree.js';
import { UserError } from '../util/errors.js';

const MAGIC = '070701';
const TRAILER = 'TRAILER!!!';
const MAX32 = 0xffffffff;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function header(f: {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  rmaj: number;
  rmin: number;
  namesize: number;
}): string {
  return (
    MAGIC +
    hex8(f.ino) +
    hex8(f.mode) +
    hex8(f.uid) +
    hex8(f.gid) +
    hex8(f.nlink) +
    hex8(f.mtime) +
    hex8(f.size) +
    hex8(0) +
    hex8(0) +
    hex8(f.rmaj) +
    hex8(f.rmin) +
    hex8(f.namesize) +
    hex8(0)
  );
}

const ZERO4 = Buffer.alloc(4);
const EMPTY = ZERO4.subarray(0, 0);
function pad4(n: number): Buffer {
  return ZERO4.subarray(0, (4 - (n % 4)) % 4);
}

function check32(path: string, what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX32)
    throw new UserError(`cpio: ${path}: ${what} ${n} does not fit newc`);
  return n;
}

/**
 * Write a newc archive. Regular files with identical contents (sha256), mode and owner are
 * stored once, as hard links: same inode number, nlink = count, the data on the last of them.
 * Empty files are never linked (nothing to save, and linking would tie unrelated files).
 */
export function writeCpio(entries: Iterable<FsEntry>): Buffer {
  return Buffer.concat([...cpioChunks(entries)]);
}

/**
 * writeCpio's bytes as a sequence of pieces of about 1 MiB: file data is read (from disk, for
 * slices) as it is reached, so the archive is never whole in memory.
 */
export function cpioChunks(entries: Iterable<FsEntry>): Generator<Uint8Array> {
  return gatherChunks(cpioPieces(entries));
}

/** writeCpio's bytes as they come: headers, names and padding (small), and file data. */
function* cpioPieces(entries: Iterable<FsEntry>): Generator<Uint8Array> {
  const list = [...entries].filter((e) => e.path !== '');

  // Group candidate duplicates: by size first, hashing only sizes seen more than once.
  const bySize = new Map<number, number>();
  for (const e of list)
    if (e.kind === 'file' && e.data?.length) bySize.set(e.data.length, (bySize.get(e.data.length) ?? 0) + 1);
  const digestOf = new Map<FileData, string>();
  const keyOf = (e: FsEntry): string | undefined => {
    const d = e.data;
    if (e.kind !== 'file' || !d?.length || bySize.get(d.length)! < 2) return undefined;
    let h = digestOf.get(d);
    if (h === undefined) {
      const hash = createHash('sha256');
      for (const c of dataChunks(d)) hash.update(c);
      h = hash.digest('hex');
      digestOf.set(d, h);
    }
    // The linked members share one inode, so they must agree on everything the inode holds.
    return `${h} ${e.mode} ${e.uid} ${e.gid}`;
  };
  const keys = list.map(keyOf);
  const count = new Map<string, number>();
  const last = new Map<string, number>();
  keys.forEach((k, i) => {
    if (k === undefined) return;
    count.set(k, (count.get(k) ?? 0) + 1);
    last.set(k, i);
  });

  let pos = 0;
  /** `b`, counted: the padding after it depends on where the archive stands. */
  const at = (b: Uint8Array) => {
    pos += b.length;
    return b;
  };
  const inoOf = new Map<string, number>();
  let nextIno = 1;
  for (const [i, e] of list.entries()) {
    const k = keys[i];
    const linked = k !== undefined && count.get(k)! > 1;
    let ino: number;
    if (linked) {
      ino = inoOf.get(k) ?? nextIno++;
      inoOf.set(k, ino);
    } else ino = nextIno++;
    let data: FileData = EMPTY;
    if (e.kind === 'symlink') data = Buffer.from(e.target ?? '');
    else if (e.kind === 'file' && (!linked || last.get(k!) === i)) data = e.data ?? EMPTY;
    const name = Buffer.from(`${e.path}\0`);
    yield at(
      Buffer.from(
        header({
          ino,
          mode: FILE_TYPE_BITS[e.kind] | (e.mode & 0o7777),
          uid: check32(e.path, 'uid', e.uid),
          gid: check32(e.path, 'gid', e.gid),
          nlink: linked ? count.get(k!)! : e.kind === 'dir' ? 2 : 1,
          // newc has no room for times before 1970 or after 2106.
          mtime: Math.min(MAX32, Math.max(0, Math.floor(e.mtime))),
          size: check32(e.path, 'size', data.length),
          rmaj: e.kind === 'char' || e.kind === 'block' ? (e.devmajor ?? 0) : 0,
          rmin: e.kind === 'char' || e.kind === 'block' ? (e.devminor ?? 0) : 0,
          namesize: name.length,
        }),
        'latin1',
      ),
    );
    yield at(name);
    yield at(pad4(pos));
    if (data.length) {
      for (const c of dataChunks(data)) yield at(c);
      yield at(pad4(pos));
    }
  }
  const tname = Buffer.from(`${TRAILER}\0`);
  yield at(
    Buffer.from(
      header({
        ino: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rmaj: 0,
        rmin: 0,
        namesize: tname.length,
      }),
      'latin1',
    ),
  );
  yield at(tname);
  yield at(pad4(pos));
}

export interface CpioEntry {
  name: string;
  /** Full st_mode, file type bits included. */
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  nlink: number;
  ino: number;
  /** A subarray of the input. */
  data: Uint8Array;
  /** rdev of a char/block special file. */
  devmajor: number;
  devminor: number;
}

/** Read a newc archive up to its trailer (used by tests and for inspecting initrds). */
export function* readCpio(buf: Uint8Array): Generator<CpioEntry> {
  let off = 0;
  const field = (at: number, i: number): number => {
    const s = Buffer.from(buf.subarray(at + 6 + 8 * i, at + 14 + 8 * i)).toString('latin1');
    if (!/^[0-9a-fA-F]{8}$/.test(s)) throw new UserError(`cpio: bad header field at offset ${at}`);
    return Number.parseInt(s, 16);
  };
  for (;;) {
    if (off + 110 > buf.length)
      throw new UserError(`cpio: truncated archive (no ${TRAILER} before offset ${off})`);
    const magic = Buffer.from(buf.subarray(off, off + 6)).toString('latin1');
    if (magic !== '070701' && magic !== '070702')
      throw new UserError(`cpio: bad magic at offset ${off} (not a newc archive?)`);
    const at = off;
    const size = field(at, 6);
    const namesize = field(at, 11);
    const nameEnd = at + 110 + namesize;
    if (namesize < 1 || nameEnd > buf.length) throw new UserError(`cpio: truncated name at offset ${at}`);
    const name = Buffer.from(buf.subarray(at + 110, nameEnd - 1)).toString('utf8');
    const dataStart = nameEnd + ((4 - (nameEnd % 4)) % 4);
    const dataEnd = dataStart + size;
    if (dataEnd > buf.length) throw new UserError(`cpio: truncated data of ${JSON.stringify(name)}`);
    off = dataEnd + ((4 - (dataEnd % 4)) % 4);
    if (name === TRAILER) return;
    yield {
      name,
      ino: field(at, 0),
      mode: field(at, 1),
      uid: field(at, 2),
      gid: field(at, 3),
      nlink: field(at, 4),
      mtime: field(at, 5),
      data: buf.subarray(dataStart, dataEnd),
      devmajor: field(at, 9),
      devminor: field(at, 10),
    };
  }
}
