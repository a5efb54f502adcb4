import { ipPrefixGroup, isLoopback } from './address';
import type { DhtConfig } from './config';
import { type Contact, sameEndpoint } from './contact';
import { commonPrefixLength, compareDistance, NODE_ID_BITS, type NodeId, randomIdWithPrefix } from './node-id';
import type { RandomBytes } from './random';

/** The table's view of one node. */
export interface RoutingEntry {
  contact: Contact;
  readonly key: string;
  /** Diversity group (undefined: not limited, e.g. loopback). */
  group: string | undefined;
  /** Last time the node answered us or queried us. */
  lastSeen: number;
  /** Last time it answered one of our queries (undefined: only ever queried us). */
  lastResponded: number | undefined;
  /** Our queries it failed to answer in a row. */
  failures: number;
  /** When we pinged it to see whether a newcomer may take its place. */
  pingSentAt: number | undefined;
}

/** How the table heard from a node; either way the adapter has verified its certificate. */
export type Heard = 'response' | 'query';

export type InsertOutcome =
  /** Took a free slot (or the slot of a stale node: 'replaced'). */
  | 'added'
  | 'replaced'
  /** Already known: refreshed and moved to the most-recently-seen end. */
  | 'updated'
  /** Bucket full of good nodes: kept in the bucket's replacement cache. */
  | 'cached'
  /** Its group already has its share of the bucket or the table. */
  | 'diversity'
  | 'self';

export interface InsertResult {
  outcome: InsertOutcome;
  /** Ping this questionable node: if it fails, a cached newcomer takes its place (BEP 5). */
  ping?: Contact;
}

export type FailureOutcome = 'counted' | 'evicted' | 'stale' | 'unknown';

export interface BucketRefresh {
  bucket: number;
  /** A random id in the bucket's range: a find_node for it refills the bucket. */
  target: NodeId;
}

export type RoutingTableSettings = Pick<
  DhtConfig,
  'k' | 'maxFailures' | 'questionableAfterMs' | 'refreshIntervalMs' | 'replacementCacheSize' | 'diversity' | 'maxPerGroupPerBucket' | 'maxPerGroupInTable'
>;

class Bucket {
  /** Least recently seen first. */
  readonly nodes: RoutingEntry[] = [];
  /** Most recently seen last. */
  readonly replacements: RoutingEntry[] = [];
  readonly groups = new Map<string, number>();

  constructor(public lastChanged: number) {}
}

/**
 * A Kademlia routing table (BEP 5): buckets of up to k nodes, bucket i holding the nodes whose id
 * shares exactly i leading bits with ours and the last bucket everything closer; only the last
 * bucket (the one covering our own id) splits. Only verified nodes enter: ones that answered us
 * or queried us over a connection whose certificate proved their id; contacts merely named in
 * replies never do.
 *
 * A full bucket keeps newcomers in a replacement cache and asks for a ping of its least recently
 * seen questionable node; a node that fails `maxFailures` queries in a row is stale: a newcomer
 * takes its place at once, a cached replacement as soon as there is one. Diversity: at most
 * `maxPerGroupPerBucket` nodes of one group (a /24, a /64, or a site) per bucket and
 * `maxPerGroupInTable` in the table.
 */
export class RoutingTable {
  private readonly buckets: Bucket[];
  private readonly entries = new Map<string, RoutingEntry>();
  private readonly groups = new Map<string, number>();
  private diversityRefusals = 0;

  constructor(
    readonly id: NodeId,
    private readonly settings: RoutingTableSettings,
    now: number,
  ) {
    this.buckets = [new Bucket(now)];
  }

  get size(): number {
    return this.entries.size;
  }

  get bucketCount(): number {
    return this.buckets.length;
  }

  /** Newcomers refused by the diversity limits since the table was made. */
  get refusedForDiversity(): number {
    return this.diversityRefusals;
  }

  bucketIndexOf(id: NodeId): number {
    return Math.min(commonPrefixLength(this.id, id), this.buckets.length - 1);
  }

  get(id: NodeId): RoutingEntry | undefined {
    return this.entries.get(id.toString('hex'));
  }

  /** Bucket `index` as copies of its contacts, least recently seen first. */
  bucket(index: number): { nodes: Contact[]; replacements: Contact[]; lastChanged: number } {
    const bucket = this.buckets[index];
    if (!bucket) return { nodes: [], replacements: [], lastChanged: Number.NaN };
    return { nodes: bucket.nodes.map((e) => e.contact), replacements: bucket.replacements.map((e) => e.contact), lastChanged: bucket.lastChanged };
  }

  /** Every node and cached replacement, bucket by bucket (for persistence). */
  contacts(): { nodes: Contact[]; replacements: Contact[] } {
    const nodes: Contact[] = [];
    const replacements: Contact[] = [];
    for (const bucket of this.buckets) {
      for (const entry of bucket.nodes) nodes.push(entry.contact);
      for (const entry of bucket.replacements) replacements.push(entry.contact);
    }
    return { nodes, replacements };
  }

