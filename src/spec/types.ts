/**
 * The LinuxKit YAML config after loading and validation. Field names and meanings follow
 * upstream LinuxKit's docs/yaml.md and moby/config.go, key for key (dotted keys such as
 * `capabilities.add` included), so a config.json generator can read them under upstream's names.
 */
import type { IdSpec, ImageSettings } from '../build/oci-config.js';
import type { SourcePos } from '../util/errors.js';

export type {
  BindNSSettings,
  DeviceCgroupSettings,
  DeviceSettings,
  IdMapping,
  IdSpec,
  ImageSettings,
  InterfaceSettings,
  MountSettings,
  ResourcesSettings,
  RuntimeSettings,
} from '../build/oci-config.js';

/**
 * `kernel:`. `image` may be missing in one file of several (`build a.yml b.yml`) when a later
 * one gives it; a build needs it in the merged config.
 */
export interface KernelSpec {
  image?: string;
  cmdline?: string;
  /** The kernel file's name inside the image (upstream default `kernel`). */
  binary?: string;
  /** The modules tar's name inside the image (default `kernel.tar`; `none` for no tar). */
  tar?: string;
  /** A microcode cpio's name inside the image, prepended to the initrd. */
  ucode?: string;
}

/**
 * One onboot / onshutdown / service container: its name and image, plus every setting an
 * image's `org.mobyproject.config` label may give (the YAML wins field by field; see
 * src/build/oci-config.ts). Unset fields fall back to the label, then the image config.
 */
export interface ContainerSpec extends ImageSettings {
  name: string;
  image: string;
}

export interface FileSpec {
  path: string;
  contents?: string;
  /** Host file, relative to the YAML file's directory (or absolute; `~/` is the home dir). */
  source?: string;
  directory?: boolean;
  symlink?: string;
  /** Permission bits parsed from the octal string, e.g. "0600" -> 0o600. */
  mode?: number;
  /** Owner: a number, or a container name (its stable id from the build's id map). */
  uid?: IdSpec;
  gid?: IdSpec;
  /** Write the metadata of the build (the config) in this format instead of contents. */
  metadata?: 'yaml' | 'json';
  /** A missing `source` is skipped instead of an error. */
  optional?: boolean;
}

/** `volumes:` entry, prepared at boot under /containers/volumes/NAME and bound by name. */
export interface VolumeSpec {
  /** Matches ^[a-z0-9_-]+$ (upstream's volume name rule, non-empty). */
  name: string;
  /** An image whose contents fill the volume (none: an empty volume). */
  image?: string;
  readonly?: boolean;
  /** How the image is stored: its files (`filesystem`, the default) or an OCI layout. */
  format?: 'oci' | 'filesystem';
  /** For `format: oci`, the platforms to include, e.g. `linux/amd64`. */
  platforms?: string[];
}

export interface Config {
  kernel?: KernelSpec;
  init: string[];
  onboot: ContainerSpec[];
  onshutdown: ContainerSpec[];
  services: ContainerSpec[];
  files: FileSpec[];
  volumes: VolumeSpec[];
}

/** A path into the config, e.g. ['onboot', 0, 'image']. */
export type ConfigPath = (string | number)[];

export interface LoadedConfig {
  config: Config;
  /**
   * The first YAML file (as the user named it; `-` for stdin, or a URL) and the directory
   * (absolute) that every relative path in `config` is relative to (`files[].source`,
   * `@pkg:DIR`): the first file's directory, or the current one for stdin or a URL. When
   * several files are merged, relative paths from the later ones are rewritten to be
   * relative to this directory, so consumers never need to know which file an entry came from.
   */
  file: string;
  dir: string;
  /** Every file merged, in order (as the user named them). */
  files: string[];
  /** Where a value stands in the YAML, in the file it came from; falls back to the nearest parent. */
  posOf(path: ConfigPath): SourcePos;
}
