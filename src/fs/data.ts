/**
 * File contents in an FsTree: bytes in memory, or a byte range of a file on disk that is read
 * only when a writer needs it. Large trees (decompressed image layers, big `files:` sources)
 * stay on disk, so a build's memory does not grow with the image.
 *
 * A slice's `length` is its byte count, as a Uint8Array's is, so code that only sizes data
 * takes either form; code that needs the bytes calls dataBytes or dataChunks.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { UserError } from '../util/errors.js';

/**
 * An open file that slices read from. Opened once: a file replaced later keeps the contents the
 * build saw. Closed at the end of the withDataFiles scope it was opened in, else when collected.
 */
export class DiskFile {
  private fd: number | undefined;
  /** Its size when it was opened. */
  readonly size: number;

  constructor(readonly path: string) {
    const fd = openSync(path, 'r');
    const st = fstatSync(fd);
    if (!st.isFile()) {
      closeSync(fd);
      throw Object.assign(new Error(`${path} is not a regular file`), {
        code: st.isDirectory() ? 'EISDIR' : 'EINVAL',
      });
    }
    this.fd = fd;
    this.size = st.size;
    scope.getStore()?.files.add(this);
    collected.register(this, fd, this);
  }

  /** `length` bytes at `offset`; an error if the file no longer has them. */
  read(offset: number, length: number, into = Buffer.allocUnsafe(length)): Buffer {
    if (this.fd === undefined) throw new Error(`internal error: ${this.path} was read after it was closed`);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, into, done, length - done, offset + done);
      if (n === 0)
        throw new UserError(
          `${this.path} became shorter while it was being read (changed during the build?)`,
        );
      done += n;
    }
    return into;
  }

  close(): void {
    if (this.fd !== undefined) {
      collected.unregister(this);
      closeSync(this.fd);
    }
    this.fd = undefined;
  }
}

interface Scope {
  files: Set<DiskFile>;
  /** Bytes that may still be read into memory up front (see takeMemory). */
  memory: number;
}
const scope = new AsyncLocalStorage<Scope>();
const collected = new FinalizationRegistry<number>((fd) => closeSync(fd));

/**
 * What a build may hold of its images in memory: reading a layer whole is faster than reading
 * its files one by one as they are written, and most systems fit. Beyond it, memory stays flat.
 */
export const MEMORY_BUDGET = 128 << 20;

/**
 * Runs `fn` (a build); the DiskFiles opened within it are closed when it is done, and it may
 * hold `memory` bytes of file data in memory (see takeMemory).
 */
export async function withDataFiles<T>(fn: () => Promise<T>, memory = MEMORY_BUDGET): Promise<T> {
  const s: Scope = { files: new Set(), memory };
  try {
    return await scope.run(s, fn);
  } finally {
    for (const f of s.files) f.close();
  }
}

/** Whether `bytes` more may be read into memory now (and if so, they are counted). */
export function takeMemory(bytes: number): boolean {
  const s = scope.getStore();
  if (!s) return bytes <= MEMORY_BUDGET;
  if (bytes > s.memory) return false;
  s.memory -= bytes;
  return true;
}

/** `length` bytes of `file` from `offset`. */
export class FileSlice {
  /** All of a file on disk. */
  static of(path: string): FileSlice {
    const f = new DiskFile(path);
    return new FileSlice(f, 0, f.size);
  }

  constructor(
    readonly file: DiskFile,
    readonly offset: number,
    readonly length: number,
  ) {}

  /** A part of this slice (offsets relative to it). */
  slice(start: number, end = this.length): FileSlice {
    return new FileSlice(this.file, this.offset + start, Math.min(end, this.length) - start);
  }
}

export type FileData = Uint8Array | FileSlice;

const EMPTY = new Uint8Array(0);

/** Bytes [start, end) of `d`, as a view or a smaller slice: nothing is read. */
export function dataSlice(d: FileData, start: number, end = d.length): FileData {
  return d instanceof Uint8Array ? d.subarray(start, end) : d.slice(start, end);
}

/** The bytes of `d` (read from disk for a slice). */
export function dataBytes(d: FileData | undefined): Uint8Array {
  if (d === undefined) return EMPTY;
  if (d instanceof Uint8Array) return d;
  return d.file.read(d.offset, d.length);
}

/** Reads in pieces of this size: big enough to amortise a call, small enough to stay flat. */
export const CHUNK = 1 << 20;

/** The bytes of `d` in pieces of at most `chunk` bytes (a slice is read piece by piece). */
export function* dataChunks(d: FileData | undefined, chunk = CHUNK): Generator<Uint8Array> {
  if (d === undefined || d.length === 0) return;
  if (d instanceof Uint8Array) {
    yield d;
    return;
  }
  for (let at = 0; at < d.length; at += chunk) {
    yield d.file.read(d.offset + at, Math.min(chunk, d.length - at));
  }
}

const ZEROS = new Uint8Array(CHUNK);

/** `n` zero bytes in pieces of at most CHUNK (views of one shared buffer: do not write to them). */
export function* zeroChunks(n: number): Generator<Uint8Array> {
  for (; n > 0; n -= Math.min(n, CHUNK)) yield ZEROS.subarray(0, Math.min(n, CHUNK));
}

/** Pieces at least this big pass through gatherChunks as they are. */
const PASS = 256 * 1024;

/**
 * `pieces` with the small ones gathered into pieces of about CHUNK bytes (a consumer pays per
 * piece: a cpio has three small pieces per file); big ones pass through without a copy.
 */
export function* gatherChunks(pieces: Iterable<Uint8Array>): Generator<Uint8Array> {
  let batch: Uint8Array[] = [];
  let batched = 0;
  for (const p of pieces) {
    if (p.length >= PASS) {
      if (batched) yield Buffer.concat(batch, batched);
      yield p;
      batch = [];
      batched = 0;
      continue;
    }
    batch.push(p);
    batched += p.length;
    if (batched >= CHUNK) {
      yield Buffer.concat(batch, batched);
      batch = [];
      batched = 0;
    }
  }
  if (batched) yield Buffer.concat(batch, batched);
}
