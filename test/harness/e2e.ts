/**
 * `npm run test:e2e [pattern]`: the end-to-end tests (dist/test/**\/*.test.js, which include
 * every boot case of test/cases) under node --test; a pattern keeps only the tests (or cases,
 * by id such as 010_run/020_disks) whose names match it. Ends with node's test summary.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = (readdirSync(dist, { recursive: true }) as string[])
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => path.join(dist, f))
  .sort();
const pattern = process.argv[2];
const child = spawn(
  process.execPath,
  ['--test', ...(pattern ? ['--test-name-pattern', pattern] : []), ...files],
  { stdio: 'inherit' },
);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
