/**
 * Debian archive client: a suite's signed index, its Packages lists and the .debs they name.
 *
 * Trust chain: dists/SUITE/InRelease is fetched every time (it is how we learn the current
 * hashes) and its OpenPGP signature checked (inrelease.ts); every other download is checked
 * against a size and sha256 from that signed text, or from a Packages index checked that way.
 *
 * Mirror layout used:
 *   MIRROR/dists/SUITE/InRelease
 *   MIRROR/dists/SUITE/COMP/binary-ARCH/Packages.{gz,xz}          (or by-hash/SHA256/HEX when
 *                                                                 the Release says Acquire-By-Hash)
 *   MIRROR/pool/...                                               (a stanza's Filename)
 *
 * Cache (cacheDir, e.g. ~/.linuxkit/cache/debian):
 *   sha256/HEX                          index files and .debs by content hash, re-verified on read
 *   parsed/HEX.v1                       a parsed Packages index (tab-separated lines), keyed by the
 *                                       compressed file's hash
 *   inrelease/MIRROR-NAME/SUITE/InRelease   the last verified InRelease (used by `offline`)
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { decompress } from '../formats/compress.js';
import { readFileChecked, writeFileAtomic, writeFileChecked } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { field, parseDeb822, type Stanza } from './deb822.js';
import { loadKeyring, type ReleaseFileEntry, type VerifiedRelease, verifyInRelease } from './inrelease.js';
import { compareVersions, satisfies, type VersionOp } from './version.js';

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';

/** One alternative of a dependency: `name[:arch] [(op version)]`. */
export interface DepAlt {
  name: string;
  op?: VersionOp;
  version?: string;
  /** An arch qualifier as written: `any`, `native`, or an architecture name. */
  arch?: string;
}

/** `a | b | c`: satisfied by any one alternative. */
export type DepGroup = DepAlt[];

export interface PackageInfo {
  name: string;
  version: string;
  arch: string;
  /** Path on the mirror, e.g. pool/main/r/runc/runc_1.1.5+ds1-1+deb12u1_amd64.deb. */
  filename: string;
  sha256: string;
  size: number;
  /** Pre-Depends then Depends. */
  depends: DepGroup[];
  provides: { name: string; version?: string }[];
  multiArch?: string;
  essential?: boolean;
  priority?: string;
  section?: string;
}

// ---------------------------------------------------------------------------------------------
// Dependency fields

const ALT_RE = /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?$/i;

/** Parse a Depends-style field: `a (>= 1) | b:any, c`. Arch lists `[...]` and profiles `<...>` are dropped. */
export function parseDepends(value: string | undefined, what = 'Depends'): DepGroup[] {
  if (value === undefined || value.trim() === '') return [];
  const groups: DepGroup[] = [];
  for (const g of value.split(',')) {
    const alts: DepGroup = [];
    for (let a of g.split('|')) {
      a = a
        .replace(/\[[^\]]*\]/g, '')
        .replace(/<[^>]*>/g, '')
        .trim();
      if (a === '') continue;
      const m = ALT_RE.exec(a);
      if (!m) throw new UserError(`bad ${what} entry ${JSON.stringify(a)}`);
      const alt: DepAlt = { name: (m[1] as string).toLowerCase() };
      if (m[2]) alt.arch = m[2];
      if (m[3]) {
        alt.op = m[3] as VersionOp;
        alt.version = m[4] as string;
      }
      alts.push(alt);
    }
    if (alts.length) groups.push(alts);
  }
  return groups;
}

function parseProvides(value: string | undefined): { name: string; version?: string }[] {
  return parseDepends(value, 'Provides').map((g) => {
    const a = g[0] as DepAlt;
    if (g.length !== 1 || (a.op !== undefined && a.op !== '=')) {
      throw new UserError(`bad Provides entry ${JSON.stringify(value)}`);
    }
    return a.version !== undefined ? { name: a.name, version: a.version } : { name: a.name };
  });
}

