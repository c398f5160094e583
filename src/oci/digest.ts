/**
 * Content digests as OCI writes them: `ALGORITHM:ENCODED`, e.g. `sha256:` + 64 lowercase hex
 * digits (image-spec descriptor.md "Digests"). We produce sha256 only; sha512 is accepted when
 * reading, because a registry or a reference may name a blob by it.
 */
import { createHash } from 'node:crypto';
import { UserError } from '../util/errors.js';

/** Lengths of the hex encoding for the algorithms the OCI spec registers. */
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: 'sha256' | 'sha512';
  hex: string;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${sha256Hex(data)}`;
}

/** Split and check a digest; a malformed one is a UserError naming it (and `what` it was). */
export function parseDigest(digest: string, what = 'digest'): ParsedDigest {
  const i = typeof digest === 'string' ? digest.indexOf(':') : -1;
  if (i < 0)
    throw new UserError(
      `invalid ${what} ${JSON.stringify(digest)}: expected ALGORITHM:HEX, e.g. sha256:<64 hex digits>`,
    );
  const algorithm = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  const len = HEX_LENGTH[algorithm];
  if (len === undefined) {
    throw new UserError(
      `invalid ${what} ${JSON.stringify(digest)}: unsupported algorithm ${JSON.stringify(algorithm)} (sha256 or sha512)`,
    );
  }
  if (hex.length !== len || !/^[0-9a-f]+$/.test(hex)) {
    throw new UserError(
      `invalid ${what} ${JSON.stringify(digest)}: ${algorithm} needs ${len} lowercase hex digits`,
    );
  }
  return { algorithm: algorithm as ParsedDigest['algorithm'], hex };
}

/** Returns the digest unchanged if it is well formed, else throws a UserError. */
export function validateDigest(digest: string, what = 'digest'): string {
  parseDigest(digest, what);
  return digest;
}

export function isDigest(digest: string): boolean {
  try {
    parseDigest(digest);
    return true;
  } catch {
    return false;
  }
}

/** Digest of `data` with the same algorithm as `like` (for verifying a blob named by it). */
export function digestLike(like: string, data: Uint8Array): string {
  const { algorithm } = parseDigest(like);
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}
