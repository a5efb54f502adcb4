import { BLOCK_SIZE } from '@shoal/torrent';
import { type BlockRef, PieceSpace, Swarm, type SwarmAction, type SwarmConfig, type SwarmOptions } from '../src';

/** mulberry32: a tiny seeded generator, uniform in [0, 1), so every run replays exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Replays the given draws in a loop: fast-check shrinks them, and picks edges such as 0 and 1 - epsilon. */
export function cycling(draws: readonly number[]): () => number {
  let i = 0;
  return () => draws[i++ % draws.length] ?? 0;
}

/** A draw in [0, 1) for fast-check, edges included. */
export const DRAW = { min: 0, max: 1, maxExcluded: true, noNaN: true } as const;

export function block(index: number, b: number, length = BLOCK_SIZE): BlockRef {
  return { index, begin: b * BLOCK_SIZE, length };
}

/** A distinct fake block hash. */
export function leaf(tag: number): Uint8Array {
  return new Uint8Array(32).fill(tag);
}

export function bitsOf(numPieces: number, held: readonly number[]): Uint8Array {
  const bits = new Uint8Array(Math.ceil(numPieces / 8));
  for (const i of held) bits[i >> 3] = (bits[i >> 3] ?? 0) | (0x80 >> (i & 7));
  return bits;
}

// An intersection, not Extract: members such as request | cancel share one object type.
type ActionOf<T extends SwarmAction['type']> = SwarmAction & { type: T };

export function only<T extends SwarmAction['type']>(actions: readonly SwarmAction[], type: T, peer?: number): ActionOf<T>[] {
  return actions.filter((a): a is ActionOf<T> => a.type === type && (peer === undefined || !('peer' in a) || a.peer === peer));
}

/** Requests as "piece:block" strings, easy to compare as sets. */
export function requested(actions: readonly SwarmAction[], peer: number, type: 'request' | 'cancel' = 'request'): string[] {
  return only(actions, type, peer).map((r) => `${r.index}:${r.begin / BLOCK_SIZE}`);
}

export interface RigOptions {
  pieces?: number;
  blocksPerPiece?: number;
  have?: SwarmOptions['have'];
  config?: Partial<SwarmConfig>;
  webseed?: boolean;
  selfName?: string;
  random?: () => number;
}

/**
 * A Swarm with a hand-driven clock and fake peers: each test script says what the peers do and
 * reads back the actions the swarm asked for. No sockets, no timers.
 */
export class Rig {
  now = 0;
  readonly swarm: Swarm;
  readonly space: PieceSpace;

  constructor(options: RigOptions = {}) {
    const pieceLength = (options.blocksPerPiece ?? 2) * BLOCK_SIZE;
    this.space = PieceSpace.uniform((options.pieces ?? 4) * pieceLength, pieceLength);
    this.swarm = new Swarm({
      space: this.space,
      have: options.have ?? 'none',
      selfName: options.selfName ?? 'self',
      config: options.config,
      random: options.random ?? mulberry32(7),
      now: this.now,
      webseed: options.webseed,
    });
  }

  /** Connects a peer through handshake and bitfield (the order the adapter reports them). */
  peer(key: number, name: string, options: { bits?: Uint8Array | 'all' | 'none'; fast?: boolean; reqq?: number } = {}): FakePeer {
    const advertised = this.swarm.addPeer(key, { name }, this.now);
    if (typeof advertised === 'object' && 'refused' in advertised) throw new Error(`${name} refused: ${advertised.refused}`);
    this.swarm.peerOpened(key, { fast: options.fast ?? true, reqq: options.reqq ?? 250 }, this.now);
    this.swarm.peerBitfield(key, options.bits ?? 'all', this.now);
    return new FakePeer(this, key, name);
  }

  take(): SwarmAction[] {
    return this.swarm.takeActions();
  }

  /** Moves the clock on and runs the adapter's timer. */
  tick(ms: number): SwarmAction[] {
    this.now += ms;
    this.swarm.tick(this.now);
    return this.take();
  }

  /** Every block of the piece, as the wire names them. */
  blocksOf(index: number): BlockRef[] {
    const out: BlockRef[] = [];
    for (let b = 0; b < this.space.blockCount(index); b++) out.push(block(index, b, this.space.blockLength(index, b)));
    return out;
  }
}

/** What one remote peer does to us, each call returning the actions the swarm answered with. */
export class FakePeer {
  constructor(
    private readonly rig: Rig,
    readonly key: number,
    readonly name: string,
  ) {}

  private get swarm(): Swarm {
    return this.rig.swarm;
  }

  unchoke(): SwarmAction[] {
    this.swarm.peerChoke(this.key, false, this.rig.now);
    return this.rig.take();
  }

  choke(): SwarmAction[] {
    this.swarm.peerChoke(this.key, true, this.rig.now);
    return this.rig.take();
  }

  interested(interested = true): SwarmAction[] {
    this.swarm.peerInterest(this.key, interested, this.rig.now);
    return this.rig.take();
  }

  have(index: number): SwarmAction[] {
    this.swarm.peerHave(this.key, index, this.rig.now);
    return this.rig.take();
  }

  reject(ref: BlockRef): SwarmAction[] {
    this.swarm.peerRejected(this.key, ref, this.rig.now);
    return this.rig.take();
  }

  /** Sends us a block; `kept` is the swarm's answer (keep the data or drop it). */
  send(ref: BlockRef): { kept: boolean; actions: SwarmAction[] } {
    const kept = this.swarm.blockReceived(this.key, ref, this.rig.now);
    return { kept, actions: this.rig.take() };
  }

  request(ref: BlockRef): SwarmAction[] {
    this.swarm.peerRequest(this.key, ref, this.rig.now);
    return this.rig.take();
  }

  /** Our upload of a served block finished. */
  served(ref: BlockRef): SwarmAction[] {
    this.swarm.blockSent(this.key, ref, this.rig.now);
    return this.rig.take();
  }

  close(): SwarmAction[] {
    this.swarm.peerClosed(this.key, this.rig.now);
    return this.rig.take();
  }

  stats() {
    const stats = this.swarm.peerStats(this.rig.now).find((p) => p.key === this.key);
    if (!stats) throw new Error(`peer ${this.key} is gone`);
    return stats;
  }
}
