/**
 * The CLI: a thin layer of argument parsing over the library. Every command lives in its own
 * file and calls library functions that the tests call directly.
 */
import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { buildCommand } from './build.js';
import { cacheCommand } from './cache.js';
import { metadataCommand } from './metadata.js';
import { pkgCommand } from './pkg.js';
import { runCommand } from './run.js';
import { serveCommand } from './serve.js';
import { versionCommand } from './version.js';

/**
 * Upstream LinuxKit is written in Go, whose flags take one dash (`-format`, `-dir`). Accept those
 * by turning `-word` into `--word` before commander sees them; single-letter flags stay as they are.
 */
export function goStyleFlags(argv: string[]): string[] {
  const out: string[] = [];
  let rest = false;
  for (const a of argv) {
    if (rest || a === '--') {
      rest = true;
      out.push(a);
    } else if (/^-[A-Za-z][A-Za-z0-9-]+(=.*)?$/s.test(a)) out.push(`-${a}`);
    else out.push(a);
  }
  return out;
}

export function program(): Command {
  const p = new Command('linuxkit')
    .description('Build and run minimal, immutable Linux systems from one YAML file, without Docker')
    .showHelpAfterError()
    .exitOverride();
  p.addCommand(buildCommand());
  p.addCommand(pkgCommand());
  p.addCommand(cacheCommand());
  p.addCommand(runCommand());
  p.addCommand(metadataCommand());
  p.addCommand(serveCommand());
  p.addCommand(versionCommand());
  for (const c of p.commands) {
    c.exitOverride();
    for (const sub of c.commands) sub.exitOverride();
  }
  return p;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(goStyleFlags(argv), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof UserError) {
      process.stderr.write(`${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`internal error: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 2;
  }
}
