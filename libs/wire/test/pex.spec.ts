import fc from 'fast-check';
import { decode, encode, type BDict, type BValue } from '@shoal/torrent';
import {
  buildPexMessage,
  decodeExtendedPayload,
  DEFAULT_PEX_LIMITS,
  encodeMessage,
  MAX_PEX_ADDED,
  MAX_PEX_DROPPED,
  parsePexMessage,
  pexEndpointKey,
  PexFlag,
  PexState,
  resolvePexLimits,
  WireError,
  WireUsageError,
  type PexContact,
  type PexEndpoint,
  type PexMessage,
} from '../src';
import { openConnection } from './support';

const v4 = (a: number, b: number, c: number, d: number, port: number, flags = 0): PexContact => ({ ip: Buffer.from([a, b, c, d]), port, flags });
const v6 = (last: number, port: number, flags = 0): PexContact => {
  const ip = Buffer.alloc(16);
  ip[0] = 0x20;
  ip[1] = 0x01;
  ip[15] = last;
  return { ip, port, flags };
};
/** ::ffff:a.b.c.d */
const mapped = (a: number, b: number, c: number, d: number, port: number): PexContact => ({
  ip: Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]),
  port,
  flags: 0,
});

const bytes = (text: string) => Buffer.from(text, 'latin1');
const parseText = (text: string) => parsePexMessage(decode(bytes(text)) as BDict);
const keyOf = (e: PexEndpoint) => pexEndpointKey(e);
const keys = (list: PexEndpoint[]) => list.map(keyOf).sort();

function pexCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return e.code;
  }
}

/** n distinct IPv4 contacts 10.0.x.y:6881. */
function many(n: number, offset = 0): PexContact[] {
  return Array.from({ length: n }, (_, i) => v4(10, 0, (i + offset) >> 8, (i + offset) & 0xff, 6881));
}

