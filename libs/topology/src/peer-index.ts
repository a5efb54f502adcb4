import { type Location, label } from './location';

/** Anything with a stable id and a location can be indexed. */
export interface LocatedPeer {
  readonly id: string;
  readonly location: Location;
}

export interface SelectOptions<P> {
  /** Location of the host asking for peers. */
  asker: Location;
  /** Id of the asking host: it is never returned, even when it is part of the swarm. */
  askerId?: string;
  /** How many peers the asker wants (floored; negative or NaN: 0; Infinity: all). */
  count: number;
  /**
   * Share of `count` (0..1, clamped) kept for peers outside the asker's region, picked at random,
   * so that pieces keep crossing sites. Slots that no remote peer can fill go to nearer tiers.
   */
  remoteShare: number;
  /** Uniform random numbers in [0, 1); the only source of randomness. */
  random: () => number;
  /**
   * Peers to skip (e.g. ones known to have left since the index was built). Each call costs one
   * extra draw, so keep the excluded set small relative to the swarm.
   */
  exclude?: (peer: P) => boolean;
}

interface Range {
  start: number;
  end: number;
}

type SiteNode = Range;

interface ZoneNode extends Range {
  sites: Map<string, SiteNode>;
}

interface RegionNode extends Range {
  zones: Map<string, ZoneNode>;
}

/** Two half-open ranges of the sorted peer array, seen as one virtual array. */
interface Tier {
  a0: number;
  b0: number;
  a1: number;
  b1: number;
}

/**
 * Scratch memory of the sparse shuffles: `values[p]` holds the virtual index moved to the slot
 * at sorted position p, valid only when `stamps[p] === stamp`. Tiers are disjoint ranges of the
 * sorted array, so one scratch serves all four tiers of a call; bumping `stamp` clears it in O(1).
 */
interface Scratch {
  values: Int32Array;
  stamps: Uint32Array;
  stamp: number;
}

const SAME_SITE = 0;
const SAME_ZONE = 1;
const SAME_REGION = 2;
const REMOTE = 3;
const NEAR_TIERS = [SAME_SITE, SAME_ZONE, SAME_REGION] as const;

/** Index in [0, n) from one random draw; tolerant of a source that strays outside [0, 1). */
function pick(random: () => number, n: number): number {
  const i = Math.floor(random() * n);
  if (i >= 0 && i < n) return i;
  return i >= n ? n - 1 : 0;
}

/**
 * Uniform sampling without replacement from a tier, one element at a time: a Fisher-Yates
 * shuffle over a virtual array whose moved entries live in the scratch, so k draws cost O(k)
 * whatever the tier size.
 */
class TierSampler {
  readonly size: number;
  private drawn = 0;
  private readonly len0: number;

  constructor(
    private readonly a0: number,
    b0: number,
    private readonly a1: number,
    b1: number,
    private readonly scratch: Scratch,
    excludedPosition: number,
  ) {
    this.len0 = b0 - a0;
    let size = this.len0 + (b1 - a1);
    let excluded = -1;
    if (excludedPosition >= a0 && excludedPosition < b0) excluded = excludedPosition - a0;
    else if (excludedPosition >= a1 && excludedPosition < b1) excluded = this.len0 + excludedPosition - a1;
    if (excluded >= 0) {
      // Move the last entry into the excluded slot and shorten the array by one.
      size -= 1;
      if (excluded !== size) this.write(excluded, size);
    }
    this.size = size;
  }

  /** Next position in the sorted peer array, or -1 when the tier is exhausted. */
  next(random: () => number): number {
    if (this.drawn >= this.size) return -1;
    const i = this.drawn;
    const j = i + pick(random, this.size - i);
    const chosen = this.read(j);
    if (j !== i) this.write(j, this.read(i));
    this.drawn = i + 1;
    return this.position(chosen);
  }

  private position(virtual: number): number {
    return virtual < this.len0 ? this.a0 + virtual : this.a1 + virtual - this.len0;
  }

  private read(virtual: number): number {
    const p = this.position(virtual);
    return this.scratch.stamps[p] === this.scratch.stamp ? (this.scratch.values[p] as number) : virtual;
  }

  private write(virtual: number, value: number): void {
    const p = this.position(virtual);
    this.scratch.stamps[p] = this.scratch.stamp;
    this.scratch.values[p] = value;
  }
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A swarm snapshot indexed by region, zone and site, for topology-aware peer selection.
 *
 * Built once in O(n log n): peers are sorted by (region, zone, site, id), so every site, zone
 * and region is a contiguous range of one array, and each proximity tier of an asker is at most
 * two ranges. `select` then costs O(count) (plus one draw per excluded peer it meets), whatever
 * the swarm size; the first call allocates 8 bytes of scratch per peer, reused by later calls.
 * Duplicate ids keep their first occurrence. The peer set never changes; build a new index for
 * a new snapshot. Not for concurrent use from several threads (JavaScript has none to share it).
 */
export class PeerIndex<P extends LocatedPeer> {
  private readonly sorted: P[];
  private readonly positions = new Map<string, number>();
  private readonly regions = new Map<string, RegionNode>();
  private scratch: Scratch | undefined;
  private scratchBusy = false;

