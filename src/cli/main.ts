/**
 * The CLI: a thin layer of argument parsing over the library. Every command lives in its own
 * file and calls library functions that the tests call directly.
 */
import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { goStyleFlags } from './defaults.js';

/**
 * Each command's module, loaded on demand: a command pays only for the library it uses (a
 * no-op `build` is then mostly Node's own start-up). Help and unknown commands load them all.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  build: async () => (await import('./build.js')).buildCommand(),
  pkg: async () => (await import('./pkg.js')).pkgCommand(),
  cache: async () => (await import('./cache.js')).cacheCommand(),
  run: async () => (await import('./run.js')).runCommand(),
  metadata: async () => (await import('./metadata.js')).metadataCommand(),
  serve: async () => (await import('./serve.js')).serveCommand(),
  version: async () => (await import('./version.js')).versionCommand(),
};

/** The CLI with the named command only, or with all of them (for help, or an unknown name). */
export async function program(only?: string): Promise<Command> {
  const p = new Command('linuxkit')
    .description('Build and run minimal, immutable Linux systems from one YAML file, without Docker')
    .showHelpAfterError()
    .exitOverride();
  const names = only !== undefined && only in COMMANDS ? [only] : Object.keys(COMMANDS);
  for (const c of await Promise.all(names.map((n) => COMMANDS[n]!()))) p.addCommand(c);
  for (const c of p.commands) {
    c.exitOverride();
    for (const sub of c.commands) sub.exitOverride();
  }
  return p;
}

export async function main(argv: string[]): Promise<void> {
  try {
    const args = goStyleFlags(argv);
    await (await program(args[0])).parseAsync(args, { from: 'user' });
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