describe('ut_pex codec (BEP 11)', () => {
  it('builds all six fields in canonical order, as libtorrent does', () => {
    const dict = buildPexMessage({
      added: [v4(10, 0, 0, 7, 6881, PexFlag.seed | PexFlag.reachable), v6(1, 443)],
      dropped: [v4(10, 0, 0, 9, 0x1234)],
    });
    const six = Buffer.concat([Buffer.from([0x20, 0x01]), Buffer.alloc(13), Buffer.from([1, 0x01, 0xbb])]);
    expect(encode(dict)).toEqual(
      Buffer.concat([
        bytes('d5:added6:\x0a\x00\x00\x07\x1a\xe17:added.f1:\x126:added618:'),
        six,
        bytes('8:added6.f1:\x007:dropped6:\x0a\x00\x00\x09\x12\x348:dropped60:e'),
      ]),
    );
    const parsed = parsePexMessage(dict);
    expect(keys(parsed.added)).toEqual(keys([v4(10, 0, 0, 7, 6881), v6(1, 443)]));
    expect(parsed.added.map((c) => c.flags)).toEqual([PexFlag.seed | PexFlag.reachable, 0]);
    expect(keys(parsed.dropped)).toEqual(keys([v4(10, 0, 0, 9, 0x1234)]));
  });

  it("reads libtorrent's first message (empty dropped fields, flags for every added contact)", () => {
    const msg = parseText('d5:added12:\x7f\x00\x00\x01\x1a\xe1\x0a\x01\x02\x03\x1a\xe27:added.f2:\x02\x106:added60:8:added6.f0:7:dropped0:8:dropped60:e');
    expect(msg.added).toEqual([
      { ip: Buffer.from([127, 0, 0, 1]), port: 6881, flags: PexFlag.seed },
      { ip: Buffer.from([10, 1, 2, 3]), port: 6882, flags: PexFlag.reachable },
    ]);
    expect(msg.dropped).toEqual([]);
  });

  it('takes added without added.f (flags 0), only dropped, and ignores unknown keys', () => {
    expect(parseText('d5:added6:\x0a\x00\x00\x01\x00\x50e').added).toEqual([{ ip: Buffer.from([10, 0, 0, 1]), port: 80, flags: 0 }]);
    expect(parseText('d7:dropped6:\x0a\x00\x00\x01\x00\x50e').dropped).toEqual([{ ip: Buffer.from([10, 0, 0, 1]), port: 80 }]);
    expect(parseText('d5:added0:1:xi5e7:zzzlongli1eee').added).toEqual([]);
  });

  it(`accepts ${MAX_PEX_ADDED} added and ${MAX_PEX_DROPPED} dropped contacts (libtorrent's max_peer_entries)`, () => {
    const msg = parsePexMessage(buildPexMessage({ added: many(MAX_PEX_ADDED), dropped: many(MAX_PEX_DROPPED, 1000) }));
    expect(msg.added).toHaveLength(MAX_PEX_ADDED);
    expect(msg.dropped).toHaveLength(MAX_PEX_DROPPED);
  });

  const compact = (n: number, offset = 0) => Buffer.concat(many(n, offset).map((c) => Buffer.concat([c.ip, Buffer.from([0x1a, 0xe1])])));
  it.each<[string, BDict]>([
    ['no contact field at all', new Map()],
    ['only flags', new Map([['added.f', Buffer.alloc(0)]])],
    ['added is an integer', new Map<string, BValue>([['added', 6]])],
    ['added.f is a list', new Map<string, BValue>([['added', compact(1)], ['added.f', [1]]])],
    ['dropped6 is a dictionary', new Map<string, BValue>([['dropped6', new Map()]])],
    ['added of 7 bytes', new Map([['added', Buffer.alloc(7, 1)]])],
    ['added6 of 17 bytes', new Map([['added6', Buffer.alloc(17, 1)]])],
    ['dropped of 5 bytes', new Map([['dropped', Buffer.alloc(5, 1)]])],
    ['dropped6 of 19 bytes', new Map([['dropped6', Buffer.alloc(19, 1)]])],
    ['added.f shorter than added', new Map([['added', compact(2)], ['added.f', Buffer.alloc(1)]])],
    ['added.f longer than added', new Map([['added', compact(2)], ['added.f', Buffer.alloc(3)]])],
    ['added6.f without added6', new Map([['added6.f', Buffer.alloc(1)], ['dropped', Buffer.alloc(0)]])],
    [`${MAX_PEX_ADDED + 1} added`, new Map([['added', compact(MAX_PEX_ADDED + 1)]])],
    [`${MAX_PEX_ADDED} added IPv4 + 1 added IPv6`, new Map([['added', compact(MAX_PEX_ADDED)], ['added6', Buffer.alloc(18, 7)]])],
    [`${MAX_PEX_DROPPED + 1} dropped`, new Map([['dropped', compact(MAX_PEX_DROPPED + 1)]])],
    ['a contact added twice', new Map([['added', Buffer.concat([compact(1), compact(1)])]])],
    ['a contact dropped twice', new Map([['dropped', Buffer.concat([compact(1), compact(1)])]])],
    ['a contact added and dropped', new Map([['added', compact(1)], ['dropped', compact(1)]])],
    [
      'one host as IPv4 and as IPv4-mapped IPv6',
      new Map([
        ['added', Buffer.from([10, 0, 0, 0, 0x1a, 0xe1])],
        ['added6', Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff, 10, 0, 0, 0, 0x1a, 0xe1])])],
      ]),
    ],
  ])('rejects %s with WIRE_BAD_PEX', (_, dict) => {
    expect(pexCode(() => parsePexMessage(dict))).toBe('WIRE_BAD_PEX');
  });

  it('refuses to build what it would reject', () => {
    const usage = (message: PexMessage) => expect(() => buildPexMessage(message)).toThrow(WireUsageError);
    usage({ added: many(MAX_PEX_ADDED + 1), dropped: [] });
    usage({ added: [], dropped: many(MAX_PEX_DROPPED + 1) });
    usage({ added: [v4(10, 0, 0, 1, 1), v4(10, 0, 0, 1, 1)], dropped: [] });
    usage({ added: [v4(10, 0, 0, 1, 1)], dropped: [mapped(10, 0, 0, 1, 1)] });
    usage({ added: [{ ip: Buffer.alloc(5), port: 1, flags: 0 }], dropped: [] });
    usage({ added: [v4(10, 0, 0, 1, 0)], dropped: [] });
    usage({ added: [v4(10, 0, 0, 1, 65536)], dropped: [] });
    usage({ added: [v4(10, 0, 0, 1, 1, 256)], dropped: [] });
    usage({ added: [v4(10, 0, 0, 1, 1, 1.5)], dropped: [] });
  });

  it('writes IPv4-mapped IPv6 as IPv4', () => {
    const dict = buildPexMessage({ added: [mapped(192, 168, 1, 2, 7000)], dropped: [] });
    expect(dict.get('added')).toEqual(Buffer.from([192, 168, 1, 2, 0x1b, 0x58]));
    expect(dict.get('added6')).toEqual(Buffer.alloc(0));
  });

  const endpoint = fc.oneof(
    fc.record({ ip: fc.uint8Array({ minLength: 4, maxLength: 4 }), port: fc.integer({ min: 1, max: 65535 }) }),
    fc.record({ ip: fc.uint8Array({ minLength: 16, maxLength: 16 }), port: fc.integer({ min: 1, max: 65535 }) }),
  );
  const message: fc.Arbitrary<PexMessage> = fc
    .uniqueArray(fc.tuple(endpoint, fc.nat(255), fc.boolean()), { maxLength: 60, selector: ([e]) => pexEndpointKey(e) })
    .map((entries) => ({
      added: entries.filter(([, , isAdded]) => isAdded).map(([e, flags]) => ({ ...e, flags })),
      dropped: entries.filter(([, , isAdded]) => !isAdded).map(([e]) => e),
    }));

  it('round-trips any valid message through bencode', () => {
    fc.assert(
      fc.property(message, (msg) => {
        const parsed = parsePexMessage(decodeExtendedPayload(encode(buildPexMessage(msg))));
        const byKey = (list: PexContact[]) => new Map(list.map((c) => [pexEndpointKey(c), c.flags]));
        expect(byKey(parsed.added)).toEqual(byKey(msg.added));
        expect(keys(parsed.dropped)).toEqual(keys(msg.dropped));
      }),
      { numRuns: 300 },
    );
  });

  /** Decoding bytes as the connection does: only typed errors come out. */
  function decodeBytes(input: Buffer): void {
    try {
      parsePexMessage(decodeExtendedPayload(input));
    } catch (e) {
      expect(e).toBeInstanceOf(WireError);
      expect(['WIRE_BAD_EXTENDED', 'WIRE_BAD_PEX']).toContain((e as WireError).code);
    }
  }

  it('fuzz: garbage bytes give WIRE_BAD_EXTENDED or WIRE_BAD_PEX only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (garbage) => decodeBytes(Buffer.from(garbage))),
      { numRuns: 1000 },
    );
  });

  it('fuzz: truncated and mutated valid messages give typed errors only', () => {
    fc.assert(
      fc.property(
        message,
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }),
        (msg, cut, flips) => {
          const valid = encode(buildPexMessage(msg));
          decodeBytes(valid.subarray(0, cut % (valid.length + 1)));
          const mutated = Buffer.from(valid);
          for (const [at, value] of flips) mutated[at % mutated.length] = value;
          decodeBytes(mutated);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('fuzz: dictionaries with PEX keys of any type and length give WIRE_BAD_PEX or a message within the caps', () => {
    const field = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a): BValue => Buffer.from(a)),
      fc.nat(2 * MAX_PEX_ADDED).map((n): BValue => Buffer.alloc(n * 6, 3)),
      fc.nat(2 * MAX_PEX_ADDED).map((n): BValue => Buffer.alloc(n * 18, 5)),
      fc.integer().map((n): BValue => n),
      fc.constant<BValue>([]),
      fc.constant<BValue>(new Map()),
    );
    const dict = fc
      .uniqueArray(fc.tuple(fc.constantFrom('added', 'added.f', 'added6', 'added6.f', 'dropped', 'dropped6', 'x'), field), { selector: ([k]) => k })
      .map((entries) => new Map(entries));
    fc.assert(
      fc.property(dict, (d) => {
        let parsed: PexMessage | undefined;
        const code = pexCode(() => {
          parsed = parsePexMessage(d);
        });
        if (code !== undefined) expect(code).toBe('WIRE_BAD_PEX');
        else {
          expect(parsed?.added.length).toBeLessThanOrEqual(MAX_PEX_ADDED);
          expect(parsed?.dropped.length).toBeLessThanOrEqual(MAX_PEX_DROPPED);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('an oversized payload is refused before it is decoded', () => {
    expect(pexCode(() => decodeExtendedPayload(encode(new Map([['added', Buffer.alloc(20_000 * 6)]]))))).toBe('WIRE_BAD_EXTENDED');
  });

  it('on a connection, any well-framed ut_pex dictionary is an extension event, never a close', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
        const conn = openConnection();
        conn.receive(encodeMessage({ type: 'extended', id: 1, payload: new Map([['added', Buffer.from(raw)]]) }), 1);
        const { events } = conn.drain();
        expect(conn.closed).toBe(false);
        expect(events).toEqual([{ type: 'extension', name: 'ut_pex', payload: expect.any(Map) }]);
      }),
      { numRuns: 200 },
    );
  });
});

