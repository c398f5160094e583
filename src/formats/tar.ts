/**
 * tar: a reader for ustar / GNU / pax archives and a deterministic ustar(+pax) writer.
 *
 * An archive is a sequence of 512-byte blocks: for each member a header block, then its data
 * padded with zeros to a multiple of 512; the archive ends with two all-zero blocks.
 *
 *   header block (POSIX.1-1988 ustar; numbers are octal ASCII, NUL or space terminated)
 *   off  len  field
 *     0  100  name        NUL-terminated unless exactly 100 bytes
 *   100    8  mode        (GNU may put the S_IFMT bits here too: we keep 0o7777)
 *   108    8  uid
 *   116    8  gid
 *   124   12  size        bytes of data that follow
 *   136   12  mtime       seconds since the epoch
 *   148    8  chksum      sum of the 512 header bytes with this field read as 8 spaces;
 *                         written as 6 octal digits, NUL, space
 *   156    1  typeflag    '0'/'\0' file, '1' hard link, '2' symlink, '3' char, '4' block,
 *                         '5' dir, '6' fifo, '7' contiguous (= file);
 *                         'x' pax extended header for the next member, 'g' pax global header,
 *                         'L' / 'K' GNU long name / long link name for the next member
 *   157  100  linkname
 *   257    6  magic       "ustar\0" (POSIX) or "ustar " + version " \0" (GNU)
 *   263    2  version     "00"
 *   265   32  uname, 297 32 gname   (we write them empty: no host names in output)
 *   329    8  devmajor, 337 8 devminor
 *   345  155  prefix      POSIX only: full name = prefix + '/' + name. In GNU headers this area
 *                         holds atime/ctime instead, so it is ignored there.
 *   500   12  (padding)
 *
 * Numbers too large for octal use GNU base-256: first byte 0x80 (or 0xff for a negative
 * number), the rest big-endian two's complement.
 *
 * pax extended headers ('x', 'g') carry records `LEN KEY=VALUE\n`, LEN being the decimal
 * length of the whole record including itself. Values are bytes (binary xattrs!), keys UTF-8.
 * Keys used: path, linkpath, size, uid, gid, mtime, SCHILY.xattr.NAME (raw value). Global 'g'
 * records are validated but not applied, as GNU tar, bsdtar and Go's archive/tar do.
 */
import { Buffer } from 'node:buffer';
import { CHUNK, dataChunks, type FileData, FileSlice } from '../fs/data.js';
import type { FsEntry } from '../fs/tree.js';
import { UserError } from '../util/errors.js';

export interface TarEntry<D extends FileData = Uint8Array> {
  /** Raw path as stored, after pax/GNU long-name handling. */
  name: string;
  kind: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  /** Permission bits (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Uint8Array>;
  /** A subarray (or sub-slice) of the input, not a copy. */
  data: D;
}

const BLOCK = 512;
const utf8 = new TextDecoder('utf-8');

function cstr(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return utf8.decode(nul < 0 ? b : b.subarray(0, nul));
}

function parseNumber(b: Uint8Array, field: string, at: number): number {
  if (b[0]! & 0x80) {
    // GNU base-256: two's complement, the top bit of the first byte being the marker.
    let v = BigInt(b[0]! & 0x7f);
    for (let i = 1; i < b.length; i++) v = (v << 8n) | BigInt(b[i]!);
    if (b[0] === 0xff) v -= 1n << BigInt(8 * b.length - 1);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new UserError(`tar: ${field} of header at ${at} is out of range`);
    return n;
  }
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0)) i++;
  let n = 0;
  for (; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new UserError(`tar: bad ${field} field in header at offset ${at}`);
    n = n * 8 + (c - 0x30);
  }
  return n;
}

function checksumOk(h: Uint8Array, at: number): boolean {
  const stored = parseNumber(h.subarray(148, 156), 'checksum', at);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c; // some historic writers summed signed chars
  }
  return stored === unsigned || stored === signed;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Parse pax records; values stay bytes because xattr values are binary. */
