/**
 * Users and groups as a package's postinst would have made them (adduser/useradd never run
 * here): build.yml's `users:` and `groups:` become /etc/passwd, /etc/group and /etc/shadow.
 *
 * File formats (passwd(5), group(5), shadow(5)), one line per entry, fields split by ':':
 *   /etc/passwd   name:x:uid:gid:gecos:home:shell               0644
 *   /etc/group    name:x:gid:member,member                      0644
 *   /etc/shadow   name:hash:lastchg:min:max:warn:inactive:expire:   0600
 * The shadow hash is `*` (no password; key logins still work, sshd treats `!` as locked, not
 * `*`) unless one is given. lastchg is left empty so no account ever expires (and no date of
 * the build is recorded). root (uid 0) is always there; lines are sorted by id, then name.
 */
import { z } from 'zod';
import type { FsTree } from '../fs/tree.js';
import { UserError } from '../util/errors.js';

const name = z.string().regex(/^[a-z_][a-z0-9_.-]*\$?$/, 'a user or group name like "www-data"');
const id = z.number().int().nonnegative().max(0xfffffffe);

export const userSchema = z.strictObject({
  name,
  uid: id,
  /** Primary group: a gid, or a group name from `groups:` (default: the group of the same name, else the uid). */
  group: z.union([id, name]).optional(),
  gecos: z
    .string()
    .regex(/^[^:\n]*$/, 'no ":" or newline')
    .default(''),
  home: z.string().default('/nonexistent'),
  shell: z.string().default('/usr/sbin/nologin'),
  /** A crypt(3) hash for /etc/shadow; default `*` (no password login). */
  password: z
    .string()
    .regex(/^[^:\n]*$/, 'no ":" or newline')
    .optional(),
});

export const groupSchema = z.strictObject({
  name,
  gid: id,
  members: z.array(name).default([]),
});

export type UserSpec = z.infer<typeof userSchema>;
export type GroupSpec = z.infer<typeof groupSchema>;

export interface UserFiles {
  passwd: string;
  group: string;
  shadow: string;
}

const ROOT_USER: UserSpec = { name: 'root', uid: 0, gecos: 'root', home: '/root', shell: '/bin/sh' };
const ROOT_GROUP: GroupSpec = { name: 'root', gid: 0, members: [] };

const byId =
  <T extends { name: string }>(id: (t: T) => number) =>
  (a: T, b: T) =>
    id(a) - id(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** The three files' text for the given users and groups (root added when missing). */
export function userFiles(users: UserSpec[], groups: GroupSpec[]): UserFiles {
  const us = users.some((u) => u.name === 'root') ? [...users] : [ROOT_USER, ...users];
  const gs = groups.some((g) => g.name === 'root') ? [...groups] : [ROOT_GROUP, ...groups];
  const dup = (what: string, list: string[]) => {
    const seen = new Set<string>();
    for (const n of list) {
      if (seen.has(n)) throw new UserError(`${what} ${n} is defined twice`);
      seen.add(n);
    }
  };
  dup(
    'user',
    us.map((u) => u.name),
  );
  dup(
    'group',
    gs.map((g) => g.name),
  );
  const gidOf = (u: UserSpec): number => {
    if (typeof u.group === 'number') return u.group;
    const gname = u.group ?? u.name;
    const g = gs.find((x) => x.name === gname);
    if (g) return g.gid;
    if (u.group !== undefined) throw new UserError(`user ${u.name}: group ${u.group} is not in groups:`);
    return u.uid;
  };
  for (const g of gs)
    for (const m of g.members)
      if (!us.some((u) => u.name === m)) throw new UserError(`group ${g.name}: member ${m} is not in users:`);
  const su = us.sort(byId((u: UserSpec) => u.uid));
  const sg = gs.sort(byId((g: GroupSpec) => g.gid));
  return {
    passwd: su.map((u) => `${u.name}:x:${u.uid}:${gidOf(u)}:${u.gecos}:${u.home}:${u.shell}\n`).join(''),
    group: sg.map((g) => `${g.name}:x:${g.gid}:${g.members.join(',')}\n`).join(''),
    shadow: su.map((u) => `${u.name}:${u.password ?? '*'}::0:99999:7:::\n`).join(''),
  };
}

/** Write the files into a package tree (replacing any a package shipped). */
export function addUserFiles(tree: FsTree, files: UserFiles, mtime: number): void {
  const enc = new TextEncoder();
  const base = { uid: 0, gid: 0, mtime, kind: 'file' as const };
  const dirs = { mode: 0o755, uid: 0, gid: 0, mtime };
  tree.set({ ...base, path: 'etc/passwd', mode: 0o644, data: enc.encode(files.passwd) }, dirs);
  tree.set({ ...base, path: 'etc/group', mode: 0o644, data: enc.encode(files.group) }, dirs);
  tree.set({ ...base, path: 'etc/shadow', mode: 0o600, data: enc.encode(files.shadow) }, dirs);
}
