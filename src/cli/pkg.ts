import path from 'node:path';
import { Command } from 'commander';
import { ImageStore } from '../oci/layout.js';
import { buildPackage, type PkgOptions, planPackage } from '../pkg/build.js';
import { cacheDir, debianMirror, log } from './common.js';

interface PkgFlags {
  cache?: string;
  debianMirror?: string;
  force?: boolean;
}

async function pkgOptions(o: PkgFlags): Promise<PkgOptions> {
  const dir = cacheDir(o.cache);
  const store = new ImageStore(dir);
  await store.init();
  return {
    store,
    debianCacheDir: path.join(dir, 'debian'),
    debianMirror: debianMirror(o.debianMirror),
    force: o.force,
    log,
  };
}

const common = (c: Command) =>
  c
    .option('--cache <dir>', 'image cache directory (default ~/.linuxkit/cache, or LINUXKIT_CACHE)')
    .option('--debian-mirror <url>', 'Debian mirror (or LINUXKIT_DEBIAN_MIRROR)');

export function pkgCommand(): Command {
  const pkg = new Command('pkg').description('Build package images from Debian packages and files');
  pkg.addCommand(
    common(new Command('build'))
      .description('Build the package in DIR into the image cache and print its tag')
      .argument('<dir>', 'package directory (holds build.yml)')
      .option('--force', 'build even if the tag is already in the cache')
      .action(async (dir: string, o: PkgFlags) => {
        const r = await buildPackage(dir, await pkgOptions(o));
        if (!r.built) log(`${r.ref} is already in the cache`);
        process.stdout.write(`${r.ref.replace(/^docker\.io\//, '')}\n`);
      }),
  );
  pkg.addCommand(
    common(new Command('show-tag'))
      .description('Print the tag the package in DIR would get, without building it')
      .argument('<dir>', 'package directory (holds build.yml)')
      .action(async (dir: string, o: PkgFlags) => {
        const plan = await planPackage(dir, await pkgOptions(o));
        process.stdout.write(`${plan.ref.replace(/^docker\.io\//, '')}\n`);
      }),
  );
  return pkg;
}
