/**
 * Test helpers shared by the debian tests: one download cache for every test process of a run
 * (and later runs), so the ~12 MB bookworm Packages index is fetched and parsed once. Safe to
 * share: everything in it is content-addressed and re-verified when read.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DebianArchive } from './archive.js';

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
