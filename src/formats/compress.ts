/**
 * Decompression by magic number, and deterministic gzip.
 *
 *   gzip  1f 8b                  (RFC 1952; several members may follow each other)
 *   xz    fd 37 7a 58 5a 00      ("\xfd7zXZ\0", .deb data.tar.xz)
 *   zstd  28 b5 2f fd            (frame magic 0xFD2FB528, little-endian)
 *   lz4   02 21 4c 18            (the legacy frame the kernel takes for an initramfs; ours)
 *   bzip2 "BZh" 1-9 31 41 59 26 53 59, lz4 04 22 4d 18 (the modern frame): recognised only to refuse them
 *   anything else is returned as is (an uncompressed tar).
 *
 * gzip output: zlib writes MTIME 0, no name, OS 3, so it only depends on the input and level.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { readFileChecked, writeFileChecked } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { pruneLeastRecentlyUsed, touch } from '../util/lru.js';
import { lz4LegacyDecode, lz4LegacyStream } from './lz4.js';
import { crc32 } from './partition.js';

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'lz4' | 'lz4-legacy' | 'none';

function startsWith(d: Uint8Array, magic: number[]): boolean {
  if (d.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (d[i] !== magic[i]) return false;
  return true;
}

export function sniffCompression(d: Uint8Array): Compression {
  if (startsWith(d, [0x1f, 0x8b])) return 'gzip';
  if (startsWith(d, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (startsWith(d, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (
    startsWith(d, [0x42, 0x5a, 0x68]) &&
    d[3]! >= 0x31 &&
    d[3]! <= 0x39 &&
    startsWith(d.subarray(4), [0x31, 0x41, 0x59, 0x26, 0x53, 0x59])
  )
    return 'bzip2';
  if (startsWith(d, [0x04, 0x22, 0x4d, 0x18])) return 'lz4';
  if (startsWith(d, [0x02, 0x21, 0x4c, 0x18])) return 'lz4-legacy';
  return 'none';
}

// xz-embedded's xz_ret codes, which the package reports as "... error code N".
const XZ_ERRORS: Record<string, string> = {
  '2': 'unsupported integrity check',
  '3': 'out of memory',
  '4': 'memory limit reached',
  '5': 'not an xz stream',
  '6': 'unsupported xz options',
  '7': 'corrupt data',
  '8': 'truncated data',
};

function message(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  const code = /error code (\d+)$/.exec(m)?.[1];
  return (code && XZ_ERRORS[code]) || m;
}

/**
 * xz's output as it is made. The package takes a web stream; one that hands over `data` itself,
 * which the decoder reads a buffer at a time (a Blob would copy it: 25 MB for the kernel's).
 */
async function* unxzStream(data: Uint8Array): AsyncGenerator<Uint8Array> {
  // Loaded on first use: its WebAssembly set-up costs every CLI start ~0.2 s otherwise.
  // CommonJS: no named exports under Node's ESM loader.
  const xzDecompress = (await import('xz-decompress')).default;
  const input = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(data);
      c.close();
    },
  });
  const reader = new xzDecompress.XzReadableStream(input).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    if (value.length) yield value;
  }
}

const unxz = (data: Uint8Array) => collect(unxzStream(data));

/**
 * decompress's output in pieces as it is made, for output bigger than is worth holding (a
 * kernel package's data.tar.xz): xz and gzip stream; other kinds come whole.
 */
export async function* decompressStream(data: Uint8Array): AsyncGenerator<Uint8Array> {
  const kind = sniffCompression(data);
  try {
    if (kind === 'xz') yield* unxzStream(data);
    else if (kind === 'gzip') yield* pipeThrough([data], zlib.createGunzip({ chunkSize: BIG_CHUNK }));
    else yield await decompress(data);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`corrupt ${kind} data: ${message(e)}`);
  }
}

