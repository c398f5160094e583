/**
 * The zod schema of a LinuxKit YAML config: every key of upstream's moby/config.go and
 * moby/schema.go. Container settings reuse the label schema (src/build/oci-config.ts
 * imageSettingsSchema) so the two cannot drift; this file adds name/image, the checks upstream
 * makes only while building (capability names, bind/tmpfs/rlimit syntax) and plain-words
 * messages. Objects are strict: an unknown key is an error, as in upstream's JSON schema
 * (additionalProperties: false). Messages carry no path; yaml.ts prefixes the path and adds the
 * source position. The JSON Schema for editors is generated from configSchema (json-schema.ts).
 *
 * To grow the format, add a field to src/spec/types.ts and the matching entry here; the
 * compile-time check at the bottom fails until both agree.
 */
import { z } from 'zod';
import { isKnownCapability } from '../build/capabilities.js';
import { imageSettingsSchema } from '../build/oci-config.js';
import type { Config, ContainerSpec, FileSpec, KernelSpec, VolumeSpec } from './types.js';

/** How a value found in the YAML is named in messages ("got a list"). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return String(v);
    case 'object':
      return 'a mapping';
    default:
      return typeof v;
  }
}

/**
 * Schema-level message for a wrong type: `expected WHAT, got ...`. A missing key (input
 * undefined) falls through so the loader can say "missing required key".
 */
function expect(what: string) {
  return {
    error: (iss: { code?: string; input?: unknown }) =>
      iss.code === 'invalid_type' && iss.input !== undefined
        ? `expected ${what}, got ${describeValue(iss.input)}`
        : undefined,
  };
}

const EXPECTED_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  int: 'an integer',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
};

/**
 * Per-parse error map for issues the schema gives no message of its own: pass it as
 * `schema.safeParse(value, { error: plainError })`.
 */
export const plainError = (iss: {
  code?: string;
  input?: unknown;
  expected?: string;
  minimum?: unknown;
  origin?: string;
}): string | undefined => {
  switch (iss.code) {
    case 'invalid_type':
      // z.number().int() reports a fraction as expected "int"
      if (iss.expected === 'int' && typeof iss.input === 'number')
        return `expected an integer, got ${iss.input}`;
      return `expected ${EXPECTED_NAMES[iss.expected ?? ''] ?? iss.expected}, got ${describeValue(iss.input)}`;
    case 'too_small':
      return iss.origin === 'string' ? 'must not be empty' : undefined;
    default:
      return undefined;
  }
};

/** Upstream does not restrict container names; ours become directory names and runc ids. */
export const CONTAINER_NAME_RE = /^[a-z0-9][a-z0-9_.-]*$/;

/** Octal permission bits, at most 07777; upstream parses `mode` with ParseInt(s, 8). */
export const OCTAL_MODE_RE = /^0*[0-7]{1,4}$/;

const nonEmptyString = (what: string) => z.string(expect(what)).min(1);
const stringList = (what: string, item: z.ZodType<string> = z.string(expect('a string'))) =>
  z.array(item, expect(what));

/** `kernel:` (upstream KernelConfig). `image` may come from a later file of several. */
export const kernelSchema = z.strictObject(
  {
    image: nonEmptyString('an image reference (a string)').optional(),
    cmdline: z.string(expect('a string')).optional(),
    // upstream: an empty binary means the default `kernel`; `tar: none` or "" means no tar
    binary: z.string(expect('a file name (a string)')).optional(),
    tar: z.string(expect('a file name (a string)')).optional(),
    ucode: z.string(expect('a file name (a string)')).optional(),
  },
  expect('a mapping with "image" and "cmdline"'),
);

const envEntry = z.string(expect('a string "NAME=VALUE"')).refine((s) => /^[^=]+=/.test(s), {
  error: (iss) => `${JSON.stringify(iss.input)} is not of the form NAME=VALUE`,
});

/** A bind is split on ':' into SRC:DST or SRC:DST:OPTIONS, as upstream does. */
const bindEntry = z.string(expect('a string "SRC:DST[:OPTIONS]"')).refine(
  (s) => {
    const parts = s.split(':');
    return parts.length >= 2 && parts.length <= 3 && parts[0] !== '' && (parts[1] ?? '').startsWith('/');
  },
  {
    error: (iss) =>
      `${JSON.stringify(iss.input)} is not of the form SRC:DST[:OPTIONS] (DST an absolute path)`,
  },
);

const tmpfsEntry = z
  .string(expect('a string "DST[:OPTIONS]"'))
  .refine((s) => s.split(':').length <= 2 && s.startsWith('/'), {
    error: (iss) =>
      `${JSON.stringify(iss.input)} is not a tmpfs of the form DST[:OPTIONS] (DST an absolute path)`,
  });

