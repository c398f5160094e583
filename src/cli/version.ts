import { readFileSync } from 'node:fs';
import { Command } from 'commander';

export function versionCommand(): Command {
  return new Command('version').description('Print the version').action(() => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`linuxkit-ts version ${pkg.version}\n`);
  });
}