  insert(contact: Contact, now: number, heard: Heard): InsertResult {
    if (contact.id.equals(this.id)) return { outcome: 'self' };
    const key = contact.id.toString('hex');
    const existing = this.entries.get(key);
    if (existing) return { outcome: this.heardAgain(existing, contact, now, heard) };

    let index = this.bucketIndexOf(contact.id);
    let bucket = this.buckets[index] as Bucket;
    while (bucket.nodes.length >= this.settings.k && index === this.buckets.length - 1 && this.buckets.length < NODE_ID_BITS) {
      this.split();
      index = this.bucketIndexOf(contact.id);
      bucket = this.buckets[index] as Bucket;
    }
    const entry: RoutingEntry = {
      contact,
      key,
      group: this.groupOf(contact),
      lastSeen: now,
      lastResponded: heard === 'response' ? now : undefined,
      failures: 0,
      pingSentAt: undefined,
    };
    if (bucket.nodes.length < this.settings.k) {
      if (!this.admits(bucket, entry.group, undefined)) return this.refusedForGroup();
      this.add(bucket, entry, now);
      return { outcome: 'added' };
    }
    const stale = bucket.nodes.find((n) => n.failures >= this.settings.maxFailures);
    if (stale) {
      if (!this.admits(bucket, entry.group, stale)) return this.refusedForGroup();
      this.removeNode(bucket, stale);
      this.add(bucket, entry, now);
      return { outcome: 'replaced' };
    }
    if (!this.admits(bucket, entry.group, undefined)) return this.refusedForGroup();
    this.cache(bucket, entry);
    const questionable = bucket.nodes.find((n) => n.pingSentAt === undefined && this.isQuestionable(n, now));
    if (!questionable) return { outcome: 'cached' };
    questionable.pingSentAt = now;
    return { outcome: 'cached', ping: questionable.contact };
  }

  /**
   * One of our queries to `contact` failed. Counted only when the contact is the endpoint the table
   * knows: a wrong address someone else named for a known id must not hurt that node.
   */
  failed(contact: Contact): FailureOutcome {
    const key = contact.id.toString('hex');
    const entry = this.entries.get(key);
    if (!entry || !sameEndpoint(entry.contact, contact)) {
      this.dropReplacement(key, contact);
      return 'unknown';
    }
    entry.failures++;
    entry.pingSentAt = undefined;
    if (entry.failures < this.settings.maxFailures) return 'counted';
    const bucket = this.buckets[this.bucketIndexOf(contact.id)] as Bucket;
    const replacementIndex = this.findReplacement(bucket, entry);
    if (replacementIndex < 0) return 'stale';
    const [replacement] = bucket.replacements.splice(replacementIndex, 1) as [RoutingEntry];
    this.removeNode(bucket, entry);
    this.add(bucket, replacement, replacement.lastSeen);
    return 'evicted';
  }

  /**
   * Up to `count` live nodes closest to `target` (stale ones left out), closest first, optionally
   * without `exclude` (a requester is not told about itself).
   */
  closest(target: NodeId, count: number, exclude?: NodeId): Contact[] {
    const candidates: Contact[] = [];
    for (const bucket of this.buckets) {
      for (const entry of bucket.nodes) {
        if (entry.failures >= this.settings.maxFailures) continue;
        if (exclude && entry.contact.id.equals(exclude)) continue;
        candidates.push(entry.contact);
      }
    }
    candidates.sort((a, b) => compareDistance(a.id, b.id, target));
    if (candidates.length > count) candidates.length = count;
    return candidates;
  }

  /** Buckets untouched for `refreshIntervalMs`, each with a random id to look up; marks them touched. */
  refreshDue(now: number, randomBytes: RandomBytes): BucketRefresh[] {
    const due: BucketRefresh[] = [];
    const last = this.buckets.length - 1;
    for (const [index, bucket] of this.buckets.entries()) {
      // Same sum as nextRefreshAt: with fractional times, now - lastChanged can round below it.
      if (bucket.lastChanged + this.settings.refreshIntervalMs > now) continue;
      bucket.lastChanged = now;
      due.push({ bucket: index, target: randomIdWithPrefix(this.id, index, index < last, randomBytes) });
    }
    return due;
  }

  /** When the next bucket refresh falls due. */
  nextRefreshAt(): number {
    let next = Infinity;
    for (const bucket of this.buckets) next = Math.min(next, bucket.lastChanged + this.settings.refreshIntervalMs);
    return next;
  }

