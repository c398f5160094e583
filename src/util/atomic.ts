/**
 * Atomic output: a file appears whole or not at all. Data goes to a temp file in the same
 * directory (so rename cannot cross file systems), is fsynced, then renamed over the target.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { FileSlice } from '../fs/data.js';

function tempName(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

/** What a file is written from: its bytes, or its bytes in pieces (made as they are written). */
export type FileContents = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Small pieces are gathered up to this size: one write each would cost a thread-pool round trip. */
const WRITE_BATCH = 1 << 20;

async function writeSynced(
  file: string,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<void> {
  const fh = await open(file, 'wx', 0o644);
  try {
    await writeChunks(fh, chunks);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write pieces to an open file in order, small ones gathered into writes of about 1 MiB. */
export async function writeChunks(
  fh: FileHandle,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<void> {
  let batch: Uint8Array[] = [];
  let batched = 0;
  const flush = async () => {
    if (batch.length === 1) await fh.write(batch[0]!);
    else if (batch.length) await fh.write(Buffer.concat(batch, batched));
    batch = [];
    batched = 0;
  };
  for await (const c of chunks) {
    if (c.length >= WRITE_BATCH) {
      await flush();
      await fh.write(c);
      continue;
    }
    batch.push(c);
    batched += c.length;
    if (batched >= WRITE_BATCH) await flush();
  }
  await flush();
}

export async function writeFileAtomic(target: string, data: FileContents): Promise<void> {
  await writeFilesAtomic([{ path: target, data }]);
}

/**
 * Write several files so that either all of them are replaced or none is: everything is written
 * to temp files first; only when all succeeded are they renamed into place.
 */
export async function writeFilesAtomic(files: { path: string; data: FileContents }[]): Promise<void> {
  const temps: string[] = [];
  try {
    for (const f of files) {
      const t = tempName(f.path);
      temps.push(t);
      await writeSynced(t, f.data instanceof Uint8Array ? [f.data] : f.data);
    }
    for (let i = 0; i < files.length; i++) await rename(temps[i]!, files[i]!.path);
  } catch (e) {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    throw e;
  }
}

const sha256hex = (d: Uint8Array) => createHash('sha256').update(d).digest('hex');

/**
 * Derived data (caches of things that can be made again): written atomically behind a line with
 * the sha256 of the body, so a damaged file is noticed on read. Makes the directory.
 */
export async function writeFileChecked(target: string, body: Uint8Array): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  await writeFileAtomic(target, [new TextEncoder().encode(`${sha256hex(body)}\n`), body]);
}

/** The body writeFileChecked stored, or undefined when the file is missing or does not check out. */
export async function readFileChecked(target: string): Promise<Buffer | undefined> {
  let buf: Buffer;
  try {
    buf = await readFile(target);
  } catch {
    return undefined;
  }
  if (buf.indexOf(10) !== 64) return undefined;
  const body = buf.subarray(65);
  return buf.subarray(0, 64).toString('latin1') === sha256hex(body) ? body : undefined;
}

/**
 * `chunks` written to a scratch file in `dir` that is deleted as soon as it is open: the
 * returned slice reads it through that descriptor (closed with the build's data files, see
 * withDataFiles), and nothing is left behind whatever happens, so it needs no fsync.
 */
export async function scratchFile(
  dir: string,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<FileSlice> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `.scratch-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(file, 'wx', 0o600);
    try {
      await writeChunks(fh, chunks);
    } finally {
      await fh.close();
    }
    return FileSlice.of(file);
  } finally {
    await rm(file, { force: true });
  }
}
