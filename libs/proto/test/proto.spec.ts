import * as grpc from '@grpc/grpc-js';
import { type AnnounceRequest, type AnnounceResponse, shoalV1, unary } from '../src';

describe('shoal.v1 protos', () => {
  test('load every service with its methods', () => {
    const v1 = shoalV1();
    expect(Object.keys(v1.Enrollment.service)).toEqual(['Enroll']);
    expect(Object.keys(v1.Identity.service)).toEqual(['Renew', 'GetRevocations']);
    expect(Object.keys(v1.Tracker.service)).toEqual(['Announce', 'AnnounceStream', 'Scrape']);
    expect(Object.keys(v1.Control.service)).toEqual(['Stream']);
  });

  test('a message survives a real round trip with the documented field shapes', async () => {
    const v1 = shoalV1();
    const server = new grpc.Server();
    let seen: AnnounceRequest | undefined;
    server.addService(v1.Tracker.service, {
      Announce: (call: grpc.ServerUnaryCall<AnnounceRequest, AnnounceResponse>, done: grpc.sendUnaryData<AnnounceResponse>) => {
        seen = call.request;
        done(null, { intervalSeconds: 30, peers: [], seeders: 1, leechers: 2 });
      },
      Scrape: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, { swarms: [] }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const client = new v1.Tracker(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const response = await unary<Partial<AnnounceRequest>, AnnounceResponse>(client, 'Announce', {
        infoHash: Buffer.alloc(20, 7),
        port: 6881,
        left: 5 * 1024 ** 3,
        event: 'ANNOUNCE_EVENT_STARTED',
      });
      expect(response).toEqual({ intervalSeconds: 30, peers: [], seeders: 1, leechers: 2 });
      expect(seen).toEqual({
        infoHash: Buffer.alloc(20, 7),
        port: 6881,
        addresses: [],
        left: 5 * 1024 ** 3,
        uploaded: 0,
        downloaded: 0,
        event: 'ANNOUNCE_EVENT_STARTED',
        numwant: 0,
      });
      await expect(unary(client, 'Nope', {})).rejects.toThrow(/no method Nope/);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});
