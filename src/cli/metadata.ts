import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { metadataIso } from '../run/metadata.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';

export function metadataCommand(): Command {
  const md = new Command('metadata').description('Metadata (user data) images for the metadata package');
  md.addCommand(
    new Command('create')
      .description('Write an ISO9660 image whose `config` file holds DATA, to attach to a VM as a CD or disk')
      .argument('<file>', 'the ISO to write')
      .argument('[data]', 'the user data (a string); with --file, read from a file')
      .option('--file <path>', 'read the user data from this file')
      .action(async (file: string, data: string | undefined, o: { file?: string }) => {
        let bytes: Uint8Array = new TextEncoder().encode(data ?? '');
        if (o.file !== undefined) {
          try {
            bytes = readFileSync(o.file);
          } catch (e) {
            throw new UserError(`cannot read --file ${o.file}: ${(e as Error).message}`);
          }
        }
        await writeFileAtomic(file, metadataIso(bytes));
      }),
  );
  return md;
}
