import { Command, Option } from 'commander';
import { INITRD_COMPRESSIONS } from '../formats/compress.js';
import { type BuildFlags, buildOptions, reportUpToDate } from './build-noop.js';
import { collectList, log, parseSize } from './common.js';

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
    .addOption(
      new Option('--compress <kind>', 'initrd compression (gzip is what every boot loader and kernel takes)')
        .choices(INITRD_COMPRESSIONS)
        .default('gzip'),
    )
    .action(async (file: string[], o: BuildFlags) => {
      const opts = buildOptions(file, o);
      if (o.dryRun) {
        const [{ checkFormats }, { configToYaml }, { loadConfigFiles }] = await Promise.all([
          import('../formats/outputs.js'),
          import('../spec/dump.js'),
          import('../spec/load.js'),
        ]);
        checkFormats(opts.formats);
        process.stdout.write(configToYaml((await loadConfigFiles(file)).config));
        return;
      }
      // The builder is loaded only when the stamp says there is work: a no-op rebuild costs
      // little more than Node's start-up.
      if (await reportUpToDate(opts)) return;
      const { build } = await import('../build/build.js');
      const { outputs } = await build(opts);
      for (const out of outputs) log(`wrote ${out}`);
    });
}
