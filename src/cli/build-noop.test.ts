import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand } from './build.js';
import { type BuildFlags, buildOptions, PLAIN_BUILD_FLAGS, plainBuildArgs } from './build-noop.js';
import { goStyleFlags } from './defaults.js';

/** What commander makes of `build ARGS`, with the action replaced by a recorder. */
async function commanderParse(args: string[]): Promise<{ files: string[]; flags: BuildFlags }> {
  let got: { files: string[]; flags: BuildFlags } | undefined;
  const cmd = buildCommand().exitOverride();
  cmd.action((files: string[], flags: BuildFlags) => {
    got = { files, flags };
  });
  await cmd.parseAsync(goStyleFlags(args), { from: 'user' });
  return got!;
}

describe('the no-op build check before the CLI loads', () => {
  test('reads plain argument lists exactly as commander does', async () => {
    for (const args of [
      ['x.yml'],
      ['-dir', 'out', '-format', 'iso-bios,raw-bios', '--format=tar', 'a.yml', 'b.yml'],
      ['--name=n', '-cache', '/tmp/c', '-size', '2G', '-compress', 'lz4', '--no-sbom', 'x.yml'],
      ['-debian-mirror', 'http://127.0.0.1:1/debian', 'x.yml', '-dir=o'],
    ]) {
      const plain = plainBuildArgs(args);
      assert.ok(plain, args.join(' '));
      const full = await commanderParse(args);
      assert.deepEqual(
        buildOptions(plain.files, plain.flags),
        buildOptions(full.files, full.flags),
        args.join(' '),
      );
    }
  });

  test('leaves everything else to the full CLI', () => {
    for (const args of [
      [],
      ['-h'],
      ['--help', 'x.yml'],
      ['--pull', 'x.yml'],
      ['--dry-run', 'x.yml'],
      ['--unknown', 'x.yml'],
      ['-dir', 'a', '-dir', 'b', 'x.yml'],
      ['-dir', '-x', 'x.yml'],
      ['-dir'],
      ['-size', 'lots', 'x.yml'],
      ['--', 'x.yml'],
    ])
      assert.equal(plainBuildArgs(args), undefined, args.join(' '));
  });

  test("knows every one of build's flags, or leaves the command to the full CLI", () => {
    const all = buildCommand().options.map((o) => o.long!);
    const unknownHere = all.filter((f) => !PLAIN_BUILD_FLAGS.includes(f)).sort();
    assert.deepEqual(unknownHere, ['--dry-run', '--pull']);
    for (const f of unknownHere) assert.equal(plainBuildArgs([f, 'x.yml']), undefined);
    for (const f of PLAIN_BUILD_FLAGS) assert.ok(all.includes(f), `${f} is a build flag`);
  });
});
