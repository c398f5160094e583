/**
 * The container runtime semantics of the YAML, checked inside booted VMs: binds, read-only and
 * writable roots, capabilities, `net: new`, sysctl, files' mode and owner, volumes,
 * `runtime:` (mkdir, interfaces, bindNS) and onshutdown. Each VM runs many small containers
 * that print one marker each, so one boot checks many fields.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildAndBoot, pkgRef as pkg, tempDir } from '../helpers.js';

const dir = tempDir('lk-runtime-');

const boot = (name: string, yaml: string) => buildAndBoot(dir, name, yaml, { timeoutMs: 240_000 });

// biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
const NETNEW = 'n=; for d in /sys/class/net/*; do n="$n ${d##*/}"; done; echo "netnew-links:$n."';

/** A test-image onboot container running one sh command line. */
const sh = (name: string, cmd: string, extra = '') =>
  `  - name: ${name}
    image: ${pkg('test')}
${extra}    command: ["/bin/sh", "-c", ${JSON.stringify(cmd)}]
`;

test('binds, roots, capabilities, net: new, sysctl, files, volumes, runtime.mkdir, onshutdown', {
  timeout: 900_000,
}, async () => {
  const yaml = `kernel:
  image: ${pkg('kernel')}
init:
  - ${pkg('init')}
  - ${pkg('runc')}
onboot:
${sh('bind', 'read -r x </mnt/b/hello; echo "bind-sees-$x"', '    binds: ["/etc/lkbind:/mnt/b"]\n')}\
${sh('rofs', 'if (: >/probe) 2>/dev/null; then echo ro-root-wrote; else echo ro-root-refused; fi')}\
${sh('rwfs', 'if : >/probe; then echo rw-root-wrote; else echo rw-root-refused; fi', '    readonly: false\n')}\
${sh('noadmin', 'if busybox ip addr add 10.9.9.9/32 dev lo 2>/dev/null; then echo noadmin-accepted; else echo noadmin-refused; fi', '    net: new\n')}\
${sh('admin', 'if busybox ip addr add 10.9.9.9/32 dev lo; then echo admin-accepted; else echo admin-refused; fi', '    net: new\n    capabilities: [CAP_NET_ADMIN]\n')}\
${sh('netnew', NETNEW, '    net: new\n')}\
${sh('mkdir', 'if [ -d /mnt/made/sub ]; then echo mkdir-ok; fi', '    binds: ["/run/lkmade:/mnt/made"]\n    runtime:\n      mkdir: [/run/lkmade/sub]\n')}\
${sh('sysctl', 'read -r v </proc/sys/net/ipv4/ip_forward; echo "sysctl-ip_forward-$v"', '    net: new\n    sysctl:\n      net.ipv4.ip_forward: "1"\n')}\
${sh('owner', 'busybox stat -c "owned-%a-%u-%g" /f; busybox stat -c "parent-%a-%u-%g" /d', '    binds: ["/etc/lkowned:/f", "/etc/lkdir:/d"]\n')}\
${sh('volw', 'echo volume-data >/v/f && echo vol-written', '    binds: ["scratch:/v"]\n')}\
${sh('volr', 'read -r x </v/f; echo "vol-read-$x"', '    binds: ["scratch:/v"]\n')}\
${sh('volro', 'if [ -x /s/check.sh ]; then echo seed-has-check; fi; if (: >/s/new) 2>/dev/null; then echo seed-wrote; else echo seed-refused; fi', '    binds: ["seed:/s:ro"]\n')}\
  - name: off
    image: ${pkg('poweroff')}
onshutdown:
${sh('bye', 'echo shutdown-marker-$((6 * 7))')}\
volumes:
  - name: scratch
  - name: seed
    image: ${pkg('test')}
    readonly: true
files:
  - path: etc/lkbind/hello
    contents: bind-content
  - path: etc/lkowned
    contents: owned
    mode: "0640"
    uid: owner
    gid: 7
  - path: etc/lkdir/inner
    contents: x
    mode: "0750"
    uid: 5
    gid: bind
`;
  const { code, log } = await boot('runtime-a', yaml);
  const expect = [
    /bind-sees-bind-content/,
    /ro-root-refused/,
    /rw-root-wrote/,
    /noadmin-refused/,
    /admin-accepted/,
    /netnew-links: lo\./,
    /mkdir-ok/,
    /sysctl-ip_forward-1/,
    // owner is onboot[8]: uid 108; bind is onboot[0]: gid 100
    /owned-640-108-7/,
    /parent-750-5-100/,
    /vol-written/,
    /vol-read-volume-data/,
    /seed-has-check/,
    /seed-refused/,
    /shutdown-marker-42/,
  ];
  for (const re of expect) assert.match(log, re, log);
  assert.doesNotMatch(
    log,
    /\b(?:ro-root-wrote|rw-root-refused|noadmin-accepted|admin-refused|seed-wrote)\b|linuxkit: .*failed/,
    log,
  );
  assert.equal(code, 0, log);
});

test('runtime.interfaces: a veth pair joins two containers, bindNS keeps the namespaces for others', {
  timeout: 900_000,
}, async () => {
  const ip = 'busybox ip';
  const yaml = `kernel:
  image: ${pkg('kernel')}
init:
  - ${pkg('init')}
  - ${pkg('runc')}
onboot:
${sh(
  'a',
  `${ip} addr add 10.7.0.1/24 dev lka && ${ip} link set lka up && ${ip} link set lo up && echo a-configured`,
  `    net: new
    capabilities: [CAP_NET_ADMIN]
    runtime:
      interfaces:
        - name: lka
          peer: lkb
      bindNS:
        net: /run/netns/a
`,
)}\
${sh(
  'b',
  `${ip} addr add 10.7.0.2/24 dev lkb && ${ip} link set lkb up && busybox ping -c 1 -W 5 10.7.0.1 >/dev/null && echo ping-b-to-a-ok`,
  `    net: new
    capabilities: [CAP_NET_ADMIN, CAP_NET_RAW]
    runtime:
      interfaces:
        - name: lkb
      bindNS:
        net: /run/netns/b
`,
)}\
services:
  # joins a's namespace by path; its own bindNS makes init use create + post + start
  - name: c
    image: ${pkg('test')}
    net: /run/netns/a
    capabilities: [CAP_NET_RAW]
    runtime:
      bindNS:
        uts: /run/uts/c
    command: ["/bin/sh", "-c", "busybox ping -c 1 -W 5 10.7.0.2 >/dev/null && echo ping-c-to-b-ok; read -r x </proc/sys/kernel/hostname; echo c-done"]
  - name: shutdown
    image: ${pkg('poweroff')}
    command: ["/bin/sh", "/poweroff.sh", "4"]
onshutdown:
  - name: logs
    image: ${pkg('test')}
    binds: ["/var/log:/var/log", "/run:/hostrun"]
    command: ["/bin/sh", "-c", "while read -r l; do echo \\"log: $l\\"; done </var/log/c.log; [ -e /hostrun/uts/c ] && echo uts-bound"]
`;
  const { code, log } = await boot('runtime-net', yaml);
  for (const re of [/a-configured/, /ping-b-to-a-ok/, /log: ping-c-to-b-ok/, /log: c-done/, /uts-bound/]) {
    assert.match(log, re, log);
  }
  // init's own reports (kernel messages may say `failed` about unrelated hardware probes)
  assert.doesNotMatch(log, /linuxkit: .*failed/, log);
  assert.equal(code, 0, log);
});
