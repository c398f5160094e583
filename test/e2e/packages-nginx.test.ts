/**
 * nginx with the small standard packages around it, in one boot: ca-certificates (init),
 * sysctl and dhcpcd (onboot, one-shot), rngd and nginx (services). Checks: HTTP 200 with
 * `Server: nginx` over a port qemu publishes; the lease gave 10.0.2.15 and a resolv.conf;
 * sysctl applied upstream's defaults; the CA bundle is there; rngd runs.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { build } from '../../src/build/build.js';
import { runQemu } from '../../src/run/qemu.js';
import { pkgRef as pkg, TEST_CACHE, tempDir } from '../helpers.js';
import { freePort, userNet, waitFor } from './packages-helpers.js';

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
  const file = path.join(dir, 'web.yml');
  await writeFile(
    file,
    `kernel:
  image: ${pkg('kernel')}
  cmdline: console=ttyS0
init:
  - ${pkg('init')}
  - ${pkg('runc')}
  - ${pkg('ca-certificates')}
onboot:
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
  await build({ file, formats: ['kernel+initrd'], dir, cacheDir: TEST_CACHE });
  const port = await freePort();
  const lines: string[] = [];
  const t0 = Date.now();
  const stop = new AbortController();
  const vm = runQemu({
    stop: stop.signal,
    kernel: path.join(dir, 'web-kernel'),
    initrd: path.join(dir, 'web-initrd.img'),
    cmdline: 'console=ttyS0',
    console: { onLine: (l) => lines.push(l) },
    timeoutMs: 300_000,
    extraArgs: userNet(port, 80),
  });
  let exited = false;
  void vm.then(() => {
    exited = true;
  });
  try {
    const res = await waitFor(
      () => !exited,
      240_000,
      () => get(port),
    );
    const log = () => lines.join('\n');
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
