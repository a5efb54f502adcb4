import type * as grpc from '@grpc/grpc-js';
import { type AnnounceRequest, type AnnounceResponse, type AnnounceStreamResponse, type PeerMessage, shoalV1 } from '@shoal/proto';
import fc from 'fast-check';
import { ServerCredentials } from '@grpc/grpc-js';
import { withCachedPeerEncoding, withoutNagle } from '../src/grpc/servers';

const standard = shoalV1().Tracker.service.Announce as grpc.MethodDefinition<AnnounceRequest, AnnounceResponse>;
const cachedService = withCachedPeerEncoding(shoalV1().Tracker.service);
const cached = cachedService.Announce as grpc.MethodDefinition<AnnounceRequest, AnnounceResponse>;
const standardStream = shoalV1().Tracker.service.AnnounceStream as grpc.MethodDefinition<unknown, AnnounceStreamResponse>;
const cachedStream = cachedService.AnnounceStream as grpc.MethodDefinition<unknown, AnnounceStreamResponse>;

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

const answer = fc.record({
  intervalSeconds: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  peers: fc.array(peer, { maxLength: 60 }),
  seeders: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  leechers: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
});

test('answers encoded from cached peer entries decode exactly as the standard encoding', () => {
  fc.assert(
    fc.property(
      answer,
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

test('answers on the announce stream decode exactly as the standard encoding, errors included', () => {
  const ok = fc.record({ id: fc.maxSafeNat(), announce: answer, status: fc.constant(0), error: fc.constant(''), errorCode: fc.constant('') });
  const failed = fc.record({ id: fc.maxSafeNat(), status: fc.integer({ min: 1, max: 16 }), error: fc.string({ maxLength: 80 }), errorCode: fc.string({ maxLength: 30 }) });
  fc.assert(
    fc.property(fc.oneof(ok, failed), (message: AnnounceStreamResponse) => {
      expect(standardStream.responseDeserialize(cachedStream.responseSerialize(message))).toEqual(
        standardStream.responseDeserialize(standardStream.responseSerialize(message)),
      );
    }),
    { numRuns: 300 },
  );
});

test('the servers accept connections with Nagle off, keeping their TLS options', () => {
  const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from('key'), cert_chain: Buffer.from('cert') }], true);
  const before = credentials._getConstructorOptions();
  expect(withoutNagle(credentials)._getConstructorOptions()).toEqual({ ...before, noDelay: true });
  expect(before?.requestCert).toBe(true);
});