function parsePax(data: Uint8Array, at: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let p = 0;
  while (p < data.length) {
    if (data[p] === 0) break; // some writers pad the record area with NULs
    let len = 0;
    let q = p;
    while (q < data.length && data[q]! >= 0x30 && data[q]! <= 0x39) len = len * 10 + (data[q++]! - 0x30);
    if (
      q === p ||
      data[q] !== 0x20 ||
      len <= q - p + 1 ||
      p + len > data.length ||
      data[p + len - 1] !== 0x0a
    ) {
      throw new UserError(`tar: malformed pax record in header at offset ${at}`);
    }
    const rec = data.subarray(q + 1, p + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new UserError(`tar: malformed pax record in header at offset ${at}`);
    const key = utf8.decode(rec.subarray(0, eq));
    const value = rec.subarray(eq + 1);
    // An empty value unsets a keyword, except for xattrs where it is an empty attribute.
    if (value.length === 0 && !/^(SCHILY|LIBARCHIVE)\.xattr\./.test(key)) out.delete(key);
    else out.set(key, value);
    p += len;
  }
  return out;
}

function paxInt(v: Uint8Array, key: string, at: number, allowFraction = false): number {
  const s = utf8.decode(v);
  const m = (allowFraction ? /^(-?\d+)(\.\d*)?$/ : /^(-?\d+)$/).exec(s);
  if (!m) throw new UserError(`tar: bad pax ${key} ${JSON.stringify(s)} in header at offset ${at}`);
  let n = Number(m[1]);
  if (m[2] && n < 0 && /[1-9]/.test(m[2])) n -= 1; // floor of a negative fraction
  if (!Number.isSafeInteger(n)) throw new UserError(`tar: pax ${key} out of range in header at offset ${at}`);
  return n;
}

const KINDS: Record<string, TarEntry['kind']> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
  D: 'dir', // GNU dumpdir: a directory whose data lists its contents (skipped)
};

const NO_PAX = new Map<string, Uint8Array>();

/** Where readTar reads from: bytes in memory, or a slice of a file read window by window. */
interface TarSource<D extends FileData> {
  size: number;
  /** `len` bytes at `off`, valid until the next call. */
  bytes(off: number, len: number): Uint8Array;
  /** The member data at `off` as the caller's form: a subarray, or a sub-slice of the file. */
  data(off: number, len: number): D;
}

function memorySource(buf: Uint8Array): TarSource<Uint8Array> {
  const sub = (off: number, len: number) => buf.subarray(off, off + len);
  return { size: buf.length, bytes: sub, data: sub };
}

/** Headers are read a window at a time; the data of members in between is never read. */
function fileSource(slice: FileSlice): TarSource<FileSlice> {
  let start = 0;
  let window: Uint8Array = new Uint8Array(0);
  return {
    size: slice.length,
    bytes(off, len) {
      if (off < start || off + len > start + window.length) {
        start = off;
        window = slice.file.read(slice.offset + off, Math.min(Math.max(len, CHUNK), slice.length - off));
      }
      return window.subarray(off - start, off - start + len);
    },
    data: (off, len) => slice.slice(off, off + len),
  };
}

/**
 * Read every member of a tar archive. Entries' data are subarrays of `buf`, or, for a slice of
 * a file, slices of that file (the archive's data is not read).
 */