const gunzipAsync = promisify(zlib.gunzip);
/** zlib's output chunk for whole-buffer calls (its default, 16 KiB, costs a callback per chunk). */
const BIG_CHUNK = 1 << 20;
const deflateRawAsync = promisify(zlib.deflateRaw);

type ZstdSync = (d: Uint8Array) => Buffer;
const nodeZstd = (zlib as unknown as { zstdDecompressSync?: ZstdSync }).zstdDecompressSync;

/** Decompress gzip, xz, zstd or legacy lz4 data, sniffed by magic; anything else is returned unchanged. */
export async function decompress(data: Uint8Array): Promise<Uint8Array> {
  const kind = sniffCompression(data);
  try {
    switch (kind) {
      case 'gzip':
        // Async: runs on libuv's thread pool, so the layers of several images unpack at once.
        // Big output chunks: each chunk is a round trip between the pool and this thread.
        return await gunzipAsync(data, { chunkSize: BIG_CHUNK }); // reads all concatenated members
      case 'xz':
        return await unxz(data);
      case 'zstd':
        return nodeZstd ? nodeZstd(data) : (await import('fzstd')).decompress(data);
      case 'lz4-legacy':
        return lz4LegacyDecode(data);
      case 'none':
        return data;
      default:
        throw new UserError(`${kind} compression is not supported (use gzip, xz or zstd)`);
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`corrupt ${kind} data: ${message(e)}`);
  }
}

/** gzip with a fixed level: the same input gives the same bytes. */
export function gzip(data: Uint8Array, level = 6): Buffer {
  return zlib.gzipSync(data, { level });
}

/** gzip over pieces as they come, as one member: the bytes gzip() makes of them joined. */
export function gzipChunks(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  level = 6,
): AsyncIterable<Uint8Array> {
  return pipeThrough(chunks, zlib.createGzip({ level }));
}

/** Piece sizes of `gzipParallel` (input bytes): at least MIN, at most MAX, ~MIN + MASK + 1 on average. */
const PIECE_MIN = 256 * 1024;
const PIECE_MAX = 2 << 20;
const PIECE_MASK = (1 << 19) - 1;
/** Deflate's window: each piece is primed with this much of the input before it. */
const DEFLATE_WINDOW = 32 * 1024;

/** A fixed pseudo-random table for the gear hash (xorshift32 from a constant seed). */
const GEAR = (() => {
  const t = new Int32Array(256);
  let x = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    t[i] = x;
  }
  return t;
})();

/**
 * Where pieces end: where a rolling (gear) hash of the last 32 bytes hits a pattern, between the
 * minimum and maximum size. The cuts follow the content, not offsets, so an edit that changes a
 * file's length moves the cuts near it only, and the pieces after it are cached pieces again.
 */
export function pieceEnds(d: Uint8Array): number[] {
  const ends: number[] = [];
  let start = 0;
  do {
    let end = Math.min(start + PIECE_MAX, d.length);
    let h = 0;
    for (let i = start + PIECE_MIN; i < end; i++) {
      h = ((h << 1) + GEAR[d[i]!]!) | 0;
      if ((h & PIECE_MASK) === 0) {
        end = i + 1;
        break;
      }
    }
    ends.push(end);
    start = end;
  } while (start < d.length);
  return ends;
}

/**
 * gzip on every core, as pigz does: the input is cut into pieces (see pieceEnds), each deflated
 * on libuv's thread pool with the 32 KiB before it as its dictionary and ended by a sync flush
 * (byte-aligned, not final); the last piece finishes the stream. The raw pieces concatenate to
 * one valid deflate stream in one gzip member, which any gzip reader (the kernel's too) unpacks.
 * The result is deterministic but not byte-identical to `gzip` (the flush points differ).
 *
 * With `cacheDir`, each piece's deflate output is kept under the sha256 of what determines it
 * (zlib's version, level, dictionary, bytes, whether it is last): a rebuild compresses only the
 * pieces whose bytes changed. The output is the same bytes with or without the cache. A run
 * that stored new pieces then keeps the cache within its limit (see prunePieceCache).
 */