/**
 * A package from an index. Depends are parsed on first use: an index has ~63k packages and a
 * resolver looks at a few hundred, so parsing them all would dominate loading the index.
 */
class IndexedPackage implements PackageInfo {
  multiArch?: string;
  essential?: boolean;
  priority?: string;
  section?: string;
  #depends?: DepGroup[];

  constructor(
    readonly name: string,
    readonly version: string,
    readonly arch: string,
    readonly filename: string,
    readonly sha256: string,
    readonly size: number,
    readonly provides: { name: string; version?: string }[],
    /** Raw Pre-Depends and Depends, kept for lazy parsing and the parsed-index cache. */
    readonly rawPreDepends: string,
    readonly rawDepends: string,
  ) {}

  get depends(): DepGroup[] {
    this.#depends ??= [
      ...parseDepends(this.rawPreDepends, `${this.name} ${this.version} Pre-Depends`),
      ...parseDepends(this.rawDepends, `${this.name} ${this.version} Depends`),
    ];
    return this.#depends;
  }

  set depends(d: DepGroup[]) {
    this.#depends = d;
  }

  toJSON(): PackageInfo {
    const { rawPreDepends: _p, rawDepends: _d, ...rest } = this;
    return { ...rest, depends: this.depends };
  }
}

interface RawFields {
  name: string;
  version: string;
  arch: string;
  filename: string;
  sha256: string;
  size: string;
  preDepends: string;
  depends: string;
  provides: string;
  multiArch: string;
  essential: string;
  priority: string;
  section: string;
}

const RAW_KEYS: (keyof RawFields)[] = [
  'name',
  'version',
  'arch',
  'filename',
  'sha256',
  'size',
  'preDepends',
  'depends',
  'provides',
  'multiArch',
  'essential',
  'priority',
  'section',
];

function packageFromRaw(r: RawFields, source: string): IndexedPackage {
  for (const k of ['name', 'version', 'arch', 'filename', 'sha256', 'size'] as const) {
    if (r[k] === '') throw new UserError(`${source}: package ${r.name || '?'} has no ${k} field`);
  }
  const size = Number(r.size);
  const sha256 = r.sha256.toLowerCase();
  if (!/^[0-9]+$/.test(r.size) || !Number.isSafeInteger(size))
    throw new UserError(`${source}: package ${r.name} has a bad Size`);
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new UserError(`${source}: package ${r.name} has a bad SHA256`);
  const p = new IndexedPackage(
    r.name,
    r.version,
    r.arch,
    r.filename,
    sha256,
    size,
    r.provides ? parseProvides(r.provides) : [],
    r.preDepends,
    r.depends,
  );
  if (r.multiArch) p.multiArch = r.multiArch;
  if (r.essential === 'yes') p.essential = true;
  if (r.priority) p.priority = r.priority;
  if (r.section) p.section = r.section;
  return p;
}

function rawFromStanza(s: Stanza): RawFields {
  const f = (k: string) => (field(s, k) ?? '').replace(/\s*\n\s*/g, ' ');
  return {
    name: f('Package'),
    version: f('Version'),
    arch: f('Architecture'),
    filename: f('Filename'),
    sha256: f('SHA256'),
    size: f('Size'),
    preDepends: f('Pre-Depends'),
    depends: f('Depends'),
    provides: f('Provides'),
    multiArch: f('Multi-Arch'),
    essential: f('Essential'),
    priority: f('Priority'),
    section: f('Section'),
  };
}

/** A Packages stanza as a PackageInfo (Depends parsed on first use). */
export function packageFromStanza(s: Stanza, source = 'Packages'): PackageInfo {
  return packageFromRaw(rawFromStanza(s), source);
}

/**
 * The parsed-index cache format: one package per line, the RAW_KEYS fields separated by tabs
 * (none of them can hold a tab or newline once folded lines are joined).
 */
