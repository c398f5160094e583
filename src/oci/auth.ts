/**
 * Registry credentials and the distribution spec's auth handshake, as Docker does it:
 *
 * - Credentials come from the Docker client's config ($DOCKER_CONFIG/config.json, else
 *   ~/.docker/config.json):
 *     { "auths": { "HOST[:PORT]" | "https://HOST/v1/": { "auth": base64("user:pass") } |
 *                                                        { "username", "password" } |
 *                                                        { "identitytoken" } },
 *       "credHelpers": { "HOST": "NAME" },      // run `docker-credential-NAME get`
 *       "credsStore": "NAME" }                  // the helper for every other host
 *   A helper reads the server URL on stdin and prints {"Username": ..., "Secret": ...}
 *   (Username "<token>" means Secret is an identity token). docker.io is stored under
 *   "https://index.docker.io/v1/".
 * - A registry answers 401 with `WWW-Authenticate: Basic realm="..."` or
 *   `Bearer realm="URL",service="S",scope="repository:NAME:pull"`. For Bearer we GET
 *   URL?service=S&scope=... (with basic auth when we have credentials) and use the returned
 *   {"token"} or {"access_token"} as `Authorization: Bearer TOKEN`.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (from `docker login` to some registries). */
  identityToken?: string;
}

/** The config file the Docker client reads. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** The keys a registry host may be stored under in `auths` (Docker normalises URLs to hosts). */
function authKeyMatches(key: string, host: string): boolean {
  const stripped = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (host === 'docker.io')
    return ['docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(stripped);
  return stripped === host;
}

/** Credentials for a registry host (`docker.io`, `127.0.0.1:5000`), or undefined. */
export async function credentialsFor(
  host: string,
  configPath: string = dockerConfigPath(),
): Promise<Credentials | undefined> {
  let config: DockerConfig;
  try {
    config = JSON.parse(await readFile(configPath, 'utf8')) as DockerConfig;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw new UserError(`cannot read the Docker config ${configPath}: ${(e as Error).message}`);
  }
  const serverUrl = host === 'docker.io' ? 'https://index.docker.io/v1/' : host;
  const helper = config.credHelpers?.[host] ?? config.credHelpers?.[serverUrl];
  if (helper) return helperGet(helper, serverUrl);
  for (const [key, a] of Object.entries(config.auths ?? {})) {
    if (!authKeyMatches(key, host) || typeof a !== 'object' || a === null) continue;
    if (a.identitytoken) return { identityToken: a.identitytoken };
    if (a.auth) {
      const text = Buffer.from(a.auth, 'base64').toString('utf8');
      const i = text.indexOf(':');
      if (i < 0) throw new UserError(`${configPath}: the "auth" for ${key} is not base64 of user:password`);
      return { username: text.slice(0, i), password: text.slice(i + 1) };
    }
    if (a.username !== undefined) return { username: a.username, password: a.password ?? '' };
  }
  if (config.credsStore) return helperGet(config.credsStore, serverUrl, true);
  return undefined;
}

/** Run `docker-credential-NAME get`; a store that has nothing for the host gives undefined. */
function helperGet(name: string, serverUrl: string, optional = false): Promise<Credentials | undefined> {
  const cmd = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, ['get'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      if (optional) resolve(undefined);
      else reject(new UserError(`credential helper ${cmd} could not run: ${e.message}`));
    });
    child.on('close', (code) => {
      const text = Buffer.concat(out).toString('utf8');
      if (code !== 0) {
        // The protocol's answer for "no credentials stored".
        if (/credentials not found/i.test(text + Buffer.concat(err).toString())) return resolve(undefined);
        if (optional) return resolve(undefined);
        return reject(
          new UserError(
            `credential helper ${cmd} failed for ${serverUrl}: ${(text || Buffer.concat(err).toString()).trim()}`,
          ),
        );
      }
      try {
        const j = JSON.parse(text) as { Username?: string; Secret?: string };
        if (j.Username === '<token>') resolve({ identityToken: j.Secret ?? '' });
        else resolve({ username: j.Username ?? '', password: j.Secret ?? '' });
      } catch {
        reject(new UserError(`credential helper ${cmd} printed something that is not JSON`));
      }
    });
    child.stdin.end(serverUrl);
  });
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parse a WWW-Authenticate header (RFC 7235): `Scheme k="v", k2=v2`. Registries send one
 * challenge; a second one (comma then a new scheme) is ignored.
 */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)/gy;
  let rest = m[2] ?? '';
  re.lastIndex = 0;
  for (;;) {
    const start = re.lastIndex;
    if (start >= rest.length) break;
    const p = re.exec(rest);
    if (!p) {
      rest = rest.slice(start);
      break;
    }
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
}

/**
 * Get a bearer token for `scope` from the challenge's realm. With an identity token we use the
 * OAuth2 refresh-token grant (POST), otherwise GET with basic auth (or anonymously).
 */
export async function fetchToken(
  challenge: Challenge,
  scopes: string[],
  creds: Credentials | undefined,
  doFetch: typeof fetch = fetch,
): Promise<string> {
  const realm = challenge.params.realm;
  if (!realm) throw new UserError('the registry asked for a bearer token but named no realm');
  const url = new URL(realm);
  const service = challenge.params.service;
  let res: Response;
  if (creds?.identityToken) {
    const body = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: creds.identityToken,
      client_id: 'linuxkit',
      ...(service ? { service } : {}),
      scope: scopes.join(' '),
    });
    res = await doFetch(url, { method: 'POST', body });
  } else {
    if (service) url.searchParams.set('service', service);
    for (const s of scopes) url.searchParams.append('scope', s);
    res = await doFetch(url, { headers: creds ? { authorization: basicHeader(creds) } : {} });
  }
  if (!res.ok) {
    throw new UserError(
      `the registry's token service ${url.origin}${url.pathname} refused ${creds ? 'our credentials' : 'an anonymous request'} (HTTP ${res.status})`,
    );
  }
  const j = (await res.json()) as { token?: string; access_token?: string };
  const token = j.token ?? j.access_token;
  if (!token) throw new UserError(`the token service ${url.origin} returned no token`);
  return token;
}
