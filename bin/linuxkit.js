#!/usr/bin/env node
import module from 'node:module';

// Node 22.1+ keeps V8's compiled code between runs (in the OS temp dir): a faster CLI start.
module.enableCompileCache?.();
const argv = process.argv.slice(2);
// A build with nothing to do answers before the CLI (commander, the commands) is even loaded.
if (
  argv[0] !== 'build' ||
  !(await import('../dist/src/cli/build-noop.js').then((m) => m.upToDateBuild(argv.slice(1))).catch(() => false))
)
  await import('../dist/src/cli/main.js').then((m) => m.main(argv));
