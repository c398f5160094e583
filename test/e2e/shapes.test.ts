/**
 * YAML of the minimal example's shape with other names, commands and settings, referencing the
 * packages by absolute @pkg: paths as users' own files will: services, binds, env,
 * capabilities, net and pid all take effect in the booted VM.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildAndBoot, pkgRef as pkg, systemYaml, tempDir } from '../helpers.js';

const dir = tempDir('lk-shapes-');

const boot = (name: string, yaml: string) => buildAndBoot(dir, name, yaml, { timeoutMs: 180_000 });

test('services run detached next to onboot containers; poweroff as a delayed service', {
  timeout: 900_000,
}, async () => {
  const { code, log } = await boot(
    'services',
    `${systemYaml()}onboot:
  - name: hello
    image: ${pkg('test')}
    command: ["/bin/sh", "-c", "echo onboot-says-$GREETING"]
    env: ["GREETING=hi"]
  - name: netadmin
    image: ${pkg('test')}
    capabilities: [CAP_NET_ADMIN]
    net: host
    env: ["TEST_CAPS=CAP_NET_ADMIN"]
services:
  - name: writer
    image: ${pkg('test')}
    command: ["/bin/sh", "-c", "echo service-writer-running; exec /bin/busybox sleep 600"]
  - name: shutdown
    image: ${pkg('poweroff')}
    command: ["/bin/sh", "/poweroff.sh", "3"]
onshutdown:
  # Services log to /var/log/NAME.log; print the writer's log at power-off.
  - name: logs
    image: ${pkg('test')}
    binds: ["/var/log:/var/log"]
    command: ['/bin/sh', '-c', 'while read -r l; do echo "log: $l"; done < /var/log/writer.log']
files:
  - path: etc/hostname
    contents: "shapes-vm"
`,
  );
  assert.match(log, /onboot-says-hi/, log);
  assert.match(log, /linuxkit test suite PASSED/, log);
  assert.match(log, /log: service-writer-running/, log);
  // Init's and the containers' failures; not the kernel's own messages (with 2 vCPUs under a
  // loaded TCG host it may say that calibrate_delay_direct() failed for the second CPU).
  assert.doesNotMatch(log, /suite FAILED|^linuxkit: .*failed/m, log);
  assert.equal(code, 0, log);
});

test('pid: host shares the system pid namespace, the default is a new one', {
  timeout: 900_000,
}, async () => {
  const { code, log } = await boot(
    'pidhost',
    `kernel:
  image: ${pkg('kernel')}
init:
  - ${pkg('init')}
  - ${pkg('runc')}
onboot:
  - name: own
    image: ${pkg('test')}
    command: ["/bin/sh", "-c", "echo own-pid-$$"]
  - name: shared
    image: ${pkg('test')}
    pid: host
    command: ["/bin/sh", "-c", "echo shared-pid-$$"]
  - name: off
    image: ${pkg('poweroff')}
`,
  );
  assert.match(log, /own-pid-1\b/, log);
  const shared = /shared-pid-(\d+)/.exec(log);
  assert.ok(shared && Number(shared[1]) > 1, `in the host pid namespace the container is not pid 1:\n${log}`);
  assert.equal(code, 0, log);
});
