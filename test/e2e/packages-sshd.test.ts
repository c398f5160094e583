/**
 * The sshd demo: a system with dhcpcd (onboot) and sshd (service) boots in qemu; we ssh in as
 * root over a port qemu publishes, with a key the test makes and the YAML's `files:` installs,
 * and `runc list` shows sshd running. Then `kill -USR2 1` powers the system off.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bootBuilt,
  buildYaml,
  expectedMicrovm,
  freePort,
  pkgRef as pkg,
  sshCommand,
  sshKeyPair,
  systemYaml,
  tempDir,
  waitForSsh,
} from '../helpers.js';
import { skipUnless } from '../tools.js';

const dir = tempDir('lk-sshd-');

test('sshd: ssh in with the key from files:, runc list shows sshd', {
  timeout: 900_000,
  ...skipUnless('ssh', 'openssh-client'),
}, async () => {
  const { key, pub } = await sshKeyPair(dir, 'lk-test');
  await buildYaml(
    dir,
    'sshd',
    `${systemYaml()}onboot:
  - name: dhcpcd
    image: ${pkg('dhcpcd')}
    command: ["/usr/sbin/dhcpcd", "--nobackground", "-f", "/etc/dhcpcd.conf", "-1"]
services:
  - name: sshd
    image: ${pkg('sshd')}
files:
  - path: root/.ssh/authorized_keys
    contents: ${JSON.stringify(pub)}
    mode: "0600"
`,
  );
  const port = await freePort();
  const t0 = Date.now();
  const stop = new AbortController();
  // The runner's own NIC (not raw -netdev args): under TCG this boot runs on microvm.
  const booting = bootBuilt(dir, 'sshd', {
    stop: stop.signal,
    timeoutMs: 300_000,
    networking: { mode: 'user' },
    publish: [{ host: port, guest: 22, protocol: 'tcp' }],
  });
  const ssh = (cmd: string) => sshCommand(port, key, cmd);
  const { vm } = booting;
  try {
    await waitForSsh(booting, port, key, t0, 240_000);
    const list = await ssh('runc list');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^sshd\s+\d+\s+running\s/m, list.stdout);
    // Host keys were made at boot, in the container: never in the image.
    const keys = await ssh('ls /etc/ssh/');
    assert.match(keys.stdout, /ssh_host_ed25519_key\.pub/);
    // A shipped module the kernel asks for by alias when a feature is first used: a bridge link
    // makes it run modprobe for `rtnl-link-bridge`, which modules.alias maps to bridge.
    const br = await ssh(
      'ip link add lkbr0 type bridge && ip link del lkbr0 && grep -c "^bridge " /proc/modules',
    );
    assert.equal(br.code, 0, br.stderr);
    assert.equal(br.stdout.trim(), '1');
    // The guest's clocks: the date from its RTC, and time that passes at the host's pace (on
    // microvm the TSC's frequency comes from the host, see src/run/microvm.ts).
    const clock = async () => {
      const before = Date.now();
      const r = await ssh('date +%s; cat /proc/uptime');
      const [date, uptime] = r.stdout.trim().split('\n');
      // The host's time halfway through the round trip, when the guest read its clocks.
      const host = (before + Date.now()) / 2000;
      return { host, date: Number(date), uptime: Number(uptime!.split(' ')[0]) };
    };
    const a = await clock();
    assert.ok(Math.abs(a.date - a.host) < 30, `guest date ${a.date}, host ${a.host}`);
    await new Promise((r) => setTimeout(r, 5000));
    const b = await clock();
    const rate = (b.uptime - a.uptime) / (b.host - a.host);
    assert.ok(rate > 0.8 && rate < 1.25, `guest time passed at ${rate.toFixed(3)}x the host's`);
  } finally {
    stop.abort();
    await vm;
  }
  assert.equal((await vm).microvm, await expectedMicrovm());
});
