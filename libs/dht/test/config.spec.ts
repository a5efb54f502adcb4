import { DEFAULT_DHT_CONFIG, type DhtConfig, dhtConfig, replyNodes } from '../src';
import { expectDhtError } from './support';

describe('dhtConfig', () => {
  test('no overrides: the documented defaults (k = 8, alpha = 3, BEP 5 timings)', () => {
    expect(dhtConfig()).toEqual(DEFAULT_DHT_CONFIG);
    expect(dhtConfig({})).toMatchObject({
      k: 8,
      alpha: 3,
      questionableAfterMs: 15 * 60_000,
      refreshIntervalMs: 15 * 60_000,
      tokenRotationMs: 5 * 60_000,
      peerTtlMs: 30 * 60_000,
      reannounceIntervalMs: 15 * 60_000,
      diversity: 'ip-prefix',
    });
    expect(Object.isFrozen(DEFAULT_DHT_CONFIG)).toBe(true);
    expect(replyNodes({ k: 8 })).toBe(16);
    expect(replyNodes({ k: 20 })).toBe(32);
  });

  test('overrides replace their fields only; undefined keeps the default', () => {
    expect(dhtConfig({ k: 20, diversity: 'site', alpha: undefined })).toEqual({ ...DEFAULT_DHT_CONFIG, k: 20, diversity: 'site' });
  });

  test('every bad field is named in one error', () => {
    const error = expectDhtError(
      () => dhtConfig({ k: 7, alpha: 2.5, diversity: 'subnet', rpcTimeoutMs: Number.NaN, bogus: 1 } as unknown as Partial<DhtConfig>),
      'DHT_BAD_CONFIG',
    );
    expect(error.message).toContain('k: must be an integer in 8..20, not 7');
    expect(error.message).toContain('alpha: must be an integer in 1..16, not 2.5');
    expect(error.message).toContain('diversity: must be one of ip-prefix, site, not "subnet"');
    expect(error.message).toContain('rpcTimeoutMs: must be an integer in 10..300000, not NaN');
    expect(error.message).toContain('bogus: unknown setting');
  });

  test('relations between fields are checked', () => {
    expect(expectDhtError(() => dhtConfig({ k: 8, alpha: 9 }), 'DHT_BAD_CONFIG').message).toContain('alpha (9) must not exceed k (8)');
    expect(expectDhtError(() => dhtConfig({ rpcSlowMs: 6000 }), 'DHT_BAD_CONFIG').message).toContain('rpcSlowMs (6000) must not exceed rpcTimeoutMs (5000)');
    expect(expectDhtError(() => dhtConfig({ reannounceIntervalMs: 30 * 60_000 }), 'DHT_BAD_CONFIG').message).toContain('must be below peerTtlMs');
    expect(expectDhtError(() => dhtConfig({ maxStoredPeers: 10 }), 'DHT_BAD_CONFIG').message).toContain('maxPeersPerInfoHash (256) must not exceed maxStoredPeers (10)');
  });

  test('settings that are not an object, or inherited keys, are refused', () => {
    expectDhtError(() => dhtConfig(null as unknown as Partial<DhtConfig>), 'DHT_BAD_CONFIG');
    expectDhtError(() => dhtConfig([] as unknown as Partial<DhtConfig>), 'DHT_BAD_CONFIG');
    expect(expectDhtError(() => dhtConfig(JSON.parse('{"toString": 1}') as Partial<DhtConfig>), 'DHT_BAD_CONFIG').message).toContain('toString: unknown setting');
  });
});
