import fc from 'fast-check';
import { AssistWebseed, FallbackWebseed, type FallbackTimings, inOriginShare, NeverWebseed, policiesOf, type SwarmConfig, swarmConfig, type WebseedPolicy } from '../src';
import { arbWebseedCase, describeWebseedCompliance, type WebseedCase, webseedContext } from './compliance/webseed';

const WEBSEEDS: Record<SwarmConfig['webseed'], () => WebseedPolicy> = {
  assist: () => policiesOf(swarmConfig({ webseed: 'assist' })).webseed,
  fallback: () => policiesOf(swarmConfig({ webseed: 'fallback' })).webseed,
  never: () => policiesOf(swarmConfig({ webseed: 'never' })).webseed,
};

for (const [name, make] of Object.entries(WEBSEEDS)) describeWebseedCompliance(name, make);
describeWebseedCompliance('fallback with zero delays', () => new FallbackWebseed({ noPeersMs: 0, unavailableMs: 0, slowMs: 0 }));

const TIMINGS: FallbackTimings = { noPeersMs: 3000, unavailableMs: 5000, slowMs: 10_000 };

/** Four pieces, all wanted, held by one connected peer, which delivers: nothing to do yet. */
function quiet(over: Partial<WebseedCase> = {}): WebseedCase {
  return {
    wanted: [true, true, true, true],
    availability: [1, 1, 1, 1],
    responsible: [false, false, false, false],
    unavailableFor: [0, 0, 0, 0],
    quietFor: [0, 0, 0, 0],
    connectedPeers: 1,
    peerlessFor: undefined,
    peerRate: 1_000_000,
    slowFor: undefined,
    draws: [0],
    ...over,
  };
}

const next = (c: WebseedCase, timings = TIMINGS) => new FallbackWebseed(timings).next(webseedContext(c));

describe('AssistWebseed', () => {
  const assist = (c: WebseedCase) => new AssistWebseed(TIMINGS).next(webseedContext(c));
  /** Four pieces, all held by a connected super-seed that announced none of them. */
  const seedOnly = (over: Partial<WebseedCase> = {}) => quiet({ announced: [0, 0, 0, 0], ...over });

  test('the origin share is every other piece', () => {
    expect([0, 1, 2, 3, 4, 5].map(inOriginShare)).toEqual([false, true, false, true, false, true]);
  });

  test('a piece of the origin share that no peer announced is fetched at once by its responsible peer, even while a seed holds it', () => {
    expect(assist(seedOnly({ responsible: [true, false, true, true] }))).toEqual({ index: 3, reason: 'origin-share' });
    // Pieces outside the origin share are left to the seed; pieces we are not responsible for, to others.
    expect(assist(seedOnly({ responsible: [true, false, true, false] }))).toBeUndefined();
    // Announced by a peer: it comes from that peer.
    expect(assist(seedOnly({ responsible: [true, true, true, true], announced: [0, 1, 0, 1] }))).toBeUndefined();
    expect(assist(seedOnly({ responsible: [true, true, true, true], announced: [0, 1, 0, 1], wanted: [true, false, true, true] }))).toBeUndefined();
  });

  test('the fallback reasons keep their precedence, and alone it waits noPeersMs like fallback', () => {
    const unavailable = quiet({ availability: [1, 0, 1, 0], announced: [0, 0, 0, 0], responsible: [false, false, false, true] });
    expect(assist(unavailable)).toEqual({ index: 3, reason: 'piece-unavailable' });
    const alone = quiet({ availability: [0, 0, 0, 0], announced: [0, 0, 0, 0], connectedPeers: 0, responsible: [true, true, true, true], unavailableFor: [9e9, 9e9, 9e9, 9e9] });
    expect(assist({ ...alone, peerlessFor: TIMINGS.noPeersMs - 1 })).toBeUndefined();
    expect(assist({ ...alone, peerlessFor: TIMINGS.noPeersMs })).toEqual({ index: 0, reason: 'no-peers' });
  });

  test('with peers connected, one fetch at a time (slow peers excepted); alone, as many as the swarm allows', () => {
    const busy = seedOnly({ responsible: [true, true, true, true], inFlight: 1 });
    expect(assist(busy)).toBeUndefined();
    expect(assist({ ...busy, availability: [1, 0, 1, 0], announced: [0, 0, 0, 0] })).toBeUndefined();
    expect(assist({ ...busy, peerRate: 10, slowFor: TIMINGS.slowMs })).toMatchObject({ reason: 'slow-peers' });
    const alone = quiet({ availability: [0, 0, 0, 0], announced: [0, 0, 0, 0], connectedPeers: 0, responsible: [true, true, true, true], unavailableFor: [9e9, 9e9, 9e9, 9e9], inFlight: 3 });
    expect(assist({ ...alone, peerlessFor: TIMINGS.noPeersMs })).toEqual({ index: 0, reason: 'no-peers' });
  });

  test('only assist shares with the origin', () => {
    expect(Object.fromEntries(Object.entries(WEBSEEDS).map(([name, make]) => [name, make().sharesWithOrigin]))).toEqual({ assist: true, fallback: false, never: false });
  });
});

