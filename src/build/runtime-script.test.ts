import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { hostHas } from '../../test/tools.js';
import { runtimeScript, shQuote } from './runtime-script.js';

/** The commands of a function in the script, one per line, without indentation. */
function body(script: string, fn: string): string[] {
  const start = script.indexOf(`${fn}() {\n`);
  assert.ok(start >= 0, `no ${fn} in\n${script}`);
  const rest = script.slice(start + fn.length + 5);
  return rest
    .slice(0, rest.indexOf('\n}'))
    .split('\n')
    .map((l) => l.trim());
}

test('shQuote leaves safe words alone and quotes the rest so sh reads them back', () => {
  assert.equal(shQuote('/containers/onboot/000-x/rootfs'), '/containers/onboot/000-x/rootfs');
  for (const s of ["it's", 'a b', '$HOME', '`x`', 'x;y', '']) {
    assert.equal(execFileSync('sh', ['-c', `printf %s ${shQuote(s)}`], { encoding: 'utf8' }), s);
  }
});

test('writable root: tmpfs, private remount, overlay (with its dirs), then mkdir, each stopping on failure', () => {
  const s = runtimeScript({
    mounts: [
      { source: 'tmpfs', type: 'tmpfs', destination: '/c/tmp' },
      { destination: '/c/tmp', options: ['remount', 'private'] },
      {
        source: 'overlay',
        type: 'overlay',
        destination: '/c/rootfs',
        options: ['lowerdir=/c/lower', 'upperdir=/c/tmp/upper', 'workdir=/c/tmp/work'],
      },
    ],
    mkdir: ['/c/tmp/x'],
    cgroups: ['mygroup'],
  });
  assert.deepEqual(body(s, 'runtime_pre'), [
    'mkdir -p /c/tmp || return',
    'mount -t tmpfs tmpfs /c/tmp || return',
    'mount --make-private /c/tmp || return',
    'mkdir -p /c/rootfs || return',
    'mkdir -p /c/tmp/upper || return',
    'mkdir -p /c/tmp/work || return',
    'mount -t overlay -o lowerdir=/c/lower,upperdir=/c/tmp/upper,workdir=/c/tmp/work overlay /c/rootfs || return',
    'mkdir -p /c/tmp/x || return',
    'mkdir -p /sys/fs/cgroup/mygroup || return',
  ]);
  assert.match(s, /^RUNTIME_POST=$/m);
});

test('relative mount destinations and mkdir paths are inside the bundle rootfs', () => {
  const s = runtimeScript(
    { mounts: [{ destination: 'mnt/x', type: 'tmpfs', source: 'tmpfs' }], mkdir: ['var/a', '/run/b'] },
    { bundle: 'containers/onboot/000-a' },
  );
  assert.deepEqual(body(s, 'runtime_pre'), [
    'mkdir -p /containers/onboot/000-a/rootfs/mnt/x || return',
    'mount -t tmpfs tmpfs /containers/onboot/000-a/rootfs/mnt/x || return',
    'mkdir -p /containers/onboot/000-a/rootfs/var/a || return',
    'mkdir -p /run/b || return',
  ]);
});

test('bind mounts have no -t; an empty runtime is a valid no-op with no post steps', () => {
  const s = runtimeScript({ mounts: [{ source: '/a', destination: '/b', options: ['bind'] }] });
  assert.match(s, /^ {2}mount -o bind \/a \/b \|\| return$/m);
  const empty = runtimeScript({});
  const out = execFileSync(
    'sh',
    ['-c', `${empty}\nruntime_pre && runtime_post 1 && echo "ok[$RUNTIME_POST]"`],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(out, 'ok[]\n');
});

test('interfaces: veth with a peer, an existing one moved, createInRoot, created in the namespace', () => {
  const s = runtimeScript({
    interfaces: [
      { name: 'eth1', peer: 'veth-x' },
      { name: 'eth0' },
      { name: 'wg0', add: 'wireguard', createInRoot: true },
      { name: 'br0', add: 'bridge' },
    ],
    bindNS: { net: '/run/netns/x', uts: '/run/uts/x' },
  });
  assert.match(s, /^RUNTIME_POST=1$/m);
  const post = body(s, 'runtime_post');
  assert.equal(post[0], 'modprobe -q veth 2>/dev/null');
  assert.equal(post[1], 'ip link add eth1 type veth || return');
  assert.ok(post.includes('modprobe -q wireguard 2>/dev/null'));
  assert.ok(
    post.includes('[ -n "$lk_p" ] && ip link set dev "$lk_p" name veth-x || return'),
    post.join('\n'),
  );
  assert.ok(post.includes('ip link set dev eth0 netns "$1" || return'));
  assert.ok(post.includes('ip link add wg0 type wireguard || return'));
  assert.ok(post.includes('ip link set dev wg0 netns "$1" || return'));
  assert.ok(post.includes('nsenter -t "$1" -n ip link add br0 type bridge || return'));
  // namespace binds in upstream's order: net before uts
  const binds = post.filter((l) => l.startsWith('mount --bind'));
  assert.deepEqual(binds, [
    'mount --bind "/proc/$1/ns/net" /run/netns/x || return',
    'mount --bind "/proc/$1/ns/uts" /run/uts/x || return',
  ]);
  // a veth without a peer, or an interface without a name, fails at boot as upstream does
  const bad = runtimeScript({ interfaces: [{ name: 'v', add: 'veth' }] });
  const r = spawnSync('sh', ['-c', `${bad}\nruntime_post 1`], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /requires a peer/);
});

// Runs runtime_post for real with busybox ip in a scratch network namespace: needs root,
// unshare (util-linux) and busybox.
const canNetns =
  hostHas('busybox') &&
  hostHas('unshare') &&
  spawnSync('unshare', ['-n', '-m', 'true']).status === 0 &&
  spawnSync('busybox', ['ip', 'help']).error === undefined;

test('runtime_post creates a named veth pair, moves one end into the container and binds its netns', {
  skip: canNetns ? false : 'needs root, unshare and busybox (apt-get install util-linux busybox-static)',
}, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-rt-'));
  try {
    const script = path.join(dir, 'runtime.sh');
    writeFileSync(
      script,
      runtimeScript({ interfaces: [{ name: 'lkin', peer: 'lkout' }], bindNS: { net: `${dir}/ns/net` } }),
    );
    // In a private net + mount namespace (with its own sysfs, which the peer lookup reads), a
    // sleeping process in a further new net namespace plays the created container.
    const sh = `
      set -e
      ip() { busybox ip "$@"; }
      modprobe() { :; }
      mount -t sysfs sysfs /sys
      unshare -n sleep 30 &
      c=$!
      sleep 0.3
      . ${script}
      runtime_post $c
      echo "root: $(ip -o link | grep -o 'lk[a-z]*' | sort -u | tr '\\n' ' ')"
      echo "container: $(nsenter -t $c -n busybox ip -o link | grep -o 'lk[a-z]*' | sort -u | tr '\\n' ' ')"
      [ "$(stat -L -c %i ${dir}/ns/net)" = "$(stat -L -c %i /proc/$c/ns/net)" ] && echo bound
      kill $c
    `;
    const r = spawnSync('unshare', ['-n', '-m', 'sh', '-c', sh], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^root: lkout $/m, r.stdout);
    assert.match(r.stdout, /^container: lkin $/m, r.stdout);
    assert.match(r.stdout, /^bound$/m, r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
