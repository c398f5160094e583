/**
 * Decompression by magic number, and deterministic gzip.
 *
 *   gzip  1f 8b                  (RFC 1952; several members may follow each other)
 *   xz    fd 37 7a 58 5a 00      ("\xfd7zXZ\0", .deb data.tar.xz)
 *   zstd  28 b5 2f fd            (frame magic 0xFD2FB528, little-endian)
 *   bzip2 "BZh" 1-9 31 41 59 26 53 59, lz4 04 22 4d 18: recognised only to refuse them
 *   anything else is returned as is (an uncompressed tar).
 *
 * gzip output: zlib writes MTIME 0, no name, OS 3, so it only depends on the input and level.
 */
import { Buffer } from 'node:buffer';
import zlib from 'node:zlib';
import { UserError } from '../util/errors.js';

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'lz4' | 'none';

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

async function unxz(data: Uint8Array): Promise<Uint8Array> {
  // Loaded on first use: its WebAssembly set-up costs every CLI start ~0.2 s otherwise.
  // CommonJS: no named exports under Node's ESM loader.
  const xzDecompress = (await import('xz-decompress')).default;
  // The package only offers a web stream; a Blob's stream feeds it without copying chunks.
  const reader = new xzDecompress.XzReadableStream(new Blob([data]).stream()).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (value.length) {
      chunks.push(value);
      total += value.length;
    }
  }
  return Buffer.concat(chunks, total);
}

type ZstdSync = (d: Uint8Array) => Buffer;
const nodeZstd = (zlib as unknown as { zstdDecompressSync?: ZstdSync }).zstdDecompressSync;

/** Decompress gzip, xz or zstd data, sniffed by magic; anything else is returned unchanged. */
export async function decompress(data: Uint8Array): Promise<Uint8Array> {
  const kind = sniffCompression(data);
  try {
    switch (kind) {
      case 'gzip':
        return zlib.gunzipSync(data); // reads all concatenated members
      case 'xz':
        return await unxz(data);
      case 'zstd':
        return nodeZstd ? nodeZstd(data) : (await import('fzstd')).decompress(data);
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
