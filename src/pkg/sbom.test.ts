import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PackageInfo } from '../debian/archive.js';
import { encodeSbom, licenceFromCopyright, mergeSboms, packageSbom } from './sbom.js';

const DEP5 = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files: *
Copyright: 2001 Someone
License: GPL-2+

Files: lib/*
Copyright: 2002 Other
License: BSD-3-clause or Expat

License: GPL-2+
 This program is free software...
`;

const deb = (name: string, version: string): PackageInfo => ({
  name,
  version,
  arch: 'amd64',
  filename: `pool/main/x/${name}/${name}_${version}_amd64.deb`,
  sha256: name
    .padEnd(64, '0')
    .replace(/[^0-9a-f]/g, 'a')
    .slice(0, 64),
  size: 1,
  depends: [],
  provides: [],
});

test('licences from a machine-readable copyright file, as an SPDX expression', () => {
  assert.equal(licenceFromCopyright(DEP5), '(BSD-3-Clause OR MIT) AND GPL-2.0-or-later');
  assert.equal(licenceFromCopyright('This is free-form text.\nLicense: GPL\n'), 'NOASSERTION');
});

test('package SBOM: SPDX 2.3, one entry per package, reproducible; merge dedups', () => {
  const a = packageSbom(
    'linuxkit/x:1',
    [deb('libc6', '2.36-9'), deb('zlib1g', '1:1.2')],
    new Map([['libc6', 'LGPL-2.1-or-later']]),
    {
      suite: 'bookworm',
    },
  );
  assert.equal(a.spdxVersion, 'SPDX-2.3');
  assert.equal(a.creationInfo.created, '1970-01-01T00:00:00Z');
  assert.deepEqual(
    a.packages.map((p) => [p.name, p.versionInfo, p.licenseDeclared]),
    [
      ['libc6', '2.36-9', 'LGPL-2.1-or-later'],
      ['zlib1g', '1:1.2', 'NOASSERTION'],
    ],
  );
  assert.match(
    a.packages[1]!.externalRefs[0]!.referenceLocator,
    /^pkg:deb\/debian\/zlib1g@1%3A1\.2\?arch=amd64&distro=bookworm$/,
  );
  assert.ok(a.packages.every((p) => /^SPDXRef-[A-Za-z0-9.-]+$/.test(p.SPDXID)));
  const again = packageSbom(
    'linuxkit/x:1',
    [deb('libc6', '2.36-9'), deb('zlib1g', '1:1.2')],
    new Map([['libc6', 'LGPL-2.1-or-later']]),
    {
      suite: 'bookworm',
    },
  );
  assert.equal(encodeSbom(a), encodeSbom(again));
  const b = packageSbom('linuxkit/y:1', [deb('libc6', '2.36-9'), deb('openssl', '3')], new Map(), {
    suite: 'bookworm',
  });
  const m = mergeSboms('system', [a, b]);
  assert.deepEqual(
    m.packages.map((p) => p.name),
    ['libc6', 'openssl', 'zlib1g'],
  );
  assert.equal(m.relationships.length, 3);
  assert.notEqual(m.documentNamespace, a.documentNamespace);
});
