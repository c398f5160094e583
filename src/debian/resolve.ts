/**
 * Dependency closure: the packages to unpack for a list of wanted packages.
 *
 * Rules (deterministic: the same index and input give the same answer):
 * - Follows Pre-Depends and Depends, breadth first, in the order wanted then as listed; so a
 *   package's `why` chain is a shortest one. Recommends/Suggests are not followed; Conflicts and
 *   Breaks are not checked; Essential packages are not added unless something depends on them.
 * - One version per package, chosen when the package is first reached: the highest version that
 *   satisfies that dependency (or "name=version" from the wanted list). No backtracking: a later
 *   constraint the chosen version does not meet is an error.
 * - A group `a | b` is satisfied by any already selected alternative (a selected package, or a
 *   selected package that Provides it); otherwise by its first satisfiable alternative.
 * - An alternative names a real package when one exists (apt does the same); otherwise a
 *   virtual package, satisfied by a provider: the only one, else the alphabetically first (by
 *   package name). Refusing an ambiguous virtual would break common cases such as `awk`, and the
 *   choice is visible in `why`. A versioned dependency is only met by a versioned Provides.
 * - Single architecture: the index holds ARCH and `all` packages. `:any` needs a
 *   `Multi-Arch: allowed` package (as dpkg), `:native` and `:ARCH` are plain names here;
 *   Multi-Arch: same/foreign only matter across architectures, so they change nothing.
 * - `exclude`: such a package is never installed; an alternative that is excluded (or a virtual
 *   whose providers all are) is skipped, and a group with nothing else left is dropped. That is
 *   how maintainer-script-only dependencies (perl, debconf, adduser, ...) are pruned.
 */
import { UserError } from '../util/errors.js';
import type { DepAlt, DepGroup, PackageIndex, PackageInfo } from './archive.js';
import { satisfies } from './version.js';

export interface ResolveOptions {
  exclude?: string[];
}

export interface Resolution {
  /** Sorted by name. */
  packages: PackageInfo[];
  /** package -> the chain that pulled it in, from a wanted package down to itself. */
  why: Map<string, string[]>;
}

function formatAlt(a: DepAlt): string {
  const arch = a.arch ? `:${a.arch}` : '';
  return a.op ? `${a.name}${arch} (${a.op} ${a.version})` : `${a.name}${arch}`;
}

function formatGroup(g: DepGroup): string {
  return g.map(formatAlt).join(' | ');
}

export function resolve(index: PackageIndex, wanted: string[], opts: ResolveOptions = {}): Resolution {
  const excluded = new Set(opts.exclude ?? []);
  const selected = new Map<string, PackageInfo>();
  /** virtual name -> selected packages providing it (with the provided version). */
  const providedBy = new Map<string, { pkg: PackageInfo; version?: string }[]>();
  const why = new Map<string, string[]>();
  const queue: PackageInfo[] = [];

  const archOk = (alt: DepAlt, p: PackageInfo): boolean =>
    alt.arch === 'any' ? p.multiArch === 'allowed' : true;
  const versionOk = (alt: DepAlt, version: string | undefined): boolean =>
    alt.op === undefined || (version !== undefined && satisfies(version, alt.op, alt.version as string));

  const select = (p: PackageInfo, chain: string[]): void => {
    if (selected.has(p.name)) return;
    selected.set(p.name, p);
    why.set(p.name, chain);
    for (const pr of p.provides) {
      let l = providedBy.get(pr.name);
      if (!l) {
        l = [];
        providedBy.set(pr.name, l);
      }
      l.push(pr.version !== undefined ? { pkg: p, version: pr.version } : { pkg: p });
    }
    queue.push(p);
  };

  /** Is the alternative met by what is already selected? */
  const metBySelected = (alt: DepAlt): boolean => {
    const s = selected.get(alt.name);
    if (s && archOk(alt, s) && versionOk(alt, s.version)) return true;
    return (providedBy.get(alt.name) ?? []).some((pr) => archOk(alt, pr.pkg) && versionOk(alt, pr.version));
  };

  /** A package can be newly selected for `name` only if nothing else of that name is. */
  const free = (p: PackageInfo): boolean => !excluded.has(p.name) && !selected.has(p.name);

  /** The package that would satisfy an alternative, if any. */
  const candidate = (alt: DepAlt): PackageInfo | undefined => {
    const real = index.versions(alt.name);
    if (real.length > 0) return real.find((p) => free(p) && archOk(alt, p) && versionOk(alt, p.version));
    // Providers are sorted by package name, highest version first.
    return index
      .providers(alt.name)
      .find((pr) => free(pr.pkg) && archOk(alt, pr.pkg) && versionOk(alt, pr.version))?.pkg;
  };

  /** Excluded, or a virtual package whose every provider is excluded. */
  const isExcluded = (alt: DepAlt): boolean => {
    if (excluded.has(alt.name)) return true;
    if (index.versions(alt.name).length > 0) return false;
    const prov = index.providers(alt.name);
    return prov.length > 0 && prov.every((pr) => excluded.has(pr.pkg.name));
  };

  /** Why an alternative cannot be met, for the error message. */
  const explain = (alt: DepAlt): string => {
    const s = selected.get(alt.name);
    if (s) return `${alt.name} ${s.version} is already selected`;
    const real = index.versions(alt.name);
    if (real.length > 0) return `${alt.name} has ${real.map((p) => p.version).join(', ')}`;
    const prov = index.providers(alt.name);
    if (prov.length > 0) return `${alt.name} is provided by ${prov.map((p) => p.pkg.name).join(', ')}`;
    return `${alt.name} is not in the index`;
  };

  for (const w of wanted) {
    const eq = w.indexOf('=');
    const name = (eq >= 0 ? w.slice(0, eq) : w).trim();
    const version = eq >= 0 ? w.slice(eq + 1).trim() : undefined;
    if (name === '') throw new UserError(`empty package name in ${JSON.stringify(w)}`);
    if (excluded.has(name)) throw new UserError(`package ${name} is both wanted and excluded`);
    let p: PackageInfo | undefined;
    if (version !== undefined) {
      p = index.versions(name).find((q) => q.version === version);
      if (!p) {
        const have = index.versions(name).map((q) => q.version);
        throw new UserError(
          `package ${name} has no version ${version} in the index${have.length ? ` (it has ${have.join(', ')})` : ''}`,
        );
      }
      const s = selected.get(name);
      if (s && s.version !== version)
        throw new UserError(`package ${name} is wanted at two versions: ${s.version} and ${version}`);
    } else {
      if (metBySelected({ name })) continue;
      p = candidate({ name });
      if (!p) throw new UserError(`package ${name} is not in the index`);
    }
    select(p, p.name === name ? [name] : [name, p.name]);
  }

  for (let i = 0; i < queue.length; i++) {
    const pkg = queue[i] as PackageInfo;
    const chain = why.get(pkg.name) as string[];
    for (const group of pkg.depends) {
      const alts = group.filter((a) => !isExcluded(a));
      if (alts.length === 0) continue; // every alternative excluded: the dependency is dropped
      if (alts.some(metBySelected)) continue;
      let chosen: PackageInfo | undefined;
      for (const alt of alts) {
        chosen = candidate(alt);
        if (chosen) break;
      }
      if (!chosen) {
        throw new UserError(
          `cannot satisfy "${formatGroup(group)}" needed by ${pkg.name} ${pkg.version} ` +
            `(pulled in by ${chain.join(' -> ')}): ${alts.map(explain).join('; ')}`,
        );
      }
      select(chosen, [...chain, chosen.name]);
    }
  }

  const packages = [...selected.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { packages, why };
}
