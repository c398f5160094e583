#!/usr/bin/env node
import module from 'node:module';

// Node 22.1+ keeps V8's compiled code between runs (in the OS temp dir): a faster CLI start.
module.enableCompileCache?.();
import('../dist/src/cli/main.js').then((m) => m.main(process.argv.slice(2)));
