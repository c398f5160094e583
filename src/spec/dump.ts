/**
 * A loaded (possibly merged) config back to YAML, for `linuxkit build --dry-run`. Keys come in
 * upstream's order (moby/config.go struct order: name and image first, then the label
 * settings), unset fields are left out, and `mode` is written back as an octal string, so the
 * output loads again to the same config.
 */
import { stringify } from 'yaml';
import { SETTINGS_KEYS } from '../build/oci-config.js';
import type { Config, ContainerSpec, FileSpec, KernelSpec, VolumeSpec } from './types.js';

function ordered<T extends object>(obj: T, keys: readonly string[]): Record<string, unknown> {
  const src = obj as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of keys) if (src[k] !== undefined) out[k] = src[k];
  // Anything not named above (none today) keeps its place at the end rather than vanishing.
  for (const k of Object.keys(src)) if (!(k in out) && src[k] !== undefined) out[k] = src[k];
  return out;
}

const KERNEL_ORDER = ['image', 'cmdline', 'binary', 'tar', 'ucode'] satisfies (keyof KernelSpec)[];
const CONTAINER_ORDER = ['name', 'image', ...SETTINGS_KEYS] satisfies (keyof ContainerSpec)[];
const FILE_ORDER = [
  'path',
  'directory',
  'symlink',
  'contents',
  'source',
  'metadata',
  'optional',
  'mode',
  'uid',
  'gid',
] satisfies (keyof FileSpec)[];
const VOLUME_ORDER = ['name', 'image', 'readonly', 'format', 'platforms'] satisfies (keyof VolumeSpec)[];

/** Permission bits as the octal string the YAML gives: 0o644 -> "0644". */
export function octalMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** The config as YAML text; empty sections are left out. */
export function configToYaml(config: Config): string {
  const doc: Record<string, unknown> = {};
  if (config.kernel) doc.kernel = ordered(config.kernel, KERNEL_ORDER);
  if (config.init.length) doc.init = config.init;
  for (const section of ['onboot', 'onshutdown', 'services'] as const) {
    if (config[section].length) doc[section] = config[section].map((c) => ordered(c, CONTAINER_ORDER));
  }
  if (config.files.length) {
    doc.files = config.files.map((f) =>
      ordered(f.mode === undefined ? f : { ...f, mode: octalMode(f.mode) }, FILE_ORDER),
    );
  }
  if (config.volumes.length) doc.volumes = config.volumes.map((v) => ordered(v, VOLUME_ORDER));
  // lineWidth 0: never fold long strings (command lines, keys) across lines.
  return stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
