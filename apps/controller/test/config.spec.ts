import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runShoal } from '@shoal/testing';
import { ConfigError, SCHEMA, loadConfig, parseHostPort } from '../src/config';

const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('no ConfigError');
};

describe('controller configuration', () => {
  test('defaults fill everything but the data folder, which is required', () => {
    expect(problemsOf(() => loadConfig({ env: {} }))).toEqual(['dataDir (SHOAL_DATA_DIR): required: folder made by `shoal controller init`: CA, keys, TUF repository']);
    const config = loadConfig({ env: { SHOAL_DATA_DIR: '/d' } });
    expect(config).toMatchObject({ dataDir: '/d', redisUrl: 'redis://127.0.0.1:6379', restListen: { host: '127.0.0.1', port: 7443 }, trackerRemoteShare: 0.2 });
    for (const [key, field] of Object.entries(SCHEMA)) {
      expect(field.doc.length).toBeGreaterThan(5);
      if (key !== 'dataDir') expect(field.default).toBeDefined();
    }
  });

  test('every bad field gets its own line naming the field, its source and the value', () => {
    const problems = problemsOf(() =>
      loadConfig({
        env: {
          SHOAL_DATA_DIR: '/d',
          SHOAL_REST_LISTEN: 'nowhere',
          SHOAL_GRPC_KEEPALIVE: '0',
          SHOAL_TRACKER_REMOTE_SHARE: '1.5',
          SHOAL_TRACKER_INTERVAL: 'soon',
          SHOAL_LOG_LEVEL: 'loud',
          SHOAL_AGENT_CERT_LIFETIME: '10',
        },
      }),
    );
    expect(problems).toEqual([
      'restListen (SHOAL_REST_LISTEN): must be host:port (e.g. 127.0.0.1:7443 or [::1]:7443; port 0 picks a free one), got "nowhere"',
      'grpcKeepaliveSeconds (SHOAL_GRPC_KEEPALIVE): must be an integer from 1 to 3600, got "0"',
      'agentCertLifetimeSeconds (SHOAL_AGENT_CERT_LIFETIME): must be an integer from 300 to 2592000, got "10"',
      'trackerIntervalSeconds (SHOAL_TRACKER_INTERVAL): must be an integer from 1 to 3600, got "soon"',
      'trackerRemoteShare (SHOAL_TRACKER_REMOTE_SHARE): must be a number from 0 to 1, got "1.5"',
      'logLevel (SHOAL_LOG_LEVEL): must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ]);
  });

  test('a file gives settings, the environment wins, unknown keys and broken JSON are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'));
    try {
      const file = join(dir, 'c.json');
      writeFileSync(file, JSON.stringify({ dataDir: '/from-file', trackerIntervalSeconds: 10, trackerPeerTtlSeconds: 40 }));
      expect(loadConfig({ file, env: { SHOAL_TRACKER_INTERVAL: '20' } })).toMatchObject({ dataDir: '/from-file', trackerIntervalSeconds: 20, trackerPeerTtlSeconds: 40 });
      writeFileSync(file, JSON.stringify({ dataDir: '/d', colour: 'blue' }));
      expect(problemsOf(() => loadConfig({ file, env: {} }))).toEqual([`colour (in ${file}): unknown setting`]);
      writeFileSync(file, '{ not json');
      expect(problemsOf(() => loadConfig({ file, env: {} }))[0]).toMatch(new RegExp(`^${file}: `));
      writeFileSync(file, '[1, 2]');
      expect(problemsOf(() => loadConfig({ file, env: {} }))).toEqual([`${file}: must hold a JSON object`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('settings that contradict each other are refused', () => {
    expect(problemsOf(() => loadConfig({ env: { SHOAL_DATA_DIR: '/d', SHOAL_TRACKER_INTERVAL: '60', SHOAL_TRACKER_PEER_TTL: '30' } }))).toEqual([
      'trackerPeerTtlSeconds: must be longer than trackerIntervalSeconds, or live peers expire between announces',
    ]);
    expect(problemsOf(() => loadConfig({ env: { SHOAL_DATA_DIR: '/d', SHOAL_TRACKER_NUMWANT: '300', SHOAL_TRACKER_MAX_NUMWANT: '100' } }))).toEqual([
      'trackerDefaultNumwant: must not exceed trackerMaxNumwant',
    ]);
  });

  test('host:port forms', () => {
    expect(parseHostPort('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseHostPort('ctl.example.net:443')).toEqual({ host: 'ctl.example.net', port: 443 });
    for (const bad of ['::1:80', 'host:', ':80', 'host:65536', 'a b:1', 42]) expect(() => parseHostPort(bad)).toThrow();
  });

  test('`shoal controller start` with bad settings exits 2 and lists them, without a stack trace', () => {
    const run = runShoal(['controller', 'start', '--data-dir', '/nonexistent'], { SHOAL_TRACKER_REMOTE_SHARE: 'lots', SHOAL_GRPC_LISTEN: 'x' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^invalid configuration:\n {2}grpcListen \(SHOAL_GRPC_LISTEN\): .*\n {2}trackerRemoteShare \(SHOAL_TRACKER_REMOTE_SHARE\): must be a number from 0 to 1, got "lots"\n$/);
  });
});