describe('PexState: what to send', () => {
  const T0 = 1_000_000;
  const open = (limits = {}) => new PexState({ now: T0, limits });
  const sentOf = (payload: BDict | undefined): PexMessage => {
    if (!payload) throw new Error('expected a message');
    return parsePexMessage(payload);
  };

  it('waits firstMessageDelayMs, then sends every live peer but the recipient, with their flags', () => {
    const pex = open();
    const live = [v4(10, 0, 0, 1, 6881, PexFlag.seed), v4(10, 0, 0, 2, 6881, PexFlag.reachable), v6(3, 6881)];
    const recipient = { ip: Buffer.from([10, 0, 0, 2]), port: 6881 };
    expect(pex.nextSendAt).toBe(T0 + DEFAULT_PEX_LIMITS.firstMessageDelayMs);
    expect(pex.poll(T0 + DEFAULT_PEX_LIMITS.firstMessageDelayMs - 1, live, recipient)).toBeUndefined();
    const first = sentOf(pex.poll(T0 + DEFAULT_PEX_LIMITS.firstMessageDelayMs, live, recipient));
    expect(first.added.map((c) => [keyOf(c), c.flags])).toEqual([
      [keyOf(live[0] as PexContact), PexFlag.seed],
      [keyOf(live[2] as PexContact), 0],
    ]);
    expect(first.dropped).toEqual([]);
    expect(pex.stats).toEqual({ sent: 1, received: 0, ignored: 0 });
  });

  it('never sends the recipient, whatever its spelling', () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const first = sentOf(pex.poll(T0, [v4(10, 0, 0, 1, 6881), v4(10, 0, 0, 2, 6881)], mapped(10, 0, 0, 1, 6881)));
    expect(keys(first.added)).toEqual(keys([v4(10, 0, 0, 2, 6881)]));
  });

  it('sends at most one message per sendIntervalMs, each with the change since the previous one only', () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const a = v4(10, 0, 0, 1, 1);
    const b = v4(10, 0, 0, 2, 2);
    const c = v4(10, 0, 0, 3, 3);
    expect(keys(sentOf(pex.poll(T0, [a, b])).added)).toEqual(keys([a, b]));
    // c connects, a disconnects: nothing goes out before a minute has passed.
    for (const dt of [1, 1000, 30_000, 59_999]) expect(pex.poll(T0 + dt, [b, c])).toBeUndefined();
    const second = sentOf(pex.poll(T0 + 60_000, [b, c]));
    expect(keys(second.added)).toEqual(keys([c]));
    expect(keys(second.dropped)).toEqual(keys([a]));
    expect(pex.nextSendAt).toBe(T0 + 120_000);
  });

  it('sends nothing when nothing changed, without spending the interval', () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const a = v4(10, 0, 0, 1, 1);
    pex.poll(T0, [a]);
    expect(pex.poll(T0 + 60_000, [a])).toBeUndefined();
    expect(pex.poll(T0 + 90_000, [a])).toBeUndefined();
    const b = v4(10, 0, 0, 2, 2);
    expect(keys(sentOf(pex.poll(T0 + 90_001, [a, b])).added)).toEqual(keys([b]));
    expect(pex.stats.sent).toBe(2);
  });

  it('elides a peer that came and went between two messages', () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const a = v4(10, 0, 0, 1, 1);
    pex.poll(T0, [a]);
    expect(pex.poll(T0 + 10_000, [a, v4(10, 0, 0, 9, 9)])).toBeUndefined();
    expect(pex.poll(T0 + 60_000, [a])).toBeUndefined();
  });

  it(`bounds the counts: ${MAX_PEX_ADDED} added in the first message, then ${DEFAULT_PEX_LIMITS.maxAddedPerMessage} added / ${DEFAULT_PEX_LIMITS.maxDroppedPerMessage} dropped`, () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const all = many(230);
    expect(sentOf(pex.poll(T0, all)).added).toHaveLength(MAX_PEX_ADDED);
    expect(sentOf(pex.poll(T0 + 60_000, all)).added).toHaveLength(50);
    expect(sentOf(pex.poll(T0 + 120_000, all)).added).toHaveLength(50);
    expect(sentOf(pex.poll(T0 + 180_000, all)).added).toHaveLength(30);
    // Everyone leaves: 230 dropped, 50 at a time.
    const drops = [0, 1, 2, 3, 4].map((i) => sentOf(pex.poll(T0 + 240_000 + i * 60_000, [])).dropped.length);
    expect(drops).toEqual([50, 50, 50, 50, 30]);
    expect(pex.poll(T0 + 600_000, [])).toBeUndefined();
  });

  it('ignores duplicate live entries and rejects malformed ones as local misuse', () => {
    const pex = open({ firstMessageDelayMs: 0 });
    const a = v4(10, 0, 0, 1, 1);
    expect(sentOf(pex.poll(T0, [a, a, mapped(10, 0, 0, 1, 1)])).added).toHaveLength(1);
    expect(() => open({ firstMessageDelayMs: 0 }).poll(T0, [{ ip: Buffer.alloc(3), port: 1, flags: 0 }])).toThrow(WireUsageError);
    expect(() => open({ firstMessageDelayMs: 0 }).poll(T0, [v4(10, 0, 0, 1, 0)])).toThrow(WireUsageError);
  });

  it('checks its limits', () => {
    expect(resolvePexLimits()).toEqual(DEFAULT_PEX_LIMITS);
    for (const bad of [{ sendIntervalMs: -1 }, { firstMessageDelayMs: 1.5 }, { maxAddedPerMessage: 0 }, { maxAddedPerMessage: MAX_PEX_ADDED + 1 }, { maxDroppedPerMessage: MAX_PEX_DROPPED + 1 }]) {
      expect(() => resolvePexLimits(bad)).toThrow(WireUsageError);
    }
    expect(() => new PexState({ now: Number.NaN })).toThrow(WireUsageError);
  });

  it('property: a receiver applying every message sees the live set minus itself; messages a minute apart, within the caps', () => {
    const universe = [...many(70), v6(1, 1), v6(2, 2), mapped(10, 0, 0, 5, 6881)];
    const recipient = universe[3] as PexContact;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 90_000 }), fc.array(fc.boolean(), { minLength: universe.length, maxLength: universe.length })), {
          minLength: 1,
          maxLength: 25,
        }),
        (steps) => {
          const pex = open();
          const view = new Map<string, number>();
          let now = T0;
          let lastSent: number | undefined;
          let live: PexContact[] = [];
          const apply = (payload: BDict | undefined) => {
            if (!payload) return;
            const msg = parsePexMessage(payload);
            expect(msg.added.length).toBeLessThanOrEqual(lastSent === undefined ? MAX_PEX_ADDED : 50);
            expect(msg.dropped.length).toBeLessThanOrEqual(50);
            if (lastSent !== undefined) expect(now - lastSent).toBeGreaterThanOrEqual(60_000);
            else expect(now - T0).toBeGreaterThanOrEqual(DEFAULT_PEX_LIMITS.firstMessageDelayMs);
            lastSent = now;
            for (const c of msg.added) {
              expect(keyOf(c)).not.toBe(keyOf(recipient));
              expect(view.has(keyOf(c))).toBe(false);
              view.set(keyOf(c), c.flags);
            }
            for (const e of msg.dropped) expect(view.delete(keyOf(e))).toBe(true);
          };
          for (const [dt, mask] of steps) {
            now += dt;
            live = universe.filter((_, i) => mask[i]);
            apply(pex.poll(now, live, recipient));
          }
          // Quiet from here on: within a few intervals the receiver's view converges.
          for (let i = 0; i < 4; i++) {
            now += 60_000;
            apply(pex.poll(now, live, recipient));
          }
          const expected = new Set(live.map(keyOf).filter((k) => k !== keyOf(recipient)));
          expect(new Set(view.keys())).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('PexState: what to make of received messages', () => {
  const T0 = 5_000;
  const payload = (added: PexContact[], dropped: PexEndpoint[] = []) => buildPexMessage({ added, dropped });
  const lan = Buffer.from([10, 0, 0, 99]);

  it('returns the contacts of an accepted message and counts it', () => {
    const pex = new PexState({ now: 0 });
    const receipt = pex.receive(payload([v4(10, 0, 0, 1, 6881, PexFlag.seed), v6(7, 443)], [v4(10, 0, 0, 2, 6881)]), T0, lan);
    expect(receipt).toEqual({
      accepted: true,
      added: [v4(10, 0, 0, 1, 6881, PexFlag.seed), v6(7, 443)],
      dropped: [{ ip: Buffer.from([10, 0, 0, 2]), port: 6881 }],
      skipped: 0,
    });
    expect(pex.stats).toEqual({ sent: 0, received: 1, ignored: 0 });
  });

  it('ignores (and counts) messages sooner than minReceiveIntervalMs after the last accepted one', () => {
    const pex = new PexState({ now: 0 });
    const msg = payload([v4(10, 0, 0, 1, 1)]);
    expect(pex.receive(msg, T0, lan).accepted).toBe(true);
    const early = pex.receive(msg, T0 + 29_999, lan);
    expect(early.accepted).toBe(false);
    expect(!early.accepted && early.reason.code).toBe('WIRE_PEX_TOO_FREQUENT');
    // Measured from the last accepted message, so a peer sending every 20 s is heard every 40 s.
    expect(pex.receive(msg, T0 + 30_000, lan).accepted).toBe(true);
    expect(pex.stats).toEqual({ sent: 0, received: 2, ignored: 1 });
  });

  it('ignores (and counts) messages that break BEP 11; they do not start the receive interval', () => {
    const pex = new PexState({ now: 0 });
    const bad = pex.receive(new Map([['added', Buffer.alloc(7)]]), T0, lan);
    expect(!bad.accepted && bad.reason).toBeInstanceOf(WireError);
    expect(!bad.accepted && bad.reason.code).toBe('WIRE_BAD_PEX');
    expect(pex.receive(payload([v4(10, 0, 0, 1, 1)]), T0 + 1, lan).accepted).toBe(true);
    expect(pex.stats).toEqual({ sent: 0, received: 1, ignored: 1 });
  });

  it('skips contacts no one should dial; loopback only from a sender on loopback', () => {
    const junk = [
      v4(0, 0, 0, 0, 1),
      v4(0, 1, 2, 3, 1),
      v4(224, 0, 0, 1, 1),
      v4(240, 0, 0, 1, 1),
      v4(255, 255, 255, 255, 1),
      { ip: Buffer.from([0xff, 2, ...Buffer.alloc(13), 1]), port: 1, flags: 0 },
      { ip: Buffer.alloc(16), port: 1, flags: 0 },
    ];
    const loopback = [v4(127, 0, 0, 1, 7000), { ip: Buffer.from([...Buffer.alloc(15), 1]), port: 7000, flags: 0 }];
    const good = v4(192, 168, 1, 1, 6881);
    // buildPexMessage refuses port 0: append such a contact by hand.
    const withPortZero = (): BDict => {
      const dict = payload([...junk, ...loopback, good]);
      dict.set('added', Buffer.concat([dict.get('added') as Buffer, Buffer.from([10, 0, 0, 1, 0, 0])]));
      dict.set('added.f', Buffer.concat([dict.get('added.f') as Buffer, Buffer.from([0])]));
      return dict;
    };
    const fromLan = new PexState({ now: 0 }).receive(withPortZero(), T0, lan);
    expect(fromLan).toMatchObject({ accepted: true, added: [good], skipped: junk.length + loopback.length + 1 });
    const fromLoopback = new PexState({ now: 0 }).receive(withPortZero(), T0, mapped(127, 0, 0, 1, 1).ip);
    expect(fromLoopback).toMatchObject({ accepted: true, skipped: junk.length + 1 });
    expect(fromLoopback.accepted && keys(fromLoopback.added)).toEqual(keys([...loopback, good]));
  });

  it('gives IPv4-mapped IPv6 contacts as IPv4', () => {
    const dict = new Map([['added6', Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff, 10, 1, 2, 3, 0x1a, 0xe1])])]]);
    expect(new PexState({ now: 0 }).receive(dict, T0, lan)).toMatchObject({ accepted: true, added: [v4(10, 1, 2, 3, 6881)] });
  });
});
