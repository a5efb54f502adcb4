import { ShoalError } from '@shoal/torrent';
import { DEFAULT_SWARM_CONFIG, policiesOf, type SwarmConfig, SwarmConfigError, swarmConfig } from '../src';

function refusal(overrides: Record<string, unknown>): SwarmConfigError {
  try {
    swarmConfig(overrides as Partial<SwarmConfig>);
  } catch (error) {
    if (error instanceof SwarmConfigError) return error;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(overrides)}`);
}

describe('swarmConfig', () => {
  test('no overrides: the documented defaults', () => {
    expect(swarmConfig()).toEqual(DEFAULT_SWARM_CONFIG);
    expect(swarmConfig({})).toEqual({
      picker: 'rarest-first',
      randomFirstPieces: 4,
      pipeline: 'bandwidth-delay',
      targetLatencyMs: 1000,
      minQueueDepth: 32,
      maxQueueDepth: 512,
      choker: 'tit-for-tat',
      unchokeSlots: 4,
      rechokeMs: 10_000,
      seeding: 'super-seed',
      revealAhead: 8,
      ranking: 'topology',
      remoteShare: 0.2,
      webseed: 'fallback',
      webseedConcurrency: 4,
      webseedNoPeersMs: 3000,
      webseedUnavailableMs: 5000,
      webseedSlowBytesPerSecond: 0,
      webseedSlowMs: 10_000,
      maxPeers: 50,
      maxPiecesInFlight: 32,
      snubMs: 60_000,
      strikesToBan: 3,
      endGameRequesters: 2,
      endGameDelayMs: 1000,
    });
  });

  test('the defaults cannot be changed by accident, and every result is a fresh copy', () => {
    expect(Object.isFrozen(DEFAULT_SWARM_CONFIG)).toBe(true);
    const config = swarmConfig();
    config.unchokeSlots = 99;
    expect(swarmConfig().unchokeSlots).toBe(4);
    expect(DEFAULT_SWARM_CONFIG.unchokeSlots).toBe(4);
  });

  test('overrides replace their fields only; undefined keeps the default', () => {
    const config = swarmConfig({ picker: 'random', unchokeSlots: 3, remoteShare: 0.5, snubMs: undefined });
    expect(config).toEqual({ ...DEFAULT_SWARM_CONFIG, picker: 'random', unchokeSlots: 3, remoteShare: 0.5 });
  });

  test('accepts the edges of every range', () => {
    expect(() =>
      swarmConfig({ randomFirstPieces: 0, webseedNoPeersMs: 0, webseedUnavailableMs: 0, webseedSlowMs: 0, remoteShare: 0, minQueueDepth: 1, maxQueueDepth: 1 }),
    ).not.toThrow();
    expect(swarmConfig({ remoteShare: 1 }).remoteShare).toBe(1);
  });

  test('one error names every bad field, with what it must be and what it got', () => {
    const error = refusal({ picker: 'fastest', unchokeSlots: 0, remoteShare: 1.5, snubMs: 2.5, maxPeers: '10', choker: 7, webseedSlowMs: -1 });
    expect(error).toBeInstanceOf(ShoalError);
    expect(error.code).toBe('SWARM_BAD_CONFIG');
    for (const part of [
      'picker: must be one of rarest-first, random, not "fastest"',
      'unchokeSlots: must be an integer >= 1, not 0',
      'remoteShare: must be a number in 0..1, not 1.5',
      'snubMs: must be an integer >= 1, not 2.5',
      'maxPeers: must be an integer >= 1, not "10"',
      'choker: must be one of tit-for-tat, fleet, not 7',
      'webseedSlowMs: must be an integer >= 0, not -1',
    ]) {
      expect(error.message).toContain(part);
    }
  });

  test.each([
    ['NaN', Number.NaN],
    ['Infinity', Infinity],
    ['an unsafe integer', 2 ** 60],
    ['null', null],
    ['a numeric string', '5'],
  ])('refuses %s for a number', (_, value) => {
    expect(refusal({ targetLatencyMs: value }).message).toContain('targetLatencyMs: must be an integer >= 1');
  });

  test.each(['picker', 'pipeline', 'choker', 'seeding', 'ranking', 'webseed'])('refuses an unknown %s', (field) => {
    expect(refusal({ [field]: 'nonsense' }).message).toContain(`${field}: must be one of`);
  });

  test('refuses unknown keys (a typo must not silently keep the default)', () => {
    const error = refusal({ unchokeSlot: 4, maxpeers: 10 });
    expect(error.message).toContain('unchokeSlot: unknown setting');
    expect(error.message).toContain('maxpeers: unknown setting');
  });

  test('names inherited object keys as unknown instead of tripping over them', () => {
    const error = refusal(JSON.parse('{"toString": 5, "constructor": 1, "__proto__": {"maxPeers": 1}}') as Record<string, unknown>);
    for (const key of ['toString', 'constructor', '__proto__']) expect(error.message).toContain(`${key}: unknown setting`);
  });

  test('shows values JSON cannot: NaN, Infinity, bigint', () => {
    const error = refusal({ maxPeers: Number.NaN, snubMs: -Infinity, rechokeMs: 10n });
    expect(error.message).toContain('maxPeers: must be an integer >= 1, not NaN');
    expect(error.message).toContain('snubMs: must be an integer >= 1, not -Infinity');
    expect(error.message).toContain('rechokeMs: must be an integer >= 1, not 10');
  });

  test.each([null, 'picker=random', [1, 2]])('refuses settings that are not an object (%p)', (value) => {
    expect(() => swarmConfig(value as unknown as Partial<SwarmConfig>)).toThrow(SwarmConfigError);
  });

  test('refuses minQueueDepth above maxQueueDepth', () => {
    expect(refusal({ minQueueDepth: 64, maxQueueDepth: 16 }).message).toContain('minQueueDepth (64) must not exceed maxQueueDepth (16)');
    expect(refusal({ minQueueDepth: 600 }).message).toContain('minQueueDepth (600) must not exceed maxQueueDepth (512)');
  });
});

describe('policiesOf', () => {
  test('the defaults name the fast strategies', () => {
    const policies = policiesOf(swarmConfig());
    expect(Object.fromEntries(Object.entries(policies).map(([kind, policy]) => [kind, policy.name]))).toEqual({
      picker: 'rarest-first',
      pipeline: 'bandwidth-delay',
      choker: 'tit-for-tat',
      seeding: 'super-seed',
      ranking: 'topology',
      webseed: 'fallback',
    });
  });

  test('every named choice builds the policy of that name', () => {
    const alternatives = swarmConfig({ picker: 'random', pipeline: 'fixed', choker: 'fleet', seeding: 'announce-all', ranking: 'random', webseed: 'never' });
    const policies = policiesOf(alternatives);
    expect(policies.picker.name).toBe('random');
    expect(policies.pipeline.name).toBe('fixed');
    expect(policies.choker.name).toBe('fleet');
    expect(policies.seeding.name).toBe('announce-all');
    expect(policies.ranking.name).toBe('random');
    expect(policies.webseed.name).toBe('never');
  });
});
