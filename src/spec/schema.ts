/**
 * The zod schema of a LinuxKit YAML config (walking-skeleton subset of upstream's
 * docs/yaml.md and moby/schema.go). Objects are strict: an unknown key is an error, as in
 * upstream's JSON schema (additionalProperties: false). Messages are plain words without the
 * path; load.ts prefixes the path and adds the source position.
 *
 * To grow the format, add a field to src/spec/types.ts and the matching entry here; the
 * compile-time check at the bottom fails until both agree.
 */
import { z } from 'zod';
import type { Config, ContainerSpec, FileSpec, KernelSpec } from './types.js';

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
  array: 'a list',
  object: 'a mapping',
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

/** `kernel:` */
export const kernelSchema = z.strictObject(
  {
    image: nonEmptyString('an image reference (a string)'),
    cmdline: z.string(expect('a string')).optional(),
  },
  expect('a mapping with "image" and "cmdline"'),
);

const envEntry = z.string(expect('a string "NAME=VALUE"')).refine((s) => /^[^=]+=/.test(s), {
  error: (iss) => `${JSON.stringify(iss.input)} is not of the form NAME=VALUE`,
});

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

/** One entry of `onboot:`, `onshutdown:` or `services:`. */
export const containerSchema = z.strictObject(
  {
    name: z.string(expect('a name (a string)')).regex(CONTAINER_NAME_RE, {
      error: (iss) =>
        `${JSON.stringify(iss.input)} is not a valid container name (use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit)`,
    }),
    image: nonEmptyString('an image reference (a string)'),
    command: stringList('a list of strings').optional(),
    env: stringList('a list of "NAME=VALUE" strings', envEntry).optional(),
    capabilities: stringList('a list of strings').optional(),
    binds: stringList('a list of "SRC:DST[:OPTIONS]" strings', bindEntry).optional(),
    net: z.string(expect('"host" or a namespace path (a string)')).optional(),
    pid: z.string(expect('"host" or a namespace path (a string)')).optional(),
  },
  expect('a mapping with "name" and "image"'),
);

/** The ways a `files:` entry gets its content; at most one may be given (none: empty file). */
const FILE_KINDS = ['contents', 'source', 'directory', 'symlink'] as const;

/** One entry of `files:`. */
export const fileSchema = z
  .strictObject(
    {
      path: nonEmptyString('a path (a string)').refine((p) => !p.split('/').includes('..'), {
        error: (iss) => `${JSON.stringify(iss.input)} leaves the root ('..' is not allowed)`,
      }),
      contents: z.string(expect('a string')).optional(),
      source: nonEmptyString('a host path (a string)').optional(),
      directory: z.boolean(expect('true or false')).optional(),
      symlink: nonEmptyString('a link target (a string)').optional(),
      // The loader hands over the scalar's source text, so an unquoted 0600 arrives as "0600".
      mode: z
        .string(expect('an octal mode like "0644"'))
        .regex(OCTAL_MODE_RE, { error: (iss) => `${JSON.stringify(iss.input)} is not an octal mode` })
        .transform((s) => Number.parseInt(s, 8))
        .optional(),
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

const list = <T extends z.ZodType>(item: T, what: string) =>
  z
    .array(item, expect(what))
    // An empty section (`services:` with every entry commented out) is an empty list.
    .nullish()
    .transform((v) => v ?? []);

/** The whole config file. */
export const configSchema = z.strictObject(
  {
    kernel: kernelSchema.optional(),
    init: list(nonEmptyString('an image reference (a string)'), 'a list of image references'),
    onboot: list(containerSchema, 'a list of containers'),
    onshutdown: list(containerSchema, 'a list of containers'),
    services: list(containerSchema, 'a list of containers'),
    files: list(fileSchema, 'a list of files'),
  },
  expect('a mapping'),
);

/** Top-level keys, for messages. */
export const CONTAINER_SECTIONS = ['onboot', 'onshutdown', 'services'] as const;

// Compile-time check that the schema produces exactly the shared types.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesTypes: [
  Same<z.output<typeof configSchema>, Config>,
  Same<z.output<typeof containerSchema>, ContainerSpec>,
  Same<z.output<typeof fileSchema>, FileSpec>,
  Same<z.output<typeof kernelSchema>, KernelSpec>,
] = [true, true, true, true];
void schemaMatchesTypes;