function encodeCompact(pkgs: IndexedPackage[]): string {
  const lines: string[] = [];
  for (const p of pkgs) {
    lines.push(
      [
        p.name,
        p.version,
        p.arch,
        p.filename,
        p.sha256,
        String(p.size),
        p.rawPreDepends,
        p.rawDepends,
        p.provides.map((x) => (x.version !== undefined ? `${x.name} (= ${x.version})` : x.name)).join(', '),
        p.multiArch ?? '',
        p.essential ? 'yes' : '',
        p.priority ?? '',
        p.section ?? '',
      ].join('\t'),
    );
  }
  return lines.join('\n');
}

const corruptParsedIndex = (source: string) =>
  new UserError(`${source}: corrupt parsed index (remove it: the next build parses the index again)`);

/** One line of the compact form as a package. */
function decodeLine(line: string, source: string): IndexedPackage {
  const v = line.split('\t');
  if (v.length !== RAW_KEYS.length) throw corruptParsedIndex(source);
  const r = {} as RawFields;
  for (let i = 0; i < RAW_KEYS.length; i++) r[RAW_KEYS[i] as keyof RawFields] = v[i] as string;
  return packageFromRaw(r, source);
}

const TAB = 9;
const NEWLINE = 10;
const ARCH_FIELD = RAW_KEYS.indexOf('arch');
const PROVIDES_FIELD = RAW_KEYS.indexOf('provides');

// ---------------------------------------------------------------------------------------------
// The index

export interface Provider {
  pkg: PackageInfo;
  /** The provided version, if the Provides entry has one (`foo (= 1.2)`). */
  version?: string;
}

/** A Packages index in the compact form (see encodeCompact), and the file it came from. */
export interface CompactText {
  buf: Buffer;
  source: string;
}

/**
 * A line of a compact index not yet decoded, as one number: which text (times 2^32) plus the
 * line's offset in it. Numbers, not objects: a suite has ~63k packages, a build looks at a few
 * hundred, and holding every one as objects cost ~80 MB of heap.
 */
type LineRef = number;
const TEXT_STRIDE = 2 ** 32;

/**
 * Packages by name (all versions, highest first) and by what they provide. Built from packages,
 * or over compact index texts (fromCompact), whose lines are decoded when a name is looked up.
 */
export class PackageIndex {
  private readonly byName = new Map<string, PackageInfo[] | LineRef[]>();
  private readonly byProvides = new Map<string, Provider[] | LineRef[]>();
  private readonly texts: CompactText[] = [];
  /** Decoded lines, so that byName and byProvides hand out the same objects. */
  private readonly decoded = new Map<LineRef, PackageInfo>();

  constructor(packages: Iterable<PackageInfo> = []) {
    const byName = new Map<string, PackageInfo[]>();
    const byProvides = new Map<string, Provider[]>();
    for (const p of packages) {
      push(byName, p.name, p);
      for (const pr of p.provides) push(byProvides, pr.name, provider(p, pr.version));
    }
    for (const [name, l] of byName) this.byName.set(name, sortVersions(l));
    for (const [name, l] of byProvides) this.byProvides.set(name, sortProviders(l));
  }

  /**
   * An index over compact texts (the parsed-index cache's form, see encodeCompact) that keeps
   * only packages of `arches`. Reading a line here takes its name, architecture and Provides;
   * the rest is decoded when the name is looked up.
   */
  static fromCompact(texts: CompactText[], arches: string[]): PackageIndex {
    const idx = new PackageIndex();
    const byName = idx.byName as Map<string, LineRef[]>;
    const byProvides = idx.byProvides as Map<string, LineRef[]>;
    for (const [t, { buf, source }] of texts.entries()) {
      idx.texts.push({ buf, source });
      const tabs: number[] = [];
      for (let start = 0; start < buf.length; ) {
        let end = buf.indexOf(NEWLINE, start);
        if (end < 0) end = buf.length;
        tabs.length = 0;
        for (let i = buf.indexOf(TAB, start); i >= 0 && i < end; i = buf.indexOf(TAB, i + 1)) tabs.push(i);
        if (tabs.length !== RAW_KEYS.length - 1) throw corruptParsedIndex(source);
        const fieldText = (f: number) => buf.toString('utf8', f === 0 ? start : tabs[f - 1]! + 1, tabs[f]!);
        if (arches.includes(fieldText(ARCH_FIELD))) {
          const ref = t * TEXT_STRIDE + start;
          push(byName, fieldText(0), ref);
          const provides = fieldText(PROVIDES_FIELD);
          if (provides !== '') for (const pr of parseProvides(provides)) push(byProvides, pr.name, ref);
        }
        start = end + 1;
      }
    }
    return idx;
  }

