/**
 * InRelease: a Release file clearsigned with OpenPGP (RFC 9580 section 7), e.g.
 *
 *   -----BEGIN PGP SIGNED MESSAGE-----
 *   Hash: SHA256
 *
 *   Origin: Debian
 *   Codename: bookworm
 *   Date: Sat, 11 Jul 2026 10:16:37 UTC
 *   [Valid-Until: Sat, 28 Nov 2026 00:53:02 UTC]     (security suites; none for bookworm main)
 *   SHA256:
 *    <sha256 hex> <size> main/binary-amd64/Packages.xz
 *    ...
 *   -----BEGIN PGP SIGNATURE-----
 *   (one or more signature packets: Debian signs with the automatic keys of this and the next
 *   release and with the stable release key)
 *   -----END PGP SIGNATURE-----
 *
 * We require at least one valid signature by a key in the keyring and use only the signed text
 * (openpgp ignores anything before the header, so we reject it ourselves, as apt does).
 *
 * Keyring: the host's /usr/share/keyrings/debian-archive-keyring.gpg when present, else the one
 * shipped in src/debian/keyrings/debian-archive-bookworm.gpg (the bookworm stable, automatic and
 * security automatic keys, from debian-archive-keyring 2023.3+deb12u2).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type * as OpenPgp from 'openpgp';
import { UserError } from '../util/errors.js';
import { field, parseDeb822, type Stanza } from './deb822.js';

/** openpgp is loaded on first use: importing it costs every CLI start ~0.2 s otherwise. */
let openpgpModule: Promise<typeof OpenPgp> | undefined;
const pgp = () => (openpgpModule ??= import('openpgp'));

export const HOST_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const SHIPPED_KEYRING = 'debian-archive-bookworm.gpg';

/**
 * The keyring shipped with this project. Found beside this module (src/debian/keyrings, or
 * dist/src/debian/keyrings if the build copies it) or, from dist/src/debian, back in the source
 * tree (../../../src/debian/keyrings).
 */
export function shippedKeyringPath(): string {
  const candidates = [
    new URL(`./keyrings/${SHIPPED_KEYRING}`, import.meta.url),
    new URL(`../../../src/debian/keyrings/${SHIPPED_KEYRING}`, import.meta.url),
  ].map((u) => fileURLToPath(u));
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new UserError(`the Debian archive keyring ${SHIPPED_KEYRING} is missing from this installation`);
  return found;
}

/** The keyring files to trust by default: the host's Debian keyring if any, else ours. */
export function defaultKeyringPaths(): string[] {
  return existsSync(HOST_KEYRING) ? [HOST_KEYRING] : [shippedKeyringPath()];
}

const keyCache = new Map<string, Promise<OpenPgp.PublicKey[]>>();

/** Read binary (non-armoured) OpenPGP keyrings, as in /usr/share/keyrings/*.gpg. */
export function loadKeyring(paths: string[] = defaultKeyringPaths()): Promise<OpenPgp.PublicKey[]> {
  const id = paths.join('\0');
  let p = keyCache.get(id);
  if (!p) {
    p = (async () => {
      const keys: OpenPgp.PublicKey[] = [];
      for (const path of paths) {
        let bin: Uint8Array;
        try {
          bin = readFileSync(path);
        } catch (e) {
          throw new UserError(`cannot read keyring ${path}: ${(e as Error).message}`);
        }
        try {
          keys.push(...(await (await pgp()).readKeys({ binaryKeys: bin })));
        } catch (e) {
          throw new UserError(`bad OpenPGP keyring ${path}: ${(e as Error).message}`);
        }
      }
      return keys;
    })();
    keyCache.set(id, p);
    p.catch(() => keyCache.delete(id));
  }
  return p;
}

export interface ReleaseFileEntry {
  sha256: string;
  size: number;
}

export interface VerifiedRelease {
  /** Exactly the signed text (what the signatures cover), nothing from outside them. */
  text: string;
  fields: Stanza;
  /** The SHA256 list: path relative to dists/SUITE/ -> hash and size. */
  files: Map<string, ReleaseFileEntry>;
  /** Fingerprints (lower-case hex) of the primary keys whose signatures verified. */
  signers: string[];
}

export interface VerifyOptions {
  /** Keys to trust (default: `loadKeyring()`). */
  keys?: OpenPgp.PublicKey[];
  /** The time to check signatures, key expiry and Valid-Until against (default: now). */
  now?: Date;
  /** Accept a Release whose Valid-Until has passed (e.g. an old snapshot, or offline use). */
  allowExpired?: boolean;
  /** Names the input in error messages (e.g. its URL). */
  source?: string;
}

