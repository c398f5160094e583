/**
 * OCI runtime bundle config for one onboot / onshutdown / service container, computed as
 * upstream LinuxKit does (src/cmd/linuxkit/moby/config.go ConfigToOCI, build/image.go
 * ImageBundle).
 *
 * Bundle layout, at `containers/<section>/<name>/` in the system tree:
 *   config.json   the OCI runtime spec (below), Go json.MarshalIndent with 4 spaces, no final NL
 *   runtime.json  LinuxKit's own per-container setup for init: {cgroups, mounts, mkdir,
 *                 interfaces, bindNS{cgroup,ipc,mnt,net,pid,user,uts}, namespace}; every key
 *                 always present ([] / "" when unset), mounts led by the rootfs mounts
 *   readonly:  rootfs/  the image's files; runtime.json binds rootfs onto itself (runc wants a
 *                       mount point)
 *   writable:  lower/   the image's files; tmp/ and rootfs/ empty; runtime.json mounts a tmpfs
 *                       on tmp/, remounts it private, then an overlay lower + tmp/upper +
 *                       tmp/work on rootfs/
 * When an earlier bundle already holds the same image, its root dir is reused (bind or
 * lowerdir) and nothing is extracted.
 *
 * Where each value comes from: the YAML entry wins over the image's `org.mobyproject.config`
 * label, which wins over the image config (Entrypoint+Cmd, Env, WorkingDir) and built-in
 * defaults. Lists and maps are replaced whole, never merged, except `capabilities.add` and
 * `binds.add` in the YAML, which extend the label's list.
 */
import { posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { ContainerSpec } from '../spec/types.js';
import { UserError } from '../util/errors.js';
import { ALL_CAPABILITIES, isKnownCapability } from './capabilities.js';

/** ociVersion written by upstream: runtime-spec specs.Version of the Go module it vendors. */
export const OCI_VERSION = '1.2.0';

/** The image label whose JSON (or YAML) gives a container's default settings. */
export const CONFIG_LABEL = 'org.mobyproject.config';

// ---------------------------------------------------------------------------------------------
// Settings: everything an image label or a YAML container entry may say (upstream ImageConfig).
// Key names are upstream's YAML keys, including the dotted `capabilities.add` / `binds.add`.
// ---------------------------------------------------------------------------------------------

export interface IdMapping {
  containerID?: number;
  hostID?: number;
  size?: number;
}

/** A mount in `mounts:` or `runtime.mounts:` (upstream decodes these into specs.Mount). */
export interface MountSettings {
  destination?: string;
  type?: string;
  source?: string;
  options?: string[];
  uidmappings?: IdMapping[];
  gidmappings?: IdMapping[];
}

export interface DeviceSettings {
  /** A device node path, or `all` to allow a whole device type in the cgroup. */
  path?: string;
  /** `c`, `b`, `u`, `p` (or `a` with path `all`). */
  type?: string;
  major?: number;
  minor?: number;
  /** Octal permission bits, e.g. "0666". Required unless path is `all`. */
  mode?: string;
}

export interface DeviceCgroupSettings {
  allow?: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface ResourcesSettings {
  devices?: DeviceCgroupSettings[];
  memory?: {
    limit?: number;
    reservation?: number;
    swap?: number;
    kernel?: number;
    kernelTCP?: number;
    swappiness?: number;
    disableOOMKiller?: boolean;
  };
  cpu?: {
    shares?: number;
    quota?: number;
    period?: number;
    realtimeRuntime?: number;
    realtimePeriod?: number;
    cpus?: string;
    mems?: string;
  };
  pids?: { limit?: number };
  blockio?: {
    weight?: number;
    leafWeight?: number;
    weightDevice?: { major?: number; minor?: number; weight?: number; leafWeight?: number }[];
    throttleReadBpsDevice?: ThrottleDevice[];
    throttleWriteBpsDevice?: ThrottleDevice[];
    throttleReadIOPSDevice?: ThrottleDevice[];
    throttleWriteIOPSDevice?: ThrottleDevice[];
  };
  hugepageLimits?: { pageSize?: string | number; limit?: number }[];
  network?: { classID?: number; priorities?: { name?: string; priority?: number }[] };
}

export interface ThrottleDevice {
  major?: number;
  minor?: number;
  rate?: number;
}

export interface InterfaceSettings {
  name?: string;
  add?: string;
  peer?: string;
  createInRoot?: boolean;
}

export interface BindNSSettings {
  cgroup?: string;
  ipc?: string;
  mnt?: string;
  net?: string;
  pid?: string;
  user?: string;
  uts?: string;
}

/** Applied by init around container creation, not by runc. */
export interface RuntimeSettings {
  cgroups?: string[];
  mounts?: MountSettings[];
  mkdir?: string[];
  interfaces?: InterfaceSettings[];
  bindNS?: BindNSSettings;
  namespace?: string;
}

/** A user or group: a number, or a container name (mapped through the build's id map). */
export type IdSpec = string | number;

export interface ImageSettings {
  capabilities?: string[];
  'capabilities.add'?: string[];
  ambient?: string[];
  mounts?: MountSettings[];
  binds?: string[];
  'binds.add'?: string[];
  devices?: DeviceSettings[];
  tmpfs?: string[];
  command?: string[];
  env?: string[];
  cwd?: string;
  net?: string;
  pid?: string;
  ipc?: string;
  uts?: string;
  userns?: string;
  hostname?: string;
  readonly?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  uid?: IdSpec;
  gid?: IdSpec;
  additionalGids?: IdSpec[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  rootfsPropagation?: string;
  cgroupsPath?: string;
  resources?: ResourcesSettings;
  sysctl?: Record<string, string>;
  rlimits?: string[];
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  annotations?: Record<string, string>;
  runtime?: RuntimeSettings;
}

/** Every ImageSettings key, in upstream's struct order. */
export const SETTINGS_KEYS = [
  'capabilities',
  'capabilities.add',
  'ambient',
  'mounts',
  'binds',
  'binds.add',
  'devices',
  'tmpfs',
  'command',
  'env',
  'cwd',
  'net',
  'pid',
  'ipc',
  'uts',
  'userns',
  'hostname',
  'readonly',
  'maskedPaths',
  'readonlyPaths',
  'uid',
  'gid',
  'additionalGids',
  'noNewPrivileges',
  'oomScoreAdj',
  'rootfsPropagation',
  'cgroupsPath',
  'resources',
  'sysctl',
  'rlimits',
  'uidMappings',
  'gidMappings',
  'annotations',
  'runtime',
] as const satisfies readonly (keyof ImageSettings)[];

// The label is validated like upstream's JSON schema (moby/schema.go, the `image` definition
// without name/image): strict objects, integers where it says integer.
const int = z.number().int();
const strings = z.array(z.string());
const idSpec = z.union([z.string(), int]);
const idMapping = z.strictObject({
  hostID: int.optional(),
  containerID: int.optional(),
  size: int.optional(),
});
const mount = z.strictObject({
  destination: z.string().optional(),
  type: z.string().optional(),
  source: z.string().optional(),
  options: strings.optional(),
  uidmappings: z.array(idMapping).optional(),
  gidmappings: z.array(idMapping).optional(),
});
const throttle = z.strictObject({ major: int.optional(), minor: int.optional(), rate: int.optional() });
const resources = z.strictObject({
  devices: z
    .array(
      z.strictObject({
        allow: z.boolean().optional(),
        type: z.string().optional(),
        major: int.optional(),
        minor: int.optional(),
        access: z.string().optional(),
      }),
    )
    .optional(),
  memory: z
    .strictObject({
      limit: int.optional(),
      reservation: int.optional(),
      swap: int.optional(),
      kernel: int.optional(),
      kernelTCP: int.optional(),
      swappiness: int.optional(),
      disableOOMKiller: z.boolean().optional(),
    })
    .optional(),
  cpu: z
    .strictObject({
      shares: int.optional(),
      quota: int.optional(),
      period: int.optional(),
      realtimeRuntime: int.optional(),
      realtimePeriod: int.optional(),
      cpus: z.string().optional(),
      mems: z.string().optional(),
    })
    .optional(),
  pids: z.strictObject({ limit: int.optional() }).optional(),
  blockio: z
    .strictObject({
      weight: int.optional(),
      leafWeight: int.optional(),
      weightDevice: z
        .array(
          z.strictObject({
            major: int.optional(),
            minor: int.optional(),
            weight: int.optional(),
            leafWeight: int.optional(),
          }),
        )
        .optional(),
      throttleReadBpsDevice: z.array(throttle).optional(),
      throttleWriteBpsDevice: z.array(throttle).optional(),
      throttleReadIOPSDevice: z.array(throttle).optional(),
      throttleWriteIOPSDevice: z.array(throttle).optional(),
    })
    .optional(),
  // upstream's schema says integer, the OCI field is a string ("2MB"): accept both.
  hugepageLimits: z
    .array(z.strictObject({ pageSize: z.union([z.string(), int]).optional(), limit: int.optional() }))
    .optional(),
  network: z
    .strictObject({
      classID: int.optional(),
      priorities: z
        .array(z.strictObject({ name: z.string().optional(), priority: int.optional() }))
        .optional(),
    })
    .optional(),
});
const bindNS = z.strictObject({
  cgroup: z.string().optional(),
  ipc: z.string().optional(),
  mnt: z.string().optional(),
  net: z.string().optional(),
  pid: z.string().optional(),
  user: z.string().optional(),
  uts: z.string().optional(),
});
const runtime = z.strictObject({
  cgroups: strings.optional(),
  mounts: z.array(mount).optional(),
  mkdir: strings.optional(),
  interfaces: z
    .array(
      z.strictObject({
        name: z.string().optional(),
        add: z.string().optional(),
        peer: z.string().optional(),
        createInRoot: z.boolean().optional(),
      }),
    )
    .optional(),
  bindNS: bindNS.optional(),
  namespace: z.string().optional(),
  // Upstream's schema allows it in labels; it only matters to containerd's restart logic.
  noRestart: z.boolean().optional(),
});

/** The label's schema. Also fits the YAML container entry minus `name` and `image`. */
export const imageSettingsSchema = z.strictObject({
  capabilities: strings.optional(),
  'capabilities.add': strings.optional(),
  ambient: strings.optional(),
  mounts: z.array(mount).optional(),
  binds: strings.optional(),
  'binds.add': strings.optional(),
  devices: z
    .array(
      z.strictObject({
        path: z.string().optional(),
        type: z.string().optional(),
        major: int.optional(),
        minor: int.optional(),
        mode: z.string().optional(),
      }),
    )
    .optional(),
  tmpfs: strings.optional(),
  command: strings.optional(),
  env: strings.optional(),
  cwd: z.string().optional(),
  net: z.string().optional(),
  pid: z.string().optional(),
  ipc: z.string().optional(),
  uts: z.string().optional(),
  userns: z.string().optional(),
  hostname: z.string().optional(),
  readonly: z.boolean().optional(),
  maskedPaths: strings.optional(),
  readonlyPaths: strings.optional(),
  uid: idSpec.optional(),
  gid: idSpec.optional(),
  additionalGids: z.array(idSpec).optional(),
  noNewPrivileges: z.boolean().optional(),
  oomScoreAdj: int.optional(),
  rootfsPropagation: z.string().optional(),
  cgroupsPath: z.string().optional(),
  resources: resources.optional(),
  sysctl: z.record(z.string(), z.string()).optional(),
  rlimits: strings.optional(),
  uidMappings: z.array(idMapping).optional(),
  gidMappings: z.array(idMapping).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  runtime: runtime.optional(),
});
// Compile-time check that the schema and the interface agree.
const _schemaFits: z.ZodType<ImageSettings> = imageSettingsSchema;
void _schemaFits;

/**
 * Parses an `org.mobyproject.config` label. Upstream reads it with a YAML parser (so YAML is
 * accepted as well as JSON) and rejects `name` / `image` in it.
 */
export function parseConfigLabel(text: string, imageRef: string): ImageSettings {
  const where = `the ${CONFIG_LABEL} label of ${imageRef}`;
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new UserError(`${where} is not valid JSON or YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UserError(`${where} must be a JSON object`);
  }
  for (const key of ['name', 'image']) {
    if (key in raw) throw new UserError(`${where}: ${key} cannot be set in the label`);
  }
  const r = imageSettingsSchema.safeParse(raw);
  if (!r.success) {
    const msgs = r.error.issues.map((i) => {
      const at = i.path.length ? `${i.path.join('.')}: ` : '';
      return `${at}${i.message}`;
    });
    throw new UserError(`${where} is invalid: ${msgs.join('; ')}`);
  }
  return r.data as ImageSettings;
}

/**
 * The settings a YAML container entry gives. Picks every ImageSettings key present, so fields
 * added to ContainerSpec later (under upstream's key names) take effect without a change here.
 */
export function yamlSettings(spec: ContainerSpec): ImageSettings {
  const src = spec as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of SETTINGS_KEYS) {
    if (src[key] !== undefined) out[key] = src[key];
  }
  return out as ImageSettings;
}

// ---------------------------------------------------------------------------------------------
// Output types (runtime-spec JSON names; objects are built in Go struct field order so that
// encodeGoJson gives upstream's bytes).
// ---------------------------------------------------------------------------------------------

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  uidMappings?: OciIdMapping[];
  gidMappings?: OciIdMapping[];
}

export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** rlimit values are uint64: `unlimited` (2^64-1) does not fit a JS number, so it is a bigint. */
export interface OciRlimit {
  type: string;
  hard: number | bigint;
  soft: number | bigint;
}

export interface OciNamespace {
  type: 'network' | 'ipc' | 'uts' | 'pid' | 'user' | 'mount' | 'cgroup';
  path?: string;
}

export interface OciSpec {
  ociVersion: string;
  process: {
    user: { uid: number; gid: number; additionalGids?: number[] };
    args?: string[];
    env?: string[];
    cwd: string;
    capabilities: {
      bounding?: string[];
      effective?: string[];
      inheritable?: string[];
      permitted?: string[];
      ambient?: string[];
    };
    rlimits?: OciRlimit[];
    noNewPrivileges?: boolean;
    oomScoreAdj?: number;
  };
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux: {
    uidMappings?: OciIdMapping[];
    gidMappings?: OciIdMapping[];
    sysctl?: Record<string, string>;
    resources: Record<string, unknown>;
    cgroupsPath?: string;
    namespaces: OciNamespace[];
    devices?: Record<string, unknown>[];
    rootfsPropagation?: string;
    maskedPaths?: string[];
    readonlyPaths?: string[];
  };
}

export interface RuntimeJson {
  cgroups: string[];
  mounts: OciMount[];
  mkdir: string[];
  interfaces: { name?: string; add?: string; peer?: string; createInRoot: boolean }[];
  bindNS: Required<BindNSSettings>;
  namespace: string;
}

export interface ImageConfigLike {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  /** Ignored, as upstream does: the process runs as uid/gid from label/YAML, else 0. */
  User?: string;
  Labels?: Record<string, string>;
}

export interface ContainerConfigOptions {
  /** Container name -> uid/gid, for `uid: NAME` (see containerIdMap). */
  idMap?: Readonly<Record<string, number>>;
  /**
   * The bundle directory relative to the system root, e.g. `containers/onboot/000-sysctl`.
   * Needed for the rootfs mounts at the head of runtime.json's mounts; without it they are
   * left out.
   */
  bundle?: string;
  /**
   * Where an earlier bundle already extracted the same image (its imageRoot()), relative to
   * the system root: this bundle then reuses it and extracts nothing.
   */
  sharedRoot?: string;
  /**
   * The config's `volumes:`. When given, a YAML bind (or bind mount) whose source does not
   * start with `/` names a volume and is pointed at its merged dir (see volumeBinds).
   */
  volumes?: readonly VolumeRef[];
}

export interface VolumeRef {
  name: string;
  readonly?: boolean;
}

/** Where the volumes live in the system (upstream allVolumesBaseDir), relative to the root. */
export const VOLUMES_DIR = 'containers/volumes';

/** What containers bind for a volume: lower/ as is (read-only) or with an overlay (writable). */
export const volumeMergedDir = (name: string): string => `/${VOLUMES_DIR}/${name}/merged`;

/**
 * Upstream's updateMountsAndBindsFromVolumes: in the YAML entry's `binds`, `binds.add` and
 * bind `mounts`, a source not starting with `/` is a volume name, replaced by the volume's
 * merged dir. A read-only volume must be bound `ro`. The label's binds are not rewritten.
 */
export function volumeBinds(
  yaml: ImageSettings,
  volumes: readonly VolumeRef[],
  fail: (msg: string) => never,
): ImageSettings {
  const byName = new Map(volumes.map((v) => [v.name, v]));
  const rewrite = (list: string[] | undefined, field: string) =>
    list?.map((b, i) => {
      const parts = b.split(':');
      const source = parts[0] as string;
      if (source.startsWith('/')) return b;
      const vol = byName.get(source);
      if (!vol) return fail(`${field}[${i}]: no volume named ${JSON.stringify(source)}`);
      if (vol.readonly && parts[2] !== 'ro') {
        fail(`${field}[${i}]: volume ${source} is read-only, but is bound read-write (add :ro)`);
      }
      return [volumeMergedDir(source), ...parts.slice(1)].join(':');
    });
  const out: ImageSettings = { ...yaml };
  if (yaml.binds) out.binds = rewrite(yaml.binds, 'binds');
  if (yaml['binds.add']) out['binds.add'] = rewrite(yaml['binds.add'], 'binds.add');
  if (yaml.mounts) {
    out.mounts = yaml.mounts.map((m, i) => {
      const source = m.source ?? '';
      if (m.type !== 'bind' || source.startsWith('/')) return m;
      const vol = byName.get(source);
      if (!vol) return fail(`mounts[${i}]: no volume named ${JSON.stringify(source)}`);
      // the first of rw / ro decides
      const ro = (m.options ?? []).find((o) => o === 'ro' || o === 'rw') === 'ro';
      if (vol.readonly && !ro) fail(`mounts[${i}]: volume ${source} is read-only, but is mounted read-write`);
      return { ...m, source: volumeMergedDir(source) };
    });
  }
  return out;
}

/**
 * A uid or gid as a number (upstream IDNumeric): numbers as they are, `root` or empty 0, and a
 * container name the id the build allocated to that container.
 */
export function idNumeric(
  v: IdSpec | undefined,
  idMap: Readonly<Record<string, number>>,
  fail: (msg: string) => never,
  field: string,
): number {
  if (v === undefined) return 0;
  if (typeof v === 'number') return toU32(v);
  if (v === '' || v === 'root') return 0;
  if (Object.hasOwn(idMap, v)) return idMap[v] as number;
  return fail(`${field}: cannot find id ${JSON.stringify(v)} (a container name is expected)`);
}

export interface BundlePlan {
  /** The OCI runtime spec written to config.json. */
  config: OciSpec;
  /** Upstream's runtime.json. */
  runtime: RuntimeJson;
  /** Image goes to rootfs/ when true, to lower/ (+ overlay at boot) when false. */
  readonly: boolean;
  /** config.json bytes as upstream writes them (Go MarshalIndent, 4 spaces). */
  configJson: string;
  /** runtime.json bytes as upstream writes them. */
  runtimeJson: string;
  /** Dir in the bundle to extract the image into; null when sharedRoot is reused. */
  extractTo: 'rootfs' | 'lower' | null;
  /** Empty dirs (mount points) to create in the bundle, mode 0755. */
  emptyDirs: string[];
}

// ---------------------------------------------------------------------------------------------

/** Upstream numbers containers 100, 101, ... in onboot, onshutdown, services order. */
export function containerIdMap(config: {
  onboot: { name: string }[];
  onshutdown: { name: string }[];
  services: { name: string }[];
}): Record<string, number> {
  const map: Record<string, number> = {};
  let id = 100;
  for (const c of [...config.onboot, ...config.onshutdown, ...config.services]) map[c.name] = id++;
  return map;
}

/** Where a bundle at `bundle` keeps its image files (for sharing with later bundles). */
export function imageRoot(bundle: string, readonly: boolean): string {
  return posix.join(bundle, readonly ? 'rootfs' : 'lower');
}

const U64_MAX = 18446744073709551615n;
const U32 = 2 ** 32;

const RLIMITS = new Set([
  'RLIMIT_CPU',
  'RLIMIT_FSIZE',
  'RLIMIT_DATA',
  'RLIMIT_STACK',
  'RLIMIT_CORE',
  'RLIMIT_RSS',
  'RLIMIT_NPROC',
  'RLIMIT_NOFILE',
  'RLIMIT_MEMLOCK',
  'RLIMIT_AS',
  'RLIMIT_LOCKS',
  'RLIMIT_SIGPENDING',
  'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE',
  'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME',
]);

/** Go's uint32(int) conversion: wraps modulo 2^32. */
const toU32 = (n: number): number => ((n % U32) + U32) % U32;

/** Later argument wins when defined (upstream's pointer fields: `""` and `[]` count as set). */
function pick<T>(...vs: (T | undefined)[]): T | undefined {
  for (let i = vs.length - 1; i >= 0; i--) if (vs[i] !== undefined) return vs[i];
  return undefined;
}

/** Later argument wins when non-empty (upstream's plain string fields: `""` means unset). */
function pickNonEmpty(...vs: (string | undefined)[]): string {
  for (let i = vs.length - 1; i >= 0; i--) {
    const v = vs[i];
    if (v) return v;
  }
  return '';
}

/** Upstream's mergeStrings: concatenation when both are set (it means to dedupe but does not). */
function mergeLists(base: string[] | undefined, add: string[] | undefined): string[] {
  if (base && add) return [...base, ...add];
  return base ?? add ?? [];
}

/** Go's sort.Strings / map key order: byte order of the UTF-8 encoding. */
function goCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sortedMap(m: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!m) return undefined;
  const keys = Object.keys(m).sort(goCompare);
  if (keys.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const k of keys) out[k] = m[k] as string;
  return out;
}

function idMappings(list: IdMapping[] | undefined): OciIdMapping[] | undefined {
  if (!list || list.length === 0) return undefined;
  return list.map((m) => ({ containerID: m.containerID ?? 0, hostID: m.hostID ?? 0, size: m.size ?? 0 }));
}

function ociMount(
  destination: string,
  type: string,
  source: string,
  options: string[] | undefined,
): OciMount {
  const m: OciMount = { destination };
  if (type) m.type = type;
  if (source) m.source = source;
  if (options?.length) m.options = options;
  return m;
}

/** A runtime mount is passed through as decoded (uid/gid mappings kept, unlike config mounts). */
function runtimeMount(m: MountSettings): OciMount {
  const out = ociMount(m.destination ?? '', m.type ?? '', m.source ?? '', m.options);
  const u = idMappings(m.uidmappings);
  if (u) out.uidMappings = u;
  const g = idMappings(m.gidmappings);
  if (g) out.gidMappings = g;
  return out;
}

function defaultMountpoint(type: string): string {
  switch (type) {
    case 'proc':
      return '/proc';
    case 'devpts':
      return '/dev/pts';
    case 'sysfs':
      return '/sys';
    case 'cgroup':
      return '/sys/fs/cgroup';
    case 'mqueue':
      return '/dev/mqueue';
    default:
      return '';
  }
}

/** Go strconv.ParseUint(s, 10, 64), or `unlimited` (any case) for the maximum. */
function parseRlimitValue(s: string, fail: (msg: string) => never): bigint {
  if (s.toLowerCase() === 'unlimited') return U64_MAX;
  if (!/^[0-9]+$/.test(s)) fail(`cannot parse ${JSON.stringify(s)} as a number or "unlimited"`);
  const v = BigInt(s);
  if (v > U64_MAX) fail(`${s} is out of range for a 64-bit limit`);
  return v;
}

const asJsonNumber = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

function capabilityList(list: string[], field: string, fail: (msg: string) => never): string[] {
  let caps = list;
  // `all` / `none` only mean something alone; `[all, CAP_X]` is an unknown capability `all`.
  if (caps.length === 1) {
    const only = (caps[0] as string).toLowerCase();
    if (only === 'none') caps = [];
    else if (only === 'all') caps = [...ALL_CAPABILITIES];
  }
  for (const c of caps) {
    if (!isKnownCapability(c)) fail(`unknown capability in ${field}: ${c}`);
  }
  return caps;
}

/** linux.resources; `extraDevices` (from `devices:`) go after resources.devices. */
function resourcesJson(
  r: ResourcesSettings | undefined,
  extraDevices: Record<string, unknown>[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const set = (o: Record<string, unknown>, k: string, v: unknown) => {
    if (v !== undefined) o[k] = v;
  };
  const devices = [...(r?.devices ?? []).map(deviceCgroupJson), ...extraDevices];
  if (devices.length) out.devices = devices;
  if (!r) return out;
  if (r.memory) {
    const m: Record<string, unknown> = {};
    set(m, 'limit', r.memory.limit);
    set(m, 'reservation', r.memory.reservation);
    set(m, 'swap', r.memory.swap);
    set(m, 'kernel', r.memory.kernel);
    set(m, 'kernelTCP', r.memory.kernelTCP);
    set(m, 'swappiness', r.memory.swappiness);
    set(m, 'disableOOMKiller', r.memory.disableOOMKiller);
    out.memory = m;
  }
  if (r.cpu) {
    const c: Record<string, unknown> = {};
    set(c, 'shares', r.cpu.shares);
    set(c, 'quota', r.cpu.quota);
    set(c, 'period', r.cpu.period);
    set(c, 'realtimeRuntime', r.cpu.realtimeRuntime);
    set(c, 'realtimePeriod', r.cpu.realtimePeriod);
    if (r.cpu.cpus) c.cpus = r.cpu.cpus;
    if (r.cpu.mems) c.mems = r.cpu.mems;
    out.cpu = c;
  }
  // `limit` has no omitempty in the OCI struct
  if (r.pids) out.pids = { limit: r.pids.limit ?? 0 };
  if (r.blockio) {
    const b = r.blockio;
    const o: Record<string, unknown> = {};
    set(o, 'weight', b.weight);
    set(o, 'leafWeight', b.leafWeight);
    if (b.weightDevice?.length) {
      o.weightDevice = b.weightDevice.map((d) => {
        const w: Record<string, unknown> = { major: d.major ?? 0, minor: d.minor ?? 0 };
        set(w, 'weight', d.weight);
        set(w, 'leafWeight', d.leafWeight);
        return w;
      });
    }
    const thr = (l: ThrottleDevice[] | undefined) =>
      l?.length ? l.map((d) => ({ major: d.major ?? 0, minor: d.minor ?? 0, rate: d.rate ?? 0 })) : undefined;
    set(o, 'throttleReadBpsDevice', thr(b.throttleReadBpsDevice));
    set(o, 'throttleWriteBpsDevice', thr(b.throttleWriteBpsDevice));
    set(o, 'throttleReadIOPSDevice', thr(b.throttleReadIOPSDevice));
    set(o, 'throttleWriteIOPSDevice', thr(b.throttleWriteIOPSDevice));
    out.blockIO = o;
  }
  if (r.hugepageLimits?.length) {
    out.hugepageLimits = r.hugepageLimits.map((h) => ({
      pageSize: h.pageSize === undefined ? '' : String(h.pageSize),
      limit: h.limit ?? 0,
    }));
  }
  if (r.network) {
    const n: Record<string, unknown> = {};
    set(n, 'classID', r.network.classID);
    if (r.network.priorities?.length) {
      n.priorities = r.network.priorities.map((p) => ({ name: p.name ?? '', priority: p.priority ?? 0 }));
    }
    out.network = n;
  }
  return out;
}

function deviceCgroupJson(d: DeviceCgroupSettings): Record<string, unknown> {
  const o: Record<string, unknown> = { allow: d.allow ?? false };
  if (d.type) o.type = d.type;
  if (d.major !== undefined) o.major = d.major;
  if (d.minor !== undefined) o.minor = d.minor;
  if (d.access) o.access = d.access;
  return o;
}

/**
 * The config.json and runtime.json of one container. `spec` is the YAML entry, `image` the
 * `config` member of its image's config blob. Throws UserError on a bad label or value.
 */
export function containerConfig(
  spec: ContainerSpec,
  image: ImageConfigLike,
  opts: ContainerConfigOptions = {},
): BundlePlan {
  const fail = (msg: string): never => {
    throw new UserError(`container ${spec.name}: ${msg}`);
  };
  const yaml = opts.volumes ? volumeBinds(yamlSettings(spec), opts.volumes, fail) : yamlSettings(spec);
  const labelText = image.Labels?.[CONFIG_LABEL];
  // an empty label is ignored, as upstream does
  const label: ImageSettings = labelText ? parseConfigLabel(labelText, spec.image) : {};

  // Command, env and cwd may come from the image config (Dockerfile ENTRYPOINT/CMD/ENV/WORKDIR).
  const args = pick([...(image.Entrypoint ?? []), ...(image.Cmd ?? [])], label.command, yaml.command) ?? [];
  const env = pick(image.Env, label.env, yaml.env) ?? [];
  // an empty cwd is not valid OCI: "/" unless someone says otherwise
  const cwd = pickNonEmpty('/', image.WorkingDir, label.cwd, yaml.cwd);
  const readonly = pick(label.readonly, yaml.readonly) ?? false;

  // Default mounts, as Docker has them; /dev/shm and /dev/mqueue are deliberately absent.
  // Later entries replace earlier ones at the same destination: defaults, tmpfs, binds, mounts.
  const mounts = new Map<string, OciMount>();
  const put = (m: OciMount) => mounts.set(m.destination, m);
  put(ociMount('/proc', 'proc', 'proc', ['nosuid', 'nodev', 'noexec', 'relatime']));
  put(
    ociMount('/dev', 'tmpfs', 'tmpfs', [
      'nosuid',
      'strictatime',
      'mode=755',
      'size=65536k',
      ...(readonly ? ['ro'] : []),
    ]),
  );
  put(
    ociMount('/dev/pts', 'devpts', 'devpts', [
      'nosuid',
      'noexec',
      'newinstance',
      'ptmxmode=0666',
      'mode=0620',
    ]),
  );
  put(ociMount('/sys', 'sysfs', 'sysfs', ['nosuid', 'noexec', 'nodev', ...(readonly ? ['ro'] : [])]));
  put(ociMount('/sys/fs/cgroup', 'cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']));
  for (const t of pick(label.tmpfs, yaml.tmpfs) ?? []) {
    const parts = t.split(':');
    if (parts.length > 2) fail(`cannot parse tmpfs ${JSON.stringify(t)}: too many ':'`);
    const dest = parts[0] as string;
    put(ociMount(dest, 'tmpfs', 'tmpfs', parts.length === 2 ? (parts[1] as string).split(',') : undefined));
  }
  // YAML binds replace the label's; YAML binds.add extends them (the label's own binds.add is
  // not used by upstream).
  for (const b of pick(mergeLists(label.binds, yaml['binds.add']), yaml.binds) ?? []) {
    const parts = b.split(':');
    if (parts.length < 2) fail(`cannot parse bind ${JSON.stringify(b)}: missing ':'`);
    if (parts.length > 3) fail(`cannot parse bind ${JSON.stringify(b)}: too many ':'`);
    // without options: rw,rbind,rshared; with options: those, plus rbind appended
    const options =
      parts.length === 3 ? [...(parts[2] as string).split(','), 'rbind'] : ['rw', 'rbind', 'rshared'];
    put(ociMount(parts[1] as string, 'bind', parts[0] as string, options));
  }
  for (const m of pick(label.mounts, yaml.mounts) ?? []) {
    let type = m.type ?? '';
    let source = m.source ?? '';
    let dest = m.destination ?? '';
    if (!type && ['mqueue', 'devpts', 'proc', 'sysfs', 'cgroup'].includes(source)) type = source;
    if (!type && dest === '/dev') type = 'tmpfs';
    if (!type) fail(`mount for destination ${dest} is missing a type`);
    if (!source) source = type;
    if (!dest) dest = defaultMountpoint(type);
    if (!dest) fail(`mount of type ${type} is missing a destination`);
    // uid/gid mappings of a mount are dropped here, as upstream rebuilds the mount
    put(ociMount(dest, type, source, m.options));
  }
  // sorted by destination: deterministic, and /dev comes before /dev/pts
  const mountList = [...mounts.values()].sort((a, b) => goCompare(a.destination, b.destination));

  // Namespaces. net/ipc/uts/user default to the host's ("root"); pid defaults to a new one.
  // `new` (and for net only, `none`) means a new namespace; anything else is a path to join.
  // Note: upstream treats `ipc: none` / `uts: none` as a path named "none", kept as is.
  const namespaces: OciNamespace[] = [];
  const ns = (type: OciNamespace['type'], value: string, noneIsNew: boolean) => {
    if (value === 'host' || value === 'root') return;
    const path = value === 'new' || (noneIsNew && value === 'none') ? '' : value;
    namespaces.push(path ? { type, path } : { type });
  };
  ns('network', pickNonEmpty('root', label.net, yaml.net), true);
  ns('ipc', pickNonEmpty('root', label.ipc, yaml.ipc), false);
  ns('uts', pickNonEmpty('root', label.uts, yaml.uts), false);
  ns('pid', pickNonEmpty(label.pid, yaml.pid), false);
  ns('user', pickNonEmpty('root', label.userns, yaml.userns), false);
  namespaces.push({ type: 'mount' }, { type: 'cgroup' });

  // Capabilities: none unless asked. YAML `capabilities` replaces the label's; YAML
  // `capabilities.add` extends them (duplicates kept in effective). Bounding = inheritable =
  // permitted = sorted union of the effective and ambient sets.
  const caps = capabilityList(
    pick(mergeLists(label.capabilities, yaml['capabilities.add']), yaml.capabilities) ?? [],
    'capabilities',
    fail,
  );
  const ambient = capabilityList(pick(label.ambient, yaml.ambient) ?? [], 'ambient', fail);
  const bounding = [...new Set([...caps, ...ambient])].sort(goCompare);

  const rlimits: OciRlimit[] = [];
  for (const r of pick(label.rlimits, yaml.rlimits) ?? []) {
    const rs = splitN(r, ',', 3);
    if (rs.length !== 3) fail(`cannot parse rlimit ${JSON.stringify(r)}: expected TYPE,SOFT,HARD`);
    let type = (rs[0] as string).trim().toUpperCase();
    if (!type.startsWith('RLIMIT_')) type = `RLIMIT_${type}`;
    const rfail = (msg: string): never => fail(`rlimit ${JSON.stringify(r)}: ${msg}`);
    const soft = parseRlimitValue((rs[1] as string).trim(), rfail);
    const hard = parseRlimitValue((rs[2] as string).trim(), rfail);
    if (!RLIMITS.has(type)) fail(`unknown rlimit ${(rs[0] as string).trim()}`);
    rlimits.push({ type, hard: asJsonNumber(hard), soft: asJsonNumber(soft) });
  }

  const idMap = opts.idMap ?? {};
  const numericId = (v: IdSpec | undefined, field: string): number => idNumeric(v, idMap, fail, field);
  const uid = numericId(pick(label.uid, yaml.uid), 'uid');
  const gid = numericId(pick(label.gid, yaml.gid), 'gid');
  const additionalGids = (pick(label.additionalGids, yaml.additionalGids) ?? []).map((g) =>
    numericId(g, 'additionalGids'),
  );

  // Devices: each node is created in the container and allowed in the device cgroup; path
  // `all` only allows a device type. These rules go after any label/YAML resources.devices.
  const cgroupDevices: Record<string, unknown>[] = [];
  const linuxDevices: Record<string, unknown>[] = [];
  for (const d of pick(label.devices, yaml.devices) ?? []) {
    const type = d.type ?? '';
    if (d.path === 'all') {
      cgroupDevices.push({ allow: true, ...(type ? { type } : {}), access: 'rwm' });
      continue;
    }
    const mode = d.mode ?? '';
    // Go strconv.ParseInt(mode, 8, 32)
    const modeValue = Number.parseInt(mode, 8);
    if (!/^[+-]?[0-7]+$/.test(mode) || modeValue < -(2 ** 31) || modeValue > 2 ** 31 - 1) {
      fail(`device ${d.path ?? ''}: cannot parse mode ${JSON.stringify(mode)} as an octal value`);
    }
    const major = d.major ?? 0;
    const minor = d.minor ?? 0;
    linuxDevices.push({ path: d.path ?? '', type, major, minor, fileMode: toU32(modeValue) });
    cgroupDevices.push({ allow: true, ...(type ? { type } : {}), major, minor, access: 'rwm' });
  }
  const resources = resourcesJson(pick(label.resources, yaml.resources), cgroupDevices);

  const capsJson: OciSpec['process']['capabilities'] = {
    ...(bounding.length ? { bounding } : {}),
    ...(caps.length ? { effective: caps } : {}),
    ...(bounding.length ? { inheritable: bounding, permitted: bounding } : {}),
    ...(ambient.length ? { ambient } : {}),
  };

  // Objects are written in the runtime-spec Go struct order, leaving out what Go's omitempty
  // leaves out (false, 0-length lists and maps, empty strings, nil pointers).
  const oom = pick(label.oomScoreAdj, yaml.oomScoreAdj);
  const process: OciSpec['process'] = {
    user: { uid, gid, ...(additionalGids.length ? { additionalGids } : {}) },
    ...(args.length ? { args } : {}),
    ...(env.length ? { env } : {}),
    cwd,
    capabilities: capsJson,
    ...(rlimits.length ? { rlimits } : {}),
    ...(pick(label.noNewPrivileges, yaml.noNewPrivileges) ? { noNewPrivileges: true } : {}),
    // a pointer upstream: 0 is written when set
    ...(oom !== undefined ? { oomScoreAdj: oom } : {}),
  };

  const uidMappings = idMappings(pick(label.uidMappings, yaml.uidMappings));
  const gidMappings = idMappings(pick(label.gidMappings, yaml.gidMappings));
  const sysctl = sortedMap(pick(label.sysctl, yaml.sysctl));
  const cgroupsPath = pick(label.cgroupsPath, yaml.cgroupsPath);
  const propagation = pick(label.rootfsPropagation, yaml.rootfsPropagation);
  const masked = pick(label.maskedPaths, yaml.maskedPaths) ?? [];
  const roPaths = pick(label.readonlyPaths, yaml.readonlyPaths) ?? [];
  const linux: OciSpec['linux'] = {
    ...(uidMappings ? { uidMappings } : {}),
    ...(gidMappings ? { gidMappings } : {}),
    ...(sysctl ? { sysctl } : {}),
    // a pointer upstream, always set: at least {}
    resources,
    ...(cgroupsPath ? { cgroupsPath } : {}),
    namespaces,
    ...(linuxDevices.length ? { devices: linuxDevices } : {}),
    ...(propagation ? { rootfsPropagation: propagation } : {}),
    ...(masked.length ? { maskedPaths: masked } : {}),
    ...(roPaths.length ? { readonlyPaths: roPaths } : {}),
  };

  const hostname = pickNonEmpty(label.hostname, yaml.hostname);
  const annotations = sortedMap(pick(label.annotations, yaml.annotations));
  const config: OciSpec = {
    ociVersion: OCI_VERSION,
    process,
    root: readonly ? { path: 'rootfs', readonly: true } : { path: 'rootfs' },
    ...(hostname ? { hostname } : {}),
    mounts: mountList,
    ...(annotations ? { annotations } : {}),
    linux,
  };

  // runtime.json: each field from YAML, else label, else empty; every key always written.
  const lr = label.runtime ?? {};
  const yr = yaml.runtime ?? {};
  const bind = (k: keyof BindNSSettings) => pick(lr.bindNS?.[k], yr.bindNS?.[k]) ?? '';
  const layout = bundleLayout(opts.bundle, readonly, opts.sharedRoot);
  const runtime: RuntimeJson = {
    cgroups: pick(lr.cgroups, yr.cgroups) ?? [],
    mounts: [...layout.rootfsMounts, ...(pick(lr.mounts, yr.mounts) ?? []).map(runtimeMount)],
    mkdir: pick(lr.mkdir, yr.mkdir) ?? [],
    interfaces: (pick(lr.interfaces, yr.interfaces) ?? []).map((i) => ({
      ...(i.name ? { name: i.name } : {}),
      ...(i.add ? { add: i.add } : {}),
      ...(i.peer ? { peer: i.peer } : {}),
      createInRoot: i.createInRoot ?? false,
    })),
    bindNS: {
      cgroup: bind('cgroup'),
      ipc: bind('ipc'),
      mnt: bind('mnt'),
      net: bind('net'),
      pid: bind('pid'),
      user: bind('user'),
      uts: bind('uts'),
    },
    namespace: pick(lr.namespace, yr.namespace) ?? '',
  };

  return {
    config,
    runtime,
    readonly,
    configJson: encodeGoJson(config),
    runtimeJson: encodeGoJson(runtime),
    extractTo: layout.extractTo,
    emptyDirs: layout.emptyDirs,
  };
}

/** Go strings.SplitN(s, sep, n). */
function splitN(s: string, sep: string, n: number): string[] {
  const parts = s.split(sep);
  if (parts.length <= n) return parts;
  return [...parts.slice(0, n - 1), parts.slice(n - 1).join(sep)];
}

/**
 * The bundle's on-disk plan (upstream ImageBundle). Paths in mounts are absolute in the
 * booted system ("/" + path relative to the system root).
 */
function bundleLayout(
  bundle: string | undefined,
  readonly: boolean,
  sharedRoot: string | undefined,
): { rootfsMounts: OciMount[]; extractTo: 'rootfs' | 'lower' | null; emptyDirs: string[] } {
  const extractTo = sharedRoot ? null : readonly ? 'rootfs' : 'lower';
  const emptyDirs = readonly ? (sharedRoot ? ['rootfs'] : []) : ['tmp', 'rootfs'];
  if (bundle === undefined) return { rootfsMounts: [], extractTo, emptyDirs };
  const root = sharedRoot ?? imageRoot(bundle, readonly);
  const rootfs = `/${posix.join(bundle, 'rootfs')}`;
  if (readonly) {
    // bind from the shared copy, or from itself so that rootfs is a mount point
    return {
      rootfsMounts: [{ destination: rootfs, source: `/${root}`, options: ['bind'] }],
      extractTo,
      emptyDirs,
    };
  }
  const tmp = posix.join(bundle, 'tmp');
  return {
    rootfsMounts: [
      { destination: `/${tmp}`, type: 'tmpfs', source: 'tmpfs' },
      // private, so nothing else sees the temporary layers
      { destination: `/${tmp}`, options: ['remount', 'private'] },
      {
        destination: rootfs,
        type: 'overlay',
        source: 'overlay',
        options: [
          `lowerdir=/${root}`,
          `upperdir=/${posix.join(tmp, 'upper')}`,
          `workdir=/${posix.join(tmp, 'work')}`,
        ],
      },
    ],
    extractTo,
    emptyDirs,
  };
}

// ---------------------------------------------------------------------------------------------
// Go encoding/json output: MarshalIndent(v, "", indent). Objects keep insertion order (build
// them in struct field order); `undefined` members are skipped (omitempty). Strings are
// escaped as Go does: \" \\ \n \r \t \b \f, other controls as \u00xx, and the HTML-sensitive
// < > & plus U+2028/U+2029 as \u escapes; lone surrogates become U+FFFD.
// ---------------------------------------------------------------------------------------------

export function encodeGoJson(value: unknown, indent = '    '): string {
  return enc(value, indent, '');
}

function enc(v: unknown, indent: string, cur: string): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'string':
      return goQuote(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v.toString();
    case 'number':
      if (!Number.isFinite(v)) throw new Error(`cannot encode ${v} as JSON`);
      return String(v);
    case 'object': {
      const next = cur + indent;
      if (Array.isArray(v)) {
        if (v.length === 0) return '[]';
        return `[\n${v.map((x) => next + enc(x, indent, next)).join(',\n')}\n${cur}]`;
      }
      const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
      if (entries.length === 0) return '{}';
      return `{\n${entries.map(([k, x]) => `${next}${goQuote(k)}: ${enc(x, indent, next)}`).join(',\n')}\n${cur}}`;
    }
    default:
      throw new Error(`cannot encode a ${typeof v} as JSON`);
  }
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};

function goQuote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i] as string;
    const short = SHORT_ESCAPES[ch];
    if (short) out += short;
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' || c === 0x2028 || c === 0x2029) {
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += ch + (s[i + 1] as string);
        i++;
      } else out += '\ufffd';
    } else if (c >= 0xdc00 && c <= 0xdfff) out += '\ufffd';
    else out += ch;
  }
  return `${out}"`;
}
