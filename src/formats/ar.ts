/**
 * ar archives (the "common" format that .deb packages use), read only.
 *
 *   "!<arch>\n"                       8-byte global magic
 *   then per member a 60-byte ASCII header, its data, and one '\n' if the size is odd:
 *   off len field
 *     0  16 name    space padded; GNU ends it with '/', "/" is the symbol table,
 *                   "//" the long-name table, "/N" a name at offset N in that table
 *                   (names there end with "/\n"); BSD writes "#1/N": an N-byte name starts
 *                   the data (and counts in size)
 *    16  12 mtime   decimal
 *    28   6 uid     decimal
 *    34   6 gid     decimal
 *    40   8 mode    octal
 *    48  10 size    decimal
 *    58   2 fmag    "`\n"
 */
import { Buffer } from 'node:buffer';
import { UserError } from '../util/errors.js';

export interface ArMember {
  name: string;
  /** A subarray of the input. */
  data: Uint8Array;
}

const MAGIC = '!<arch>\n';

function text(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}

/** The members of an ar archive, in order (GNU symbol and long-name tables left out). */
export function readAr(buf: Uint8Array): ArMember[] {
  if (buf.length < 8 || text(buf.subarray(0, 8)) !== MAGIC) {
    if (buf.length >= 8 && text(buf.subarray(0, 8)) === '!<thin>\n')
      throw new UserError('ar: thin archives are not supported');
    throw new UserError('ar: bad magic (not an ar archive)');
  }
  const out: ArMember[] = [];
  let longNames: Uint8Array | undefined;
  let off = 8;
  while (off < buf.length) {
    if (buf.length === off + 1 && buf[off] === 0x0a) break; // a stray final pad byte
    if (off + 60 > buf.length) throw new UserError(`ar: truncated member header at offset ${off}`);
    const h = buf.subarray(off, off + 60);
    if (h[58] !== 0x60 || h[59] !== 0x0a) throw new UserError(`ar: bad member header at offset ${off}`);
    const sizeText = text(h.subarray(48, 58)).trim();
    if (!/^\d+$/.test(sizeText)) throw new UserError(`ar: bad member size at offset ${off}`);
    const size = Number(sizeText);
    const start = off + 60;
    if (start + size > buf.length) throw new UserError(`ar: truncated member at offset ${off}`);
    let data = buf.subarray(start, start + size);
    off = start + size + (size % 2);
    const raw = text(h.subarray(0, 16)).trimEnd();
    let name: string;
    if (raw === '/' || raw === '/SYM64/') continue; // symbol tables
    if (raw === '//') {
      longNames = data;
      continue;
    }
    if (/^\/\d+$/.test(raw)) {
      const at = Number(raw.slice(1));
      if (!longNames || at >= longNames.length) throw new UserError(`ar: bad long-name reference ${raw}`);
      let end = longNames.indexOf(0x0a, at);
      if (end < 0) end = longNames.length;
      name = text(longNames.subarray(at, end)).replace(/\/$/, '');
    } else if (/^#1\/\d+$/.test(raw)) {
      const n = Number(raw.slice(3));
      if (n > data.length) throw new UserError(`ar: bad BSD long name at offset ${start - 60}`);
      name = text(data.subarray(0, n)).replace(/\0+$/, '');
      data = data.subarray(n);
    } else name = raw.replace(/\/$/, '');
    out.push({ name, data });
  }
  return out;
}
