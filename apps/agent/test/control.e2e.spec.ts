import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type ControllerCommand, shoalV1 } from '@shoal/proto';
import { type EnrolledAgent, type TestFleet, runShoal, startTestFleet } from '@shoal/testing';
import { ControlClient } from '../src/control/control-client';
import { AnnounceError, TrackerClient } from '../src/control/tracker-client';

/** The control stream and the announce stream between a real controller process and the agent's clients. */
let fleet: TestFleet;

beforeAll(async () => {
  // Pings every second from the controller: the silent-connection test waits for them.
  fleet = await startTestFleet(9, 'control', { SHOAL_GRPC_KEEPALIVE: '1' });
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
});

interface Session {
  client: ControlClient;
  commands: ControllerCommand[];
  replies: ((ok: boolean, message?: string) => void)[];
  rejected: { code: number; details: string }[];
}

function open(agent: EnrolledAgent, revocationVersion = 0): Promise<Session> {
  const session: Session = { client: new ControlClient({ controller: fleet.controller.grpcAddress, identity: () => ({ ...agent, caPem: fleet.caPem }), softwareVersion: 'test', revocationVersion: () => revocationVersion, minBackoffMs: 50, maxBackoffMs: 200 }), commands: [], replies: [], rejected: [] };
  session.client.on('command', (command: ControllerCommand, reply: (ok: boolean, message?: string) => void) => {
    session.commands.push(command);
    session.replies.push(reply);
  });
  session.client.on('rejected', (status: { code: number; details: string }) => session.rejected.push(status));
  return new Promise((resolve) => {
    session.client.once('connected', () => resolve(session));
    session.client.start();
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function publishRelease(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-control-'));
  try {
    mkdirSync(join(dir, 'app'));
    writeFileSync(join(dir, 'app', 'payload'), Buffer.alloc(50_000, 3));
    expect(runShoal(['pack', join(dir, 'app'), '-o', join(dir, 'app.torrent'), '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
    const published = runShoal(['publish', join(dir, 'app.torrent'), '--name', 'app', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]);
    expect(published.stderr).toBe('');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a fetch command reaches the connected agent, and its result comes back', async () => {
  await publishRelease();
  const agent = await fleet.enroll();
  const session = await open(agent, 1);
  try {
    await until(() => fleet.controller.logs.some((l) => l.includes('control stream opened') && l.includes(agent.agentId)), 'the controller to see the stream');
    const listed = await fleet.rest<{ id: string; controlStream: boolean }[]>('GET', '/v1/agents');
    expect(listed.body.find((a) => a.id === agent.agentId)?.controlStream).toBe(true);
    const sent = await fleet.rest<{ commandId: string }>('POST', `/v1/agents/${agent.agentId}/fetch`, { json: { name: 'app', version: '1.0.0' } });
    expect(sent.status).toBe(202);
    await until(() => session.commands.some((c) => c.fetch), 'the fetch command');
    const command = session.commands.find((c) => c.fetch) as ControllerCommand;
    expect(command).toMatchObject({ commandId: sent.body.commandId, fetch: { name: 'app', version: '1.0.0' } });
    session.replies[session.commands.indexOf(command)]?.(true, 'fetched');
    await until(() => fleet.controller.logs.some((l) => l.includes('command result') && l.includes(sent.body.commandId)), 'the result at the controller');
    expect((await fleet.rest('POST', `/v1/agents/${agent.agentId}/fetch`, { json: { name: 'app', version: '9.9.9' } })).status).toBe(404);
  } finally {
    session.client.stop();
  }
});

test('an agent that is not connected cannot be commanded (409); bad fetch requests are 4xx', async () => {
  const agent = await fleet.enroll();
  const sent = await fleet.rest('POST', `/v1/agents/${agent.agentId}/fetch`, { json: { name: 'app', version: '1.0.0' } });
  expect(sent.status).toBe(409);
  for (const json of [{}, { name: 5, version: '1' }, { name: 'app' }, { name: 'APP!', version: '1.0.0' }, { name: 'app', version: 'x'.repeat(100) }, [1]]) {
    expect((await fleet.rest('POST', `/v1/agents/${agent.agentId}/fetch`, { json })).status).toBe(400);
  }
  expect((await fleet.rest('POST', '/v1/agents/nobody/fetch', { json: { name: 'app', version: '1.0.0' } })).status).toBe(404);
  expect((await fleet.rest('POST', `/v1/agents/${agent.agentId}/fetch`, { token: null, json: { name: 'app', version: '1.0.0' } })).status).toBe(401);
});

test('an agent with an old revocation list gets the current one at hello; revocations are pushed; a revoked agent is cut off', async () => {
  const watcher = await fleet.enroll();
  const victim = await fleet.enroll();
  const watching = await open(watcher, 0);
  const victimSession = await open(victim, 1);
  try {
    await until(() => watching.commands.some((c) => c.revocations), 'the revocation list at hello');
    const before = watching.commands.filter((c) => c.revocations).length;
    await fleet.rest('POST', `/v1/agents/${victim.agentId}/revoke`, { json: {} });
    await until(() => watching.commands.filter((c) => c.revocations).length > before, 'the pushed revocation list');
    const latest = watching.commands.filter((c) => c.revocations).at(-1) as ControllerCommand;
    const serials = (JSON.parse(latest.revocations?.payload ?? '{}') as { revoked: { serial: string }[] }).revoked.map((r) => r.serial);
    expect(serials.length).toBeGreaterThan(0);
    await until(() => victimSession.rejected.length > 0, 'the revoked agent to be cut off');
    expect(victimSession.rejected[0]?.details).toMatch(/revoked/);
  } finally {
    watching.client.stop();
    victimSession.client.stop();
  }
});

/** A TCP relay whose open connections can go silent: nothing relayed, nothing closed, as on a dead path. */
async function startRelay(target: string): Promise<{ address: string; silenceOpenConnections(): void; close(): void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, host);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const pair: [net.Socket, net.Socket] = [inbound, outbound];
    pairs.add(pair);
    inbound.on('close', () => pairs.delete(pair));
    for (const socket of pair) socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    silenceOpenConnections: () => {
      for (const [inbound, outbound] of pairs) {
        inbound.unpipe(outbound);
        outbound.unpipe(inbound);
        inbound.pause();
        outbound.pause();
      }
    },
    close: () => {
      server.close();
      for (const [inbound, outbound] of pairs) {
        inbound.destroy();
        outbound.destroy();
      }
    },
  };
}

test('a control connection gone silent is found by keepalive pings, and the client reconnects', async () => {
  const agent = await fleet.enroll();
  const relay = await startRelay(fleet.controller.grpcAddress);
  const client = new ControlClient({
    controller: relay.address,
    identity: () => ({ ...agent, caPem: fleet.caPem }),
    softwareVersion: 'test',
    revocationVersion: () => 0,
    minBackoffMs: 50,
    maxBackoffMs: 200,
    keepalive: { intervalMs: 200, timeoutMs: 300 },
  });
  const events: string[] = [];
  client.on('connected', () => events.push('connected'));
  client.on('disconnected', () => events.push('disconnected'));
  try {
    client.start();
    await until(() => events.includes('connected'), 'the first connection');
    relay.silenceOpenConnections();
    // Nothing closed the connection: only the unanswered pings can end the stream.
    await until(() => events.includes('disconnected'), 'the silent connection to be given up', 5000);
    await until(() => events.filter((e) => e === 'connected').length === 2, 'a new connection', 5000);
    expect(events.slice(0, 3)).toEqual(['connected', 'disconnected', 'connected']);
  } finally {
    client.stop();
    relay.close();
  }
});

test('the controller forgets a control stream whose connection went silent (its pings go unanswered)', async () => {
  const agent = await fleet.enroll();
  const relay = await startRelay(fleet.controller.grpcAddress);
  const client = new ControlClient({ controller: relay.address, identity: () => ({ ...agent, caPem: fleet.caPem }), softwareVersion: 'test', revocationVersion: () => 0 });
  const streamOpen = async () => {
    const agents = await fleet.rest<{ id: string; controlStream: boolean }[]>('GET', '/v1/agents');
    return agents.body.find((a) => a.id === agent.agentId)?.controlStream;
  };
  try {
    await new Promise<void>((resolve) => {
      client.once('connected', () => resolve());
      client.start();
    });
    expect(await streamOpen()).toBe(true);
    relay.silenceOpenConnections();
    // The client's goodbye cannot reach the controller either: only the controller's pings tell.
    client.stop();
    const deadline = Date.now() + 10_000;
    while ((await streamOpen()) !== false) {
      if (Date.now() > deadline) throw new Error('the controller still lists the silent control stream');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.stop();
    relay.close();
  }
});

describe('TrackerClient: announces on one stream', () => {
  const announce = (infoHashByte: number, fields: object = {}) => ({ infoHash: Buffer.alloc(20, infoHashByte), port: 6881, addresses: ['10.1.1.1'], left: 0, numwant: 10, ...fields });

  test('concurrent announces get their own answers; a bad one fails alone with its code', async () => {
    const agent = await fleet.enroll();
    const tracker = new TrackerClient(fleet.mtlsClient('Tracker', agent));
    try {
      // Seeds of odd swarms, leeches of even ones: each answer's counts say whose it is.
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => tracker.announce(announce(0x40 + i, { left: i % 2 === 1 ? 0 : 1000 }))));
      answers.forEach((answer, i) => expect({ i, seeders: answer.seeders, leechers: answer.leechers }).toEqual({ i, seeders: i % 2, leechers: 1 - (i % 2) }));
      const [bad, good] = await Promise.allSettled([tracker.announce(announce(0x41, { port: 0 })), tracker.announce(announce(0x41))]);
      expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'TRACKER_BAD_REQUEST', status: 3, message: expect.stringMatching(/^port: /) } });
      expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(AnnounceError);
      expect(good).toMatchObject({ status: 'fulfilled', value: { seeders: 1 } });
    } finally {
      tracker.close();
    }
    await expect(tracker.announce(announce(0x41))).rejects.toMatchObject({ code: 'TRACKER_STREAM_CLOSED' });
  });

  test('an announce left unanswered times out and the next one goes on a new stream', async () => {
    // A tracker that takes announce streams and never answers: a connection gone silent.
    const server = new grpc.Server();
    let streamsOpened = 0;
    const tracker = shoalV1().Tracker;
    server.addService(tracker.service, {
      Announce: () => undefined,
      Scrape: () => undefined,
      AnnounceStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        streamsOpened++;
        call.on('data', () => undefined);
        call.on('error', () => undefined);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const client = new TrackerClient(new tracker(`127.0.0.1:${port}`, grpc.credentials.createInsecure()), { timeoutMs: 300 });
    try {
      await expect(client.announce(announce(0x60))).rejects.toMatchObject({ code: 'TRACKER_TIMEOUT' });
      await expect(client.announce(announce(0x60))).rejects.toMatchObject({ code: 'TRACKER_TIMEOUT' });
      expect(streamsOpened).toBe(2);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  test('a controller restart ends the stream; the next announce opens a new one', async () => {
    const agent = await fleet.enroll();
    const tracker = new TrackerClient(fleet.mtlsClient('Tracker', agent), { timeoutMs: 3000 });
    try {
      await expect(tracker.announce(announce(0x70))).resolves.toMatchObject({ seeders: 1 });
      await fleet.restartController({ kill: true });
      // The first announce may still go out on the dead stream and fail; one soon after succeeds.
      const deadline = Date.now() + 20_000;
      let answer: unknown;
      while (!answer && Date.now() < deadline) {
        answer = await tracker.announce(announce(0x70)).catch((err: AnnounceError) => {
          expect(['TRACKER_STREAM_CLOSED', 'TRACKER_TIMEOUT']).toContain(err.code);
          return new Promise((r) => setTimeout(r, 200)).then(() => undefined);
        });
      }
      expect(answer).toMatchObject({ intervalSeconds: expect.any(Number) });
    } finally {
      tracker.close();
    }
  }, 40_000);
});
