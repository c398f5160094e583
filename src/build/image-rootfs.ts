/**
 * How an image's file system is adjusted before it goes into the system, as upstream LinuxKit
 * does it (moby/build/image.go): files that only make sense in a `docker build` are dropped,
 * /etc/hosts and /etc/resolv.conf get fixed contents, and a few paths every root needs exist.
 */
import { type FsEntry, FsTree } from '../fs/tree.js';

const EXCLUDE = new Set(['.dockerenv', 'Dockerfile', 'dev/console', 'dev/pts', 'dev/shm', 'etc/hostname']);

const HOSTS = `127.0.0.1       localhost
::1     localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
ff00::0 ip6-mcastprefix
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
`;
const NO_RESOLV = '\n# no resolv.conf configured\n';

/** Where init images point /etc/resolv.conf, so a DHCP client can write it on a read-only root. */
export const RESOLVCONF_SYMLINK = '/run/resolvconf/resolv.conf';

const text = (s: string) => new TextEncoder().encode(s);

/**
 * A copy of `image` as it is placed in the system. `resolv`, for init images, turns
 * etc/resolv.conf into a symlink to that path. `mtime` is the build's timestamp for what we add.
 */
export function imageRootfs(image: FsTree, opts: { resolv?: string; mtime: number }): FsTree {
  const out = new FsTree();
  const mtime = opts.mtime;
  const root = { uid: 0, gid: 0, mtime };
  const resolvEntry = (e: Pick<FsEntry, 'kind' | 'mode' | 'uid' | 'gid'>): FsEntry =>
    opts.resolv
      ? {
          path: 'etc/resolv.conf',
          kind: 'symlink',
          mode: 0o777,
          uid: e.uid,
          gid: e.gid,
          mtime,
          target: opts.resolv,
        }
      : {
          path: 'etc/resolv.conf',
          kind: 'file',
          // A symlink's 0777 is no file mode: such an image gets the usual 0644.
          mode: e.kind === 'file' ? e.mode : 0o644,
          uid: e.uid,
          gid: e.gid,
          mtime,
          data: text(NO_RESOLV),
        };
  for (const e of image.entries()) {
    if (EXCLUDE.has(e.path)) continue;
    if (e.path === 'etc/hosts') out.set({ ...e, kind: 'file', mtime, data: text(HOSTS), target: undefined });
    else if (e.path === 'etc/resolv.conf') out.set(resolvEntry(e));
    else out.set(e);
  }
  // Paths every root needs (upstream's `touch` list), created only where the image lacks them.
  const dirs = ['dev', 'dev/pts', 'dev/shm', 'etc', 'proc', 'sys'];
  for (const d of dirs) if (!out.has(d)) out.set({ path: d, kind: 'dir', mode: 0o755, ...root });
  if (!out.has('etc/mtab'))
    out.set({ path: 'etc/mtab', kind: 'symlink', mode: 0o755, ...root, target: '/proc/mounts' });
  if (!out.has('etc/resolv.conf')) out.set(resolvEntry({ kind: 'file', mode: 0o644, uid: 0, gid: 0 }));
  if (!out.has('etc/hosts'))
    out.set({ path: 'etc/hosts', kind: 'file', mode: 0o644, ...root, data: text(HOSTS) });
  return out;
}
