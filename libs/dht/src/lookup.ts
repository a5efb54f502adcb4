import { type Contact, type PeerInfo, sameEndpoint } from './contact';
import { type NodeId, xorDistance } from './node-id';

export type LookupKind = 'find_node' | 'get_peers';
/** Why the node runs a lookup: asked by the adapter, joining, refreshing a bucket, announcing. */
export type LookupPurpose = 'lookup' | 'bootstrap' | 'refresh' | 'announce';

export interface LookupResult {
  lookup: number;
  kind: LookupKind;
  purpose: LookupPurpose;
  target: NodeId;
  /** The up to k closest nodes that answered, closest first. */
  closest: Contact[];
  /** get_peers: every distinct peer (by agent id) any node returned. */
  peers: PeerInfo[];
  /**
   * The lookup's depth in rounds. A query's round is 1 for a node taken from our own routing table,
   * else 1 + the round of the query whose reply first named the node (the smallest such). `rounds`
   * is the largest round of any query that was answered: the length of the longest chain of
   * request/reply exchanges the lookup waited through, i.e. its latency in round trips when
   * replies take equal time and nothing times out. (A lock-step Kademlia lookup that sends round
   * r + 1 only after round r has answered reports the same number.)
   */
  rounds: number;
  queries: number;
  answers: number;
  /** Queries that timed out, failed to connect, or were answered by the wrong certificate. */
  failures: number;
  /** Contacts never queried because only distrusted nodes named them. */
  discarded: number;
  /** Nodes distrusted for referring contacts that failed. */
  distrusted: number;
  /** The lookup stopped at `lookupMaxQueries` before the k closest nodes had all answered. */
  exhausted: boolean;
  startedAt: number;
  finishedAt: number;
}

export interface LookupOptions {
  lookup: number;
  kind: LookupKind;
  purpose: LookupPurpose;
  target: NodeId;
  selfId: NodeId;
  k: number;
  alpha: number;
  /** Contacts taken from one reply (more only add an attacker's padding). */
  contactsPerReply: number;
  maxQueries: number;
  distrustAfterFailures: number;
  /** Starting nodes: the closest in our routing table, and bootstrap contacts. */
  seeds: readonly Contact[];
  now: number;
}

type EndpointState = 'new' | 'querying' | 'slow' | 'answered' | 'failed' | 'discarded';

/** One address claimed for a candidate id; the node sends one query per endpoint. */
export class LookupEndpoint {
  state: EndpointState = 'new';
  /** Keys of the nodes whose replies named this endpoint. */
  readonly referrers: string[] = [];

  constructor(
    readonly candidate: LookupCandidate,
    readonly contact: Contact,
    /** From our own routing table (or the bootstrap list): never discarded for its referrers. */
    readonly trusted: boolean,
  ) {}
}

/** Addresses kept per candidate id: room for the real one when hostile nodes name the id with false ones. */
const MAX_ENDPOINTS_PER_CANDIDATE = 8;

/** A node id the lookup has heard of, with every address claimed for it. */
export class LookupCandidate {
  readonly endpoints: LookupEndpoint[] = [];
  answered: LookupEndpoint | undefined;
  token: Buffer | undefined;

  constructor(
    readonly id: NodeId,
    readonly key: string,
    readonly distance: Buffer,
    public round: number,
  ) {}

  status(): 'answered' | 'querying' | 'waiting' | 'slow' | 'failed' {
    if (this.answered) return 'answered';
    let waiting = false;
    let slow = false;
    for (const endpoint of this.endpoints) {
      if (endpoint.state === 'querying') return 'querying';
      if (endpoint.state === 'new') waiting = true;
      else if (endpoint.state === 'slow') slow = true;
    }
    return waiting ? 'waiting' : slow ? 'slow' : 'failed';
  }
}

interface Referrer {
  answered: number;
  failed: number;
  distrusted: boolean;
  endpoints: LookupEndpoint[];
}

