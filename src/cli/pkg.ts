import path from 'node:path';
import { Command } from 'commander';
import { ImageStore } from '../oci/layout.js';
import { RegistryClient } from '../oci/registry.js';
import { buildPackage, type PkgOptions, planPackage, whyPackage } from '../pkg/build.js';
import { makeLock, writeLock } from '../pkg/lock.js';
import { registryOptions, registryOpts } from './cache.js';
import { cacheDir, debianMirror, log } from './common.js';

interface PkgFlags {
  cache?: string;
  debianMirror?: string;
  force?: boolean;
  why?: string;
  push?: boolean;
  pushTo?: string;
  mirror?: string[];
  insecure?: string[];
}

/** Push a built package: to its own reference, or under `--push-to REGISTRY/ORG`. */
async function pushPackage(ref: string, o: PkgFlags, opts: PkgOptions): Promise<void> {
  const to = o.pushTo ? `${o.pushTo.replace(/\/+$/, '')}/${ref.slice(ref.lastIndexOf('/') + 1)}` : ref;
  const r = await new RegistryClient(registryOptions(o)).push(opts.store, ref, to);
  log(`pushed ${r.ref} ${r.desc.digest}`);
}

const pushOpts = (c: Command) =>
  registryOpts(c).option(
    '--push-to <registry/org>',
    "push to REGISTRY/ORG/NAME:TAG instead of the package's own name",
  );

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
    pushOpts(common(new Command('build')))
      .description('Build the package in DIR into the image cache and print its tag')
      .argument('<dir>', 'package directory (holds build.yml)')
      .option('--force', 'build even if the tag is already in the cache')
      .option('--push', 'push the image to its registry after building it')
      .option(
        '--why <package>',
        'explain why a Debian package is in the image (the dependency chain), then stop',
      )
      .action(async (dir: string, o: PkgFlags) => {
        const opts = await pkgOptions(o);
        if (o.why !== undefined) {
          process.stdout.write(`${await whyPackage(dir, o.why, opts)}\n`);
          return;
        }
        const r = await buildPackage(dir, opts);
        if (!r.built) log(`${r.ref} is already in the cache`);
        if (o.push || o.pushTo) await pushPackage(r.ref, o, opts);
        process.stdout.write(`${r.ref.replace(/^docker\.io\//, '')}\n`);
      }),
  );
  pkg.addCommand(
    pushOpts(common(new Command('push')))
      .description('Build the package in DIR if needed, then push it to its registry')
      .argument('<dir>', 'package directory (holds build.yml)')
      .action(async (dir: string, o: PkgFlags) => {
        const opts = await pkgOptions(o);
        const r = await buildPackage(dir, opts);
        await pushPackage(r.ref, o, opts);
        process.stdout.write(`${r.ref.replace(/^docker\.io\//, '')}\n`);
      }),
  );
  pkg.addCommand(
    common(new Command('lock'))
      .description(
        'Resolve the Debian packages of DIR afresh and pin them (versions, sha256) in DIR/build.lock',
      )
      .argument('<dir>', 'package directory (holds build.yml)')
      .action(async (dir: string, o: PkgFlags) => {
        // Afresh means against the mirror's current InRelease, not a cached one.
        const plan = await planPackage(dir, { ...(await pkgOptions(o)), ignoreLock: true, pull: true });
        const file = await writeLock(plan.dir, makeLock(plan.yml, plan.debs));
        log(`wrote ${file}: ${plan.debs.length} packages`);
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
