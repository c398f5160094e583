/** `linuxkit cache ls | rm | clean | export | import | pull | push | verify`: the image cache. */
import path from 'node:path';
import { Command } from 'commander';
import { exportDockerArchive, exportOciArchive, importArchive } from '../oci/archive.js';
import { ImageStore } from '../oci/layout.js';
import { cleanStore, verifyStore } from '../oci/maintain.js';
import { parseRef } from '../oci/reference.js';
import { RegistryClient, type RegistryOptions } from '../oci/registry.js';
import { UserError } from '../util/errors.js';
import { cacheDir, collectList, log } from './common.js';

const cacheOpt = (c: Command) =>
  c.option('--cache <dir>', 'image cache directory (default ~/.linuxkit/cache, or LINUXKIT_CACHE)');

/** `--mirror HOST=URL` (repeatable) and `--insecure HOST`, for every command that talks to registries. */
export function registryOpts(c: Command): Command {
  return c
    .option('--mirror <host=url>', "pull HOST's images from URL (repeatable)", collectList)
    .option('--insecure <host>', 'speak plain HTTP to HOST (loopback hosts always are)', collectList);
}

export function registryOptions(o: { mirror?: string[]; insecure?: string[] }): RegistryOptions {
  const mirrors: Record<string, string> = {};
  for (const m of o.mirror ?? []) {
    const i = m.indexOf('=');
    if (i <= 0) throw new UserError(`--mirror ${JSON.stringify(m)}: expected REGISTRY=URL`);
    const url = m.slice(i + 1);
    if (!/^https?:\/\//.test(url))
      throw new UserError(`--mirror ${JSON.stringify(m)}: the URL must start with http:// or https://`);
    mirrors[m.slice(0, i) === 'index.docker.io' ? 'docker.io' : m.slice(0, i)] = url;
  }
  return { mirrors, insecure: o.insecure, log };
}

const ARCHES: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', amd64: 'amd64', arm64: 'arm64' };

export function platformOf(arch?: string): { os: string; architecture: string } {
  const a = arch ?? 'amd64';
  const architecture = ARCHES[a] ?? a;
  if (!/^[a-z0-9]+$/.test(architecture)) throw new UserError(`invalid --arch ${JSON.stringify(a)}`);
  return { os: 'linux', architecture };
}

async function openStore(o: { cache?: string }): Promise<ImageStore> {
  const store = new ImageStore(cacheDir(o.cache));
  await store.init();
  return store;
}

const short = (ref: string) => ref.replace(/^docker\.io\//, '');

export function cacheCommand(): Command {
  const cache = new Command('cache').description('Inspect and manage the image cache (an OCI image layout)');

  cache.addCommand(
    cacheOpt(new Command('ls'))
      .description('List the images in the cache: reference and digest')
      .action(async (o: { cache?: string }) => {
        const store = await openStore(o);
        for (const { ref, desc } of await store.list())
          process.stdout.write(`${short(ref)} ${desc.digest}\n`);
      }),
  );

  cache.addCommand(
    cacheOpt(new Command('rm'))
      .description('Remove references from the cache (run `cache clean` to free their blobs)')
      .argument('<ref...>', 'image references')
      .action(async (refs: string[], o: { cache?: string }) => {
        const store = await openStore(o);
        let missing = 0;
        for (const r of refs) {
          if (await store.untag(r)) log(`removed ${short(parseRef(r).toString())}`);
          else {
            log(`${short(parseRef(r).toString())} is not in the cache`);
            missing++;
          }
        }
        if (missing) process.exitCode = 1;
      }),
  );

  cache.addCommand(
    cacheOpt(new Command('clean'))
      .description('Remove blobs no reference needs, and temp files of interrupted writes')
      .action(async (o: { cache?: string }) => {
        const r = await cleanStore(await openStore(o));
        log(`removed ${r.removed} blobs (${(r.bytes / 1e6).toFixed(1)} MB)`);
      }),
  );

  cache.addCommand(
    cacheOpt(new Command('export'))
      .description('Write images from the cache to an OCI archive or a `docker load` archive')
      .argument('<ref...>', 'image references')
      .option('--format <format>', 'oci or docker', 'oci')
      .requiredOption('--outfile <file>', 'the archive to write')
      .option('--arch <arch>', 'platform for docker archives (default amd64)')
      .action(
        async (refs: string[], o: { cache?: string; format: string; outfile: string; arch?: string }) => {
          const store = await openStore(o);
          const out = path.resolve(o.outfile);
          if (o.format === 'oci') await exportOciArchive(store, refs, out);
          else if (o.format === 'docker') await exportDockerArchive(store, refs, out, platformOf(o.arch));
          else throw new UserError(`--format ${JSON.stringify(o.format)}: expected oci or docker`);
          log(`wrote ${o.outfile}`);
        },
      ),
  );

  cache.addCommand(
    cacheOpt(new Command('import'))
      .description('Import the images of an OCI archive or a Docker archive into the cache')
      .argument('<file>', 'the archive')
      .option('--name <ref>', 'tag the (only) image with this reference')
      .action(async (file: string, o: { cache?: string; name?: string }) => {
        const got = await importArchive(await openStore(o), path.resolve(file), { ref: o.name });
        for (const g of got) process.stdout.write(`${g.ref ? short(g.ref) : '(unnamed)'} ${g.desc.digest}\n`);
      }),
  );

  cache.addCommand(
    registryOpts(cacheOpt(new Command('pull')))
      .description('Pull images from their registries into the cache')
      .argument('<ref...>', 'image references (name:tag or name@sha256:...)')
      .option('--arch <arch>', 'platform of an image index to pull (default amd64)')
      .action(
        async (
          refs: string[],
          o: { cache?: string; arch?: string; mirror?: string[]; insecure?: string[] },
        ) => {
          const store = await openStore(o);
          const client = new RegistryClient(registryOptions(o));
          const t0 = performance.now();
          for (const r of refs) {
            const res = await client.pull(store, r, { platform: platformOf(o.arch) });
            const s = (performance.now() - t0) / 1000;
            log(
              `pulled ${short(res.ref)} ${res.desc.digest} (${(res.bytes / 1e6).toFixed(1)} MB in ${s.toFixed(2)} s)`,
            );
          }
        },
      ),
  );

  cache.addCommand(
    registryOpts(cacheOpt(new Command('push')))
      .description('Push an image from the cache to its registry (or to --to)')
      .argument('<ref>', 'image reference in the cache')
      .option('--to <ref>', 'push under this reference instead')
      .option('--mount-from <ref>', 'mount blobs from this repository of the same registry')
      .action(
        async (
          ref: string,
          o: { cache?: string; to?: string; mountFrom?: string; mirror?: string[]; insecure?: string[] },
        ) => {
          const client = new RegistryClient(registryOptions(o));
          const r = await client.push(await openStore(o), ref, o.to, { mountFrom: o.mountFrom });
          process.stdout.write(`${short(r.ref)} ${r.desc.digest}\n`);
        },
      ),
  );

  cache.addCommand(
    cacheOpt(new Command('verify'))
      .description('Re-hash every blob and check every reference; --repair removes what is broken')
      .option('--repair', 'remove corrupt blobs, dangling references and stale temp files')
      .action(async (o: { cache?: string; repair?: boolean }) => {
        const r = await verifyStore(await openStore(o), { repair: o.repair });
        const fix = o.repair ? ' (removed)' : '';
        for (const d of r.corrupt) log(`corrupt blob ${d}${fix}`);
        for (const d of r.dangling)
          log(`dangling reference ${short(d.ref)}: missing ${d.missing.join(', ')}${fix}`);
        for (const f of r.leftovers) log(`leftover temp file ${f}${fix}`);
        log(
          `${r.blobs} blobs (${(r.bytes / 1e6).toFixed(1)} MB): ${r.corrupt.length} corrupt, ${r.dangling.length} dangling references, ${r.leftovers.length} leftover temp files`,
        );
        if (!o.repair && (r.corrupt.length || r.dangling.length)) process.exitCode = 1;
      }),
  );
  return cache;
}
