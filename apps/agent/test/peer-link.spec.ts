import { type Socket, connect, createServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type ConnectionEvent, PeerConnection } from '@shoal/wire';
import { SessionPeerError } from '../src/session';
import { PeerLink } from '../src/session/peer-link';

/**
 * PeerLink, the adapter between a socket and a sans-IO PeerConnection, on a real loopback TCP
 * pair: how it writes does not depend on TLS (the session tests run it over TLS).
 */
const NUM_PIECES = 64;
const PIECE_LENGTH = 16 * 1024;

let sockets: Socket[] = [];

afterEach(() => {
  for (const socket of sockets) socket.destroy();
  sockets = [];
});

async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no server address');
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialled = connect(address.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => dialled.once('connect', resolve).once('error', reject));
  const pair: [Socket, Socket] = [dialled, await accepted];
  server.close();
  sockets.push(...pair);
  return pair;
}

interface End {
  link: PeerLink;
  socket: Socket;
  events: ConnectionEvent[];
}

function end(id: number, name: string, socket: Socket, role: 'initiator' | 'acceptor'): End {
  const events: ConnectionEvent[] = [];
  const conn = new PeerConnection({
    infoHash20: Buffer.alloc(20, 7),
    localPeerId: Buffer.alloc(20, id),
    numPieces: NUM_PIECES,
    pieceLength: PIECE_LENGTH,
    totalLength: NUM_PIECES * PIECE_LENGTH,
    role,
    now: Date.now(),
  });
  const link = new PeerLink(id, name, socket as unknown as TLSSocket, conn, Date.now, { event: (_link, event) => events.push(event), writable: () => undefined });
  return { link, socket, events };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 5000; !check(); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function havesReceived(side: End): number[] {
  return side.events.flatMap((e) => (e.type === 'message' && e.message.type === 'have' ? [e.message.index] : []));
}

async function openPair(): Promise<[End, End]> {
  const [a, b] = await socketPair();
  const alice = end(1, 'alice', a, 'initiator');
  const bob = end(2, 'bob', b, 'acceptor');
  alice.link.start();
  bob.link.start();
  await until(() => alice.link.conn.phase === 'open' && bob.link.conn.phase === 'open', 'both handshakes');
  return [alice, bob];
}

test('frames produced during one event-loop turn are held to its end and leave in one corked batch', async () => {
  const [alice, bob] = await openPair();
  const writes = jest.spyOn(alice.socket, 'write');
  const corks = jest.spyOn(alice.socket, 'cork');
  for (let index = 0; index < 5; index++) {
    alice.link.conn.have(index, Date.now());
    alice.link.flush();
  }
  expect(writes).not.toHaveBeenCalled();
  await until(() => havesReceived(bob).length === 5, 'five haves at bob');
  expect(havesReceived(bob)).toEqual([0, 1, 2, 3, 4]);
  expect(corks).toHaveBeenCalledTimes(1);
  expect(writes).toHaveBeenCalledTimes(5);
});

test('a graceful close sends the frames still held before it ends the socket', async () => {
  const [alice, bob] = await openPair();
  alice.link.conn.have(9, Date.now());
  alice.link.flush();
  alice.link.close(new SessionPeerError('PEER_DUPLICATE', 'already connected to bob'));
  await until(() => bob.events.some((e) => e.type === 'closed'), 'bob to see the connection close');
  expect(havesReceived(bob)).toEqual([9]);
  const closed = bob.events.find((e) => e.type === 'closed');
  expect(closed?.type === 'closed' && closed.reason.code).toBe('WIRE_PEER_CLOSED');
});