export function readTar(buf: Uint8Array): Generator<TarEntry>;
export function readTar(buf: FileSlice): Generator<TarEntry<FileSlice>>;
export function readTar(buf: FileData): Generator<TarEntry<FileData>>;
export function* readTar(input: FileData): Generator<TarEntry<FileData>> {
  const src: TarSource<FileData> = input instanceof FileSlice ? fileSource(input) : memorySource(input);
  let off = 0;
  let local: Map<string, Uint8Array> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  while (off < src.size) {
    if (src.size - off < BLOCK) {
      if (isZero(src.bytes(off, src.size - off))) return;
      throw new UserError(`tar: truncated header at offset ${off}`);
    }
    // A copy: the header outlives the window once the member's meta data is read.
    const h = new Uint8Array(src.bytes(off, BLOCK));
    if (isZero(h)) return; // end-of-archive marker (the second zero block need not be read)
    if (!checksumOk(h, off))
      throw new UserError(`tar: bad header checksum at offset ${off} (not a tar archive?)`);
    const at = off;
    const type = String.fromCharCode(h[156]!);
    const pax = local ?? NO_PAX;
    const sizeField = parseNumber(h.subarray(124, 136), 'size', at);
    // pax 'size' overrides the header; it does not apply to the meta headers themselves.
    const isMeta = type === 'x' || type === 'g' || type === 'L' || type === 'K';
    const paxSize = isMeta ? undefined : pax.get('size');
    const size = paxSize ? paxInt(paxSize, 'size', at) : sizeField;
    const dataStart = off + BLOCK;
    const dataEnd = dataStart + size;
    if (size < 0 || dataEnd > src.size) throw new UserError(`tar: truncated data of member at offset ${at}`);
    // Meta members' records are read (and copied: pax values outlive the window).
    const meta = isMeta ? new Uint8Array(src.bytes(dataStart, size)) : undefined;
    off = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    if (type === 'x') {
      local = parsePax(meta!, at);
      continue;
    }
    if (type === 'g') {
      // Checked but not applied: GNU tar, bsdtar and Go's archive/tar (so containerd) all
      // ignore global records when listing or extracting, and we must see what they see.
      parsePax(meta!, at);
      continue;
    }
    if (type === 'L') {
      longName = cstr(meta!);
      continue;
    }
    if (type === 'K') {
      longLink = cstr(meta!);
      continue;
    }
    if (type === 'V') continue; // GNU volume label: not a member
    let name: string;
    const paxPath = pax.get('path');
    if (paxPath) name = utf8.decode(paxPath);
    else if (longName !== undefined) name = longName;
    else {
      name = cstr(h.subarray(0, 100));
      // Only POSIX "ustar\0" has a prefix; GNU's "ustar " keeps atime/ctime in that area.
      if (String.fromCharCode(...h.subarray(257, 263)) === 'ustar\0') {
        const prefix = cstr(h.subarray(345, 500));
        if (prefix) name = `${prefix}/${name}`;
      }
    }
    let kind = KINDS[type];
    if (!kind) {
      if (type === 'S')
        throw new UserError(`tar: member ${JSON.stringify(name)} is a GNU sparse file (not supported)`);
      if (type === 'M')
        throw new UserError(`tar: member ${JSON.stringify(name)} is a multi-volume continuation`);
      kind = 'file'; // POSIX: unknown types are read as regular files
    }
    if (kind === 'file' && (type === '0' || type === '\0') && name.endsWith('/')) kind = 'dir'; // pre-POSIX dirs
    const entry: TarEntry<FileData> = {
      name,
      kind,
      mode: parseNumber(h.subarray(100, 108), 'mode', at) & 0o7777,
      uid: pax.has('uid') ? paxInt(pax.get('uid')!, 'uid', at) : parseNumber(h.subarray(108, 116), 'uid', at),
      gid: pax.has('gid') ? paxInt(pax.get('gid')!, 'gid', at) : parseNumber(h.subarray(116, 124), 'gid', at),
      mtime: pax.has('mtime')
        ? paxInt(pax.get('mtime')!, 'mtime', at, true)
        : parseNumber(h.subarray(136, 148), 'mtime', at),
      size: kind === 'file' ? size : 0,
      data: src.data(dataStart, kind === 'file' ? size : 0),
    };
    if (kind === 'symlink' || kind === 'hardlink') {
      const paxLink = pax.get('linkpath');
      entry.linkname = paxLink ? utf8.decode(paxLink) : (longLink ?? cstr(h.subarray(157, 257)));
    }
    if (kind === 'char' || kind === 'block') {
      entry.devmajor = parseNumber(h.subarray(329, 337), 'devmajor', at);
      entry.devminor = parseNumber(h.subarray(337, 345), 'devminor', at);
    }
    const xattrs: Record<string, Uint8Array> = {};
    for (const [k, v] of pax) {
      if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice(13)] = v;
    }
    // libarchive also writes LIBARCHIVE.xattr.NAME=base64 (name URL-encoded); use it only when
    // no SCHILY record says the same.
    for (const [k, v] of pax) {
      if (!k.startsWith('LIBARCHIVE.xattr.')) continue;
      let n: string;
      try {
        n = decodeURIComponent(k.slice(17));
      } catch {
        throw new UserError(`tar: bad pax key ${JSON.stringify(k)} in header at offset ${at}`);
      }
      if (!(n in xattrs)) xattrs[n] = new Uint8Array(Buffer.from(utf8.decode(v), 'base64'));
    }
    if (Object.keys(xattrs).length) entry.xattrs = xattrs;
    local = undefined;
    longName = undefined;
    longLink = undefined;
    yield entry;
  }
}

