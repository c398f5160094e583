/**
 * For tests: a real registry server (Debian's `docker-registry`, the CNCF distribution
 * registry) on 127.0.0.1 with a random port, storage in a temp dir, optionally with htpasswd
 * basic auth, and a small HTTP proxy that can tamper with or delay what the registry serves.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createSign, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestRegistry {
  /** host:port, e.g. 127.0.0.1:41234 */
  host: string;
  /** A DOCKER_CONFIG directory holding the credentials (auth registries only). */
  dockerConfigDir?: string;
  /** Token mode: the scopes of every token the token service issued. */
  tokenScopes?: string[];
  stop(): void;
}

const running = new Set<ChildProcess>();
// Never leave a registry behind, whatever way the test process ends.
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A token service for the registry's `auth: token` mode (the Docker Hub scheme): it answers
 * GET /token?service=S&scope=repository:NAME:ACTIONS with a JWT (RS256) whose x5c header holds
 * the certificate the registry trusts, granting what was asked, after checking basic auth.
 */
async function startTokenServer(dir: string, auth: { user: string; password: string }) {
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'key.pem',
      '-out',
      'cert.pem',
      '-days',
      '3650',
      '-subj',
      '/CN=lk-token',
    ],
    { cwd: dir, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  const key = readFileSync(path.join(dir, 'key.pem'), 'utf8');
  const der = new X509Certificate(readFileSync(path.join(dir, 'cert.pem'))).raw.toString('base64');
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const tokens: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const want = `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`;
    if (req.headers.authorization !== want) {
      res.writeHead(401);
      res.end();
      return;
    }
    const access = url.searchParams.getAll('scope').map((sc) => {
      const [type, ...rest] = sc.split(':');
      const actions = rest.pop() ?? '';
      return { type, name: rest.join(':'), actions: actions.split(',') };
    });
    tokens.push(url.searchParams.getAll('scope').join(' '));
    const now = Math.floor(Date.now() / 1000);
    const head = b64({ alg: 'RS256', typ: 'JWT', x5c: [der] });
    const body = b64({
      iss: 'lk-issuer',
      sub: auth.user,
      aud: url.searchParams.get('service'),
      exp: now + 600,
      nbf: now - 10,
      iat: now,
      jti: String(tokens.length),
      access,
    });
    const sig = createSign('RSA-SHA256').update(`${head}.${body}`).sign(key).toString('base64url');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${head}.${body}.${sig}` }));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { port: (server.address() as net.AddressInfo).port, server, tokens };
}

export async function startRegistry(
  auth?: { user: string; password: string },
  mode: 'htpasswd' | 'token' = 'htpasswd',
): Promise<TestRegistry> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-registry-'));
  const port = await freePort();
  let authYaml = '';
  let dockerConfigDir: string | undefined;
  let token: Awaited<ReturnType<typeof startTokenServer>> | undefined;
  if (auth && mode === 'token') {
    token = await startTokenServer(dir, auth);
    authYaml = `auth:\n  token:\n    realm: http://127.0.0.1:${token.port}/token\n    service: lk-test\n    issuer: lk-issuer\n    rootcertbundle: ${path.join(dir, 'cert.pem')}\n`;
  }
  if (auth) {
    const r = spawnSync('htpasswd', ['-Bbn', auth.user, auth.password], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`htpasswd failed: ${r.stderr}`);
    writeFileSync(path.join(dir, 'htpasswd'), r.stdout);
    if (mode === 'htpasswd')
      authYaml = `auth:\n  htpasswd:\n    realm: test\n    path: ${path.join(dir, 'htpasswd')}\n`;
    dockerConfigDir = path.join(dir, 'docker');
    mkdirSync(dockerConfigDir, { recursive: true });
    writeFileSync(
      path.join(dockerConfigDir, 'config.json'),
      JSON.stringify({
        auths: {
          [`127.0.0.1:${port}`]: { auth: Buffer.from(`${auth.user}:${auth.password}`).toString('base64') },
        },
      }),
    );
  }
  const config = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${authYaml}`;
  writeFileSync(path.join(dir, 'config.yml'), config);
  const child = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const stop = () => {
    token?.server.closeAllConnections();
    token?.server.close();
    child.kill('SIGKILL');
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      stop();
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, dockerConfigDir, tokenScopes: token?.tokens, stop };
}

export interface TestProxy {
  host: string;
  /** Requests seen, as "METHOD PATH". */
  seen: string[];
  stop(): Promise<void>;
}

/**
 * An HTTP proxy in front of `target`. `hooks.tamperBlobs` flips one byte in every blob body it
 * passes; `hooks.fail(n, req)` may answer request number n itself (status + headers), e.g. a 503
 * with Retry-After; `hooks.cutBlobsAfter` closes the connection after that many body bytes of a
 * blob's first download.
 */
export async function startProxy(
  target: string,
  hooks: {
    tamperBlobs?: boolean;
    fail?: (
      n: number,
      req: http.IncomingMessage,
    ) => { status: number; headers?: Record<string, string> } | undefined;
    cutBlobsAfter?: number;
  } = {},
): Promise<TestProxy> {
  const seen: string[] = [];
  const cut = new Set<string>();
  let n = 0;
  const server = http.createServer((req, res) => {
    const i = n++;
    seen.push(`${req.method} ${req.url}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    const f = hooks.fail?.(i, req);
    if (f) {
      res.writeHead(f.status, f.headers);
      res.end();
      return;
    }
    const [h, p] = target.split(':');
    const up = http.request(
      { host: h, port: Number(p), method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        const isBlob =
          req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '') && ur.statusCode === 200;
        const headers = { ...ur.headers };
        if (hooks.tamperBlobs && isBlob) {
          let first = true;
          res.writeHead(ur.statusCode ?? 500, headers);
          ur.on('data', (c: Buffer) => {
            if (first && c.length > 0) {
              c[c.length >> 1] ^= 0x01;
              first = false;
            }
            res.write(c);
          });
          ur.on('end', () => res.end());
          return;
        }
        if (hooks.cutBlobsAfter !== undefined && isBlob && !cut.has(req.url ?? '')) {
          cut.add(req.url ?? '');
          res.writeHead(ur.statusCode ?? 500, headers);
          let sent = 0;
          ur.on('data', (c: Buffer) => {
            const room = (hooks.cutBlobsAfter ?? 0) - sent;
            if (room <= 0) return;
            const part = c.subarray(0, room);
            sent += part.length;
            res.write(part, () => {
              if (sent >= (hooks.cutBlobsAfter ?? 0)) res.socket?.destroy();
            });
          });
          ur.on('end', () => res.end());
          return;
        }
        res.writeHead(ur.statusCode ?? 500, headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
