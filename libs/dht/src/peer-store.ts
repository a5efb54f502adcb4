import type { PeerInfo } from './contact';
import { type RandomBytes, randomSample } from './random';

interface StoredPeer {
  readonly infoHashKey: string;
  readonly peer: PeerInfo;
  readonly expiresAt: number;
}

export interface PeerStoreLimits {
  ttlMs: number;
  maxPerInfoHash: number;
  maxTotal: number;
}

/**
 * Peers announced to this node, per info-hash. An announce lives `ttlMs` after its last refresh
 * (30 minutes by default; announcers refresh every 15). Both maps keep announce order (a refresh
 * moves the entry to the end), so the oldest announce is always first: expiry stops at the first
 * live entry, and a full store evicts from the front.
 */
export class PeerStore {
  /** infoHashKey -> agentId -> entry, oldest first. */
  private readonly byInfoHash = new Map<string, Map<string, StoredPeer>>();
  /** `${infoHashKey}/${agentId}` -> entry, oldest first across every info-hash. */
  private readonly all = new Map<string, StoredPeer>();

  constructor(private readonly limits: PeerStoreLimits) {}

  get size(): number {
    return this.all.size;
  }

  get infoHashCount(): number {
    return this.byInfoHash.size;
  }

  announce(now: number, infoHash: Uint8Array, peer: PeerInfo): void {
    this.expire(now);
    const infoHashKey = Buffer.from(infoHash).toString('hex');
    let peers = this.byInfoHash.get(infoHashKey);
    if (!peers) {
      peers = new Map();
      this.byInfoHash.set(infoHashKey, peers);
    }
    const previous = peers.get(peer.agentId);
    if (previous) this.remove(previous);
    else {
      if (peers.size >= this.limits.maxPerInfoHash) this.remove(peers.values().next().value as StoredPeer);
      if (this.all.size >= this.limits.maxTotal) this.remove(this.all.values().next().value as StoredPeer);
    }
    const entry: StoredPeer = { infoHashKey, peer, expiresAt: now + this.limits.ttlMs };
    // The eviction above may have removed this info-hash's last peer, and with it the map.
    if (!this.byInfoHash.has(infoHashKey)) this.byInfoHash.set(infoHashKey, peers);
    peers.set(peer.agentId, entry);
    this.all.set(`${infoHashKey}/${peer.agentId}`, entry);
  }

  /** Up to `max` live peers of the info-hash: all of them, or a uniform sample so load spreads. */
  peers(now: number, infoHash: Uint8Array, max: number, randomBytes: RandomBytes): PeerInfo[] {
    this.expire(now);
    const peers = this.byInfoHash.get(Buffer.from(infoHash).toString('hex'));
    if (!peers) return [];
    const all = [...peers.values()].map((entry) => entry.peer);
    return all.length <= max ? all : randomSample(all, max, randomBytes);
  }

  expire(now: number): void {
    for (const entry of this.all.values()) {
      if (entry.expiresAt > now) break;
      this.remove(entry);
    }
  }

  private remove(entry: StoredPeer): void {
    this.all.delete(`${entry.infoHashKey}/${entry.peer.agentId}`);
    const peers = this.byInfoHash.get(entry.infoHashKey);
    if (!peers) return;
    peers.delete(entry.peer.agentId);
    if (peers.size === 0) this.byInfoHash.delete(entry.infoHashKey);
  }
}
