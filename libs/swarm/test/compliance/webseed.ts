import fc from 'fast-check';
import type { WebseedContext, WebseedPolicy } from '../../src';
import { cycling, DRAW } from '../support';

export interface WebseedCase {
  wanted: boolean[];
  availability: number[];
  /** Peers that announced it (default: all that hold it); fewer when a super-seed holds it unannounced. */
  announced?: number[];
  responsible: boolean[];
  unavailableFor: number[];
  /** How long each piece's responsible peer has announced nothing new. */
  quietFor: number[];
  connectedPeers: number;
  /** Our origin fetches in flight (default 0). */
  inFlight?: number;
  peerlessFor: number | undefined;
  peerRate: number;
  slowFor: number | undefined;
  draws: number[];
}

const arbMs = fc.integer({ min: 0, max: 20_000 });

/**
 * Contexts the swarm can produce: availability counts connected peers; a piece some peer holds
 * has no unavailable time; nobody is peerless while a peer holds a wanted piece.
 */
export const arbWebseedCase: fc.Arbitrary<WebseedCase> = fc.integer({ min: 1, max: 32 }).chain((n) =>
  fc
    .record({
      wanted: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      availability: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: n, maxLength: n }),
      hiddenBySeed: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      responsible: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      unavailableFor: fc.array(arbMs, { minLength: n, maxLength: n }),
      quietFor: fc.array(arbMs, { minLength: n, maxLength: n }),
      connectedPeers: fc.integer({ min: 0, max: 4 }),
      peerlessFor: fc.option(arbMs, { nil: undefined }),
      peerRate: fc.nat({ max: 10_000_000 }),
      slowFor: fc.option(arbMs, { nil: undefined }),
      draws: fc.array(fc.double(DRAW), { minLength: 1, maxLength: 4 }),
    })
    .map(({ hiddenBySeed, ...c }) => {
      const availability = c.availability.map((a) => Math.min(a, c.connectedPeers));
      // A super-seed counts as holding every piece, but announced only some.
      const announced = availability.map((a, i) => (hiddenBySeed[i] && a > 0 ? a - 1 : a));
      const unavailableFor = c.unavailableFor.map((ms, i) => (availability[i] === 0 ? ms : 0));
      const holding = c.wanted.some((w, i) => w && (availability[i] ?? 0) > 0);
      return {
        ...c,
        availability,
        announced,
        unavailableFor,
        peerlessFor: holding ? undefined : c.peerlessFor,
        slowFor: c.connectedPeers === 0 ? undefined : c.slowFor,
      };
    }),
);

export function webseedContext(c: WebseedCase, now = 1_000_000): WebseedContext {
  return {
    now,
    numPieces: c.wanted.length,
    isWanted: (i) => c.wanted[i] === true,
    availability: (i) => c.availability[i] ?? 0,
    announcedBy: (i) => (c.announced ?? c.availability)[i] ?? 0,
    unavailableFor: (i) => c.unavailableFor[i] ?? 0,
    isResponsible: (i) => c.responsible[i] === true,
    responsibleQuietFor: (i) => (c.responsible[i] === true ? 0 : (c.quietFor[i] ?? 0)),
    connectedPeers: c.connectedPeers,
    inFlight: c.inFlight ?? 0,
    peerlessFor: c.peerlessFor,
    peerRate: c.peerRate,
    slowFor: c.slowFor,
    random: cycling(c.draws),
  };
}

/** The contract every WebseedPolicy keeps. */
export function describeWebseedCompliance(label: string, make: () => WebseedPolicy): void {
  describe(`WebseedPolicy compliance: ${label}`, () => {
    test('only fetches wanted pieces, each with a known reason', () => {
      fc.assert(
        fc.property(arbWebseedCase, (c) => {
          const got = make().next(webseedContext(c));
          if (got === undefined) return;
          expect(c.wanted[got.index]).toBe(true);
          expect(['no-peers', 'piece-unavailable', 'slow-peers', 'origin-share']).toContain(got.reason);
        }),
      );
    });

    test('fetches nothing when nothing is wanted', () => {
      fc.assert(
        fc.property(arbWebseedCase, (c) => {
          expect(make().next(webseedContext({ ...c, wanted: c.wanted.map(() => false) }))).toBeUndefined();
        }),
      );
    });

    test('never uses the origin while peers have announced everything wanted and deliver', () => {
      fc.assert(
        fc.property(arbWebseedCase, (c) => {
          const served = {
            ...c,
            connectedPeers: Math.max(1, c.connectedPeers),
            availability: c.availability.map(() => 1),
            announced: c.availability.map(() => 1),
            peerlessFor: undefined,
            slowFor: undefined,
          };
          expect(make().next(webseedContext({ ...served, unavailableFor: served.availability.map(() => 0) }))).toBeUndefined();
        }),
      );
    });

    test('is a function of its context and draws', () => {
      fc.assert(
        fc.property(arbWebseedCase, (c) => {
          expect(make().next(webseedContext(c))).toEqual(make().next(webseedContext(c)));
        }),
      );
    });
  });
}
