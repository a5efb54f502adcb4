import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { AnnounceRequest, AnnounceResponse, PeerMessage } from '@shoal/proto';
import { type Location, proximity } from '@shoal/topology';
import { type Announcer, TrackerError, type TrackerOptions, TrackerService } from '../src/tracker';

/**
 * Against a real Redis (REDIS_URL, default redis://127.0.0.1:6379). Every key lives under a
 * prefix unique to this run, and is deleted afterwards.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `shoal-test:${process.pid}:${randomBytes(4).toString('hex')}:`;
const T0 = 1_700_000_000_000;

let redis: Redis;

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
});

afterAll(async () => {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
});

class FakeClock {
  now = T0;
  readonly read = (): number => this.now;
  tick(ms: number): void {
    this.now += ms;
  }
}

/** mulberry32: seeded uniform [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPTIONS: TrackerOptions = {
  intervalSeconds: 30,
  peerTtlSeconds: 90,
  defaultNumwant: 50,
  maxNumwant: 200,
  remoteShare: 0,
  // Fresh reads unless a test is about the snapshot (those set snapshotMs and move the clock).
  snapshotMs: 0,
  keyPrefix: PREFIX,
};

function tracker(options: Partial<TrackerOptions> = {}, clock: () => number = new FakeClock().read, client: Redis = redis): TrackerService {
  return new TrackerService(client, { ...OPTIONS, ...options }, clock, mulberry32(7));
}

const newSwarm = (): Buffer => randomBytes(20);
const loc = (region: string, zone: string, site: string): Location => ({ region, zone, site });
const agent = (agentId: string, location: Location = loc('eu', 'eu-1', 'ams')): Announcer => ({ agentId, location });

let nextHost = 1;
function request(infoHash: Buffer, over: Partial<AnnounceRequest> = {}): AnnounceRequest {
  const host = nextHost++;
  return {
    infoHash,
    port: 6881,
    addresses: [`10.${(host >> 16) & 255}.${(host >> 8) & 255}.${host & 255}`],
    left: 1000,
    uploaded: 0,
    downloaded: 0,
    event: 'ANNOUNCE_EVENT_NONE',
    numwant: 0,
    ...over,
  };
}

const ids = (response: AnnounceResponse): string[] => response.peers.map((p) => p.agentId).sort();

async function expectTrackerError(promise: Promise<unknown>, code: string, field?: string): Promise<TrackerError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrackerError);
  const trackerError = err as TrackerError;
  expect(trackerError.code).toBe(code);
  if (field !== undefined) expect(trackerError.field).toBe(field);
  return trackerError;
}

describe('TrackerService (real Redis)', () => {
  test('an announce stores one compact record under the documented keys, with expiry and PEXPIRE', async () => {
    const clock = new FakeClock();
    const t = tracker({}, clock.read);
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    expect(keys.peers).toBe(`${PREFIX}tracker:{${hash.toString('hex')}}:peers`);

    const response = await t.announce(agent('a1', loc('eu', 'eu-1', 'ams')), request(hash, { addresses: ['10.0.0.1', '2001:db8::1'], left: 0, port: 7000 }), '10.9.9.9');
    expect(response).toEqual({ intervalSeconds: 30, peers: [], seeders: 1, leechers: 0 });

    expect(JSON.parse((await redis.hget(keys.records, 'a1')) as string)).toEqual({
      addresses: ['10.0.0.1', '2001:db8::1'],
      port: 7000,
      seed: true,
      region: 'eu',
      zone: 'eu-1',
      site: 'ams',
    });
    expect(Number(await redis.zscore(keys.peers, 'a1'))).toBe(T0 + 90_000);
    expect(Number(await redis.zscore(keys.seeds, 'a1'))).toBe(T0 + 90_000);
    for (const key of [keys.peers, keys.records, keys.seeds]) {
      const pttl = await redis.pttl(key);
      expect(pttl).toBeGreaterThan(80_000);
      expect(pttl).toBeLessThanOrEqual(90_000);
    }
  });

  test('identity: a request cannot touch another agent\'s record, whatever it claims', async () => {
    const t = tracker();
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    await t.announce(agent('alice'), request(hash, { addresses: ['10.1.1.1'], port: 7001, left: 0 }), '10.1.1.1');
    const aliceRecord = await redis.hget(keys.records, 'alice');
    const aliceScore = await redis.zscore(keys.peers, 'alice');

    // Mallory replays Alice's addresses and port, and smuggles extra fields naming Alice.
    const spoof = { ...request(hash, { addresses: ['10.1.1.1'], port: 7001, left: 5 }), agentId: 'alice', agent_id: 'alice', peerId: 'alice' };
    await t.announce(agent('mallory'), spoof as AnnounceRequest, '10.1.1.1');
    await t.announce(agent('mallory'), { ...spoof, event: 'ANNOUNCE_EVENT_STOPPED' } as AnnounceRequest, '10.1.1.1');
    await t.announce(agent('mallory'), spoof as AnnounceRequest, '10.1.1.1');

    expect(await redis.hget(keys.records, 'alice')).toBe(aliceRecord);
    expect(await redis.zscore(keys.peers, 'alice')).toBe(aliceScore);
    expect(await redis.zscore(keys.seeds, 'alice')).not.toBeNull();
    expect(JSON.parse((await redis.hget(keys.records, 'mallory')) as string)).toMatchObject({ addresses: ['10.1.1.1'], port: 7001, seed: false });
    expect((await redis.zrange(keys.peers, 0, -1)).sort()).toEqual(['alice', 'mallory']);

    // Bob sees both as separate peers; Alice is still a seed.
    const bob = await t.announce(agent('bob'), request(hash), '10.2.2.2');
    expect(ids(bob)).toEqual(['alice', 'mallory']);
    expect(bob.peers.find((p) => p.agentId === 'alice')).toMatchObject({ seed: true, port: 7001 });
    expect(bob.seeders).toBe(1);
    expect(bob.leechers).toBe(2);
  });

  test('ranking: same site, then zone, then region, then the rest, with the remote quota', async () => {
    const hash = newSwarm();
    const home = loc('eu', 'eu-1', 'ams');
    const setup = tracker();
    const groups: [string, Location][] = [
      ['site', home],
      ['zone', loc('eu', 'eu-1', 'rtm')],
      ['region', loc('eu', 'eu-2', 'fra')],
      ['remote', loc('us', 'us-1', 'nyc')],
    ];
    for (const [name, location] of groups) {
      for (let i = 0; i < 6; i++) await setup.announce(agent(`${name}-${i}`, location), request(hash), '10.0.0.1');
    }
    const tiers = (r: AnnounceResponse) => r.peers.map((p) => proximity(home, p));

    const local = tracker({ remoteShare: 0 });
    const all = await local.announce(agent('asker', home), request(hash, { numwant: 20 }), '10.0.0.2');
    expect(tiers(all)).toEqual([...Array(6).fill(3), ...Array(6).fill(2), ...Array(6).fill(1), 0, 0]);

    const quota = tracker({ remoteShare: 0.2 });
    for (let round = 0; round < 10; round++) {
      const r = await quota.announce(agent('asker', home), request(hash, { numwant: 10 }), '10.0.0.2');
      expect(tiers(r)).toEqual([3, 3, 3, 3, 3, 3, 2, 2, 0, 0]);
      expect(r.peers.every((p) => p.agentId !== 'asker')).toBe(true);
    }

    // An announcer from an unknown location gets a random sample; one from the US gets US peers first.
    const us = await local.announce(agent('yankee', loc('us', 'us-1', 'bos')), request(hash, { numwant: 6 }), '10.0.0.3');
    expect(us.peers.every((p) => p.region === 'us' && p.zone === 'us-1')).toBe(true);
  });

  test('the announcer never gets its own record back (fresh, or from a cached snapshot)', async () => {
    const clock = new FakeClock();
    const t = tracker({ snapshotMs: 60_000 }, clock.read);
    const hash = newSwarm();
    for (let i = 0; i < 10; i++) {
      const r = await t.announce(agent(`p${i}`), request(hash), '10.0.0.1');
      expect(ids(r)).not.toContain(`p${i}`);
    }
    clock.tick(60_000); // the next announce reads a snapshot holding all ten
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10; i++) {
        const r = await t.announce(agent(`p${i}`), request(hash, { numwant: 100 }), '10.0.0.1');
        expect(ids(r)).not.toContain(`p${i}`);
        expect(r.peers).toHaveLength(9);
      }
    }
  });

  test('dead peers expire (fake clock): never returned, not counted, then pruned from Redis', async () => {
    const clock = new FakeClock();
    const t = tracker({ peerTtlSeconds: 10, snapshotMs: 60_000 }, clock.read);
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    await t.announce(agent('old'), request(hash, { left: 0 }), '10.0.0.1');
    clock.tick(5_000);
    const early = await t.announce(agent('young'), request(hash), '10.0.0.2');
    expect(ids(early)).toEqual(['old']);
    expect(early).toMatchObject({ seeders: 1, leechers: 1 });

    // 'old' dies at T0 + 10 s. The cached snapshot (60 s) still holds it: filtered by expiry.
    clock.tick(5_001);
    const late = await t.announce(agent('young'), request(hash), '10.0.0.2');
    expect(ids(late)).toEqual([]);
    expect(late).toMatchObject({ seeders: 0, leechers: 1 });
    expect(await redis.zscore(keys.peers, 'old')).toBeNull();
    expect(await redis.hget(keys.records, 'old')).toBeNull();
    expect(await redis.zscore(keys.seeds, 'old')).toBeNull();

    // A fresh process (fresh snapshot) does not see it either.
    const other = tracker({ peerTtlSeconds: 10 }, clock.read);
    expect(ids(await other.announce(agent('third'), request(hash), '10.0.0.3'))).toEqual(['young']);
    expect(await other.scrape({ infoHashes: [hash] })).toEqual({ swarms: [{ infoHash: hash, seeders: 0, leechers: 2 }] });
  });

  test('pruning is bounded per announce and catches up over later announces', async () => {
    const clock = new FakeClock();
    const t = tracker({ peerTtlSeconds: 1 }, clock.read);
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    const pipeline = redis.pipeline();
    for (let i = 0; i < 150; i++) {
      pipeline.zadd(keys.peers, T0 - 1, `ghost${i}`);
      pipeline.hset(keys.records, `ghost${i}`, '{}');
    }
    await pipeline.exec();
    await t.announce(agent('a'), request(hash), '10.0.0.1');
    expect(await redis.zcard(keys.peers)).toBe(150 - 64 + 1);
    await t.announce(agent('a'), request(hash), '10.0.0.1');
    await t.announce(agent('a'), request(hash), '10.0.0.1');
    expect(await redis.zcard(keys.peers)).toBe(1);
    expect(await redis.hlen(keys.records)).toBe(1);
  });

  test('dead swarms vanish from Redis by PEXPIRE (real time)', async () => {
    const t = tracker({ peerTtlSeconds: 0.3 }, Date.now);
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    await t.announce(agent('s'), request(hash, { left: 0 }), '10.0.0.1');
    await t.announce(agent('l'), request(hash), '10.0.0.2');
    expect(await redis.exists(keys.peers, keys.records, keys.seeds)).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 450));
    expect(await redis.exists(keys.peers, keys.records, keys.seeds)).toBe(0);
    expect(await t.scrape({ infoHashes: [hash] })).toEqual({ swarms: [{ infoHash: hash, seeders: 0, leechers: 0 }] });
    expect(ids(await t.announce(agent('new'), request(hash), '10.0.0.3'))).toEqual([]);
  });

  test('STOPPED removes the announcer at once, in Redis and in this process\'s snapshot', async () => {
    const clock = new FakeClock();
    const t = tracker({ snapshotMs: 60_000, peerTtlSeconds: 3600 }, clock.read);
    const hash = newSwarm();
    const keys = t.keys(hash.toString('hex'));
    await t.announce(agent('a'), request(hash, { left: 0 }), '10.0.0.1');
    await t.announce(agent('b'), request(hash), '10.0.0.2');
    clock.tick(60_000); // the snapshot read by c's announce holds a and b
    expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['a', 'b']);

    const stop = await t.announce(agent('a'), request(hash, { event: 'ANNOUNCE_EVENT_STOPPED', left: 0 }), '10.0.0.1');
    expect(stop).toEqual({ intervalSeconds: 30, peers: [], seeders: 0, leechers: 2 });
    expect(await redis.zscore(keys.peers, 'a')).toBeNull();
    expect(await redis.hget(keys.records, 'a')).toBeNull();
    expect(await redis.zscore(keys.seeds, 'a')).toBeNull();
    // Same process, snapshot not refreshed (60 s): 'a' is gone already.
    clock.tick(10);
    expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['b']);
    // ...and stays gone after the next refresh.
    clock.tick(60_000);
    expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['b']);
    // A restart of 'a' brings it back.
    await t.announce(agent('a'), request(hash), '10.0.0.1');
    clock.tick(60_000);
    expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['a', 'b']);

    // Everybody leaves: the swarm's keys are gone.
    for (const id of ['a', 'b', 'c']) await t.announce(agent(id), request(hash, { event: 'ANNOUNCE_EVENT_STOPPED' }), '10.0.0.1');
    expect(await redis.exists(keys.peers, keys.records, keys.seeds)).toBe(0);
  });

  test('STOPPED through another process is visible within snapshotMs', async () => {
    const clock = new FakeClock();
    const one = tracker({ snapshotMs: 1000 }, clock.read);
    const two = tracker({ snapshotMs: 1000 }, clock.read);
    const hash = newSwarm();
    await one.announce(agent('a'), request(hash), '10.0.0.1');
    expect(ids(await one.announce(agent('b'), request(hash), '10.0.0.2'))).toEqual(['a']);
    await two.announce(agent('a'), request(hash, { event: 'ANNOUNCE_EVENT_STOPPED' }), '10.0.0.1');
    clock.tick(999);
    expect(ids(await one.announce(agent('b'), request(hash), '10.0.0.2'))).toEqual(['a']);
    clock.tick(1);
    expect(ids(await one.announce(agent('b'), request(hash), '10.0.0.2'))).toEqual([]);
  });

  test('seed / leech counts follow left, COMPLETED and STOPPED; scrape agrees', async () => {
    const t = tracker();
    const hash = newSwarm();
    for (let i = 0; i < 3; i++) await t.announce(agent(`seed${i}`), request(hash, { left: 0 }), '10.0.0.1');
    let last: AnnounceResponse | undefined;
    for (let i = 0; i < 2; i++) last = await t.announce(agent(`leech${i}`), request(hash, { left: 500 }), '10.0.0.1');
    expect(last).toMatchObject({ seeders: 3, leechers: 2 });
    expect(await t.scrape({ infoHashes: [hash] })).toEqual({ swarms: [{ infoHash: hash, seeders: 3, leechers: 2 }] });

    const done = await t.announce(agent('leech0'), request(hash, { left: 0, event: 'ANNOUNCE_EVENT_COMPLETED', downloaded: 500 }), '10.0.0.1');
    expect(done).toMatchObject({ seeders: 4, leechers: 1 });
    const stop = await t.announce(agent('seed1'), request(hash, { left: 0, event: 'ANNOUNCE_EVENT_STOPPED' }), '10.0.0.1');
    expect(stop).toMatchObject({ seeders: 3, leechers: 1 });
    // A seed that loses data (left > 0 again) is a leecher.
    expect(await t.announce(agent('seed2'), request(hash, { left: 1 }), '10.0.0.1')).toMatchObject({ seeders: 2, leechers: 2 });

    const empty = newSwarm();
    const other = newSwarm();
    await t.announce(agent('x'), request(other, { left: 0 }), '10.0.0.1');
    expect(await t.scrape({ infoHashes: [hash, empty, other] })).toEqual({
      swarms: [
        { infoHash: hash, seeders: 2, leechers: 2 },
        { infoHash: empty, seeders: 0, leechers: 0 },
        { infoHash: other, seeders: 1, leechers: 0 },
      ],
    });
    expect(await t.scrape({ infoHashes: [] })).toEqual({ swarms: [] });
  });

  test('numwant: 0 means the default, and it is capped by maxNumwant', async () => {
    const clock = new FakeClock();
    const t = tracker({ defaultNumwant: 5, maxNumwant: 12, snapshotMs: 60_000 }, clock.read);
    const hash = newSwarm();
    for (let i = 0; i < 30; i++) await t.announce(agent(`p${i}`), request(hash), '10.0.0.1');
    clock.tick(60_000);
    const want = async (numwant: number) => (await t.announce(agent('asker'), request(hash, { numwant }), '10.0.0.2')).peers.length;
    expect(await want(0)).toBe(5);
    expect(await want(3)).toBe(3);
    expect(await want(12)).toBe(12);
    expect(await want(13)).toBe(12);
    expect(await want(4_294_967_295)).toBe(12);
    const few = newSwarm();
    await t.announce(agent('only'), request(few), '10.0.0.1');
    expect((await t.announce(agent('asker'), request(few, { numwant: 10 }), '10.0.0.2')).peers).toHaveLength(1);
  });

  test('peer messages carry the stored record', async () => {
    const t = tracker();
    const hash = newSwarm();
    await t.announce(agent('a', loc('eu', 'eu-1', 'ams')), request(hash, { addresses: ['192.0.2.7', '::ffff:192.0.2.8', '2001:db8::7', '192.0.2.7'], port: 51413, left: 0 }), '10.0.0.1');
    const r = await t.announce(agent('b'), request(hash), '10.0.0.2');
    expect(r.peers).toEqual<PeerMessage[]>([
      { agentId: 'a', addresses: ['192.0.2.7', '192.0.2.8', '2001:db8::7'], port: 51413, region: 'eu', zone: 'eu-1', site: 'ams', seed: true },
    ]);
  });

  describe('validation', () => {
    let t: TrackerService;
    const hash = newSwarm();
    beforeAll(() => {
      t = tracker();
    });

    test.each<[string, Partial<AnnounceRequest> | Record<string, unknown>, string]>([
      ['info-hash of 19 bytes', { infoHash: Buffer.alloc(19) }, 'info_hash'],
      ['info-hash of 32 bytes (untruncated v2)', { infoHash: Buffer.alloc(32) }, 'info_hash'],
      ['empty info-hash', { infoHash: Buffer.alloc(0) }, 'info_hash'],
      ['info-hash as a string', { infoHash: 'a'.repeat(20) }, 'info_hash'],
      ['port 0', { port: 0 }, 'port'],
      ['port 70000', { port: 70_000 }, 'port'],
      ['port 65536', { port: 65_536 }, 'port'],
      ['fractional port', { port: 80.5 }, 'port'],
      ['hostname instead of an IP', { addresses: ['peer.example.com'] }, 'addresses[0]'],
      ['IP with a port', { addresses: ['10.0.0.1:6881'] }, 'addresses[0]'],
      ['bad IPv4', { addresses: ['10.0.0.1', '10.0.0.256'] }, 'addresses[1]'],
      ['empty string address', { addresses: [''] }, 'addresses[0]'],
      ['0.0.0.0', { addresses: ['0.0.0.0'] }, 'addresses[0]'],
      ['::', { addresses: ['::'] }, 'addresses[0]'],
      ['long-form unspecified IPv6', { addresses: ['0:0:0:0:0:0:0:0'] }, 'addresses[0]'],
      ['mapped unspecified', { addresses: ['::ffff:0.0.0.0'] }, 'addresses[0]'],
      ['IPv4-compatible unspecified', { addresses: ['::0.0.0.0'] }, 'addresses[0]'],
      ['unspecified with zeros around the gap', { addresses: ['0::0'] }, 'addresses[0]'],
      ['IPv6 zone id', { addresses: ['fe80::1%eth0'] }, 'addresses[0]'],
      ['nine addresses', { addresses: Array.from({ length: 9 }, (_, i) => `10.0.0.${i + 1}`) }, 'addresses'],
      ['negative left', { left: -1 }, 'left'],
      ['negative uploaded', { uploaded: -5 }, 'uploaded'],
      ['NaN downloaded', { downloaded: NaN }, 'downloaded'],
      ['left beyond 2^53', { left: 2 ** 60 }, 'left'],
      ['unknown event', { event: 'ANNOUNCE_EVENT_PAUSED' }, 'event'],
      ['negative numwant', { numwant: -1 }, 'numwant'],
    ])('%s -> TRACKER_BAD_REQUEST', async (_name, patch, field) => {
      const swarm = newSwarm();
      const bad = { ...request(swarm), ...patch } as AnnounceRequest;
      await expectTrackerError(t.announce(agent('v'), bad, '10.0.0.1'), 'TRACKER_BAD_REQUEST', field);
      // Nothing was written.
      const keys = t.keys(swarm.toString('hex'));
      expect(await redis.exists(keys.peers, keys.records, keys.seeds)).toBe(0);
    });

    test('eight addresses are fine; not a request object is refused', async () => {
      const eight = Array.from({ length: 8 }, (_, i) => `10.0.0.${i + 1}`);
      await expect(t.announce(agent('v'), request(hash, { addresses: eight }), '10.0.0.1')).resolves.toMatchObject({ intervalSeconds: 30 });
      await expectTrackerError(t.announce(agent('v'), null as unknown as AnnounceRequest, '10.0.0.1'), 'TRACKER_BAD_REQUEST', 'request');
    });

    test('no addresses: the observed address is used (IPv4-mapped prefix stripped, grpc-js peer forms)', async () => {
      const swarm = newSwarm();
      const keys = t.keys(swarm.toString('hex'));
      const stored = async (id: string) => (JSON.parse((await redis.hget(keys.records, id)) as string) as { addresses: string[] }).addresses;
      const cases: [string, string][] = [
        ['::ffff:192.0.2.1', '192.0.2.1'],
        ['ipv4:192.0.2.2:40000', '192.0.2.2'],
        ['ipv6:[2001:db8::3]:40000', '2001:db8::3'],
        ['[::ffff:192.0.2.4]:1', '192.0.2.4'],
        ['2001:db8::5', '2001:db8::5'],
      ];
      for (const [i, [observed, expected]] of cases.entries()) {
        await t.announce(agent(`o${i}`), request(swarm, { addresses: [] }), observed);
        expect(await stored(`o${i}`)).toEqual([expected]);
      }
      for (const unusable of ['', 'unix:/tmp/sock', '0.0.0.0', 'ipv6:[::]:1']) {
        await expectTrackerError(t.announce(agent('o'), request(swarm, { addresses: [] }), unusable), 'TRACKER_BAD_REQUEST', 'addresses');
      }
    });

    test('scrape: more than 100 hashes, or a bad one, is refused', async () => {
      const many = Array.from({ length: 101 }, () => newSwarm());
      await expectTrackerError(t.scrape({ infoHashes: many }), 'TRACKER_BAD_REQUEST', 'info_hashes');
      await expect(t.scrape({ infoHashes: many.slice(0, 100) })).resolves.toMatchObject({ swarms: expect.any(Array) });
      await expectTrackerError(t.scrape({ infoHashes: [newSwarm(), Buffer.alloc(32)] }), 'TRACKER_BAD_REQUEST', 'info_hashes[1]');
    });

    test('no announcer identity -> TRACKER_NO_IDENTITY', async () => {
      await expectTrackerError(t.announce(agent(''), request(hash), '10.0.0.1'), 'TRACKER_NO_IDENTITY');
      await expectTrackerError(t.announce(undefined as unknown as Announcer, request(hash), '10.0.0.1'), 'TRACKER_NO_IDENTITY');
    });

    test('bad options -> TRACKER_BAD_OPTIONS naming the field', () => {
      const cases: [Partial<TrackerOptions>, string][] = [
        [{ intervalSeconds: 0 }, 'intervalSeconds'],
        [{ peerTtlSeconds: 0 }, 'peerTtlSeconds'],
        [{ remoteShare: 1.5 }, 'remoteShare'],
        [{ remoteShare: NaN }, 'remoteShare'],
        [{ maxNumwant: -1 }, 'maxNumwant'],
        [{ defaultNumwant: 300, maxNumwant: 200 }, 'defaultNumwant'],
        [{ snapshotMs: -1 }, 'snapshotMs'],
      ];
      for (const [patch, field] of cases) {
        let caught: unknown;
        try {
          tracker(patch);
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(TrackerError);
        expect(caught).toMatchObject({ code: 'TRACKER_BAD_OPTIONS', field });
      }
      const { snapshotMs: _omit, ...withoutSnapshot } = OPTIONS;
      expect(() => new TrackerService(redis, withoutSnapshot, Date.now, Math.random)).not.toThrow();
    });
  });

  describe('snapshot', () => {
    test('a new peer becomes visible to others after snapshotMs', async () => {
      const clock = new FakeClock();
      const t = tracker({ snapshotMs: 1000 }, clock.read);
      const hash = newSwarm();
      await t.announce(agent('a'), request(hash), '10.0.0.1'); // snapshot read at T0
      clock.tick(100);
      await t.announce(agent('b'), request(hash), '10.0.0.2'); // written; snapshot still from T0
      clock.tick(100);
      const before = await t.announce(agent('c'), request(hash), '10.0.0.3');
      expect(ids(before)).toEqual(['a']);
      expect(before).toMatchObject({ leechers: 3 }); // counts come from the write: always fresh
      clock.tick(799);
      expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['a']);
      clock.tick(1);
      expect(ids(await t.announce(agent('c'), request(hash), '10.0.0.3'))).toEqual(['a', 'b']);
      // snapshotMs 0: always fresh.
      const fresh = tracker({ snapshotMs: 0 }, clock.read);
      await fresh.announce(agent('d'), request(hash), '10.0.0.4');
      await fresh.announce(agent('e'), request(hash), '10.0.0.5');
      expect(ids(await fresh.announce(agent('d'), request(hash), '10.0.0.4'))).toEqual(['a', 'b', 'c', 'e']);
    });

    test('a STARTED or COMPLETED announce is visible to the next announce at once, however fresh the snapshot', async () => {
      const clock = new FakeClock();
      const t = tracker({ snapshotMs: 60_000 }, clock.read);
      const hash = newSwarm();
      // The seed's own announce caches a snapshot without the seed.
      await t.announce(agent('seed'), request(hash, { event: 'ANNOUNCE_EVENT_STARTED', left: 0 }), '10.0.0.1');
      clock.tick(100);
      // Agents of one rollout wave start together: the first of them must already see the seed.
      expect(ids(await t.announce(agent('a'), request(hash, { event: 'ANNOUNCE_EVENT_STARTED' }), '10.0.0.2'))).toEqual(['seed']);
      clock.tick(100);
      expect(ids(await t.announce(agent('b'), request(hash, { event: 'ANNOUNCE_EVENT_STARTED' }), '10.0.0.3'))).toEqual(['a', 'seed']);
      clock.tick(100);
      await t.announce(agent('a'), request(hash, { event: 'ANNOUNCE_EVENT_COMPLETED', left: 0 }), '10.0.0.2');
      clock.tick(100);
      const seen = await t.announce(agent('c'), request(hash), '10.0.0.4');
      expect(seen.peers.find((p) => p.agentId === 'a')?.seed).toBe(true);
    });

    test('concurrent announces share one Redis read (single-flight) and few script calls, counted with MONITOR', async () => {
      const clock = new FakeClock();
      const t = tracker({ snapshotMs: 1000 }, clock.read);
      const hash = newSwarm();
      const keys = t.keys(hash.toString('hex'));
      const monitor = await redis.monitor();
      const seen: string[][] = [];
      let marker = '';
      let markerSeen: () => void = () => undefined;
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args.includes(keys.records)) seen.push(args);
        if (marker !== '' && args[1] === marker) markerSeen();
      });
      const flush = async (): Promise<void> => {
        marker = `${PREFIX}marker:${randomBytes(4).toString('hex')}`;
        const arrived = new Promise<void>((resolve) => (markerSeen = resolve));
        await redis.exists(marker);
        await arrived;
      };
      try {
        await flush();
        const count = (command: string) => seen.filter((args) => args[0]?.toLowerCase() === command).length;
        const scriptCalls = () => seen.filter((args) => ['eval', 'evalsha'].includes(args[0]?.toLowerCase() ?? ''));
        const announced = () => scriptCalls().flatMap((args) => args.filter((a) => /^p\d+$/.test(a)));
        const burst = (n: number, from: number) =>
          Promise.all(Array.from({ length: n }, (_, i) => t.announce(agent(`p${from + i}`), request(hash), '10.0.0.1')));
        const numbers = (r: AnnounceResponse) => r.peers.map((p) => Number(p.agentId.slice(1)));

        const first = await burst(300, 0);
        await flush();
        expect(count('hgetall')).toBe(1);
        // One round of I/O: 300 announces in two script calls (at most MAX_WRITES_PER_SCRIPT each).
        expect(scriptCalls()).toHaveLength(2);
        expect(new Set(announced()).size).toBe(300);
        // Counts are taken after each call's writes; the read went in the same round trip, after
        // both calls: it holds all 300.
        expect(new Set(first.map((r) => r.leechers))).toEqual(new Set([256, 300]));
        expect(first.every((r) => r.peers.length === 50)).toBe(true);

        clock.tick(500);
        const cached = await burst(100, 300);
        await flush();
        expect(count('hgetall')).toBe(1);
        expect(cached.every((r) => numbers(r).every((n) => n < 300))).toBe(true);
        expect(cached.some((r) => numbers(r).some((n) => n >= 256))).toBe(true);

        clock.tick(500);
        const refreshed = await burst(100, 400);
        await flush();
        expect(count('hgetall')).toBe(2);
        expect(refreshed.some((r) => numbers(r).some((n) => n >= 300))).toBe(true);
        expect(new Set(announced()).size).toBe(500);
        expect(scriptCalls().length).toBeLessThanOrEqual(4);
        expect(t.stats()).toMatchObject({ announces: 500, refreshes: 2 });
      } finally {
        monitor.disconnect();
      }
    });

    test('announces of several swarms in one round: each gets its own swarm\'s counts, STOPPED included', async () => {
      const t = tracker();
      const [a, b, c] = [newSwarm(), newSwarm(), newSwarm()];
      await t.announce(agent('old'), request(c), '10.0.0.9');
      const answers = await Promise.all([
        t.announce(agent('s1'), request(a, { left: 0 }), '10.0.0.1'),
        t.announce(agent('l1'), request(a), '10.0.0.2'),
        t.announce(agent('l2'), request(b), '10.0.0.3'),
        t.announce(agent('old'), request(c, { event: 'ANNOUNCE_EVENT_STOPPED' }), '10.0.0.9'),
        t.announce(agent('l3'), request(a), '10.0.0.4'),
        // The same agent twice in one round: the later announce wins.
        t.announce(agent('l2'), request(b, { left: 0 }), '10.0.0.3'),
      ]);
      expect(answers.map((r) => [r.seeders, r.leechers])).toEqual([
        [1, 2],
        [1, 2],
        [1, 0],
        [0, 0],
        [1, 2],
        [1, 0],
      ]);
      expect(await t.scrape({ infoHashes: [a, b, c] })).toEqual({
        swarms: [
          { infoHash: a, seeders: 1, leechers: 2 },
          { infoHash: b, seeders: 1, leechers: 0 },
          { infoHash: c, seeders: 0, leechers: 0 },
        ],
      });
      expect(await redis.exists(t.keys(c.toString('hex')).records)).toBe(0);
    });

    test('a damaged record in Redis is skipped, not fatal', async () => {
      const t = tracker();
      const hash = newSwarm();
      const keys = t.keys(hash.toString('hex'));
      await redis.zadd(keys.peers, T0 + 60_000, 'broken', T0 + 60_000, 'weird', T0 + 60_000, 'missing');
      await redis.hset(keys.records, 'broken', '{not json', 'weird', JSON.stringify({ addresses: 'x', port: 1 }));
      await t.announce(agent('ok'), request(hash), '10.0.0.1');
      expect(ids(await t.announce(agent('asker'), request(hash), '10.0.0.2'))).toEqual(['ok']);
    });

    test('idle swarm caches are evicted', async () => {
      const clock = new FakeClock();
      const t = tracker({ peerTtlSeconds: 10, snapshotMs: 1000 }, clock.read);
      for (let i = 0; i < 3; i++) await t.announce(agent('a'), request(newSwarm()), '10.0.0.1');
      expect(t.stats().cachedSwarms).toBe(3);
      clock.tick(60_000);
      await t.announce(agent('a'), request(newSwarm()), '10.0.0.1');
      expect(t.stats().cachedSwarms).toBe(1);
    });
  });

  describe('Redis failures', () => {
    test('an unreachable Redis gives TRACKER_UNAVAILABLE', async () => {
      const dead = new Redis({ host: '127.0.0.1', port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
      dead.on('error', () => undefined);
      try {
        const t = tracker({}, Date.now, dead);
        const err = await expectTrackerError(t.announce(agent('a'), request(newSwarm()), '10.0.0.1'), 'TRACKER_UNAVAILABLE');
        expect(err.cause).toBeInstanceOf(Error);
        await expectTrackerError(t.scrape({ infoHashes: [newSwarm()] }), 'TRACKER_UNAVAILABLE');
        await expectTrackerError(t.announce(agent('a'), request(newSwarm(), { event: 'ANNOUNCE_EVENT_STOPPED' }), '10.0.0.1'), 'TRACKER_UNAVAILABLE');
      } finally {
        dead.disconnect();
      }
    });

    test('a flushed script cache (NOSCRIPT) is recovered with EVAL', async () => {
      // The first script call after the first one asks Redis for a script it does not hold.
      let scriptCalls = 0;
      let noscripts = 0;
      const flaky = new Proxy(redis, {
        get(target, property, receiver) {
          if (property === 'pipeline') {
            return () => {
              const pipeline = target.pipeline();
              const evalsha = pipeline.evalsha.bind(pipeline) as (...args: unknown[]) => unknown;
              Object.assign(pipeline, {
                evalsha: (sha: string, ...rest: unknown[]) => {
                  scriptCalls += 1;
                  if (scriptCalls === 1) noscripts += 1;
                  return evalsha(scriptCalls === 1 ? '0'.repeat(40) : sha, ...rest);
                },
              });
              return pipeline;
            };
          }
          const value = Reflect.get(target, property, receiver) as unknown;
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      const t = tracker({}, new FakeClock().read, flaky);
      const hash = newSwarm();
      await t.announce(agent('a'), request(hash), '10.0.0.1'); // EVAL (loads the script)
      const r = await t.announce(agent('b'), request(hash), '10.0.0.2'); // EVALSHA -> NOSCRIPT -> EVAL
      expect(noscripts).toBe(1);
      expect(r.leechers).toBe(2);
      expect((await t.announce(agent('c'), request(hash), '10.0.0.3')).leechers).toBe(3);
      expect(scriptCalls).toBe(2);
    });
  });
});
