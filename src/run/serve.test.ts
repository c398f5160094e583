import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../../test/helpers.js';
import { UserError } from '../util/errors.js';
import { ipxeScript, parseListen, type Served, serve } from './serve.js';

describe('linuxkit serve', () => {
  const dir = tempDir('lk-serve-');
  let s: Served;
  const kernel = Buffer.from([0, 1, 2, 255, 254]);
  before(async () => {
    writeFileSync(path.join(dir, 'sys-kernel'), kernel);
    writeFileSync(path.join(dir, 'sys-initrd.img'), 'initrd');
    writeFileSync(path.join(dir, 'sys-cmdline'), 'console=ttyS0 quiet\n');
    writeFileSync(path.join(dir, 'lone-kernel'), 'k');
    writeFileSync(path.join(dir, '.secret'), 'no');
    mkdirSync(path.join(dir, 'sub'));
    writeFileSync(path.join(dir, 'sub', 'f'), 'in sub');
    s = await serve({ directory: dir, host: '127.0.0.1', port: 0 });
  });
  after(() => s?.close());
  const get = (p: string, init?: RequestInit) => fetch(`${s.url}${p}`, init);

  test('NAME.ipxe boots NAME-kernel and NAME-initrd.img from the address the client used', async () => {
    const r = await get('/sys.ipxe');
    assert.equal(r.status, 200);
    assert.equal(
      await r.text(),
      `#!ipxe\nset base-url http://127.0.0.1:${s.port}\nkernel \${base-url}/sys-kernel initrd=sys-initrd.img console=ttyS0 quiet\ninitrd \${base-url}/sys-initrd.img\nboot\n`,
    );
    assert.equal((await get('/lone.ipxe')).status, 404, 'no initrd, no script');
  });

  test('files come back byte for byte; nothing outside the directory or hidden', async () => {
    const r = await get('/sys-kernel');
    assert.equal(r.headers.get('content-length'), String(kernel.length));
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), kernel);
    assert.equal(await (await get('/sub/f')).text(), 'in sub');
    assert.equal((await get('/sys-kernel', { method: 'HEAD' })).status, 200);
    for (const p of ['/.secret', '/%2e%2e/etc/passwd', '/sub/../.secret', '/nope', '/sub'])
      assert.equal((await get(p)).status, 404, p);
    assert.equal((await get('/sys-kernel', { method: 'POST' })).status, 405);
    assert.deepEqual((await (await get('/')).text()).split('\n').filter(Boolean), [
      'lone-kernel',
      'sub',
      'sys-cmdline',
      'sys-initrd.img',
      'sys-kernel',
    ]);
  });

  test('-port takes PORT, :PORT or HOST:PORT; a missing directory is a UserError', async () => {
    assert.deepEqual(parseListen('8080'), { host: undefined, port: 8080 });
    assert.deepEqual(parseListen(':8080'), { host: undefined, port: 8080 });
    assert.deepEqual(parseListen('127.0.0.1:80'), { host: '127.0.0.1', port: 80 });
    assert.throws(() => parseListen('x'), UserError);
    assert.throws(() => parseListen('99999'), UserError);
    await assert.rejects(serve({ directory: path.join(dir, 'none'), port: 0 }), UserError);
    assert.match(ipxeScript('http://h', 'n', ''), /kernel \$\{base-url\}\/n-kernel initrd=n-initrd\.img\n/);
  });
});
