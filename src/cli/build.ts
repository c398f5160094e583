import { Command } from 'commander';
import { build } from '../build/build.js';
import { checkFormats } from '../formats/outputs.js';
import { configToYaml } from '../spec/dump.js';
import { loadConfigFiles } from '../spec/load.js';
import { cacheDir, collectList, debianMirror, log, parseSize } from './common.js';

export function buildCommand(): Command {
  return new Command('build')
    .description('Build a system from LinuxKit YAML files (merged in order; - is stdin, or an http(s) URL)')
    .argument('<file...>', 'the YAML file(s)')
    .option(
      '--format <formats>',
      'output formats, comma separated or repeated (default kernel+initrd)',
      collectList,
    )
    .option('--dir <dir>', 'output directory (default: the current directory)')
    .option('--name <name>', 'output name prefix (default: the last YAML file name without .yml)')
    .option('--dry-run', 'print the merged, validated YAML and stop (nothing is pulled, built or written)')
    .option('--cache <dir>', 'image cache directory (default ~/.linuxkit/cache, or LINUXKIT_CACHE)')
    .option('--debian-mirror <url>', 'Debian mirror for package builds (or LINUXKIT_DEBIAN_MIRROR)')
    .option('--pull', 'pull image tags from their registries even when they are in the cache')
    .option(
      '--no-sbom',
      'do not write NAME-sbom.spdx.json (the SPDX SBOM of every Debian package in the system)',
    )
    .option('--size <size>', 'size of disk image outputs, e.g. 1024M or 4G (default 1024M)', parseSize)
    .action(
      async (
        file: string[],
        o: {
          format?: string[];
          dir?: string;
          name?: string;
          cache?: string;
          debianMirror?: string;
          dryRun?: boolean;
          pull?: boolean;
          size?: number;
          sbom: boolean;
        },
      ) => {
        const formats = o.format?.length ? o.format : ['kernel+initrd'];
        checkFormats(formats);
        if (o.dryRun) {
          process.stdout.write(configToYaml((await loadConfigFiles(file)).config));
          return;
        }
        const { outputs } = await build({
          file,
          formats,
          dir: o.dir,
          name: o.name,
          cacheDir: cacheDir(o.cache),
          debianMirror: debianMirror(o.debianMirror),
          pull: o.pull,
          size: o.size,
          sbom: o.sbom,
          log,
        });
        for (const out of outputs) log(`wrote ${out}`);
      },
    );
}
