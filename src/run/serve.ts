/**
 * `linuxkit serve`: an HTTP server for iPXE netboot. It serves the files of one directory (as
 * upstream's serve, read-only, nothing outside it) and, for every kernel+initrd build NAME in
 * it (NAME-kernel + NAME-initrd.img), an iPXE script at /NAME.ipxe that boots it:
 *
 *   #!ipxe
 *   set base-url http://HOST:PORT          (the Host the client asked for)
 *   kernel ${base-url}/NAME-kernel initrd=NAME-initrd.img <NAME-cmdline>
 *   initrd ${base-url}/NAME-initrd.img
 *   boot
 *
 * (`initrd=` on the kernel line is what an EFI-stub kernel needs to find the initrd.)
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export function ipxeScript(baseUrl: string, name: string, cmdline: string): string {
  const args = [`initrd=${name}-initrd.img`, cmdline.trim()].filter(Boolean).join(' ');
  return [
    '#!ipxe',
    `set base-url ${baseUrl}`,
    `kernel \${base-url}/${name}-kernel ${args}`,
    `initrd \${base-url}/${name}-initrd.img`,
    'boot',
    '',
  ].join('\n');
}

/** `PORT`, `:PORT` or `HOST:PORT` (upstream's -port is a Go listen address, default :8080). */
export function parseListen(spec: string): { host?: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(spec);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new UserError(`-port ${spec}: expected PORT, :PORT or HOST:PORT`);
  return { host: m[1] || undefined, port };
}

export interface Served {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function serve(opts: { directory: string; host?: string; port: number }): Promise<Served> {
  const root = path.resolve(opts.directory);
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw new UserError(`-directory ${opts.directory}: ${(e as Error).message}`);
  }
  const server = http.createServer((req, res) => {
    void handle(root, req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new UserError(`cannot listen on port ${opts.port}: ${e.message}`)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host && opts.host !== '0.0.0.0' ? opts.host : '127.0.0.1';
  return {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(root: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const notFound = () => {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' });
    return void res.end();
  }
  let rel: string;
  try {
    rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
  } catch {
    return notFound();
  }
  // Only plain names inside the directory: no "..", no hidden files, nothing absolute.
  if (rel.split('/').some((s) => s === '..' || s.startsWith('.')) || rel.includes('\0')) return notFound();
  const file = path.join(root, rel);
  if (rel === '') {
    const names = (await readdir(root)).filter((n) => !n.startsWith('.')).sort();
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    return void res.end(req.method === 'HEAD' ? undefined : names.map((n) => `${n}\n`).join(''));
  }
  const ipxe = /^([^/]+)\.ipxe$/.exec(rel);
  if (ipxe) {
    const name = ipxe[1]!;
    const has = async (f: string) =>
      (await stat(path.join(root, f)).catch(() => undefined))?.isFile() ?? false;
    if ((await has(rel)) === false && (await has(`${name}-kernel`)) && (await has(`${name}-initrd.img`))) {
      const cmdline = await readFile(path.join(root, `${name}-cmdline`), 'utf8').catch(() => '');
      const body = ipxeScript(`http://${req.headers.host ?? 'localhost'}`, name, cmdline);
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      return void res.end(req.method === 'HEAD' ? undefined : body);
    }
  }
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) return notFound();
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
  if (req.method === 'HEAD') return void res.end();
  createReadStream(file).pipe(res);
}
