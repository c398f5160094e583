/**
 * nginx with the small standard packages around it, in one boot: ca-certificates (init),
 * sysctl and dhcpcd (onboot, one-shot), rngd and nginx (services). Checks: HTTP 200 with
 * `Server: nginx` over a port qemu publishes; the lease gave 10.0.2.15 and a resolv.conf;
 * sysctl applied upstream's defaults; the CA bundle is there; rngd runs.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import {
  bootBuilt,
  buildYaml,
  freePort,
  pkgRef as pkg,
  systemYaml,
  tempDir,
  userNet,
  waitFor,
} from '../helpers.js';

const dir = tempDir('lk-nginx-');

function get(port: number): Promise<{ status: number; server?: string; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, server: String(res.headers.server ?? ''), body }),
      );
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

test('nginx answers HTTP; dhcpcd, sysctl, rngd, ca-certificates do their jobs', {
  timeout: 900_000,
}, async () => {
  await buildYaml(
    dir,
    'web',
    `${systemYaml('ca-certificates')}onboot:
  - name: sysctl
    image: ${pkg('sysctl')}
  - name: dhcpcd
    image: ${pkg('dhcpcd')}
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
  - name: netcheck
    image: ${pkg('test')}
    net: host
    binds: ["/run/resolvconf:/run/resolvconf", "/etc/ssl/certs:/certs"]
    command: ["/bin/sh", "-c", "busybox ip -4 addr show; busybox cat /run/resolvconf/resolv.conf; echo overcommit=$(busybox cat /proc/sys/vm/overcommit_memory); busybox grep -c 'BEGIN CERTIFICATE' /certs/ca-certificates.crt | busybox sed 's/^/certs=/'"]
services:
  - name: rngd
    image: ${pkg('rngd')}
  - name: nginx
    image: ${pkg('nginx')}
`,
  );
  const port = await freePort();
  const t0 = Date.now();
  const stop = new AbortController();
  const { vm, log, alive } = bootBuilt(dir, 'web', {
    stop: stop.signal,
    timeoutMs: 300_000,
    extraArgs: userNet(port, 80),
  });
  try {
    const res = await waitFor(alive, 240_000, () => get(port));
    assert.ok(res, `no HTTP answer; console:\n${log()}`);
    console.log(`# HTTP ready ${((Date.now() - t0) / 1000).toFixed(1)} s after qemu start`);
    assert.equal(res.status, 200);
    assert.match(res.server ?? '', /^nginx/);
    assert.match(res.body, /nginx on LinuxKit/);
    const console_ = log();
    assert.match(console_, /inet 10\.0\.2\.15\//, console_);
    assert.match(console_, /^nameserver 10\.0\.2\.3$/m, console_);
    assert.match(console_, /^overcommit=1$/m, console_);
    const certs = /^certs=(\d+)$/m.exec(console_);
    assert.ok(certs && Number(certs[1]) > 100, console_);
    assert.doesNotMatch(console_, /service (rngd|nginx) failed/);
  } finally {
    stop.abort();
    await vm;
  }
});