  constructor(peers: Iterable<P>) {
    const unique = new Map<string, P>();
    for (const peer of peers) if (!unique.has(peer.id)) unique.set(peer.id, peer);
    this.sorted = [...unique.values()];
    this.sorted.sort(
      (a, b) =>
        compare(label(a.location.region), label(b.location.region)) ||
        compare(label(a.location.zone), label(b.location.zone)) ||
        compare(label(a.location.site), label(b.location.site)) ||
        compare(a.id, b.id),
    );
    this.sorted.forEach((peer, i) => {
      this.positions.set(peer.id, i);
      const r = label(peer.location.region);
      if (r === '') return;
      let region = this.regions.get(r);
      if (!region) this.regions.set(r, (region = { start: i, end: i, zones: new Map() }));
      region.end = i + 1;
      const z = label(peer.location.zone);
      if (z === '') return;
      let zone = region.zones.get(z);
      if (!zone) region.zones.set(z, (zone = { start: i, end: i, sites: new Map() }));
      zone.end = i + 1;
      const s = label(peer.location.site);
      if (s === '') return;
      let site = zone.sites.get(s);
      if (!site) zone.sites.set(s, (site = { start: i, end: i }));
      site.end = i + 1;
    });
  }

  /** Number of distinct peers. */
  get size(): number {
    return this.sorted.length;
  }

  get(id: string): P | undefined {
    const i = this.positions.get(id);
    return i === undefined ? undefined : this.sorted[i];
  }

  has(id: string): boolean {
    return this.positions.has(id);
  }

  /** Every peer, sorted by (region, zone, site, id). */
  peers(): readonly P[] {
    return this.sorted;
  }

  /**
   * Up to `count` distinct peers, never the asker: the same site first, then the same zone, the
   * same region, and the rest, each tier sampled uniformly at random without replacement, while
   * about round(n * remoteShare) slots (n = the number of peers that will be returned) go to
   * peers outside the asker's region picked at random. The result is ordered nearest tier
   * first (remote picks last), in random order inside a tier. Deterministic for a given
   * `random` source, and independent of the order the peers were given in.
   */
  select(options: SelectOptions<P>): P[] {
    const { random, exclude } = options;
    const count =
      options.count === Infinity ? this.sorted.length : Number.isFinite(options.count) ? Math.max(0, Math.floor(options.count)) : 0;
    const share = options.remoteShare >= 1 ? 1 : options.remoteShare > 0 ? options.remoteShare : 0;
    const askerPosition = options.askerId === undefined ? -1 : (this.positions.get(options.askerId) ?? -1);
    if (count === 0 || this.sorted.length === 0) return [];

    const scratch = this.takeScratch();
    try {
      const samplers = this.tiers(options.asker).map((t) => new TierSampler(t.a0, t.b0, t.a1, t.b1, scratch, askerPosition));
      const available = samplers.reduce((sum, s) => sum + s.size, 0);
      const n = Math.min(count, available);
      const picked: P[][] = [[], [], [], []];
      let taken = 0;
      const draw = (tier: number, want: number): void => {
        const sampler = samplers[tier] as TierSampler;
        const out = picked[tier] as P[];
        while (want > 0) {
          const position = sampler.next(random);
          if (position < 0) return;
          const peer = this.sorted[position] as P;
          if (exclude !== undefined && exclude(peer)) continue;
          out.push(peer);
          taken += 1;
          want -= 1;
        }
      };

      const remoteQuota = Math.min(Math.round(n * share), (samplers[REMOTE] as TierSampler).size);
      const local = n - remoteQuota;
      for (const tier of NEAR_TIERS) draw(tier, local - taken);
      draw(REMOTE, n - taken);
      // Only when excluded peers thinned the remote tier: give its unused slots to nearer tiers.
      for (const tier of NEAR_TIERS) draw(tier, n - taken);
      // Nearest tier first (Array.prototype.flat is slow here).
      const result: P[] = [];
      for (const tier of picked) for (const peer of tier) result.push(peer);
      return result;
    } finally {
      if (scratch === this.scratch) this.scratchBusy = false;
    }
  }

  /** A cleared scratch; a private one if `exclude` re-enters select on this index. */
  private takeScratch(): Scratch {
    const n = this.sorted.length;
    const fresh = (): Scratch => ({ values: new Int32Array(n), stamps: new Uint32Array(n), stamp: 1 });
    if (this.scratchBusy) return fresh();
    this.scratchBusy = true;
    if (!this.scratch) return (this.scratch = fresh());
    const scratch = this.scratch;
    if (scratch.stamp === 0xffffffff) {
      scratch.stamps.fill(0);
      scratch.stamp = 0;
    }
    scratch.stamp += 1;
    return scratch;
  }

  /** The asker's four tiers (same site, same zone, same region, remote) as ranges of `sorted`. */
  private tiers(asker: Location): Tier[] {
    const all = this.sorted.length;
    const r = label(asker.region);
    const region = r === '' ? undefined : this.regions.get(r);
    if (!region) {
      const empty: Tier = { a0: 0, b0: 0, a1: 0, b1: 0 };
      return [empty, empty, empty, { a0: 0, b0: all, a1: all, b1: all }];
    }
    // An unknown or absent zone (site) is an empty range, so its tier is empty.
    const z = label(asker.zone);
    const zoneNode = z === '' ? undefined : region.zones.get(z);
    const zone: Range = zoneNode ?? { start: region.start, end: region.start };
    const s = label(asker.site);
    const site: Range = (s === '' ? undefined : zoneNode?.sites.get(s)) ?? { start: zone.start, end: zone.start };
    return [
      { a0: site.start, b0: site.end, a1: site.end, b1: site.end },
      { a0: zone.start, b0: site.start, a1: site.end, b1: zone.end },
      { a0: region.start, b0: zone.start, a1: zone.end, b1: region.end },
      { a0: 0, b0: region.start, a1: region.end, b1: all },
    ];
  }
}
