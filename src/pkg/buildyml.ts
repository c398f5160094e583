/**
 * build.yml: how a package image is made from Debian packages and files.
 *
 *   image: NAME                 tag becomes linuxkit/NAME:<hash of all inputs>
 *   debian: { suite, components, packages, exclude, prune }
 *   files: [{ path, source | contents | directory | symlink, mode, uid, gid }]
 *   users / groups              /etc/passwd, group, shadow as postinst would make them (users.ts)
 *   arches: [amd64]             architectures the package is built for (only amd64 so far)
 *   entrypoint / cmd / env / workdir    the image config
 *   config: { ... }             the org.mobyproject.config label (upstream build.yml's `config:`)
 *   kernel: { modules: [...] }  turn the packages into a LinuxKit kernel image
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { useModeSourceText } from '../spec/load.js';
import { loadYaml } from '../spec/yaml.js';
import { UserError } from '../util/errors.js';
import { groupSchema, userSchema } from './users.js';

const octalMode = z.string().regex(/^0*[0-7]{1,4}$/, 'an octal mode like "0755"');

export const buildFileSchema = z
  .strictObject({
    path: z.string().min(1),
    source: z.string().min(1).optional(),
    contents: z.string().optional(),
    directory: z.boolean().optional(),
    symlink: z.string().min(1).optional(),
    /** A path glob over the package tree: the matching files' contents joined, in path order
     * (what a postinst makes from the packages' files, e.g. a CA bundle). */
    concat: z.string().min(1).optional(),
    mode: octalMode.optional(),
    uid: z.number().int().nonnegative().optional(),
    gid: z.number().int().nonnegative().optional(),
  })
  .refine(
    (f) =>
      [f.source, f.contents, f.directory || undefined, f.symlink, f.concat].filter((x) => x !== undefined)
        .length <= 1,
    'give at most one of source, contents, directory, symlink, concat',
  );

export const buildYmlSchema = z.strictObject({
  image: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'a lowercase image name'),
  org: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._/-]*$/)
    .optional(),
  debian: z
    .strictObject({
      suite: z.string().min(1).default('bookworm'),
      components: z.array(z.string().min(1)).default(['main']),
      /** Names, or `name=version` to pin one version. */
      packages: z.array(z.string().min(1)).min(1),
      /** Never installed (maintainer-script-only dependencies: perl, debconf, adduser, ...). */
      exclude: z.array(z.string().min(1)).default([]),
      /** Path globs dropped from the packages' files, on top of docs, man pages and locales. */
      prune: z.array(z.string().min(1)).default([]),
    })
    .optional(),
  files: z.array(buildFileSchema).default([]),
  users: z.array(userSchema).optional(),
  groups: z.array(groupSchema).optional(),
  arches: z.array(z.enum(['amd64'])).default(['amd64']),
  entrypoint: z.array(z.string()).optional(),
  cmd: z.array(z.string()).optional(),
  env: z.array(z.string().regex(/^[^=]+=/, 'a "NAME=value" string')).optional(),
  workdir: z.string().optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  kernel: z
    .strictObject({
      /** Loaded at boot. */
      modules: z.array(z.string().min(1)).default([]),
      /** Shipped with their dependencies for `modprobe NAME`, not loaded at boot. */
      extra: z.array(z.string().min(1)).default([]),
    })
    .optional(),
});

export type BuildYml = z.infer<typeof buildYmlSchema>;
export type BuildFile = z.infer<typeof buildFileSchema>;

/** A mode's source text ("0755", quoted or not) as permission bits. */
export function parseMode(m: string | undefined, fallback: number): number {
  return m === undefined ? fallback : Number.parseInt(m, 8);
}

/** Read and validate DIR/build.yml; problems come back as `DIR/build.yml:LINE:COL: message`. */
export async function loadBuildYml(dir: string): Promise<{ yml: BuildYml; text: string; file: string }> {
  const file = path.join(dir, 'build.yml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `${file}: cannot read package build file${code === 'ENOENT' ? ': no such file' : `: ${code}`}`,
    );
  }
  const { value } = loadYaml(text, file, buildYmlSchema, {
    expected: 'a mapping with keys such as image, debian, files, config',
    prepare: (raw, loc) => useModeSourceText(raw, loc, 'files'),
  });
  return { yml: value, text, file };
}
