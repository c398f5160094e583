/** Shared by the package e2e tests: free ports, qemu user networking, ssh, polling. */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** qemu args for a virtio NIC on the user network, host 127.0.0.1:port -> guest's guestPort. */
export function userNet(port?: number, guestPort?: number): string[] {
  const fwd = port !== undefined ? `,hostfwd=tcp:127.0.0.1:${port}-:${guestPort}` : '';
  return ['-netdev', `user,id=n0${fwd}`, '-device', 'virtio-net-pci,netdev=n0'];
}

/** Run one command over ssh as root with `key`, no host key checks, a short connect timeout. */
export function sshCommand(port: number, key: string, cmd: string) {
  const r = spawnSync(
    'ssh',
    [
      '-i',
      key,
      '-p',
      String(port),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=5',
      '-o',
      'LogLevel=ERROR',
      'root@127.0.0.1',
      cmd,
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Poll `probe` every 500 ms until it gives a value, `alive()` turns false, or time runs out. */
export async function waitFor<T>(
  alive: () => boolean,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end && alive()) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  return undefined;
}