  private heardAgain(entry: RoutingEntry, contact: Contact, now: number, heard: Heard): InsertOutcome {
    const bucket = this.buckets[this.bucketIndexOf(contact.id)] as Bucket;
    // The certificate proved the id on this endpoint: the node moved (DHCP, a new interface).
    if (!sameEndpoint(entry.contact, contact) || entry.contact.site !== contact.site) {
      const group = this.groupOf(contact);
      if (group === entry.group || this.admits(bucket, group, entry)) {
        this.countGroup(bucket, entry.group, -1);
        entry.contact = contact;
        entry.group = group;
        this.countGroup(bucket, group, 1);
      }
    }
    entry.lastSeen = now;
    if (heard === 'response') {
      entry.lastResponded = now;
      entry.failures = 0;
      entry.pingSentAt = undefined;
      bucket.lastChanged = now;
    }
    const at = bucket.nodes.indexOf(entry);
    bucket.nodes.splice(at, 1);
    bucket.nodes.push(entry);
    return 'updated';
  }

  private isQuestionable(entry: RoutingEntry, now: number): boolean {
    return entry.lastResponded === undefined || entry.lastSeen + this.settings.questionableAfterMs <= now;
  }

  private groupOf(contact: Contact): string | undefined {
    if (isLoopback(contact.address)) return undefined;
    if (this.settings.diversity === 'site' && contact.site) return `site:${contact.site}`;
    return ipPrefixGroup(contact.address);
  }

  /** Whether a node of `group` may join `bucket`, once `leaving` (if any) has left. */
  private admits(bucket: Bucket, group: string | undefined, leaving: RoutingEntry | undefined): boolean {
    if (group === undefined) return true;
    const credit = leaving?.group === group ? 1 : 0;
    const { maxPerGroupPerBucket, maxPerGroupInTable } = this.settings;
    if (maxPerGroupPerBucket > 0 && (bucket.groups.get(group) ?? 0) - credit >= maxPerGroupPerBucket) return false;
    if (maxPerGroupInTable > 0 && (this.groups.get(group) ?? 0) - credit >= maxPerGroupInTable) return false;
    return true;
  }

  private refusedForGroup(): InsertResult {
    this.diversityRefusals++;
    return { outcome: 'diversity' };
  }

  private add(bucket: Bucket, entry: RoutingEntry, now: number): void {
    bucket.nodes.push(entry);
    bucket.lastChanged = now;
    this.entries.set(entry.key, entry);
    this.countGroup(bucket, entry.group, 1);
  }

  private removeNode(bucket: Bucket, entry: RoutingEntry): void {
    bucket.nodes.splice(bucket.nodes.indexOf(entry), 1);
    this.entries.delete(entry.key);
    this.countGroup(bucket, entry.group, -1);
  }

  private countGroup(bucket: Bucket | undefined, group: string | undefined, delta: number): void {
    if (group === undefined) return;
    if (bucket) adjust(bucket.groups, group, delta);
    adjust(this.groups, group, delta);
  }

  private cache(bucket: Bucket, entry: RoutingEntry): void {
    if (this.settings.replacementCacheSize === 0) return;
    const at = bucket.replacements.findIndex((r) => r.key === entry.key);
    if (at >= 0) bucket.replacements.splice(at, 1);
    bucket.replacements.push(entry);
    if (bucket.replacements.length > this.settings.replacementCacheSize) bucket.replacements.shift();
  }

  private dropReplacement(key: string, contact: Contact): void {
    for (const bucket of this.buckets) {
      const at = bucket.replacements.findIndex((r) => r.key === key && sameEndpoint(r.contact, contact));
      if (at >= 0) bucket.replacements.splice(at, 1);
    }
  }

  /** The most recently seen replacement that the diversity limits let take `leaving`'s place. */
  private findReplacement(bucket: Bucket, leaving: RoutingEntry): number {
    for (let i = bucket.replacements.length - 1; i >= 0; i--) {
      if (this.admits(bucket, (bucket.replacements[i] as RoutingEntry).group, leaving)) return i;
    }
    return -1;
  }

  /** Splits the last bucket: nodes sharing one more bit with our id move to a new last bucket. */
  private split(): void {
    const depth = this.buckets.length - 1;
    const old = this.buckets[depth] as Bucket;
    const near = new Bucket(old.lastChanged);
    const goesNear = (e: RoutingEntry): boolean => commonPrefixLength(this.id, e.contact.id) > depth;
    for (const list of ['nodes', 'replacements'] as const) {
      const moving = old[list].filter(goesNear);
      const staying = old[list].filter((e) => !goesNear(e));
      old[list].splice(0, old[list].length, ...staying);
      near[list].push(...moving);
    }
    old.groups.clear();
    for (const entry of old.nodes) if (entry.group !== undefined) adjust(old.groups, entry.group, 1);
    for (const entry of near.nodes) if (entry.group !== undefined) adjust(near.groups, entry.group, 1);
    this.buckets.push(near);
  }
}

function adjust(counts: Map<string, number>, key: string, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta;
  if (next <= 0) counts.delete(key);
  else counts.set(key, next);
}
