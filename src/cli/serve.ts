import { Command } from 'commander';
import { parseListen, serve } from '../run/serve.js';
import { log } from './common.js';

export function serveCommand(): Command {
  return new Command('serve')
    .description('Serve a directory over HTTP for iPXE netboot; NAME.ipxe boots the kernel+initrd build NAME')
    .option('--port <addr>', 'listen address: PORT, :PORT or HOST:PORT', ':8080')
    .option('--directory <dir>', 'the directory to serve', '.')
    .action(async (o: { port: string; directory: string }) => {
      const s = await serve({ directory: o.directory, ...parseListen(o.port) });
      log(`serving ${o.directory} at ${s.url} (iPXE: ${s.url}/NAME.ipxe)`);
      await new Promise<void>((resolve) => {
        const stop = () => void s.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
