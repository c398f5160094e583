/**
 * SPDX 2.3 SBOMs (JSON) for package images: one package entry per Debian package (name,
 * version, sha256 of the .deb, purl, licence from its machine-readable copyright file where
 * it states one), and the merge `build` makes of all the images of a system.
 *
 * Reproducible: no random UUIDs and no wall clock. documentNamespace is derived from the
 * content (a sha256 of the package list), `created` is SOURCE_DATE_EPOCH (else 1970).
 *
 * Document shape (SPDX 2.3 §6-§11, JSON serialisation):
 *   { spdxVersion: "SPDX-2.3", dataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", name,
 *     documentNamespace, creationInfo: { created, creators: ["Tool: linuxkit-ts"] },
 *     packages: [{ SPDXID: "SPDXRef-deb-NAME-VERSION", name, versionInfo, supplier,
 *                  downloadLocation, filesAnalyzed: false, checksums: [{ algorithm: "SHA256",
 *                  checksumValue }], licenseConcluded: "NOASSERTION", licenseDeclared,
 *                  copyrightText: "NOASSERTION", externalRefs: [purl] }],
 *     relationships: [{ spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES",
 *                       relatedSpdxElement }] }
 */
import { createHash } from 'node:crypto';
import type { PackageInfo } from '../debian/archive.js';

export interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo: string;
  supplier: string;
  downloadLocation: string;
  filesAnalyzed: false;
  checksums: { algorithm: 'SHA256'; checksumValue: string }[];
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  externalRefs: { referenceCategory: string; referenceType: string; referenceLocator: string }[];
}

export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

/** Debian short licence names (copyright-format 1.0) to SPDX identifiers. */
const DEBIAN_TO_SPDX: Record<string, string> = {
  'GPL-1': 'GPL-1.0-only',
  'GPL-1+': 'GPL-1.0-or-later',
  'GPL-2': 'GPL-2.0-only',
  'GPL-2+': 'GPL-2.0-or-later',
  'GPL-3': 'GPL-3.0-only',
  'GPL-3+': 'GPL-3.0-or-later',
  'LGPL-2': 'LGPL-2.0-only',
  'LGPL-2+': 'LGPL-2.0-or-later',
  'LGPL-2.1': 'LGPL-2.1-only',
  'LGPL-2.1+': 'LGPL-2.1-or-later',
  'LGPL-3': 'LGPL-3.0-only',
  'LGPL-3+': 'LGPL-3.0-or-later',
  'Apache-2.0': 'Apache-2.0',
  Expat: 'MIT',
  MIT: 'MIT',
  ISC: 'ISC',
  Zlib: 'Zlib',
  'BSD-2-clause': 'BSD-2-Clause',
  'BSD-3-clause': 'BSD-3-Clause',
  'BSD-4-clause': 'BSD-4-Clause',
  'MPL-2.0': 'MPL-2.0',
  'Artistic-2.0': 'Artistic-2.0',
  OpenSSL: 'OpenSSL',
  'GFDL-1.3+': 'GFDL-1.3-or-later',
  'CC0-1.0': 'CC0-1.0',
};

function spdxLicenceId(debian: string): string {
  const k = Object.keys(DEBIAN_TO_SPDX).find((x) => x.toLowerCase() === debian.toLowerCase());
  if (k) return DEBIAN_TO_SPDX[k]!;
  return `LicenseRef-${debian.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown'}`;
}

/**
 * The licences a DEP-5 (machine-readable) copyright file states, as an SPDX expression: the
 * distinct `License:` short names of its Files paragraphs, joined with AND (each paragraph's
 * `a or b` kept as OR). NOASSERTION for a free-form file.
 */
export function licenceFromCopyright(text: string): string {
  if (!/^Format:\s*\S*copyright-format/im.test(text)) return 'NOASSERTION';
  const exprs = new Set<string>();
  for (const para of text.split(/\n\s*\n/)) {
    if (!/^Files:/im.test(para)) continue;
    const m = /^License:[ \t]*(.+)$/im.exec(para);
    if (!m) continue;
    const alts = m[1]!
      .trim()
      .split(/\s+or\s+/i)
      .flatMap((a) => a.split(/\s*,\s*/))
      .filter((a) => a !== '' && !/^(and|with)$/i.test(a))
      .map((a) => spdxLicenceId(a.split(/\s+/)[0]!));
    if (alts.length) exprs.add(alts.length > 1 ? `(${[...new Set(alts)].join(' OR ')})` : alts[0]!);
  }
  if (exprs.size === 0) return 'NOASSERTION';
  return [...exprs].sort().join(' AND ');
}

const idPart = (s: string) => s.replace(/[^A-Za-z0-9.-]/g, '-');

function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** One SBOM for a package image. `licences` maps a package name to its SPDX expression. */
export function packageSbom(
  name: string,
  debs: PackageInfo[],
  licences: Map<string, string>,
  opts: { suite: string; epoch?: number },
): SpdxDocument {
  const packages = debs.map(
    (d): SpdxPackage => ({
      SPDXID: `SPDXRef-deb-${idPart(d.name)}-${idPart(d.version)}`,
      name: d.name,
      versionInfo: d.version,
      supplier: 'Organization: Debian',
      // The canonical archive, not the mirror this build used: the same SBOM on every host.
      downloadLocation: `https://deb.debian.org/debian/${d.filename}`,
      filesAnalyzed: false,
      checksums: [{ algorithm: 'SHA256', checksumValue: d.sha256 }],
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: licences.get(d.name) ?? 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      externalRefs: [
        {
          referenceCategory: 'PACKAGE-MANAGER',
          referenceType: 'purl',
          referenceLocator: `pkg:deb/debian/${encodeURIComponent(d.name)}@${encodeURIComponent(d.version)}?arch=${d.arch}&distro=${opts.suite}`,
        },
      ],
    }),
  );
  return finish(name, packages, opts.epoch ?? 0);
}

function finish(name: string, pkgs: SpdxPackage[], epoch: number): SpdxDocument {
  const byId = new Map<string, SpdxPackage>();
  for (const p of pkgs) if (!byId.has(p.SPDXID)) byId.set(p.SPDXID, p);
  const packages = [...byId.values()].sort((a, b) =>
    a.SPDXID < b.SPDXID ? -1 : a.SPDXID > b.SPDXID ? 1 : 0,
  );
  const h = createHash('sha256').update(name);
  for (const p of packages) h.update(`\n${p.SPDXID} ${p.checksums[0]?.checksumValue ?? ''}`);
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name,
    documentNamespace: `https://linuxkit.invalid/spdx/${encodeURIComponent(name)}-${h.digest('hex')}`,
    creationInfo: { created: rfc3339(epoch), creators: ['Tool: linuxkit-ts'] },
    packages,
    relationships: packages.map((p) => ({
      spdxElementId: 'SPDXRef-DOCUMENT',
      relationshipType: 'DESCRIBES',
      relatedSpdxElement: p.SPDXID,
    })),
  };
}

/** The SBOM of a whole system (`build` writes it as NAME-sbom.spdx.json): every image's packages, once each. */
export function mergeSboms(name: string, docs: SpdxDocument[], epoch = 0): SpdxDocument {
  return finish(
    name,
    docs.flatMap((d) => d.packages),
    epoch,
  );
}

/** The document as written to disk: 2-space JSON and a final newline. */
export function encodeSbom(doc: SpdxDocument): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
