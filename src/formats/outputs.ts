/**
 * LinuxKit output format names -> writers. Each writer gets the assembled system and a path
 * prefix (DIR/NAME) and returns the files it wrote; all files of one build appear atomically.
 */
import type { Assembled } from '../build/assemble.js';
import { writeFilesAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { gzip } from './compress.js';
import { writeCpio } from './cpio.js';

type Writer = (system: Assembled, prefix: string) => { path: string; data: Uint8Array }[];

function needKernel(system: Assembled, format: string): Uint8Array {
  if (!system.kernel) throw new UserError(`format ${format} needs a kernel: the YAML has no kernel section`);
  return system.kernel;
}

const writers: Record<string, Writer> = {
  'kernel+initrd': (system, prefix) => [
    { path: `${prefix}-kernel`, data: needKernel(system, 'kernel+initrd') },
    { path: `${prefix}-initrd.img`, data: gzip(writeCpio(system.root.entries()), 6) },
    { path: `${prefix}-cmdline`, data: new TextEncoder().encode(system.cmdline) },
  ],
};

export const FORMATS = Object.keys(writers);

export function checkFormats(formats: string[]): void {
  for (const f of formats) {
    if (!writers[f])
      throw new UserError(`unknown output format ${JSON.stringify(f)}; supported: ${FORMATS.join(', ')}`);
  }
}

export async function writeOutputs(system: Assembled, formats: string[], prefix: string): Promise<string[]> {
  checkFormats(formats);
  const files = formats.flatMap((f) => writers[f]!(system, prefix));
  await writeFilesAtomic(files);
  return files.map((f) => f.path);
}