export async function gzipParallel(data: Uint8Array, level = 6, cacheDir?: string): Promise<Buffer> {
  return collect(gzipStream([data], level, cacheDir));
}

/** Pieces being deflated at once: enough to keep the thread pool busy, few enough to stay flat. */
const IN_FLIGHT = 8;

/**
 * gzipParallel over input that arrives in pieces; yields the gzip stream in order. The cuts,
 * and so the bytes, are those gzipParallel makes of the whole input; at most IN_FLIGHT pieces
 * (2 MiB each at most) are held at a time. Input pieces are used without a copy: a source must
 * not reuse a buffer it has yielded.
 */
export async function* gzipStream(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  level = 6,
  cacheDir?: string,
): AsyncGenerator<Uint8Array> {
  // (A second's margin: file times come from a coarser clock than Date.now.)
  const started = Date.now() - 1000;
  let stored = false;
  const onStore = () => {
    stored = true;
  };
  yield Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level >= 9 ? 2 : level <= 1 ? 4 : 0, 3]);
  const queue: Promise<Uint8Array>[] = [];
  let crc = 0;
  let total = 0;
  let dictionary: Uint8Array = new Uint8Array(0);
  const deflate = (piece: Uint8Array, last: boolean): Promise<Uint8Array> => {
    const dict = dictionary;
    const make = () =>
      deflateRawAsync(piece, {
        level,
        chunkSize: BIG_CHUNK,
        ...(dict.length ? { dictionary: dict } : {}),
        finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
      });
    const out = cacheDir ? cachedPiece(cacheDir, [level, last, dict, piece], make, onStore) : make();
    out.catch(() => {}); // awaited in order below; a failure surfaces there
    dictionary =
      piece.length >= DEFLATE_WINDOW
        ? piece.subarray(piece.length - DEFLATE_WINDOW)
        : Buffer.concat([dictionary, piece]).subarray(-DEFLATE_WINDOW);
    return out;
  };
  // The piece being filled, and a finished one held back until we know whether it is the last.
  let parts: Uint8Array[] = [];
  let have = 0;
  const gear = { h: 0 };
  let held: Uint8Array | undefined;
  for await (const c of chunks) {
    crc = crc32(c, crc);
    total += c.length;
    let from = 0;
    while (from < c.length) {
      if (held) {
        queue.push(deflate(held, false));
        held = undefined;
        while (queue.length >= IN_FLIGHT) yield await queue.shift()!;
      }
      const cut = findCut(c, from, have, gear);
      const end = cut < 0 ? c.length : cut;
      parts.push(c.subarray(from, end));
      have += end - from;
      from = end;
      if (cut >= 0) {
        held = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
        parts = [];
        have = 0;
        gear.h = 0;
      }
    }
  }
  // The last piece: one held back (it ended exactly at the end), else what is left, maybe empty.
  queue.push(deflate(held ?? Buffer.concat(parts, have), true));
  for (const p of queue) yield await p;
  // Only a stream that added pieces can have grown the cache past its limit.
  if (cacheDir && stored) await prunePieceCache(cacheDir, started);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc, 0);
  trailer.writeUInt32LE(total >>> 0, 4); // ISIZE is the length mod 2^32
  yield trailer;
}

/** `chunks` through a zlib stream; an error on either side ends the iteration with it. */
export function pipeThrough(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  transform: zlib.Gzip | zlib.Gunzip,
): AsyncIterable<Uint8Array> {
  const src = Readable.from(chunks);
  src.on('error', (e) => transform.destroy(e)); // e.g. a source file that changed under us
  src.pipe(transform);
  return transform;
}

/**
 * Where the piece that has `have` bytes so far ends in c[from..]: the index after its last byte,
 * or -1 if it goes on past c. The gear hash runs from PIECE_MIN on, the piece stops at PIECE_MAX
 * (as pieceEnds). A plain function: V8 optimises its loop, which a generator's it does not.
 */