/**
 * One iterative Kademlia lookup (find_node, or get_peers for an info-hash), without I/O: the node
 * asks `next` which endpoints to query and reports each outcome.
 *
 * Candidates are every node any reply named, sorted by XOR distance to the target (never cut to
 * k, so invented contacts cannot push real ones out). The window is the k closest candidates that
 * have not failed and are not slow; the lookup keeps `alpha` queries in flight to the closest
 * unqueried candidates of the window, and ends when every candidate in the window has answered:
 * then the k closest nodes that answer are known and have all been asked. A query that turns
 * slow leaves the window and frees its slot (the answer still counts if it comes); the lookup
 * waits for slow queries only while fewer than k nodes have answered.
 *
 * Hostile nodes: a candidate id may carry several endpoints (a false address for a real id does
 * not hide the true one); a node whose referrals fail `distrustAfterFailures` times before any of
 * them answers is distrusted, and contacts only distrusted nodes named are dropped. An honest
 * node's referrals answer as soon as one live node among them is asked, so it is rarely
 * distrusted, and what it alone named is the only loss.
 */
export class Lookup {
  readonly id: number;
  readonly kind: LookupKind;
  readonly purpose: LookupPurpose;
  readonly target: NodeId;
  private readonly options: LookupOptions;
  private readonly candidates: LookupCandidate[] = [];
  private readonly byKey = new Map<string, LookupCandidate>();
  private readonly referrers = new Map<string, Referrer>();
  private readonly peers = new Map<string, PeerInfo>();
  private inFlight = 0;
  private slowQueries = 0;
  private queries = 0;
  private answers = 0;
  private failures = 0;
  private discarded = 0;
  private distrusted = 0;
  private rounds = 0;
  private done = false;
  private exhausted = false;

  constructor(options: LookupOptions) {
    this.options = options;
    this.id = options.lookup;
    this.kind = options.kind;
    this.purpose = options.purpose;
    this.target = options.target;
    for (const seed of options.seeds) this.learn(seed, 1, undefined);
  }

  get finished(): boolean {
    return this.done;
  }

  /** Endpoints to query now, at most `freeSlots` (the node's own limit); marks them in flight. */
  next(freeSlots: number): LookupEndpoint[] {
    const out: LookupEndpoint[] = [];
    if (this.done) return out;
    const { k, alpha, maxQueries } = this.options;
    let budget = Math.min(freeSlots, alpha - this.inFlight, maxQueries - this.queries);
    let inWindow = 0;
    let allAnswered = true;
    for (const candidate of this.candidates) {
      let status = candidate.status();
      if (status === 'failed' || status === 'slow') continue;
      if (status === 'waiting' && budget > 0) {
        const endpoint = this.pickEndpoint(candidate);
        endpoint.state = 'querying';
        this.inFlight++;
        this.queries++;
        budget--;
        out.push(endpoint);
        status = 'querying';
      }
      if (status !== 'answered') allAnswered = false;
      if (++inWindow === k) break;
    }
    if (out.length > 0) return out;
    // A window short of k may still fill from queries that are only slow (a slow link, not a dead node).
    if (allAnswered && (inWindow === k || this.slowQueries === 0)) this.done = true;
    else if (this.queries >= maxQueries && this.inFlight === 0) this.done = this.exhausted = true;
    return out;
  }

  /**
   * `endpoint` answered with `contacts` (and, for get_peers, a token and maybe peers). Returns the
   * peers not seen before in this lookup.
   */
  answered(endpoint: LookupEndpoint, contacts: readonly Contact[], token?: Buffer, values?: readonly PeerInfo[]): PeerInfo[] {
    this.settle(endpoint, 'answered');
    const candidate = endpoint.candidate;
    if (candidate.answered) return [];
    candidate.answered = endpoint;
    candidate.token = token;
    this.answers++;
    this.rounds = Math.max(this.rounds, candidate.round);
    for (const key of endpoint.referrers) (this.referrers.get(key) as Referrer).answered++;
    for (const contact of contacts.slice(0, this.options.contactsPerReply)) this.learn(contact, candidate.round + 1, candidate.key);
    return this.collect(values ?? []);
  }

  /** Peers found without asking anyone (our own peer store); returns those not seen before. */
  collect(values: readonly PeerInfo[]): PeerInfo[] {
    const fresh: PeerInfo[] = [];
    for (const peer of values) {
      if (this.peers.has(peer.agentId)) continue;
      this.peers.set(peer.agentId, peer);
      fresh.push(peer);
    }
    return fresh;
  }

  /** The query timed out, could not be delivered, or came back from the wrong certificate or with an error. */
  failed(endpoint: LookupEndpoint): void {
    this.settle(endpoint, 'failed');
    this.failures++;
    for (const key of endpoint.referrers) {
      const referrer = this.referrers.get(key) as Referrer;
      referrer.failed++;
      if (!referrer.distrusted && referrer.answered === 0 && referrer.failed >= this.options.distrustAfterFailures) this.distrust(referrer);
    }
  }