/** The limits upstream knows (its config.go), named with or without RLIMIT_, any case. */
const RLIMITS = new Set(
  [
    'CPU',
    'FSIZE',
    'DATA',
    'STACK',
    'CORE',
    'RSS',
    'NPROC',
    'NOFILE',
    'MEMLOCK',
    'AS',
    'LOCKS',
    'SIGPENDING',
    'MSGQUEUE',
    'NICE',
    'RTPRIO',
    'RTTIME',
  ].map((n) => `RLIMIT_${n}`),
);
const limitValue = (v: string) => /^\s*(unlimited|\d{1,20})\s*$/i.test(v);

/** `NAME,SOFT,HARD`, e.g. `nofile,1024,unlimited`. */
const rlimitEntry = z.string(expect('a string "NAME,SOFT,HARD"')).refine(
  (s) => {
    const parts = s.split(',');
    if (parts.length !== 3) return false;
    let name = (parts[0] as string).trim().toUpperCase();
    if (!name.startsWith('RLIMIT_')) name = `RLIMIT_${name}`;
    return RLIMITS.has(name) && limitValue(parts[1] as string) && limitValue(parts[2] as string);
  },
  {
    error: (iss) =>
      `${JSON.stringify(iss.input)} is not a limit of the form NAME,SOFT,HARD (e.g. nofile,1024,unlimited)`,
  },
);

/**
 * A capability list: `all` or `none` alone, else names from src/build/capabilities.ts.
 * Each unknown name is its own issue, at its index.
 */
const capabilityList = z
  .array(z.string(expect('a capability name (a string)')), expect('a list of capabilities'))
  .superRefine((caps, ctx) => {
    // upstream compares all/none case-insensitively, and only when alone in the list
    const special = (c: string) => ['all', 'none'].includes(c.toLowerCase());
    if (caps.length === 1 && special(caps[0] as string)) return;
    caps.forEach((c, i) => {
      if (isKnownCapability(c)) return;
      const hint = special(c) ? ` ("${c}" must be alone in the list)` : suggestCapability(c);
      ctx.addIssue({ code: 'custom', path: [i], message: `unknown capability ${JSON.stringify(c)}${hint}` });
    });
  });

function suggestCapability(c: string): string {
  const upper = c.toUpperCase();
  const guess = [upper, `CAP_${upper}`].find((g) => isKnownCapability(g));
  return guess ? ` (did you mean ${guess}?)` : '';
}

const idSpec = z.union([z.number().int(), z.string().min(1)], {
  error: (iss) =>
    iss.input === undefined
      ? undefined
      : `expected a number or a container name, got ${describeValue(iss.input)}`,
});

const settingsShape = imageSettingsSchema.shape;
/** upstream's schema also allows `runtime.noRestart` (its code ignores it): accepted, dropped. */
const runtimeSchema = settingsShape.runtime
  .unwrap()
  .extend({ noRestart: z.boolean(expect('true or false')).optional() })
  .transform(({ noRestart: _, ...rest }) => rest);

/** One entry of `onboot:`, `onshutdown:` or `services:`: name, image and the label's settings. */
export const containerSchema = imageSettingsSchema
  .extend({
    name: z.string(expect('a name (a string)')).regex(CONTAINER_NAME_RE, {
      error: (iss) =>
        `${JSON.stringify(iss.input)} is not a valid container name (use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit)`,
    }),
    image: nonEmptyString('an image reference (a string)'),
    capabilities: capabilityList.optional(),
    'capabilities.add': capabilityList.optional(),
    ambient: capabilityList.optional(),
    binds: stringList('a list of "SRC:DST[:OPTIONS]" strings', bindEntry).optional(),
    'binds.add': stringList('a list of "SRC:DST[:OPTIONS]" strings', bindEntry).optional(),
    tmpfs: stringList('a list of "DST[:OPTIONS]" strings', tmpfsEntry).optional(),
    rlimits: stringList('a list of "NAME,SOFT,HARD" strings', rlimitEntry).optional(),
    command: stringList('a list of strings').optional(),
    env: stringList('a list of "NAME=VALUE" strings', envEntry).optional(),
    net: z.string(expect('"host", "new", "none" or a namespace path (a string)')).optional(),
    pid: z.string(expect('"host", "new" or a namespace path (a string)')).optional(),
    uid: idSpec.optional(),
    gid: idSpec.optional(),
    additionalGids: z.array(idSpec, expect('a list of numbers or container names')).optional(),
    runtime: runtimeSchema.optional(),
  })
  .meta({
    id: 'container',
    description: 'A container: name, image, and settings that override its image label',
  });