function findCut(c: Uint8Array, from: number, have: number, gear: { h: number }): number {
  let h = gear.h;
  const start = Math.max(from, from + PIECE_MIN - have);
  const stop = Math.min(c.length, from + PIECE_MAX - have);
  let cut = -1;
  for (let i = start; i < stop; i++) {
    h = ((h << 1) + GEAR[c[i]!]!) | 0;
    if ((h & PIECE_MASK) === 0) {
      cut = i + 1;
      break;
    }
  }
  if (cut < 0 && stop === from + PIECE_MAX - have) cut = stop;
  gear.h = h;
  return cut;
}

/** All of a stream's bytes in one buffer. */
export async function collect(chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

/** A deflated piece from the cache (checked on read: a damaged file is made again), else made and stored. */
async function cachedPiece(
  cacheDir: string,
  [level, last, dictionary, piece]: [number, boolean, Uint8Array, Uint8Array],
  make: () => Promise<Uint8Array>,
  onStore: () => void,
): Promise<Uint8Array> {
  const key = createHash('sha256')
    .update(`deflate zlib ${process.versions.zlib} level ${level} last ${last} dict ${dictionary.length}\n`)
    .update(dictionary)
    .update(piece)
    .digest('hex');
  const file = path.join(cacheDir, key.slice(0, 2), key);
  const stored = await readFileChecked(file);
  if (stored) {
    await touch(file); // its mtime says when it was last used: pruning removes the least recent
    return stored;
  }
  const out = await make();
  await writeFileChecked(file, out);
  onStore();
  return out;
}

/** What a piece cache keeps at least (pieces in use by the last build are always kept). */
export const PIECE_CACHE_BYTES = 1 << 30;

/**
 * Keep a piece cache within `limit` bytes: the least recently used pieces go first, but none
 * used since `since` (ms since the epoch: the build that just ran needs them next time). A big
 * image whose bytes change would otherwise add its whole size with every build.
 */
export async function prunePieceCache(
  dir: string,
  since: number,
  limit = PIECE_CACHE_BYTES,
): Promise<number> {
  const files = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return pruneLeastRecentlyUsed(
    files.map((name) => path.join(dir, name)),
    { maxBytes: limit, keepSince: since },
  );
}

/** What `-compress` offers for the initrd: all are formats the kernel unpacks (CONFIG_RD_*). */
export const INITRD_COMPRESSIONS = ['gzip', 'zstd', 'lz4', 'none'] as const;
export type InitrdCompression = (typeof INITRD_COMPRESSIONS)[number];

/** The initrd's cpio, compressed as `-compress` asks. */
export async function compressInitrd(
  cpio: Uint8Array,
  kind: InitrdCompression,
  /** Where gzip keeps compressed pieces for the next build (see gzipParallel). */
  cacheDir?: string,
): Promise<Uint8Array> {
  return kind === 'none' ? cpio : collect(initrdStream([cpio], kind, cacheDir));
}

type ZstdStream = (o?: object) => zlib.Gzip;
const nodeZstdStream = (zlib as unknown as { createZstdCompress?: ZstdStream }).createZstdCompress;

/** compressInitrd over a cpio that arrives in pieces: the compressed bytes, in order, as they are made. */
export async function* initrdStream(
  cpio: Iterable<Uint8Array>,
  kind: InitrdCompression,
  cacheDir?: string,
): AsyncGenerator<Uint8Array> {
  switch (kind) {
    case 'gzip':
      yield* gzipStream(cpio, 6, cacheDir);
      return;
    case 'zstd': {
      if (!nodeZstdStream)
        throw new UserError(
          `-compress zstd needs Node 22.15 or later (its zlib has zstd); this is Node ${process.versions.node}`,
        );
      yield* pipeThrough(cpio, nodeZstdStream());
      return;
    }
    case 'lz4':
      yield* lz4LegacyStream(cpio);
      return;
    case 'none':
      yield* cpio;
  }
}