  /** No answer yet after `rpcSlowMs`: the query stops holding a slot and its candidate leaves the window. */
  slow(endpoint: LookupEndpoint): void {
    if (endpoint.state !== 'querying') return;
    endpoint.state = 'slow';
    this.inFlight--;
    this.slowQueries++;
  }

  /** The k closest nodes that answered, each with the token it gave (announce_peer goes to these). */
  closestAnswered(): { contact: Contact; token: Buffer | undefined }[] {
    const out: { contact: Contact; token: Buffer | undefined }[] = [];
    for (const candidate of this.candidates) {
      if (!candidate.answered) continue;
      out.push({ contact: candidate.answered.contact, token: candidate.token });
      if (out.length === this.options.k) break;
    }
    return out;
  }

  result(now: number): LookupResult {
    return {
      lookup: this.id,
      kind: this.kind,
      purpose: this.purpose,
      target: this.target,
      closest: this.closestAnswered().map((c) => c.contact),
      peers: [...this.peers.values()],
      rounds: this.rounds,
      queries: this.queries,
      answers: this.answers,
      failures: this.failures,
      discarded: this.discarded,
      distrusted: this.distrusted,
      exhausted: this.exhausted,
      startedAt: this.options.now,
      finishedAt: now,
    };
  }

  private settle(endpoint: LookupEndpoint, state: 'answered' | 'failed'): void {
    if (endpoint.state === 'querying') this.inFlight--;
    else if (endpoint.state === 'slow') this.slowQueries--;
    endpoint.state = state;
  }

  private learn(contact: Contact, round: number, referrerKey: string | undefined): void {
    if (contact.id.equals(this.options.selfId)) return;
    const key = contact.id.toString('hex');
    let candidate = this.byKey.get(key);
    if (!candidate) {
      candidate = new LookupCandidate(contact.id, key, xorDistance(contact.id, this.target), round);
      this.byKey.set(key, candidate);
      this.candidates.splice(this.insertionPoint(candidate.distance), 0, candidate);
    } else {
      candidate.round = Math.min(candidate.round, round);
    }
    if (candidate.answered) return;
    let endpoint = candidate.endpoints.find((e) => sameEndpoint(e.contact, contact));
    if (!endpoint) {
      if (candidate.endpoints.length >= MAX_ENDPOINTS_PER_CANDIDATE) return;
      endpoint = new LookupEndpoint(candidate, contact, referrerKey === undefined);
      candidate.endpoints.push(endpoint);
    }
    if (referrerKey === undefined || endpoint.referrers.includes(referrerKey)) return;
    endpoint.referrers.push(referrerKey);
    let referrer = this.referrers.get(referrerKey);
    if (!referrer) {
      referrer = { answered: 0, failed: 0, distrusted: false, endpoints: [] };
      this.referrers.set(referrerKey, referrer);
    }
    referrer.endpoints.push(endpoint);
    if (referrer.distrusted) this.discardIfUnvouched(endpoint);
    else if (endpoint.state === 'discarded') endpoint.state = 'new';
  }

  private distrust(referrer: Referrer): void {
    referrer.distrusted = true;
    this.distrusted++;
    for (const endpoint of referrer.endpoints) this.discardIfUnvouched(endpoint);
  }

  private discardIfUnvouched(endpoint: LookupEndpoint): void {
    if (endpoint.state !== 'new' || endpoint.trusted) return;
    if (endpoint.referrers.every((key) => (this.referrers.get(key) as Referrer).distrusted)) {
      endpoint.state = 'discarded';
      this.discarded++;
    }
  }

  /** Untried endpoint named by the most trusted referrers; our own table's first. */
  private pickEndpoint(candidate: LookupCandidate): LookupEndpoint {
    let best: LookupEndpoint | undefined;
    let bestScore = -1;
    for (const endpoint of candidate.endpoints) {
      if (endpoint.state !== 'new') continue;
      const score = endpoint.trusted ? Infinity : endpoint.referrers.filter((key) => !(this.referrers.get(key) as Referrer).distrusted).length;
      if (score > bestScore) {
        best = endpoint;
        bestScore = score;
      }
    }
    return best as LookupEndpoint;
  }

  private insertionPoint(distance: Buffer): number {
    let lo = 0;
    let hi = this.candidates.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Buffer.compare((this.candidates[mid] as LookupCandidate).distance, distance) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