describe('FallbackWebseed', () => {
  test('peers first: nothing while they hold every wanted piece', () => {
    expect(next(quiet())).toBeUndefined();
  });

  test('a piece nobody holds is fetched at once by the peer responsible for it', () => {
    const c = quiet({ availability: [1, 0, 1, 0], responsible: [false, false, false, true] });
    expect(next(c)).toEqual({ index: 3, reason: 'piece-unavailable' });
  });

  test('the others wait for the responsible peer while it makes progress; once it went quiet for unavailableMs, they fetch it too', () => {
    const c = quiet({ availability: [1, 0, 1, 1], quietFor: [0, TIMINGS.unavailableMs, 0, 0] });
    expect(next({ ...c, unavailableFor: [0, TIMINGS.unavailableMs - 1, 0, 0] })).toBeUndefined();
    expect(next({ ...c, unavailableFor: [0, TIMINGS.unavailableMs, 0, 0] })).toEqual({ index: 1, reason: 'piece-unavailable' });
    expect(next({ ...c, unavailableFor: [0, 9e9, 0, 0], quietFor: [0, TIMINGS.unavailableMs - 1, 0, 0] })).toBeUndefined();
  });

  test('among peers as empty as we are, each fetches its own share: no-peers waits for no peer at all', () => {
    const empty = quiet({ availability: [0, 0, 0, 0], connectedPeers: 2, peerlessFor: 9e9 });
    expect(next(empty)).toBeUndefined();
    expect(next({ ...empty, responsible: [false, false, true, false] })).toEqual({ index: 2, reason: 'piece-unavailable' });
  });

  test('alone: the origin after noPeersMs', () => {
    const alone = quiet({ availability: [0, 0, 0, 0], connectedPeers: 0, unavailableFor: [9e9, 9e9, 9e9, 9e9], responsible: [true, true, true, true] });
    expect(next({ ...alone, peerlessFor: TIMINGS.noPeersMs - 1 })).toBeUndefined();
    expect(next({ ...alone, peerlessFor: TIMINGS.noPeersMs })).toEqual({ index: 0, reason: 'no-peers' });
  });

  test('noPeersMs = 0 means "as soon as peerless", not "always"', () => {
    const timings = { ...TIMINGS, noPeersMs: 0 };
    expect(next(quiet(), timings)).toBeUndefined();
    expect(next(quiet({ availability: [0, 0, 0, 0], connectedPeers: 0, peerlessFor: 0 }), timings)).toEqual({ index: 0, reason: 'no-peers' });
  });

  test('slow peers: the rarest wanted piece after slowMs below the threshold', () => {
    const c = quiet({ availability: [3, 2, 1, 2], peerRate: 10 });
    expect(next({ ...c, slowFor: TIMINGS.slowMs - 1 })).toBeUndefined();
    expect(next({ ...c, slowFor: TIMINGS.slowMs })).toEqual({ index: 2, reason: 'slow-peers' });
  });

  test('slow-peers only when the swarm measures a threshold (slowFor set), even with slowMs = 0', () => {
    expect(next(quiet({ peerRate: 0 }), { ...TIMINGS, slowMs: 0 })).toBeUndefined();
    expect(next(quiet({ peerRate: 0, slowFor: 0 }), { ...TIMINGS, slowMs: 0 })).toEqual({ index: 0, reason: 'slow-peers' });
  });

  test('every decision is justified by its reason, and a justified fetch is never skipped', () => {
    fc.assert(
      fc.property(arbWebseedCase, (c) => {
        const got = next(c);
        const wanted = c.wanted.flatMap((w, i) => (w ? [i] : []));
        const unavailableDue = wanted.filter(
          (i) =>
            c.connectedPeers > 0 &&
            c.availability[i] === 0 &&
            (c.responsible[i] === true || ((c.unavailableFor[i] as number) >= TIMINGS.unavailableMs && (c.quietFor[i] as number) >= TIMINGS.unavailableMs)),
        );
        const peerless = c.connectedPeers === 0 && c.peerlessFor !== undefined && c.peerlessFor >= TIMINGS.noPeersMs;
        const slow = c.slowFor !== undefined && c.slowFor >= TIMINGS.slowMs;
        const rarest = Math.min(...wanted.map((i) => c.availability[i] as number));
        if (unavailableDue.length > 0) {
          expect(got?.reason).toBe('piece-unavailable');
          expect(unavailableDue).toContain(got?.index);
          // The responsible peer's own pieces go first.
          if (unavailableDue.some((i) => c.responsible[i])) expect(c.responsible[got?.index as number]).toBe(true);
        } else if (wanted.length > 0 && (peerless || slow)) {
          expect(got?.reason).toBe(peerless ? 'no-peers' : 'slow-peers');
          expect(c.availability[got?.index as number]).toBe(rarest);
        } else {
          expect(got).toBeUndefined();
        }
      }),
    );
  });

  test('timings come from the configuration', () => {
    const policy = policiesOf(swarmConfig({ webseedNoPeersMs: 100, webseedUnavailableMs: 200, webseedSlowMs: 300 })).webseed;
    const alone = quiet({ availability: [0, 0, 0, 0], connectedPeers: 0 });
    expect(policy.next(webseedContext({ ...alone, peerlessFor: 99 }))).toBeUndefined();
    expect(policy.next(webseedContext({ ...alone, peerlessFor: 100 }))?.reason).toBe('no-peers');
    expect(policy.next(webseedContext(quiet({ availability: [1, 0, 1, 1], unavailableFor: [0, 200, 0, 0], quietFor: [0, 200, 0, 0] })))?.reason).toBe('piece-unavailable');
    expect(policy.next(webseedContext(quiet({ slowFor: 300 })))?.reason).toBe('slow-peers');
  });
});

describe('NeverWebseed', () => {
  test('never uses the origin, whatever the swarm looks like', () => {
    fc.assert(
      fc.property(arbWebseedCase, (c) => {
        expect(new NeverWebseed().next()).toBeUndefined();
        expect(WEBSEEDS.never().next(webseedContext(c))).toBeUndefined();
      }),
    );
  });
});
