/**
 * Test helpers shared by the debian tests: one download cache for every test process of a run
 * (and later runs), so the ~12 MB bookworm Packages index is fetched and parsed once. Safe to
 * share: everything in it is content-addressed and re-verified when read.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataBytes } from '../fs/data.js';
import type { FsTree } from '../fs/tree.js';
import { writeFileAtomic } from '../util/atomic.js';
import { DebianArchive } from './archive.js';
import { readDeb } from './deb.js';
import { resolve } from './resolve.js';

export const SHARED_TEST_CACHE =
  process.env.LINUXKIT_TEST_DEBIAN_CACHE ?? path.join(os.tmpdir(), 'linuxkit-ts-test-debian-cache');

const archives = new Map<string, DebianArchive>();

/** A DebianArchive for `suite` on the default mirror choice, with the shared test cache. */
export function testArchive(suite = 'bookworm'): DebianArchive {
  let a = archives.get(suite);
  if (!a) {
    a = new DebianArchive({ suite, cacheDir: SHARED_TEST_CACHE });
    archives.set(suite, a);
  }
  return a;
}

/** Where the test fixtures live (they are not copied to dist/). */
export function testdata(name: string): string {
  return fileURLToPath(new URL(`../../../src/debian/testdata/${name}`, import.meta.url));
}

/** Debian's cloud kernel package, unpacked: what tests that need a real kernel boot or read. */
export async function debianCloudKernel(): Promise<{ tree: FsTree; vmlinuz: string }> {
  const archive = testArchive();
  const { packages } = resolve(await archive.packages(), ['linux-image-cloud-amd64'], {
    exclude: ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool'],
  });
  const image = packages.find((p) => p.name.startsWith('linux-image-6'))!;
  const { data: tree } = await readDeb(await archive.fetchDeb(image), image.name);
  const kernel = tree.entries().find((e) => e.kind === 'file' && e.path.startsWith('boot/vmlinuz-'))!;
  // Kept beside the download cache so repeated test runs reuse it.
  const vmlinuz = path.join(SHARED_TEST_CACHE, `${image.name}_${image.version}.vmlinuz`);
  if (!existsSync(vmlinuz)) {
    await mkdir(SHARED_TEST_CACHE, { recursive: true });
    await writeFileAtomic(vmlinuz, dataBytes(kernel.data));
  }
  return { tree, vmlinuz };
}
