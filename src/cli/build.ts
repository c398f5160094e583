import { Command } from 'commander';
import { build } from '../build/build.js';
import { checkFormats } from '../formats/outputs.js';
import { cacheDir, collectList, debianMirror, log } from './common.js';

export function buildCommand(): Command {
  return new Command('build')
    .description('Build a system from a LinuxKit YAML file')
    .argument('<file>', 'the YAML file')
    .option(
      '--format <formats>',
      'output formats, comma separated or repeated (default kernel+initrd)',
      collectList,
    )
    .option('--dir <dir>', 'output directory (default: the current directory)')
    .option('--name <name>', 'output name prefix (default: the YAML file name without .yml)')
    .option('--cache <dir>', 'image cache directory (default ~/.linuxkit/cache, or LINUXKIT_CACHE)')
    .option('--debian-mirror <url>', 'Debian mirror for package builds (or LINUXKIT_DEBIAN_MIRROR)')
    .action(
      async (
        file: string,
        o: { format?: string[]; dir?: string; name?: string; cache?: string; debianMirror?: string },
      ) => {
        const formats = o.format?.length ? o.format : ['kernel+initrd'];
        checkFormats(formats);
        const { outputs } = await build({
          file,
          formats,
          dir: o.dir,
          name: o.name,
          cacheDir: cacheDir(o.cache),
          debianMirror: debianMirror(o.debianMirror),
          log,
        });
        for (const out of outputs) log(`wrote ${out}`);
      },
    );
}
