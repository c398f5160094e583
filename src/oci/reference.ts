/**
 * Image references, normalised the way Docker and upstream LinuxKit do (the distribution
 * `reference` package: ParseNormalizedNamed, then TagNameOnly):
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component { "/" path-component }
 *   domain    := host [ ":" port ]          host: dns-label { "." dns-label } | "[" ipv6 "]"
 *   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest    := algorithm ":" hex           (sha256: 64 hex digits, sha512: 128)
 *
 * The first component is a domain only if it contains '.' or ':', is `localhost`, or has an
 * upper-case letter; otherwise the domain is docker.io, and a one-component docker.io path gets
 * `library/`. `index.docker.io` becomes `docker.io`. A reference with neither tag nor digest gets
 * `:latest`. Examples:
 *   alpine                      -> docker.io/library/alpine:latest
 *   linuxkit/init:v1            -> docker.io/linuxkit/init:v1
 *   127.0.0.1:5000/x/y:t        -> 127.0.0.1:5000/x/y:t
 *   name@sha256:<hex>           -> docker.io/library/name@sha256:<hex>   (no tag added)
 */
import { UserError } from '../util/errors.js';
import { parseDigest } from './digest.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';

export interface ImageRef {
  /** Registry host, with port if any, e.g. `docker.io`, `127.0.0.1:5000`. */
  domain: string;
  /** Repository path within the registry, e.g. `library/alpine`, `linuxkit/init`. */
  path: string;
  tag?: string;
  digest?: string;
  /** `domain/path`, without tag or digest. */
  readonly name: string;
  /** Fully expanded: `docker.io/linuxkit/init:TAG`, `...:TAG@sha256:...`, `...@sha256:...`. */
  toString(): string;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HEX64 = /^[a-f0-9]{64}$/;
const NAME_MAX = 255;

class Ref implements ImageRef {
  constructor(
    readonly domain: string,
    readonly path: string,
    readonly tag?: string,
    readonly digest?: string,
  ) {}

  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  toString(): string {
    return `${this.name}${this.tag !== undefined ? `:${this.tag}` : ''}${this.digest !== undefined ? `@${this.digest}` : ''}`;
  }
}

function validDomain(domain: string): boolean {
  let host = domain;
  // A port follows the last ':' unless that ':' is inside an IPv6 literal.
  const colon = domain.lastIndexOf(':');
  if (colon >= 0 && colon > domain.lastIndexOf(']')) {
    if (!PORT.test(domain.slice(colon + 1))) return false;
    host = domain.slice(0, colon);
  }
  if (IPV6.test(host)) return true;
  return host.split('.').every((l) => DOMAIN_LABEL.test(l));
}

/** Parse and normalise an image reference; a malformed one is a UserError naming it. */
export function parseRef(s: string): ImageRef {
  const bad = (why: string): never => {
    throw new UserError(`invalid image reference ${JSON.stringify(s)}: ${why}`);
  };
  if (typeof s !== 'string' || s === '') bad('it is empty');
  if (HEX64.test(s)) bad('a 64-digit hex string is an image ID, not a repository name');
  if (/\s/.test(s)) bad('it contains white space');

  // The digest comes after the first '@' (no other part may contain one).
  let rest = s;
  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    digest = s.slice(at + 1);
    rest = s.slice(0, at);
    try {
      parseDigest(digest);
    } catch (e) {
      bad(e instanceof Error ? e.message.replace(/^invalid digest /, 'digest ') : String(e));
    }
  }

  // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag))
      bad(`tag ${JSON.stringify(tag)} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'`);
  }

  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (!validDomain(domain)) bad(`registry ${JSON.stringify(domain)} is not a valid host[:port]`);
  if (path === '') bad('the repository name is empty');
  if (path.toLowerCase() !== path) bad(`repository name ${JSON.stringify(path)} must be lowercase`);
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c)) {
      bad(
        `repository path component ${JSON.stringify(c)} must be lowercase letters and digits, separated by '.', '_', '__' or '-'`,
      );
    }
  }
  if (domain.length + 1 + path.length > NAME_MAX)
    bad(`the name must not be more than ${NAME_MAX} characters`);

  // TagNameOnly: a bare name means :latest; a digest alone stays without a tag.
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new Ref(domain, path, tag, digest);
}

/** The fully expanded string form of `s` (`alpine` -> `docker.io/library/alpine:latest`). */
export function expandRef(s: string): string {
  return parseRef(s).toString();
}
