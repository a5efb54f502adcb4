/**
 * Semantic Versioning 2.0.0 precedence (semver.org, section 11): the only ordering Shoal uses to
 * decide that a release version is newer. Build metadata (`+...`) is ignored for precedence, so
 * `1.0.0+a` and `1.0.0+b` are equal and neither is newer than the other.
 */

export interface SemVer {
  /** Major, minor and patch as digit strings: they may exceed Number.MAX_SAFE_INTEGER. */
  core: [string, string, string];
  prerelease: string[];
}

// The regular expression published with the specification, minus the build capture.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/;

const NUMERIC = /^\d+$/;

export function parseSemVer(text: string): SemVer | undefined {
  const match = SEMVER.exec(text);
  if (!match) return undefined;
  const [, major = '', minor = '', patch = '', prerelease] = match;
  return { core: [major, minor, patch], prerelease: prerelease === undefined ? [] : prerelease.split('.') };
}

/** Numeric identifiers carry no leading zeros, so the longer one is larger. */
function compareNumeric(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareIdentifier(a: string, b: string): number {
  const aNumeric = NUMERIC.test(a);
  const bNumeric = NUMERIC.test(b);
  if (aNumeric && bNumeric) return compareNumeric(a, b);
  if (aNumeric !== bNumeric) return aNumeric ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Negative, zero or positive as `a` has lower, equal or higher precedence than `b`. */
export function compareSemVer(a: SemVer, b: SemVer): number {
  for (let i = 0; i < 3; i++) {
    const order = compareNumeric(a.core[i] as string, b.core[i] as string);
    if (order !== 0) return order;
  }
  // A pre-release has lower precedence than the normal version it precedes.
  if (a.prerelease.length === 0 || b.prerelease.length === 0) {
    return Math.sign(b.prerelease.length - a.prerelease.length);
  }
  const common = Math.min(a.prerelease.length, b.prerelease.length);
  for (let i = 0; i < common; i++) {
    const order = compareIdentifier(a.prerelease[i] as string, b.prerelease[i] as string);
    if (order !== 0) return order;
  }
  return Math.sign(a.prerelease.length - b.prerelease.length);
}
