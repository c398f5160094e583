/**
 * The LinuxKit YAML config after loading and validation. Field names and meanings follow
 * upstream LinuxKit's docs/yaml.md. This walking-skeleton subset grows field by field.
 */
import type { SourcePos } from '../util/errors.js';

export interface KernelSpec {
  image: string;
  cmdline?: string;
}

/** One onboot / onshutdown / service container. Unset fields fall back to the image's label. */
export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  env?: string[];
  capabilities?: string[];
  binds?: string[];
  net?: string;
  pid?: string;
}

export interface FileSpec {
  path: string;
  contents?: string;
  /** Host file, relative to the YAML file's directory (or absolute). */
  source?: string;
  directory?: boolean;
  symlink?: string;
  /** Permission bits parsed from the octal string, e.g. "0600" -> 0o600. */
  mode?: number;
}

export interface Config {
  kernel?: KernelSpec;
  init: string[];
  onboot: ContainerSpec[];
  onshutdown: ContainerSpec[];
  services: ContainerSpec[];
  files: FileSpec[];
}

/** A path into the config, e.g. ['onboot', 0, 'image']. */
export type ConfigPath = (string | number)[];

export interface LoadedConfig {
  config: Config;
  /** The YAML file it came from (as the user named it) and its directory (absolute). */
  file: string;
  dir: string;
  /** Where a value stands in the YAML; falls back to the nearest parent that has a position. */
  posOf(path: ConfigPath): SourcePos;
}
