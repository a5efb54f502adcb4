import type * as grpc from '@grpc/grpc-js';
import { type AnnounceRequest, type AnnounceResponse, type PeerMessage, shoalV1 } from '@shoal/proto';
import fc from 'fast-check';
import { ServerCredentials } from '@grpc/grpc-js';
import { withCachedPeerEncoding, withoutNagle } from '../src/grpc/servers';

const standard = shoalV1().Tracker.service.Announce as grpc.MethodDefinition<AnnounceRequest, AnnounceResponse>;
const cached = withCachedPeerEncoding(shoalV1().Tracker.service).Announce as grpc.MethodDefinition<AnnounceRequest, AnnounceResponse>;

const peer = fc
  .record({
    agentId: fc.string({ maxLength: 20 }),
    addresses: fc.array(fc.ipV4(), { maxLength: 3 }),
    port: fc.integer({ min: 0, max: 65535 }),
    region: fc.string({ maxLength: 8 }),
    zone: fc.string({ maxLength: 8 }),
    site: fc.string({ maxLength: 8 }),
    seed: fc.boolean(),
  })
  .map((p) => Object.freeze(p) as PeerMessage);

test('answers encoded from cached peer entries decode exactly as the standard encoding', () => {
  fc.assert(
    fc.property(
      fc.record({
        intervalSeconds: fc.integer({ min: 0, max: 3600 }),
        peers: fc.array(peer, { maxLength: 60 }),
        seeders: fc.integer({ min: 0, max: 1e6 }),
        leechers: fc.integer({ min: 0, max: 1e6 }),
      }),
      (response) => {
        const fast = cached.responseSerialize(response);
        expect(standard.responseDeserialize(fast)).toEqual(standard.responseDeserialize(standard.responseSerialize(response)));
        // The second encoding comes from the cache and must not differ.
        expect(cached.responseSerialize(response).equals(fast)).toBe(true);
      },
    ),
    { numRuns: 200 },
  );
});

test('the servers accept connections with Nagle off, keeping their TLS options', () => {
  const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from('key'), cert_chain: Buffer.from('cert') }], true);
  const before = credentials._getConstructorOptions();
  expect(withoutNagle(credentials)._getConstructorOptions()).toEqual({ ...before, noDelay: true });
  expect(before?.requestCert).toBe(true);
});
