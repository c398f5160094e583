/**
 * Kernel modules: reading a module's .modinfo and writing the modules.dep that modprobe reads.
 *
 * A .ko is an ELF64 relocatable object. The ELF header gives the section header table:
 *   e_shoff     u64 at 0x28   offset of the section headers
 *   e_shentsize u16 at 0x3A   size of one (64)
 *   e_shnum     u16 at 0x3C   how many
 *   e_shstrndx  u16 at 0x3E   which one holds the section names
 * Each section header (64 bytes): sh_name u32 @0 (offset in the name table), sh_offset u64 @0x18,
 * sh_size u64 @0x20. The `.modinfo` section is a run of NUL-terminated `key=value` strings, among
 * them `name=virtio_net` and `depends=net_failover,virtio` (module names, comma-separated).
 *
 * modules.dep has one line per module, paths relative to lib/modules/VERSION:
 *   kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
 * modprobe loads the listed dependencies from last to first, then the module itself.
 *
 * modules.alias maps the names the kernel asks modprobe for to modules: a file system
 * (`fs-vfat`), a link type (`rtnl-link-bridge`), a device's modalias (`virtio:d00000001v00001AF4`).
 * One line per `alias=` of each module, a shell pattern then the module's name:
 *   alias virtio:d00000001v* virtio_net
 */

import { dataBytes, type FileData } from '../fs/data.js';
import { byPath } from '../fs/tree.js';
import { UserError } from '../util/errors.js';

/** Module names are compared with '-' and '_' treated alike, as modprobe does. */
export function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

export function readModinfo(ko: Uint8Array, what: string): Map<string, string[]> {
  const b = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) {
    throw new UserError(`${what}: not a little-endian ELF64 kernel module`);
  }
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const shstrndx = b.readUInt16LE(0x3e);
  if (shoff + shnum * shentsize > b.length || shstrndx >= shnum) {
    throw new UserError(`${what}: truncated ELF section table`);
  }
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    return {
      name: b.readUInt32LE(h),
      offset: Number(b.readBigUInt64LE(h + 0x18)),
      size: Number(b.readBigUInt64LE(h + 0x20)),
    };
  };
  const names = section(shstrndx);
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = names.offset + s.name;
    const nameEnd = b.indexOf(0, nameStart);
    if (b.toString('latin1', nameStart, nameEnd) !== '.modinfo') continue;
    if (s.offset + s.size > b.length) throw new UserError(`${what}: truncated .modinfo`);
    for (const kv of b.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) continue;
      const k = kv.slice(0, eq);
      const list = info.get(k) ?? [];
      list.push(kv.slice(eq + 1));
      info.set(k, list);
    }
  }
  return info;
}

export interface ModuleFile {
  /** Path relative to lib/modules/VERSION, e.g. kernel/drivers/net/virtio_net.ko */
  path: string;
  name: string;
  depends: string[];
  /** Its `alias=` patterns, as in .modinfo. */
  aliases: string[];
}

/**
 * Index modules by name (from `name=` in .modinfo, else the file name). Each module is read
 * (from disk, for a slice) only while its .modinfo is parsed: a kernel's ~100 MB of modules are
 * never in memory at once.
 */
export function indexModules(files: { path: string; data: FileData | undefined }[]): Map<string, ModuleFile> {
  const byName = new Map<string, ModuleFile>();
  for (const f of files) {
    const info = readModinfo(dataBytes(f.data), f.path);
    const base = f.path.slice(f.path.lastIndexOf('/') + 1).replace(/\.ko$/, '');
    const name = moduleKey(info.get('name')?.[0] ?? base);
    const depends = (info.get('depends')?.[0] ?? '')
      .split(',')
      .filter((d) => d !== '')
      .map(moduleKey);
    byName.set(name, { path: f.path, name, depends, aliases: info.get('alias') ?? [] });
  }
  return byName;
}

/**
 * The modules needed to load `wanted`, each after everything it depends on (load order).
 * Names found in `builtin` are skipped: they are part of the kernel image already.
 */
export function moduleClosure(
  index: Map<string, ModuleFile>,
  wanted: string[],
  builtin: Set<string> = new Set(),
): ModuleFile[] {
  const order: ModuleFile[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]) => {
    const key = moduleKey(name);
    if (state.get(key) === 'done' || builtin.has(key)) return;
    if (state.get(key) === 'visiting')
      throw new UserError(`module dependency cycle: ${[...chain, key].join(' -> ')}`);
    const mod = index.get(key);
    if (!mod) {
      const via = chain.length ? ` (needed by ${chain.join(' -> ')})` : '';
      throw new UserError(`kernel module ${JSON.stringify(name)} not found in this kernel${via}`);
    }
    state.set(key, 'visiting');
    for (const d of mod.depends) visit(d, [...chain, key]);
    state.set(key, 'done');
    order.push(mod);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/** modules.dep text for a set of modules; every module's full dependency list, nearest first. */
export function modulesDep(index: Map<string, ModuleFile>, mods: ModuleFile[]): string {
  const lines: string[] = [];
  for (const m of [...mods].sort(byPath)) {
    // Load order of the dependencies (deepest first); modules.dep lists them the other way round.
    const deps = moduleClosure(index, m.depends).map((d) => d.path);
    lines.push(`${m.path}:${deps.length ? ` ${deps.reverse().join(' ')}` : ''}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** modules.alias text for a set of modules: each module's aliases, modules in path order. */
export function modulesAlias(mods: ModuleFile[]): string {
  const lines: string[] = [];
  for (const m of [...mods].sort(byPath)) for (const a of m.aliases) lines.push(`alias ${a} ${m.name}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}