  private decode(ref: LineRef): PackageInfo {
    let p = this.decoded.get(ref);
    if (!p) {
      const { buf, source } = this.texts[Math.floor(ref / TEXT_STRIDE)]!;
      const start = ref % TEXT_STRIDE;
      const end = buf.indexOf(NEWLINE, start);
      p = decodeLine(buf.toString('utf8', start, end < 0 ? buf.length : end), source);
      this.decoded.set(ref, p);
    }
    return p;
  }

  /** Number of distinct package names. */
  get size(): number {
    return this.byName.size;
  }

  names(): string[] {
    return [...this.byName.keys()].sort(cmp);
  }

  /** Every version of a real package, highest first. */
  versions(name: string): PackageInfo[] {
    const l = this.byName.get(name);
    if (!l) return [];
    if (!isRefs(l)) return l;
    const pkgs = sortVersions(l.map((r) => this.decode(r)));
    this.byName.set(name, pkgs);
    return pkgs;
  }

  /** The highest version of `name`, or the highest satisfying `op version`. */
  get(name: string, op?: VersionOp | string, version?: string): PackageInfo | undefined {
    const l = this.versions(name);
    if (op === undefined || version === undefined) return l[0];
    return l.find((p) => satisfies(p.version, op, version));
  }

  /** Packages that declare `Provides: name`, sorted by package name then version (highest first). */
  providers(name: string): Provider[] {
    const l = this.byProvides.get(name);
    if (!l) return [];
    if (!isRefs(l)) return l;
    const found: Provider[] = [];
    for (const r of new Set(l)) {
      const p = this.decode(r);
      for (const pr of p.provides) if (pr.name === name) found.push(provider(p, pr.version));
    }
    const sorted = sortProviders(found);
    this.byProvides.set(name, sorted);
    return sorted;
  }
}

function push<T>(m: Map<string, T[]>, key: string, v: T): void {
  const l = m.get(key);
  if (l) l.push(v);
  else m.set(key, [v]);
}

const isRefs = <T>(l: T[] | LineRef[]): l is LineRef[] => typeof l[0] === 'number';

const provider = (pkg: PackageInfo, version: string | undefined): Provider =>
  version !== undefined ? { pkg, version } : { pkg };

/** One package per version and architecture (the first seen), highest version first. */
function sortVersions(l: PackageInfo[]): PackageInfo[] {
  const seen = new Set<string>();
  const out = l.filter((p) => {
    const k = `${p.version} ${p.arch}`;
    return !seen.has(k) && seen.add(k);
  });
  return out.sort((a, b) => compareVersions(b.version, a.version) || cmp(a.arch, b.arch));
}

function sortProviders(l: Provider[]): Provider[] {
  return l.sort((a, b) => cmp(a.pkg.name, b.pkg.name) || compareVersions(b.pkg.version, a.pkg.version));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Mirror selection

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** The `deb` entries of the host's apt configuration, in the order apt reads them. */
export function readAptSources(root = '/'): AptSource[] {
  const out: AptSource[] = [];
  const etc = path.join(root, 'etc/apt');
  const files = [path.join(etc, 'sources.list')];
  try {
    for (const f of readdirSync(path.join(etc, 'sources.list.d')).sort()) {
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(path.join(etc, 'sources.list.d', f));
    }
  } catch {
    // no sources.list.d
  }
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    try {
      out.push(...(f.endsWith('.sources') ? parseSourcesDeb822(text, f) : parseSourcesList(text)));
    } catch {
      // A file apt itself would reject is no reason to fail: we fall back to the default mirror.
    }
  }
  return out;
}

