import { join } from 'node:path';
import { ConfigError } from '@shoal/config';
import { runShoal } from '@shoal/testing';
import { loadAgentConfig } from '../src/daemon/config';

test('agent settings: defaults, the status socket beside the data, one line per bad field', () => {
  const config = loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/var/lib/shoal' } });
  expect(config).toMatchObject({ peerListen: { host: '0.0.0.0', port: 6881 }, advertiseAddress: '', maxPeersPerPackage: 30, statusSocket: join('/var/lib/shoal', 'agent.sock') });
  try {
    loadAgentConfig({ env: { SHOAL_PEER_LISTEN: 'anywhere', SHOAL_MAX_PEERS: '0' } });
    throw new Error('accepted bad settings');
  } catch (err) {
    expect((err as ConfigError).problems).toEqual([
      'dataDir (SHOAL_AGENT_DATA_DIR): required: folder made by `shoal agent enroll`: identity, package store',
      'peerListen (SHOAL_PEER_LISTEN): must be host:port (e.g. 127.0.0.1:7443 or [::1]:7443; port 0 picks a free one), got "anywhere"',
      'maxPeersPerPackage (SHOAL_MAX_PEERS): must be an integer from 1 to 1000, got "0"',
    ]);
  }
});

test('`shoal agent start` refuses bad settings and a missing identity with exit 2 and a reason', () => {
  const bad = runShoal(['agent', 'start', '--data-dir', '/nonexistent'], { SHOAL_MAX_PEERS: 'many' });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/^invalid configuration:\n {2}maxPeersPerPackage \(SHOAL_MAX_PEERS\)/);
  const unenrolled = runShoal(['agent', 'start', '--data-dir', '/nonexistent']);
  expect(unenrolled.status).toBe(2);
  expect(unenrolled.stderr).toMatch(/no agent identity \(run "shoal agent enroll/);
  const status = runShoal(['status', '--data-dir', '/nonexistent']);
  expect(status.status).toBe(2);
  expect(status.stderr).toMatch(/no agent answers at \/nonexistent\/agent.sock/);
});

test('swarm settings (SHOAL_SWARM, a JSON object) are checked by libs/swarm at start: every bad field named', () => {
  const ok = loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_SWARM: '{"choker":"fleet","webseedConcurrency":8}' } });
  expect(ok.swarm).toEqual({ choker: 'fleet', webseedConcurrency: 8 });
  expect(loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d' } }).swarm).toEqual({});
  const problems = (settings: string): string[] => {
    try {
      loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_SWARM: settings } });
      return [];
    } catch (err) {
      return (err as ConfigError).problems;
    }
  };
  expect(problems('{"picker":"fastest","maxPeers":0,"bogus":1}')[0]).toMatch(
    /^swarm \(SHOAL_SWARM\): bad swarm settings: picker: must be one of rarest-first, random, not "fastest"; maxPeers: must be an integer >= 1, not 0; bogus: unknown setting/,
  );
  expect(problems('[1,2]')[0]).toMatch(/^swarm \(SHOAL_SWARM\): must be a JSON object of swarm settings/);
  expect(problems('{not json')[0]).toMatch(/^swarm \(SHOAL_SWARM\): /);
});

test('install and bandwidth settings: defaults, units, background limits following the normal ones, one line per bad field', () => {
  const defaults = loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d' } });
  expect(defaults).toMatchObject({
    installHooks: {},
    allowReleaseInstallCommands: [],
    uploadLimit: 0,
    downloadLimit: 0,
    backgroundUploadLimit: 4 * 1024 * 1024,
    backgroundDownloadLimit: 4 * 1024 * 1024,
  });
  const set = loadAgentConfig({
    env: {
      SHOAL_AGENT_DATA_DIR: '/d',
      SHOAL_INSTALL_HOOKS: '{"app":{"command":"./install.sh","timeoutSeconds":30}}',
      SHOAL_ALLOW_RELEASE_INSTALL: 'tool,db',
      SHOAL_UPLOAD_LIMIT: '20mbit',
      SHOAL_DOWNLOAD_LIMIT: '8MiB',
      SHOAL_BACKGROUND_UPLOAD_LIMIT: '0',
    },
  });
  expect(set).toMatchObject({
    installHooks: { app: { command: './install.sh', timeoutSeconds: 30 } },
    allowReleaseInstallCommands: ['tool', 'db'],
    uploadLimit: 2_500_000,
    downloadLimit: 8 * 1024 * 1024,
    backgroundUploadLimit: 0,
    backgroundDownloadLimit: 2 * 1024 * 1024,
  });
  expect(loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_BACKGROUND_DOWNLOAD_LIMIT: 'auto', SHOAL_DOWNLOAD_LIMIT: '1MB' } }).backgroundDownloadLimit).toBe(250_000);
  try {
    loadAgentConfig({
      env: {
        SHOAL_AGENT_DATA_DIR: '/d',
        SHOAL_INSTALL_HOOKS: '{"app":{"command":""}}',
        SHOAL_ALLOW_RELEASE_INSTALL: 'BAD NAME',
        SHOAL_UPLOAD_LIMIT: 'fast',
        SHOAL_DOWNLOAD_LIMIT: '-1',
        SHOAL_BACKGROUND_UPLOAD_LIMIT: 'sometimes',
      },
    });
    throw new Error('accepted bad settings');
  } catch (err) {
    expect((err as ConfigError).problems).toEqual([
      'installHooks (SHOAL_INSTALL_HOOKS): bad install hooks: app.command: must be a non-empty string, got "{\\"app\\":{\\"command\\":\\"\\"}}"',
      'allowReleaseInstallCommands (SHOAL_ALLOW_RELEASE_INSTALL): must list package names or "*", not "BAD NAME", got "BAD NAME"',
      'uploadLimit (SHOAL_UPLOAD_LIMIT): must be bytes per second: a number, or one with a unit (e.g. 20mbit, 5MiB, 800kB; 0 = unlimited), got "fast"',
      'downloadLimit (SHOAL_DOWNLOAD_LIMIT): must be bytes per second: a number, or one with a unit (e.g. 20mbit, 5MiB, 800kB; 0 = unlimited), got "-1"',
      "backgroundUploadLimit (SHOAL_BACKGROUND_UPLOAD_LIMIT): must be bytes per second: a number, or one with a unit (e.g. 20mbit, 5MiB, 800kB; 0 = unlimited), or 'auto', got \"sometimes\"",
    ]);
  }
});