/* ---------------------------------- writer ---------------------------------- */

/** What one header describes; `path` is written as is (the caller adds a dir's trailing '/'). */
export interface TarHeaderInput extends Omit<TarEntry, 'name' | 'data'> {
  path: string;
}

const TYPEFLAG: Record<TarEntry['kind'], string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

/** Write `n` as octal digits + NUL into a field of `width`; false when it does not fit. */
function putOctal(h: Buffer, off: number, width: number, n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 0) return false;
  const s = n.toString(8);
  if (s.length > width - 1) return false;
  h.write(s.padStart(width - 1, '0'), off, 'ascii');
  h[off + width - 1] = 0;
  return true;
}

function putBase256(h: Buffer, off: number, width: number, n: number): void {
  let v = BigInt(n);
  if (v < 0n) v += 1n << BigInt(8 * width);
  for (let i = width - 1; i >= 0; i--) {
    h[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  h[off] = n < 0 ? 0xff : 0x80;
}

/** Octal when it fits, else base-256; returns whether a pax record is needed too. */
function putNumber(h: Buffer, off: number, width: number, n: number): boolean {
  if (putOctal(h, off, width, n)) return false;
  putBase256(h, off, width, n);
  return true;
}

function paxRecord(key: string, value: Uint8Array | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  // LEN counts its own digits: grow until stable.
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Split a name into ustar prefix/name (bytes), or undefined when it cannot be. */
function splitName(p: Buffer): [Buffer, Buffer] | undefined {
  if (p.length <= 100) return [Buffer.alloc(0), p];
  for (let i = p.indexOf(0x2f); i >= 0; i = p.indexOf(0x2f, i + 1)) {
    if (i > 155) return undefined;
    const rest = p.length - i - 1;
    if (rest > 0 && rest <= 100) return [p.subarray(0, i), p.subarray(i + 1)];
  }
  return undefined;
}

function ustarBlock(
  name: Buffer,
  prefix: Buffer,
  type: string,
  fields: { mode: number; uid: number; gid: number; mtime: number; size: number },
  linkname: Buffer,
  devmajor: number,
  devminor: number,
): { block: Buffer; overflow: Set<string> } {
  const h = Buffer.alloc(BLOCK);
  const overflow = new Set<string>();
  name.copy(h, 0, 0, Math.min(100, name.length));
  putOctal(h, 100, 8, fields.mode & 0o7777);
  if (putNumber(h, 108, 8, fields.uid)) overflow.add('uid');
  if (putNumber(h, 116, 8, fields.gid)) overflow.add('gid');
  if (putNumber(h, 124, 12, fields.size)) overflow.add('size');
  if (putNumber(h, 136, 12, fields.mtime)) overflow.add('mtime');
  h.write(type, 156, 'latin1');
  linkname.copy(h, 157, 0, Math.min(100, linkname.length));
  h.write('ustar\x0000', 257, 'latin1');
  putNumber(h, 329, 8, devmajor);
  putNumber(h, 337, 8, devminor);
  prefix.copy(h, 345, 0, Math.min(155, prefix.length));
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\x00 `, 148, 'latin1');
  return { block: h, overflow };
}

function padding(n: number): Buffer {
  const r = n % BLOCK;
  return r === 0 ? EMPTY : Buffer.alloc(BLOCK - r);
}
const EMPTY = Buffer.alloc(0);

/**
 * Encode the header block(s) of one member: a pax 'x' header (with its padded data) when some
 * value does not fit ustar, then the ustar header. The member's data (and its padding, see
 * `tarPadding`) follow; a streaming writer can use this as is.
 */
export function encodeTarHeader(e: TarHeaderInput): Buffer {
  const path = Buffer.from(e.path);
  const link = Buffer.from(e.linkname ?? '');
  const mtime = Math.floor(e.mtime);
  for (const [k, v] of [
    ['uid', e.uid],
    ['gid', e.gid],
    ['size', e.size],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new UserError(`tar: ${e.path}: bad ${k} ${v}`);
  }
  if (!Number.isSafeInteger(mtime)) throw new UserError(`tar: ${e.path}: bad mtime ${e.mtime}`);
  const split = splitName(path);
  // Values that do not fit their octal field go to base-256 in the field (for readers without
  // pax) and to a pax record.
  const fields = { mode: e.mode, uid: e.uid, gid: e.gid, mtime, size: e.size };
  const { block, overflow } = ustarBlock(
    split ? split[1] : path,
    split ? split[0] : EMPTY,
    TYPEFLAG[e.kind],
    fields,
    link,
    e.devmajor ?? 0,
    e.devminor ?? 0,
  );
  const records: Buffer[] = [];
  if (!split) records.push(paxRecord('path', path));
  if (link.length > 100) records.push(paxRecord('linkpath', link));
  for (const k of ['uid', 'gid', 'size', 'mtime'] as const) {
    if (overflow.has(k)) records.push(paxRecord(k, String(fields[k])));
  }
  for (const name of Object.keys(e.xattrs ?? {}).sort()) {
    if (/[=\n\0]/.test(name) || name === '')
      throw new UserError(`tar: ${e.path}: bad xattr name ${JSON.stringify(name)}`);
    records.push(paxRecord(`SCHILY.xattr.${name}`, e.xattrs![name]!));
  }
  if (records.length === 0) return block;
  const paxData = Buffer.concat(records);
  const base = path.subarray(path.lastIndexOf(0x2f, path.length - 2) + 1);
  const paxName = Buffer.concat([Buffer.from('PaxHeaders/'), base.subarray(0, 89)]);
  const paxHead = ustarBlock(
    paxName,
    EMPTY,
    'x',
    { mode: 0o644, uid: 0, gid: 0, mtime: 0, size: paxData.length },
    EMPTY,
    0,
    0,
  );
  return Buffer.concat([paxHead.block, paxData, padding(paxData.length), block]);
}

/** Zero bytes that follow `size` bytes of member data to fill the last block. */
export function tarPadding(size: number): Buffer {
  return padding(size);
}

/** The end-of-archive marker. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/**
 * Write a deterministic ustar archive (pax headers only where needed) of FsTree entries.
 * File entries sharing the very same `data` object as an earlier file become hard links to it.
 */
export function writeTar(entries: Iterable<FsEntry>): Buffer {
  return Buffer.concat([...tarChunks(entries)]);
}

/** writeTar's bytes as a sequence of pieces: file data is read (from disk) as it is reached. */
export function* tarChunks(entries: Iterable<FsEntry>): Generator<Uint8Array> {
  const firstPath = new Map<FileData, string>();
  for (const e of entries) {
    if (e.path === '') continue; // the root is implicit
    const base = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs: e.xattrs };
    switch (e.kind) {
      case 'file': {
        const data = e.data ?? EMPTY;
        const first = firstPath.get(data);
        if (first !== undefined) {
          // xattrs belong to the inode: the first header already carries them.
          yield encodeTarHeader({
            ...base,
            xattrs: undefined,
            path: e.path,
            kind: 'hardlink',
            size: 0,
            linkname: first,
          });
          break;
        }
        firstPath.set(data, e.path);
        yield encodeTarHeader({ ...base, path: e.path, kind: 'file', size: data.length });
        yield* dataChunks(data);
        yield padding(data.length);
        break;
      }
      case 'dir':
        yield encodeTarHeader({ ...base, path: `${e.path}/`, kind: 'dir', size: 0 });
        break;
      case 'symlink':
        yield encodeTarHeader({ ...base, path: e.path, kind: 'symlink', size: 0, linkname: e.target ?? '' });
        break;
      case 'char':
      case 'block':
        yield encodeTarHeader({
          ...base,
          path: e.path,
          kind: e.kind,
          size: 0,
          devmajor: e.devmajor ?? 0,
          devminor: e.devminor ?? 0,
        });
        break;
      case 'fifo':
        yield encodeTarHeader({ ...base, path: e.path, kind: 'fifo', size: 0 });
        break;
    }
  }
  yield TAR_END;
}