const BEGIN_MSG = '-----BEGIN PGP SIGNED MESSAGE-----';
const BEGIN_SIG = '-----BEGIN PGP SIGNATURE-----';
const END_SIG = '-----END PGP SIGNATURE-----';

/** Verify a clearsigned InRelease and parse what it signs. */
export async function verifyInRelease(text: string, opts: VerifyOptions = {}): Promise<VerifiedRelease> {
  const source = opts.source ?? 'InRelease';
  const now = opts.now ?? new Date();
  checkArmourFraming(text, source);
  const openpgp = await pgp();
  let message: OpenPgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: text });
  } catch (e) {
    throw new UserError(`${source}: not a valid clearsigned message: ${(e as Error).message}`);
  }
  const keys = opts.keys ?? (await loadKeyring());
  let result: Awaited<ReturnType<typeof openpgp.verify>>;
  try {
    result = await openpgp.verify({ message, verificationKeys: keys, date: now });
  } catch (e) {
    throw new UserError(`${source}: signature check failed: ${(e as Error).message}`);
  }
  const signers: string[] = [];
  const reasons: string[] = [];
  for (const sig of result.signatures) {
    try {
      await sig.verified;
      const key = keys.find((k) => k.getKeys(sig.keyID).length > 0);
      if (key) signers.push(key.getFingerprint());
    } catch (e) {
      reasons.push(`${sig.keyID.toHex()}: ${(e as Error).message}`);
    }
  }
  if (signers.length === 0) {
    const why = reasons.length ? reasons.join('; ') : 'no signatures';
    throw new UserError(`${source}: no valid signature from a trusted Debian archive key (${why})`);
  }
  const signed = result.data as string;
  const stanzas = parseDeb822(signed, source);
  if (stanzas.length !== 1)
    throw new UserError(`${source}: expected one Release stanza, found ${stanzas.length}`);
  const fields = stanzas[0] as Stanza;
  checkValidUntil(fields, now, opts.allowExpired ?? false, source);
  return {
    text: signed,
    fields,
    files: parseSha256List(fields, source),
    signers: [...new Set(signers)].sort(),
  };
}

/** Reject text outside the one signed block: openpgp would silently skip it. */
function checkArmourFraming(text: string, source: string): void {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  const count = (s: string) => lines.filter((l) => l === s).length;
  if (lines[0] !== BEGIN_MSG) {
    throw new UserError(`${source}: does not start with "${BEGIN_MSG}" (not a clearsigned InRelease)`);
  }
  if (count(BEGIN_MSG) !== 1 || count(BEGIN_SIG) !== 1 || count(END_SIG) !== 1) {
    throw new UserError(`${source}: expected exactly one signed block and one signature block`);
  }
  const end = lines.indexOf(END_SIG);
  if (lines.slice(end + 1).some((l) => l.trim() !== '')) {
    throw new UserError(`${source}: unsigned text after "${END_SIG}"`);
  }
}

function parseReleaseDate(s: string, what: string, source: string): Date {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UserError(`${source}: bad ${what} date ${JSON.stringify(s)}`);
  return new Date(t);
}

function checkValidUntil(fields: Stanza, now: Date, allowExpired: boolean, source: string): void {
  const vu = field(fields, 'Valid-Until');
  if (vu === undefined) return;
  const until = parseReleaseDate(vu, 'Valid-Until', source);
  if (now.getTime() > until.getTime() && !allowExpired) {
    throw new UserError(
      `${source}: expired (Valid-Until: ${vu}); the mirror is stale, or allow expired Release files to use it anyway`,
    );
  }
}

function parseSha256List(fields: Stanza, source: string): Map<string, ReleaseFileEntry> {
  const list = field(fields, 'SHA256');
  if (list === undefined) throw new UserError(`${source}: no SHA256 file list`);
  const files = new Map<string, ReleaseFileEntry>();
  for (const line of list.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    const m = /^([0-9a-fA-F]{64})\s+([0-9]+)\s+(\S+)$/.exec(t);
    if (!m) throw new UserError(`${source}: bad SHA256 line ${JSON.stringify(t)}`);
    files.set(m[3] as string, { sha256: (m[1] as string).toLowerCase(), size: Number(m[2]) });
  }
  return files;
}