/** The ways a `files:` entry gets its content; at most one may be given (none: empty file). */
const FILE_KINDS = ['contents', 'source', 'directory', 'symlink', 'metadata'] as const;

/** One entry of `files:`. */
export const fileSchema = z
  .strictObject(
    {
      path: nonEmptyString('a path (a string)').refine((p) => !p.split('/').includes('..'), {
        error: (iss) => `${JSON.stringify(iss.input)} leaves the root ('..' is not allowed)`,
      }),
      directory: z.boolean(expect('true or false')).optional(),
      symlink: nonEmptyString('a link target (a string)').optional(),
      contents: z.string(expect('a string')).optional(),
      source: nonEmptyString('a host path (a string)').optional(),
      metadata: z
        .enum(['yaml', 'json'], {
          error: (iss) =>
            iss.input === undefined
              ? undefined
              : `expected "yaml" or "json", got ${JSON.stringify(iss.input)}`,
        })
        .optional(),
      optional: z.boolean(expect('true or false')).optional(),
      // The loader hands over the scalar's source text, so an unquoted 0600 arrives as "0600".
      mode: z
        .string(expect('an octal mode like "0644"'))
        .regex(OCTAL_MODE_RE, { error: (iss) => `${JSON.stringify(iss.input)} is not an octal mode` })
        .transform((s) => Number.parseInt(s, 8))
        .optional(),
      uid: idSpec.optional(),
      gid: idSpec.optional(),
    },
    expect('a mapping with "path"'),
  )
  .superRefine((f, ctx) => {
    const given = FILE_KINDS.filter((k) => (k === 'directory' ? f.directory === true : f[k] !== undefined));
    if (given.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: [given[1] as string],
        message: `${given.map((k) => JSON.stringify(k)).join(' and ')} cannot be used together`,
      });
    }
  });

/** Upstream's volume name rule (moby/config.go nameRE), and non-empty. */
export const VOLUME_NAME_RE = /^[a-z0-9_-]+$/;

/** One entry of `volumes:`. */
export const volumeSchema = z.strictObject(
  {
    name: z.string(expect('a name (a string)')).regex(VOLUME_NAME_RE, {
      error: (iss) =>
        `${JSON.stringify(iss.input)} is not a valid volume name (use lowercase letters, digits, '-' and '_')`,
    }),
    image: nonEmptyString('an image reference (a string)').optional(),
    readonly: z.boolean(expect('true or false')).optional(),
    format: z
      .enum(['oci', 'filesystem'], {
        error: (iss) =>
          iss.input === undefined
            ? undefined
            : `expected "oci" or "filesystem", got ${JSON.stringify(iss.input)}`,
      })
      .optional(),
    platforms: stringList('a list of platforms like "linux/amd64"').optional(),
  },
  expect('a mapping with "name"'),
);

const list = <T extends z.ZodType>(item: T, what: string) =>
  z
    .array(item, expect(what))
    // An empty section (`services:` with every entry commented out) is an empty list.
    .nullish()
    .transform((v) => v ?? []);

/** upstream's obsolete `trust:` section: accepted (load.ts warns) and dropped. */
const trustSchema = z
  .strictObject(
    { image: stringList('a list of strings').optional(), org: stringList('a list of strings').optional() },
    expect('a mapping with "image" and "org"'),
  )
  .nullish()
  .meta({ deprecated: true, description: 'Obsolete: accepted and ignored.' });

/** The whole config file. */
export const configSchema = z
  .strictObject(
    {
      kernel: kernelSchema.optional(),
      init: list(nonEmptyString('an image reference (a string)'), 'a list of image references'),
      onboot: list(containerSchema, 'a list of containers'),
      onshutdown: list(containerSchema, 'a list of containers'),
      services: list(containerSchema, 'a list of containers'),
      files: list(fileSchema, 'a list of files'),
      volumes: list(volumeSchema, 'a list of volumes'),
      trust: trustSchema,
    },
    expect('a mapping'),
  )
  .transform(({ trust: _, ...rest }) => rest);

/** Top-level keys, for messages. */
export const CONTAINER_SECTIONS = ['onboot', 'onshutdown', 'services'] as const;

// Compile-time check that the schema produces exactly the shared types.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesTypes: [
  Same<z.output<typeof configSchema>, Config>,
  Same<z.output<typeof containerSchema>, ContainerSpec>,
  Same<z.output<typeof fileSchema>, FileSpec>,
  Same<z.output<typeof kernelSchema>, KernelSpec>,
  Same<z.output<typeof volumeSchema>, VolumeSpec>,
] = [true, true, true, true, true];
void schemaMatchesTypes;