/** One-line format: `deb [opt=val ...] URI SUITE [COMPONENT...]`. */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (let line of text.split('\n')) {
    line = line.replace(/#.*/, '').trim();
    if (!line) continue;
    let signedBy: string | undefined;
    const optsMatch = /\[([^\]]*)\]/.exec(line);
    if (optsMatch) {
      for (const o of (optsMatch[1] as string).trim().split(/\s+/)) {
        const [k, v] = o.split('=');
        if (k === 'signed-by' && v) signedBy = v;
      }
      line = line.replace(optsMatch[0], ' ');
    }
    const [type, uri, suite, ...components] = line.split(/\s+/);
    if (type !== 'deb' || !uri || !suite) continue;
    out.push({ uri, suites: [suite], components, ...(signedBy ? { signedBy } : {}) });
  }
  return out;
}

/** deb822 format (`.sources`): Types, URIs, Suites, Components, Signed-By, Enabled. */
export function parseSourcesDeb822(text: string, source = 'sources'): AptSource[] {
  const out: AptSource[] = [];
  for (const s of parseDeb822(text, source)) {
    if ((field(s, 'Enabled') ?? 'yes').toLowerCase() === 'no') continue;
    const words = (k: string) => (field(s, k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('Types').includes('deb')) continue;
    const signedBy = field(s, 'Signed-By');
    for (const uri of words('URIs')) {
      out.push({
        uri,
        suites: words('Suites'),
        components: words('Components'),
        ...(signedBy ? { signedBy } : {}),
      });
    }
  }
  return out;
}

/**
 * The mirror to use for `suite`: `explicit` (--debian-mirror), else $LINUXKIT_DEBIAN_MIRROR,
 * else the first http(s) source of the host's apt configuration that lists the suite and all
 * the wanted components and, if it names a Signed-By key, one of Debian's archive keyrings
 * (which keeps third-party repositories out), else deb.debian.org.
 */
export function findMirror(
  suite: string,
  opts: { explicit?: string; components?: string[]; aptRoot?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  const env = opts.env ?? process.env;
  const chosen = opts.explicit || env.LINUXKIT_DEBIAN_MIRROR;
  if (chosen) return normaliseMirror(chosen);
  const components = opts.components ?? ['main'];
  for (const s of readAptSources(opts.aptRoot)) {
    if (!/^https?:\/\//.test(s.uri)) continue;
    if (!s.suites.includes(suite)) continue;
    if (!components.every((c) => s.components.includes(c))) continue;
    if (s.signedBy !== undefined && !/debian-archive/.test(s.signedBy)) continue;
    return normaliseMirror(s.uri);
  }
  return suite.endsWith('-security') ? DEFAULT_SECURITY_MIRROR : DEFAULT_MIRROR;
}

function normaliseMirror(m: string): string {
  const t = m.trim().replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(t))
    throw new UserError(`Debian mirror ${JSON.stringify(m)} is not an http(s) URL`);
  return t;
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface HttpOptions {
  /** Delay before the first retry; doubled for the second. */
  retryDelayMs?: number;
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** GET a URL into memory. A transient failure (network error, 5xx, 408, 429) is retried twice. */
export async function httpGet(url: string, opts: HttpOptions = {}): Promise<Uint8Array> {
  const delay = opts.retryDelayMs ?? 1000;
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, delay * 2 ** (attempt - 1)));
    try {
      const res = await fetch(url, { redirect: 'follow' });
      if (!res.ok) {
        await res.body?.cancel();
        throw new HttpStatusError(res.status, `HTTP ${res.status} ${res.statusText}`.trim());
      }
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (e instanceof HttpStatusError) {
        last = e.message;
        const transient = e.status >= 500 || e.status === 408 || e.status === 429;
        if (!transient) break;
      } else {
        const cause = (e as { cause?: { message?: string; code?: string } }).cause;
        last = cause?.code ?? cause?.message ?? (e as Error).message;
      }
    }
  }
  throw new UserError(`cannot download ${url}: ${last}`);
}

// ---------------------------------------------------------------------------------------------
// The archive

export interface DebianArchiveOptions {
  /** Mirror base URL (e.g. http://deb.debian.org/debian); see `findMirror` for the default. */
  mirror?: string;
  suite: string;
  /** Default ['main']. */
  components?: string[];
  /** Default 'amd64'. */
  arch?: string;
  /** Where downloads are cached, e.g. ~/.linuxkit/cache/debian. */
  cacheDir: string;
  /** Use the last verified InRelease and cached files only; never touch the network. */
  offline?: boolean;
  /**
   * Reuse the cached InRelease while it is younger than this many ms (default one day; 0
   * always asks the mirror, as `--pull` does).
   */
  maxAge?: number;
  /** Accept an InRelease past its Valid-Until. */
  allowExpired?: boolean;
  /** Keyring files to trust (default: the host's Debian keyring, else the shipped one). */
  keyrings?: string[];
  /** Where to read apt sources from when no mirror is given (default '/'). */
  aptRoot?: string;
  http?: HttpOptions;
}

const DEFAULT_MAX_AGE = 24 * 3600 * 1000;

/**
 * When the oldest cached InRelease under a Debian cache directory goes stale (a build then asks
 * the mirror again, and package tags may change), in ms since the epoch; undefined if none.
 */
export async function inReleaseExpiry(cacheDir: string): Promise<number | undefined> {
  const dir = path.join(cacheDir, 'inrelease');
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let oldest: number | undefined;
  for (const n of names) {
    const st = await stat(path.join(dir, n));
    if (st.isFile()) oldest = Math.min(oldest ?? st.mtimeMs, st.mtimeMs);
  }
  return oldest === undefined ? undefined : oldest + DEFAULT_MAX_AGE;
}

/** Bumped when the parsed-index cache format changes, so old files are not reused. */
const PARSED_FORMAT = 1;

const packageIndexes = new Map<string, Promise<PackageIndex>>();

function sha256hex(d: Uint8Array | string): string {
  return createHash('sha256').update(d).digest('hex');
}

function mirrorDirName(mirror: string): string {
  return mirror.replace(/^https?:\/\//, '').replace(/[^A-Za-z0-9._-]+/g, '_');
}

export class DebianArchive {
  readonly mirror: string;
  readonly suite: string;
  readonly components: string[];
  readonly arch: string;
  readonly cacheDir: string;
  private readonly opts: DebianArchiveOptions;
  private releaseP?: Promise<VerifiedRelease>;
  private inReleaseP?: Promise<{ bytes: Uint8Array; source: string; fetched: boolean }>;
  private packagesP?: Promise<PackageIndex>;

  constructor(opts: DebianArchiveOptions) {
    if (!/^[A-Za-z0-9._-]+$/.test(opts.suite))
      throw new UserError(`bad Debian suite name ${JSON.stringify(opts.suite)}`);
    this.opts = opts;
    this.suite = opts.suite;
    this.components = opts.components?.length ? opts.components : ['main'];
    this.arch = opts.arch ?? 'amd64';
    for (const c of [...this.components, this.arch]) {
      if (!/^[A-Za-z0-9._-]+$/.test(c))
        throw new UserError(`bad Debian component or architecture ${JSON.stringify(c)}`);
    }
    this.cacheDir = opts.cacheDir;
    this.mirror = findMirror(this.suite, {
      ...(opts.mirror ? { explicit: opts.mirror } : {}),
      components: this.components,
      ...(opts.aptRoot ? { aptRoot: opts.aptRoot } : {}),
    });
  }

  private get distsUrl(): string {
    return `${this.mirror}/dists/${this.suite}`;
  }

  private get inReleaseCachePath(): string {
    return path.join(this.cacheDir, 'inrelease', mirrorDirName(this.mirror), this.suite, 'InRelease');
  }

  /** The suite's verified InRelease (fetched once per DebianArchive object). */
  release(): Promise<VerifiedRelease> {
    this.releaseP ??= this.loadRelease();
    return this.releaseP;
  }

  /**
   * sha256 of the InRelease this archive uses, without verifying it: a key for data derived
   * from it (derived data is only ever stored after its InRelease was verified).
   */
  async releaseDigest(): Promise<string> {
    return sha256hex((await this.inRelease()).bytes);
  }

  /**
   * The InRelease bytes: the cached copy while it is younger than `maxAge` (like an image
   * tag in the cache: builds need no network and keep their package tags), else the mirror's.
   */
  private inRelease(): Promise<{ bytes: Uint8Array; source: string; fetched: boolean }> {
    this.inReleaseP ??= (async () => {
      const url = `${this.distsUrl}/InRelease`;
      const cached = this.inReleaseCachePath;
      const maxAge = this.opts.offline ? Number.POSITIVE_INFINITY : (this.opts.maxAge ?? DEFAULT_MAX_AGE);
      const age = await stat(cached).then(
        (st) => Date.now() - st.mtimeMs,
        () => undefined,
      );
      if (age !== undefined && age >= 0 && age < maxAge)
        return { bytes: await readFile(cached), source: `${url} (cached)`, fetched: false };
      if (this.opts.offline)
        throw new UserError(
          `offline: no cached InRelease for ${this.suite} from ${this.mirror} (run once online first)`,
        );
      const bytes = await httpGet(url, this.opts.http);
      // Unchanged on the mirror: the cached copy (verified when stored) is current again.
      const same = await readFile(cached).then(
        (old) => Buffer.from(old).equals(bytes),
        () => false,
      );
      if (same) {
        const now = new Date();
        await utimes(cached, now, now);
      }
      return { bytes, source: url, fetched: !same };
    })();
    return this.inReleaseP;
  }

  private async loadRelease(): Promise<VerifiedRelease> {
    const keys = await loadKeyring(this.opts.keyrings);
    const { bytes, source, fetched } = await this.inRelease();
    const text = new TextDecoder().decode(bytes);
    const rel = await verifyInRelease(text, { keys, source, allowExpired: this.opts.allowExpired ?? false });
    // A validly signed Release of another suite (say, an old one) must not stand in for this one.
    const names = [field(rel.fields, 'Codename'), field(rel.fields, 'Suite')];
    if (!names.includes(this.suite)) {
      throw new UserError(
        `${source} is for ${names.filter(Boolean).join('/') || 'an unnamed suite'}, not ${this.suite}`,
      );
    }
    if (fetched) {
      const cached = this.inReleaseCachePath;
      await mkdir(path.dirname(cached), { recursive: true });
      await writeFileAtomic(cached, bytes);
    }
    return rel;
  }

  /** The suite's Packages indexes for our components and architecture, verified and parsed. */
  packages(): Promise<PackageIndex> {
    this.packagesP ??= this.loadPackages();
    return this.packagesP;
  }

  private async loadPackages(): Promise<PackageIndex> {
    const rel = await this.release();
    const files: [string, ReleaseFileEntry][] = [];
    for (const comp of this.components) {
      const base = `${comp}/binary-${this.arch}/Packages`;
      // gzip before xz: the xz decoder here is WebAssembly and ~5x slower than zlib, which
      // costs more than the 3 MB the bigger download adds (and it is cached by hash anyway).
      const name = ['.gz', '.xz', ''].map((ext) => base + ext).find((p) => rel.files.has(p));
      if (!name) {
        throw new UserError(
          `${this.distsUrl}/InRelease lists no ${base}{.gz,.xz} (is "${comp}" a component of ${this.suite}?)`,
        );
      }
      files.push([name, rel.files.get(name) as ReleaseFileEntry]);
    }
    // Shared by every DebianArchive of this process with the same indexes: a build resolves
    // several packages against the same suite.
    const key = [this.cacheDir, this.arch, ...files.map(([, e]) => e.sha256)].join('\0');
    let index = packageIndexes.get(key);
    if (!index) {
      index = (async () => {
        const texts: CompactText[] = [];
        for (const [name, entry] of files) texts.push(await this.loadIndexFile(name, entry));
        return PackageIndex.fromCompact(texts, [this.arch, 'all']);
      })();
      packageIndexes.set(key, index);
      index.catch(() => packageIndexes.delete(key));
    }
    return index;
  }

  /** A Packages index in the compact form (see encodeCompact), from the parsed-index cache or made now. */
  private async loadIndexFile(name: string, entry: ReleaseFileEntry): Promise<CompactText> {
    const parsedPath = path.join(this.cacheDir, 'parsed', `${entry.sha256}.v${PARSED_FORMAT}`);
    const parsed = await readFileChecked(parsedPath);
    if (parsed) return { buf: parsed, source: parsedPath };
    const rel = await this.release();
    const plain = `${this.distsUrl}/${name}`;
    const urls =
      field(rel.fields, 'Acquire-By-Hash') === 'yes'
        ? [`${this.distsUrl}/${path.posix.dirname(name)}/by-hash/SHA256/${entry.sha256}`, plain]
        : [plain];
    const data = await this.fetchVerified(urls, entry.sha256, entry.size);
    const text = new TextDecoder().decode(await decompress(data));
    const pkgs = parseDeb822(text, plain).map((s) => packageFromRaw(rawFromStanza(s), plain));
    const buf = Buffer.from(encodeCompact(pkgs));
    await writeFileChecked(parsedPath, buf);
    return { buf, source: parsedPath };
  }

  /** Download a package's .deb (or take it from the cache), checked against the signed index. */
  async fetchDeb(pkg: PackageInfo): Promise<Uint8Array> {
    const f = pkg.filename;
    if (f.startsWith('/') || f.split('/').some((c) => c === '..' || c === '') || /[?#\s]/.test(f)) {
      throw new UserError(`package ${pkg.name}: unsafe Filename ${JSON.stringify(f)}`);
    }
    return this.fetchVerified([`${this.mirror}/${f}`], pkg.sha256, pkg.size);
  }

  private blobPath(sha256: string): string {
    return path.join(this.cacheDir, 'sha256', sha256);
  }

  /**
   * Content-addressed fetch: from the cache if it still hashes right, else from the first URL
   * that answers, verified before it is written (temp file, fsync, rename) and returned.
   */
  private async fetchVerified(urls: string[], sha256: string, size: number): Promise<Uint8Array> {
    const p = this.blobPath(sha256);
    try {
      const data = await readFile(p);
      if (data.length === size && sha256hex(data) === sha256) return data;
      await rm(p, { force: true }); // corrupt or truncated: fetch it again
    } catch {
      // not cached
    }
    if (this.opts.offline) throw new UserError(`offline: ${urls[urls.length - 1]} is not in the cache`);
    let data: Uint8Array | undefined;
    let lastErr: unknown;
    for (const url of urls) {
      try {
        data = await httpGet(url, this.opts.http);
      } catch (e) {
        lastErr = e;
        continue;
      }
      if (data.length !== size) {
        throw new UserError(`${url}: size ${data.length} does not match the signed index (${size})`);
      }
      const got = sha256hex(data);
      if (got !== sha256)
        throw new UserError(`${url}: sha256 ${got} does not match the signed index (${sha256})`);
      break;
    }
    if (!data) throw lastErr;
    await mkdir(path.dirname(p), { recursive: true });
    await writeFileAtomic(p, data);
    return data;
  }
}
