/**
 * getty on the serial console, driven as a person would: the test types on qemu's stdin (the
 * serial input) and reads what the guest writes back. qemu also copies the console to a log
 * file, which the test reads for prompts (`login: `, `Password: `, the shell's `# `): they end
 * no line, so the line capture never sees them.
 * - INSECURE=true: a root shell with no login; a command's output proves a shell runs what is
 *   typed, then `runc list` in it shows the getty service running.
 * - a password from the system's /etc/getty.shadow: a wrong password is refused, the right
 *   one gives the same shell.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { bootBuilt, buildYaml, pkgRef as pkg, systemYaml, tempDir, waitFor } from '../helpers.js';

const dir = tempDir('lk-getty-');

// `openssl passwd -6 -salt lkgettytest getty-e2e-pw`
const PASSWORD = 'getty-e2e-pw';
const HASH =
  '$6$lkgettytest$9zvXXVjq5BPbakZXiVFEOc/Zi9QHvJH.mTHmHIE6QreVA2fqIzh8xmfuBDMRtNSDRL4U/tkqvzc5rJ.kdoBd3.';

/** The shell's prompt: PS1 '\h:\w# ' from the package's /etc/profile, in /root. */
const PROMPT = /linuxkit:~# /;

/** Boot DIR/NAME with a console to type on and a log of everything the console printed. */
function consoleSession(name: string) {
  const input = new PassThrough();
  const stop = new AbortController();
  const consoleLog = path.join(dir, `${name}-console.log`);
  const booting = bootBuilt(dir, name, {
    consoleInput: input,
    consoleLog,
    stop: stop.signal,
    timeoutMs: 300_000,
  });
  const screen = () => {
    try {
      return readFileSync(consoleLog, 'latin1');
    } catch {
      return '';
    }
  };
  let seen = 0; // what expect() has consumed of the screen
  return {
    ...booting,
    type: (text: string) => input.write(text),
    /** Wait for `re` in the console output after what earlier calls matched. */
    async expect(re: RegExp, timeoutMs: number, what: string) {
      const end = await waitFor(booting.alive, timeoutMs, () => {
        const rest = screen().slice(seen);
        const m = re.exec(rest);
        return m ? seen + m.index + m[0].length : undefined;
      });
      assert.ok(end !== undefined, `${what}: no ${re} on the console:\n${screen()}`);
      seen = end;
    },
    async close() {
      input.end();
      stop.abort();
      await booting.vm;
    },
  };
}

/** In a root shell: a computed answer (the echo of the typed text cannot hold it), then runc list. */
async function checkShell(s: ReturnType<typeof consoleSession>) {
  s.type('echo MARK-$((6*7))\n');
  await s.expect(/\nMARK-42\r?\n/, 60_000, 'shell output');
  await s.expect(PROMPT, 30_000, 'prompt after echo');
  s.type('runc list\n');
  await s.expect(/\ngetty\s+\d+\s+running\s/, 60_000, 'runc list in the shell');
}

test('getty: INSECURE=true gives a root shell on the console; runc list works in it', {
  timeout: 900_000,
}, async () => {
  await buildYaml(
    dir,
    'insecure',
    `${systemYaml()}services:
  - name: getty
    image: ${pkg('getty')}
    env: ["INSECURE=true"]
`,
  );
  const s = consoleSession('insecure');
  try {
    // The shell may start before rc prints `boot complete`: wait for its prompt only.
    await s.expect(PROMPT, 240_000, 'root shell');
    await checkShell(s);
  } finally {
    await s.close();
  }
});

test('getty: login as root with the password from /etc/getty.shadow', { timeout: 900_000 }, async () => {
  await buildYaml(
    dir,
    'login',
    `${systemYaml()}services:
  - name: getty
    image: ${pkg('getty')}
files:
  - path: etc/getty.shadow
    contents: "root:${HASH}:19000:0:::::"
`,
  );
  const s = consoleSession('login');
  try {
    // getty flushes input when it opens the line, login before asking for the password:
    // type only once a prompt is there.
    await s.expect(/linuxkit login: /, 240_000, 'login prompt');
    s.type('root\n');
    await s.expect(/Password: /, 60_000, 'password prompt');
    s.type('not-the-password\n');
    await s.expect(/Login incorrect/, 60_000, 'wrong password refused');
    await s.expect(/linuxkit login: /, 60_000, 'login prompt again');
    s.type('root\n');
    await s.expect(/Password: /, 60_000, 'password prompt again');
    s.type(`${PASSWORD}\n`);
    await s.expect(PROMPT, 60_000, 'root shell after login');
    await checkShell(s);
  } finally {
    await s.close();
  }
});
