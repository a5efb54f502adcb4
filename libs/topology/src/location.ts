/**
 * Where a host sits in the fleet. Labels are hierarchical: a zone is only meaningful inside its
 * region and a site only inside its zone, so two hosts share a site only when region, zone and
 * site all match. The empty string means "unknown", and an unknown label never matches anything
 * (not even another unknown label): a host without a region is remote to everybody.
 */
export interface Location {
  region: string;
  zone: string;
  site: string;
}

/** 3 = same site, 2 = same zone, 1 = same region, 0 = other or unknown. */
export type Proximity = 0 | 1 | 2 | 3;

/** The location of a host about which nothing is known. */
export const UNKNOWN_LOCATION: Readonly<Location> = Object.freeze({ region: '', zone: '', site: '' });

/** A label as the index sees it: anything that is not a non-empty string is unknown (''). */
export function label(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/**
 * How close two locations are: 3 when region, zone and site all match, 2 when region and zone
 * match, 1 when only the region matches, 0 otherwise. Unknown ('') labels never match, and a
 * lower level never matches when a higher level does not (same zone name in two regions: 0).
 */
export function proximity(a: Location, b: Location): Proximity {
  const region = label(a.region);
  if (region === '' || region !== label(b.region)) return 0;
  const zone = label(a.zone);
  if (zone === '' || zone !== label(b.zone)) return 1;
  const site = label(a.site);
  if (site === '' || site !== label(b.site)) return 2;
  return 3;
}
