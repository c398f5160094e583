import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as openpgp from 'openpgp';
import { UserError } from '../util/errors.js';
import { HOST_KEYRING, loadKeyring, shippedKeyringPath, verifyInRelease } from './inrelease.js';
import { testdata } from './testing.js';

const MAIN = readFileSync(testdata('bookworm-InRelease'), 'utf8');
const SECURITY = readFileSync(testdata('bookworm-security-InRelease'), 'utf8');

const BOOKWORM_AUTOMATIC = 'b8b80b5b623eab6ad8775c45b7c5d7d6350947f8';
const BOOKWORM_STABLE = '4d64fec119c2029067d6e791f8d2585b8783d481';
const BOOKWORM_SECURITY = '05ab90340c0c5e797f44a8c8254cf3b5aec0a8f0';

const isUserError = (re: RegExp) => (e: unknown) => e instanceof UserError && re.test(e.message);

test('the shipped keyring holds the three bookworm keys', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  assert.deepEqual(
    keys.map((k) => k.getFingerprint()).sort(),
    [BOOKWORM_SECURITY, BOOKWORM_STABLE, BOOKWORM_AUTOMATIC].sort(),
  );
});

test('a real bookworm InRelease verifies; the signed text and its SHA256 list come back', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  const r = await verifyInRelease(MAIN, { keys });
  // Signed by the bookworm automatic and stable keys (and trixie's, which we do not ship).
  assert.deepEqual(r.signers, [BOOKWORM_STABLE, BOOKWORM_AUTOMATIC].sort());
  assert.equal(r.fields.Codename, 'bookworm');
  assert.ok(r.text.startsWith('Origin: Debian\n'));
  assert.ok(!r.text.includes('PGP'));
  assert.deepEqual(r.files.get('main/binary-amd64/Packages.xz'), {
    sha256: '9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5',
    size: 8790396,
  });
  assert.ok(r.files.size > 500);
});

test('the host keyring (when present) verifies it too', {
  skip: !existsSync(HOST_KEYRING) && `no ${HOST_KEYRING}`,
}, async () => {
  const r = await verifyInRelease(MAIN, { keys: await loadKeyring([HOST_KEYRING]) });
  assert.ok(r.signers.includes(BOOKWORM_AUTOMATIC));
});

test('one byte changed in the signed text: rejected', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  const i = MAIN.indexOf('Codename: bookworm') + 'Codename: bookwor'.length;
  const edited = `${MAIN.slice(0, i)}n${MAIN.slice(i + 1)}`;
  assert.equal(edited.length, MAIN.length);
  await assert.rejects(verifyInRelease(edited, { keys }), isUserError(/no valid signature/));
});

test('text outside the signed block is rejected (openpgp alone would ignore it)', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  await assert.rejects(
    verifyInRelease(`Origin: evil\n\n${MAIN}`, { keys }),
    isUserError(/does not start with/),
  );
  await assert.rejects(verifyInRelease(`${MAIN}\nSHA256:\n`, { keys }), isUserError(/unsigned text after/));
  await assert.rejects(verifyInRelease('Origin: Debian\n', { keys }), isUserError(/not a clearsigned/));
});

test('signed by a key that is not in the keyring: rejected', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: 'Not Debian', email: 'evil@example.invalid' }],
    format: 'object',
  });
  const body = MAIN.slice(MAIN.indexOf('\n\n') + 2, MAIN.indexOf('-----BEGIN PGP SIGNATURE-----'))
    .replace(/^- /gm, '')
    .trimEnd();
  const forged = await openpgp.sign({
    message: await openpgp.createCleartextMessage({ text: body }),
    signingKeys: privateKey,
  });
  // The forgery itself is well formed: it verifies with its own key...
  const own = await verifyInRelease(forged, { keys: [privateKey.toPublic()] });
  assert.equal(own.fields.Codename, 'bookworm');
  // ...but not with Debian's.
  await assert.rejects(
    verifyInRelease(forged, { keys }),
    isUserError(/no valid signature.*Could not find signing key/),
  );
});

test('Valid-Until: within it passes, past it fails unless allowed', async () => {
  const keys = await loadKeyring([shippedKeyringPath()]);
  const date = /^Date: (.*)$/m.exec(SECURITY)?.[1] as string;
  const until = /^Valid-Until: (.*)$/m.exec(SECURITY)?.[1] as string;
  assert.ok(until, 'the security fixture has a Valid-Until');
  const inside = new Date(Date.parse(date) + 3600_000);
  const after = new Date(Date.parse(until) + 1000);
  const r = await verifyInRelease(SECURITY, { keys, now: inside });
  assert.deepEqual(r.signers, [BOOKWORM_SECURITY]);
  assert.equal(r.fields.Suite, 'oldstable-security');
  await assert.rejects(
    verifyInRelease(SECURITY, { keys, now: after, source: 'sec' }),
    isUserError(/^sec: expired/),
  );
  const late = await verifyInRelease(SECURITY, { keys, now: after, allowExpired: true });
  assert.equal(late.fields['Valid-Until'], until);
});
