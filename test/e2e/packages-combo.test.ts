/**
 * The standard packages combined as a user would combine them, with keys and files of the
 * system's own (none of the packages' tests use these together):
 * 1. kernel, init, runc, ca-certificates; sysctl and dhcpcd onboot; rngd, sshd and nginx as
 *    services; `files:` giving root's authorized_keys (a key the test makes), a page of its own
 *    for nginx (bound over the image's /var/www/html) and an /etc/sysctl.d file. Checked over
 *    ssh (runc list, /proc/sys, the lease and resolv.conf) and over HTTP (200, Server, the page).
 * 2. No sshd; dhcpcd as a service (its default command); nginx with a configuration file of
 *    the system's own, bound over the image's nginx.conf, on another port with its own root.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import {
  bootBuilt,
  buildYaml,
  freePort,
  pkgRef as pkg,
  sshCommand,
  sshKeyPair,
  systemYaml,
  tempDir,
  waitFor,
  waitForSsh,
} from '../helpers.js';
import { skipUnless } from '../tools.js';

const dir = tempDir('lk-combo-');

interface Reply {
  status: number;
  server: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(port: number, urlPath = '/'): Promise<Reply | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          server: String(res.headers.server ?? ''),
          headers: res.headers,
          body,
        }),
      );
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

// Values no default has: the kernel's somaxconn is 4096, the sysctl image's 1024; 60 is the
// kernel's swappiness. The system's file must also win over the image's defaults.
const SOMAXCONN = 3333;
const SWAPPINESS = 17;
const PAGE = '<!DOCTYPE html>\n<html><body><h1>combo page</h1><p>served from files:</p></body></html>\n';

test('sshd + nginx + dhcpcd + rngd + sysctl + ca-certificates in one system, with files of its own', {
  timeout: 900_000,
  ...skipUnless('ssh', 'openssh-client'),
}, async () => {
  const { key, pub } = await sshKeyPair(dir, 'lk-combo');
  await buildYaml(
    dir,
    'combo',
    `${systemYaml('ca-certificates')}onboot:
  - name: sysctl
    image: ${pkg('sysctl')}
  - name: dhcpcd
    image: ${pkg('dhcpcd')}
    command: ["/usr/sbin/dhcpcd", "--nobackground", "-f", "/etc/dhcpcd.conf", "-1"]
services:
  - name: rngd
    image: ${pkg('rngd')}
  - name: sshd
    image: ${pkg('sshd')}
    # DNS in ssh sessions: the resolv.conf dhcpcd writes on the host.
    binds.add: ["/run/resolvconf/resolv.conf:/etc/resolv.conf:ro"]
  - name: nginx
    image: ${pkg('nginx')}
    # The system's page over the image's /var/www/html (index.html comes before Debian's page).
    binds: ["/var/www/html:/var/www/html:ro"]
files:
  - path: root/.ssh/authorized_keys
    contents: ${JSON.stringify(pub)}
    mode: "0600"
  - path: var/www/html/index.html
    contents: ${JSON.stringify(PAGE)}
    # files: default to 0600 (as upstream): nginx's workers run as www-data.
    mode: "0644"
  - path: etc/sysctl.d/50-combo.conf
    contents: "net.core.somaxconn = ${SOMAXCONN}\\nvm.swappiness = ${SWAPPINESS}\\n"
`,
  );
  const sshPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === sshPort) httpPort = await freePort();
  const t0 = Date.now();
  const stop = new AbortController();
  const booting = bootBuilt(dir, 'combo', {
    stop: stop.signal,
    timeoutMs: 400_000,
    networking: { mode: 'user' },
    publish: [
      { host: sshPort, guest: 22, protocol: 'tcp' },
      { host: httpPort, guest: 80, protocol: 'tcp' },
    ],
  });
  const ssh = (cmd: string) => sshCommand(sshPort, key, cmd);
  const { vm, log, alive } = booting;
  try {
    await waitForSsh(booting, sshPort, key, t0, 300_000);
    // Services start concurrently: nginx may come up a little after sshd.
    const res = await waitFor(alive, 60_000, () => get(httpPort));
    assert.ok(res, `no HTTP answer; console:\n${log()}`);
    assert.equal(res.status, 200);
    assert.match(res.server, /^nginx/);
    assert.equal(res.body, PAGE);

    const list = await ssh('runc list');
    assert.equal(list.code, 0, list.stderr);
    for (const name of ['sshd', 'nginx', 'rngd']) {
      if (!new RegExp(`^${name}\\s+\\d+\\s+running\\s`, 'm').test(list.stdout))
        assert.fail(
          `${name} is not running:\n${list.stdout}${(await ssh(`cat /var/log/${name}.log`)).stdout}`,
        );
    }
    // sshd shares the host's network namespace, so net.* here is the system's.
    const sys = await ssh(
      'cat /proc/sys/net/core/somaxconn /proc/sys/vm/swappiness /proc/sys/vm/overcommit_memory',
    );
    assert.equal(sys.code, 0, sys.stderr);
    assert.deepEqual(sys.stdout.trim().split('\n'), [String(SOMAXCONN), String(SWAPPINESS), '1']);
    const net = await ssh('ip -4 addr show; cat /etc/resolv.conf');
    assert.equal(net.code, 0, net.stderr);
    assert.match(net.stdout, /inet 10\.0\.2\.15\//, net.stdout);
    assert.match(net.stdout, /^nameserver 10\.0\.2\.3$/m, net.stdout);
    // rngd feeds the pool from virtio-rng.
    const rng = await ssh('cat /sys/class/misc/hw_random/rng_current');
    assert.match(rng.stdout, /virtio_rng/, rng.stdout + rng.stderr);
    assert.doesNotMatch(log(), /^linuxkit: .*failed/m, log());
  } finally {
    stop.abort();
    await vm;
  }
});

const NGINX_CONF = `user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr;
events { worker_connections 64; }
http {
  access_log off;
  server {
    listen 8080;
    root /srv/www;
    add_header X-Combo "own-config" always;
    location = /health { default_type text/plain; return 200 "ok\\n"; }
  }
}
`;

test('nginx with a configuration of its own from files:, dhcpcd as a service, no sshd', {
  timeout: 900_000,
}, async () => {
  await buildYaml(
    dir,
    'ownconf',
    `${systemYaml()}services:
  - name: dhcpcd
    image: ${pkg('dhcpcd')}
  - name: rngd
    image: ${pkg('rngd')}
  - name: nginx
    image: ${pkg('nginx')}
    binds:
      - /etc/nginx-own/nginx.conf:/etc/nginx/nginx.conf:ro
      - /srv/www:/srv/www:ro
files:
  - path: etc/nginx-own/nginx.conf
    contents: ${JSON.stringify(NGINX_CONF)}
    mode: "0644"
  - path: srv/www/index.html
    contents: "own root\\n"
    mode: "0644"
`,
  );
  const port = await freePort();
  const t0 = Date.now();
  const stop = new AbortController();
  const { vm, log, alive } = bootBuilt(dir, 'ownconf', {
    stop: stop.signal,
    timeoutMs: 400_000,
    networking: { mode: 'user' },
    publish: [{ host: port, guest: 8080, protocol: 'tcp' }],
  });
  try {
    const res = await waitFor(alive, 300_000, () => get(port));
    assert.ok(res, `no HTTP answer; console:\n${log()}`);
    console.log(`# HTTP ready ${((Date.now() - t0) / 1000).toFixed(1)} s after qemu start`);
    assert.equal(res.status, 200);
    assert.match(res.server, /^nginx/);
    assert.equal(res.headers['x-combo'], 'own-config');
    assert.equal(res.body, 'own root\n');
    const health = await get(port, '/health');
    assert.equal(health?.status, 200);
    assert.equal(health?.body, 'ok\n');
    // The image's default site (port 80, Debian's page) is not configured any more.
    assert.equal((await get(port, '/index.nginx-debian.html'))?.status, 404);
    assert.doesNotMatch(log(), /^linuxkit: .*failed/m, log());
  } finally {
    stop.abort();
    await vm;
  }
});
