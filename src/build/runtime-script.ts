/**
 * Our init is busybox sh, which cannot read JSON. So next to upstream's runtime.json the build
 * writes runtime.sh: the same steps as upstream's init takes from runtime.json
 * (pkg/init/cmd/service/prepare.go), as shell commands computed here once instead of parsed
 * at every boot. init sources it, then:
 *   runtime_pre            before `runc create`: mounts (each destination made first, and an
 *                          overlay's upperdir/workdir), then mkdir, then cgroups (cgroup v2:
 *                          one directory under /sys/fs/cgroup). Relative mount destinations
 *                          and mkdir paths are relative to the bundle's rootfs, as upstream.
 *   runtime_post PID       after `runc create`, before `runc start` (PID: the container's
 *                          init): interfaces, then bindNS.
 *   RUNTIME_POST           "1" when runtime_post has work; empty lets init use plain `runc run`.
 * Each step stops the function at the first failure, as upstream stops at the first error.
 */
import { posix } from 'node:path';

export interface RuntimeMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface RuntimeInterface {
  name?: string;
  add?: string;
  peer?: string;
  createInRoot?: boolean;
}

export type NamespaceKind = 'cgroup' | 'ipc' | 'mnt' | 'net' | 'pid' | 'user' | 'uts';

export interface RuntimeConfig {
  mounts?: RuntimeMount[];
  mkdir?: string[];
  cgroups?: string[];
  interfaces?: RuntimeInterface[];
  /** Namespace kind -> path where the container's namespace is bind-mounted ('' = none). */
  bindNS?: Partial<Record<NamespaceKind, string>>;
  /**
   * upstream: the containerd namespace of a service. We run services with runc, which has no
   * such namespaces, so it has no effect here.
   */
  namespace?: string;
}

export interface RuntimeScriptOptions {
  /** The bundle dir relative to the system root; relative paths resolve against its rootfs. */
  bundle?: string;
}

/** Quote for sh: single quotes, with embedded single quotes closed, escaped and reopened. */
export function shQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const PROPAGATION = new Set([
  'private',
  'rprivate',
  'shared',
  'rshared',
  'slave',
  'rslave',
  'unbindable',
  'runbindable',
]);

// upstream's order of namespace binds
const NS_KINDS: NamespaceKind[] = ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts'];

function mountCommands(m: RuntimeMount, abs: (p: string) => string): string[] {
  const opts = m.options ?? [];
  const prop = opts.filter((o) => PROPAGATION.has(o));
  const rest = opts.filter((o) => !PROPAGATION.has(o));
  const dest = shQuote(abs(m.destination));
  const cmds: string[] = [];
  const remount = rest.includes('remount');
  if (!remount) cmds.push(`mkdir -p ${dest}`);
  // An overlay's upper and work dirs must exist; upstream's init makes them, so do we.
  for (const o of rest) {
    const dir = /^(?:upperdir|workdir)=(.+)$/.exec(o)?.[1];
    if (dir) cmds.push(`mkdir -p ${shQuote(dir)}`);
  }
  if (remount || m.source !== undefined || m.type !== undefined || rest.length > 0) {
    const args = ['mount'];
    const isBind = rest.includes('bind') || rest.includes('rbind');
    if (m.type && m.type !== 'bind' && m.type !== 'none' && !isBind) args.push('-t', shQuote(m.type));
    if (rest.length) args.push('-o', shQuote(rest.join(',')));
    if (!remount) args.push(shQuote(m.source ?? m.type ?? 'none'));
    args.push(dest);
    if (!(remount && rest.length === 1 && prop.length > 0)) cmds.push(args.join(' '));
  }
  for (const p of prop) cmds.push(`mount --make-${p} ${dest}`);
  return cmds;
}

/**
 * One `interfaces:` entry (upstream prepareProcess). busybox ip cannot name a veth's peer, so
 * the peer (found by the link index the new interface points at) is renamed after creation.
 */
function interfaceCommands(i: RuntimeInterface, index: number): string[] {
  if (!i.name) return [`echo 'runtime: interfaces[${index}] requires a name' >&2`, 'return 1'];
  const name = shQuote(i.name);
  const add = i.add || (i.peer ? 'veth' : '');
  const move = `ip link set dev ${name} netns "$1"`;
  if (!add) return [move]; // an existing interface, moved into the container
  // Upstream's kernel has these built in; ours may ship them as modules (e.g. veth), and busybox
  // modprobe has no alias table for the kernel's own on-demand loading. A failure here (built
  // in, or absent) is left for `ip link add` to report.
  const load = `modprobe -q ${shQuote(add)} 2>/dev/null`;
  if (add === 'veth') {
    if (!i.peer) {
      return [`echo 'runtime: creating a veth pair ${i.name} requires a peer to be set' >&2`, 'return 1'];
    }
    return [
      load,
      `ip link add ${name} type veth`,
      `read -r lk_i </sys/class/net/${name}/iflink`,
      'lk_p=',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
      'for lk_d in /sys/class/net/*; do read -r lk_x <"$lk_d/ifindex" && [ "$lk_x" = "$lk_i" ] && lk_p=${lk_d##*/}; done',
      `[ -n "$lk_p" ] && ip link set dev "$lk_p" name ${shQuote(i.peer)}`,
      move,
    ];
  }
  // createInRoot (e.g. wireguard, whose socket must stay in the root namespace): create, then
  // move; otherwise create it inside the container's network namespace directly.
  if (i.createInRoot) return [load, `ip link add ${name} type ${shQuote(add)}`, move];
  return [load, `nsenter -t "$1" -n ip link add ${name} type ${shQuote(add)}`];
}

export function runtimeScript(rt: RuntimeConfig, opts: RuntimeScriptOptions = {}): string {
  const rootfs = opts.bundle === undefined ? undefined : `/${posix.join(opts.bundle, 'rootfs')}`;
  const abs = (p: string) => (p.startsWith('/') || rootfs === undefined ? p : posix.join(rootfs, p));
  const pre: string[] = [];
  // Mounts before mkdir (as upstream), so a directory can be made inside a mount.
  for (const m of rt.mounts ?? []) pre.push(...mountCommands(m, abs));
  for (const d of rt.mkdir ?? []) pre.push(`mkdir -p ${shQuote(abs(d))}`);
  for (const c of rt.cgroups ?? []) pre.push(`mkdir -p ${shQuote(posix.join('/sys/fs/cgroup', c))}`);

  const post: string[] = [];
  for (const [i, iface] of (rt.interfaces ?? []).entries()) post.push(...interfaceCommands(iface, i));
  for (const kind of NS_KINDS) {
    const p = rt.bindNS?.[kind];
    if (!p) continue;
    // the bind target must exist: a file, and its directory
    post.push(
      `mkdir -p ${shQuote(posix.dirname(p))}`,
      `: >${shQuote(p)}`,
      `mount --bind "/proc/$1/ns/${kind}" ${shQuote(p)}`,
    );
  }

  // Every command but control flow stops the function on failure.
  const body = (lines: string[]) =>
    lines.length
      ? lines
          .map((l) => (/^(return|echo|lk_p=|for|modprobe) /.test(`${l} `) ? l : `${l} || return`))
          .map((l) => `  ${l}\n`)
          .join('')
      : '  :\n';
  return [
    '# Generated by linuxkit build from runtime.json: the steps around creating this container.',
    `RUNTIME_POST=${post.length ? 1 : ''}`,
    `runtime_pre() {\n${body(pre)}}`,
    `# $1: the pid of the created container's init`,
    `runtime_post() {\n${body(post)}}`,
    '',
  ].join('\n');
}
