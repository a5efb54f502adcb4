/**
 * The agent side against a repository served over real HTTP on loopback, with tuf-js's real
 * Updater; the cases follow the TUF conformance suite (freeze, rollback, mix-and-match,
 * arbitrary software, threshold and key rotation attacks).
 */
import { createHash } from 'node:crypto';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TargetFile } from '@tufjs/models';
import {
  FileMetadataStore,
  NodeFetcher,
  ReleaseVerifier,
  type Signer,
  TrustError,
  type TrustErrorCode,
  TufRepository,
} from '../src';
import {
  DAY,
  type Keys,
  RepositoryServer,
  TempDirs,
  currentMetadata,
  forgedChain,
  makeMetainfo,
  newKeys,
  newRepository,
  newSigner,
  onlineOf,
  signedTimestamp,
} from './support';
import { canonicalJson } from '../src/keys';

const dirs = new TempDirs();
let keys: Keys;
let repository: TufRepository;
let storeDir: string;
let server: RepositoryServer;

const app1 = makeMetainfo('app 1.0.0');
const app2 = makeMetainfo('app 2.0.0');

beforeEach(async () => {
  keys = newKeys();
  ({ repository, dir: storeDir } = await newRepository(dirs, keys, new Date()));
  server = new RepositoryServer(repository);
  await server.start();
});

afterEach(async () => {
  await server.stop();
  await dirs.cleanup();
});

async function rootBytes(): Promise<Buffer> {
  return (await repository.metadata('root.json')) as Buffer;
}

async function newVerifier(options: { trustedRootBytes?: Buffer; defaultFetcher?: boolean } = {}) {
  const metadataDir = await dirs.make();
  const verifier = new ReleaseVerifier({
    metadataDir,
    trustedRootBytes: options.trustedRootBytes ?? (await rootBytes()),
    metadataBaseUrl: server.metadataBaseUrl,
    targetBaseUrl: server.targetBaseUrl,
    ...(options.defaultFetcher ? {} : { fetcher: new NodeFetcher({ timeoutMs: 5000 }) }),
  });
  return { verifier, metadataDir };
}

async function trustError(promise: Promise<unknown>, code: TrustErrorCode): Promise<TrustError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(TrustError);
  expect((error as TrustError).code).toBe(code);
  return error as TrustError;
}

const publishApp1 = (now = new Date()) => repository.publish({ name: 'app', version: '1.0.0', ...app1, now });

async function trustedRootVersion(metadataDir: string): Promise<number> {
  return (JSON.parse(await readFile(join(metadataDir, 'root.json'), 'utf8')) as { signed: { version: number } }).signed.version;
}

/** Root JSON signed by hand: `signatures` lists keyid and signer pairs, duplicates included. */
function handSignedRoot(signed: Record<string, unknown>, signatures: Array<[keyId: string, signer: Signer]>): Buffer {
  const bytes = Buffer.from(canonicalJson(signed as Parameters<typeof canonicalJson>[0]));
  return Buffer.from(JSON.stringify({ signed, signatures: signatures.map(([keyid, signer]) => ({ keyid, sig: signer.sign(bytes) })) }));
}

describe('a verifier accepts', () => {
  test('a published release, fetching the consistent-snapshot layout', async () => {
    const published = await repository.publish({ name: 'app', version: '1.0.0', channel: 'beta', ...app1, now: new Date() });
    const { verifier } = await newVerifier();
    const release = await verifier.verifyRelease('app', '1.0.0');
    expect(release).toEqual({ name: 'app', version: '1.0.0', channel: 'beta', infoHash: app1.infoHash, metainfoBytes: app1.metainfoBytes });
    expect(server.requests).toEqual([
      '/metadata/2.root.json',
      '/metadata/timestamp.json',
      '/metadata/2.snapshot.json',
      '/metadata/2.targets.json',
      `/targets/app/${published.sha256}.1.0.0.torrent`,
    ]);
  });

  test('a release through tuf-js default fetcher too', async () => {
    await publishApp1();
    const { verifier } = await newVerifier({ defaultFetcher: true });
    await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ infoHash: app1.infoHash });
  });

  test("a release's signed install command, and none when the release carries none", async () => {
    await repository.publish({ name: 'app', version: '1.0.0', installCommand: './install.sh --now', ...app1, now: new Date() });
    await repository.publish({ name: 'app', version: '2.0.0', ...app2, now: new Date() });
    const { verifier } = await newVerifier();
    expect((await verifier.verifyRelease('app', '1.0.0')).install).toBe('./install.sh --now');
    expect(await verifier.verifyRelease('app', '2.0.0')).not.toHaveProperty('install');
  });

  test('releases verified concurrently by one verifier sharing its cache', async () => {
    await publishApp1();
    await repository.publish({ name: 'app', version: '2.0.0', ...app2, now: new Date() });
    const { verifier } = await newVerifier();
    const [one, two] = await Promise.all([verifier.verifyRelease('app', '1.0.0'), verifier.verifyRelease('app', '2.0.0')]);
    expect([one.infoHash, two.infoHash]).toEqual([app1.infoHash, app2.infoHash]);
  });
});

describe('a verifier refuses', () => {
  test('a release the metadata does not list', async () => {
    await publishApp1();
    const { verifier } = await newVerifier();
    await trustError(verifier.verifyRelease('app', '1.0.1'), 'TRUST_UNKNOWN_RELEASE');
    await trustError(verifier.verifyRelease('other', '1.0.0'), 'TRUST_UNKNOWN_RELEASE');
  });

  test('names and versions that are not release names, before any request', async () => {
    const { verifier } = await newVerifier();
    await trustError(verifier.verifyRelease('../etc', '1.0.0'), 'TRUST_INVALID_NAME');
    await trustError(verifier.verifyRelease('app', '1.0.0/../x'), 'TRUST_INVALID_VERSION');
    expect(server.requests).toEqual([]);
  });

  test('a target whose bytes were changed on the server', async () => {
    const { sha256 } = await publishApp1();
    const url = `/targets/app/${sha256}.1.0.0.torrent`;
    const { verifier } = await newVerifier();
    const flipped = Buffer.from(app1.metainfoBytes);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 2) ^ 1, flipped.length - 2);
    server.override(url, flipped);
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_TARGET_MISMATCH');
    expect(error.cause).toBeDefined();
    server.override(url, Buffer.concat([app1.metainfoBytes, Buffer.from('x')]));
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_TARGET_MISMATCH');
    server.clearOverrides();
    await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ version: '1.0.0' });
  });

  test('an expired timestamp (freeze attack), until the repository refreshes', async () => {
    const threeDaysAgo = new Date(Date.now() - 3 * DAY);
    ({ repository } = await newRepository(dirs, keys, threeDaysAgo));
    server.repository = repository;
    await publishApp1(threeDaysAgo);
    const { verifier } = await newVerifier();
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_EXPIRED');
    expect(error.message).toMatch(/timestamp\.json is expired/);
    expect(await repository.refresh(new Date())).toBe(true);
    await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ infoHash: app1.infoHash });
  });

  test('an expired snapshot behind a fresh timestamp', async () => {
    const tenDaysAgo = new Date(Date.now() - 10 * DAY);
    ({ repository } = await newRepository(dirs, keys, tenDaysAgo));
    server.repository = repository;
    await publishApp1(tenDaysAgo);
    const { timestamp } = await currentMetadata(repository);
    server.override('/metadata/timestamp.json', signedTimestamp(timestamp.signed.version + 1, timestamp.signed.snapshotMeta, new Date(Date.now() + DAY), keys.timestamp));
    const { verifier } = await newVerifier();
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_EXPIRED');
    expect(error.message).toMatch(/snapshot\.json is expired/);
  });

  test('a timestamp rolled back after a newer one was seen', async () => {
    await publishApp1();
    const { verifier } = await newVerifier();
    await verifier.verifyRelease('app', '1.0.0');
    const olderTimestamp = (await repository.metadata('timestamp.json')) as Buffer;
    await repository.publish({ name: 'app', version: '2.0.0', ...app2, now: new Date() });
    await verifier.verifyRelease('app', '2.0.0');
    server.override('/metadata/timestamp.json', olderTimestamp);
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_ROLLBACK');
    expect(error.message).toMatch(/timestamp version 2 is less than current version 3/);
  });

  test('a snapshot rolled back by a newer timestamp (signed with the real timestamp key)', async () => {
    await publishApp1();
    const { verifier } = await newVerifier();
    await verifier.verifyRelease('app', '1.0.0');
    const older = await currentMetadata(repository);
    await repository.publish({ name: 'app', version: '2.0.0', ...app2, now: new Date() });
    await verifier.verifyRelease('app', '2.0.0');
    server.override('/metadata/timestamp.json', signedTimestamp(10, older.timestamp.signed.snapshotMeta, new Date(Date.now() + DAY), keys.timestamp));
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_ROLLBACK');
    expect(error.message).toMatch(/snapshot version 2 is less than current version 3/);
  });

  test('mix-and-match: targets from another repository state with the same version number', async () => {
    const forkDir = await dirs.make();
    await cp(storeDir, forkDir, { recursive: true });
    const fork = await TufRepository.open({ store: new FileMetadataStore(forkDir), onlineSigners: onlineOf(keys), now: new Date() });
    await publishApp1();
    await fork.publish({ name: 'other', version: '1.0.0', ...app2, now: new Date() });
    // Both states are at targets v2, signed by the same targets key.
    server.override('/metadata/2.targets.json', (await fork.metadata('2.targets.json')) as Buffer);
    const { verifier } = await newVerifier();
    const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_METADATA_MISMATCH');
    // tuf-js stops reading at the length the snapshot gives, or checks length and hash after.
    expect(error.message).toMatch(/Max length reached|Expected (length|hash)/);
  });

  test('metadata signed by a key the root does not list (arbitrary software attack)', async () => {
    await publishApp1();
    const { timestamp } = await currentMetadata(repository);
    server.override('/metadata/timestamp.json', signedTimestamp(timestamp.signed.version + 1, timestamp.signed.snapshotMeta, new Date(Date.now() + DAY), newSigner()));
    const { verifier } = await newVerifier();
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
  });

  test('a root threshold of 2 faked with one signature listed twice', async () => {
    const second = newSigner();
    ({ repository } = await newRepository(dirs, keys, new Date(), { rootKeys: [keys.root, second], rootThreshold: 2 }));
    server.repository = repository;
    await publishApp1();
    const { verifier, metadataDir } = await newVerifier();
    await verifier.verifyRelease('app', '1.0.0');

    // An attacker holding one of the two root keys swaps in their own timestamp key.
    const attackerTimestampKey = newSigner();
    const root = JSON.parse((await rootBytes()).toString('utf8')) as { signed: { version: number; keys: Record<string, unknown>; roles: Record<string, { keyids: string[] }> } };
    const forged = structuredClone(root.signed);
    forged.version = 2;
    forged.keys[attackerTimestampKey.publicKey.keyID] = attackerTimestampKey.publicKey.toJSON();
    (forged.roles['timestamp'] as { keyids: string[] }).keyids = [attackerTimestampKey.publicKey.keyID];
    const rootKeyId = keys.root.publicKey.keyID;

    server.override('/metadata/2.root.json', handSignedRoot(forged, [[rootKeyId, keys.root], [rootKeyId, keys.root]]));
    const duplicate = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
    expect(duplicate.message).toMatch(/multiple signatures found for keyid/);

    // The same signature again under a second key id that names the same public key.
    const aliasId = 'f'.repeat(64);
    forged.keys[aliasId] = keys.root.publicKey.toJSON();
    (forged.roles['root'] as { keyids: string[] }).keyids = [rootKeyId, aliasId];
    server.override('/metadata/2.root.json', handSignedRoot(forged, [[rootKeyId, keys.root], [aliasId, keys.root]]));
    const alias = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
    expect(alias.message).toMatch(/root was signed by 1\/2 keys/);
    expect(await trustedRootVersion(metadataDir)).toBe(1);

    // A bootstrap root with the duplicate is refused before it is cached.
    const fresh = await newVerifier({ trustedRootBytes: handSignedRoot(root.signed, [[rootKeyId, keys.root], [rootKeyId, keys.root]]) });
    await trustError(fresh.verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
    await expect(readFile(join(fresh.metadataDir, 'root.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('a target whose custom fields are malformed or name another package', async () => {
    await publishApp1();
    const withCustom = (custom: Record<string, string | number | null | string[]>) => (targets: Record<string, TargetFile>) => {
      const target = targets['app/1.0.0.torrent'] as TargetFile;
      return { ...targets, [target.path]: new TargetFile({ path: target.path, length: target.length, hashes: target.hashes, unrecognizedFields: { custom } }) };
    };
    const good = { infoHash: app1.infoHash, name: 'app', version: '1.0.0', channel: 'stable' };
    const cases: Array<[Record<string, string | number | null | string[]>, RegExp]> = [
      [{ ...good, infoHash: 'zz' }, /custom\.infoHash "zz"/],
      [{ ...good, infoHash: app2.infoHash }, /is not the metainfo's info-hash/],
      [{ ...good, name: 'evil' }, /custom\.name/],
      [{ ...good, channel: 'Not A Channel' }, /custom\.channel/],
      [{ ...good, install: 42 }, /custom\.install must be a string, not number/],
      [{ ...good, install: ['sh', '-c', 'x'] }, /custom\.install must be a string, not object/],
      [{ ...good, install: null }, /custom\.install must be a string/],
      [{ ...good, install: ' ' }, /custom\.install must not be empty/],
      [{ ...good, install: 'x'.repeat(4097) }, /custom\.install must be at most 4096 characters, not 4097/],
      [{ ...good, install: './install.sh\0; rm -rf /' }, /custom\.install must not contain NUL/],
    ];
    for (const [custom, message] of cases) {
      server.clearOverrides();
      for (const [url, bytes] of await forgedChain(repository, onlineOf(keys), withCustom(custom))) server.override(url, bytes);
      // A fresh cache each time: one that kept the previous forgery would not fetch this one.
      const { verifier } = await newVerifier();
      const error = await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_CUSTOM');
      expect(error.message).toMatch(message);
    }
  });

  test('signed target bytes that are not metainfo', async () => {
    await publishApp1();
    const garbage = Buffer.from('not bencode at all');
    const sha256 = createHash('sha256').update(garbage).digest('hex');
    const custom = { infoHash: app1.infoHash, name: 'app', version: '1.0.0', channel: 'stable' };
    const chain = await forgedChain(repository, onlineOf(keys), (targets) => ({
      ...targets,
      'app/1.0.0.torrent': new TargetFile({ path: 'app/1.0.0.torrent', length: garbage.length, hashes: { sha256 }, unrecognizedFields: { custom } }),
    }));
    for (const [url, bytes] of chain) server.override(url, bytes);
    server.override(`/targets/app/${sha256}.1.0.0.torrent`, garbage);
    const { verifier } = await newVerifier();
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_METAINFO');
  });

  test('when the repository cannot be reached', async () => {
    server.override('/metadata/timestamp.json', undefined);
    const { verifier } = await newVerifier();
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_UNAVAILABLE');
    const closed = new ReleaseVerifier({
      metadataDir: await dirs.make(),
      trustedRootBytes: await rootBytes(),
      metadataBaseUrl: 'http://127.0.0.1:1/metadata/',
      targetBaseUrl: 'http://127.0.0.1:1/targets/',
      fetcher: new NodeFetcher(),
    });
    const error = await trustError(closed.verifyRelease('app', '1.0.0'), 'TRUST_UNAVAILABLE');
    expect(error.message).toMatch(/ECONNREFUSED/);
  });

  test('trusted root bytes that are not root metadata, without caching them', async () => {
    const { verifier, metadataDir } = await newVerifier({ trustedRootBytes: Buffer.from('{"signed":{}}') });
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_METADATA');
    await expect(readFile(join(metadataDir, 'root.json'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('a verifier follows key rotation', () => {
  test('of the timestamp key, and refuses the old key afterwards', async () => {
    await publishApp1();
    const { verifier, metadataDir } = await newVerifier();
    await verifier.verifyRelease('app', '1.0.0');
    const oldTimestamp = (await currentMetadata(repository)).timestamp;

    const newTimestampKey = newSigner();
    await repository.rotateOnlineKey('timestamp', newTimestampKey, [keys.root], new Date());
    server.requests.length = 0;
    await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ infoHash: app1.infoHash });
    expect(server.requests.slice(0, 3)).toEqual(['/metadata/2.root.json', '/metadata/3.root.json', '/metadata/timestamp.json']);
    expect(await trustedRootVersion(metadataDir)).toBe(2);

    server.override('/metadata/timestamp.json', signedTimestamp(50, oldTimestamp.signed.snapshotMeta, new Date(Date.now() + DAY), keys.timestamp));
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
  });

  test('of the root keys, from a client that only knows root v1', async () => {
    const rootV1 = await rootBytes();
    const r2 = newSigner();
    const [r3a, r3b] = [newSigner(), newSigner()];
    await repository.rotateRoot({ newRootKeys: [r2.publicKey], newThreshold: 1, oldRootSigners: [keys.root], newRootSigners: [r2], now: new Date() });
    await repository.rotateRoot({ newRootKeys: [r3a.publicKey, r3b.publicKey], newThreshold: 2, oldRootSigners: [r2], newRootSigners: [r3a, r3b], now: new Date() });
    await publishApp1();

    const { verifier, metadataDir } = await newVerifier({ trustedRootBytes: rootV1 });
    await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ infoHash: app1.infoHash });
    expect(await trustedRootVersion(metadataDir)).toBe(3);

    // Root v4 signed only by keys it names itself is not trusted by v3's keys.
    const usurper = newSigner();
    const root = JSON.parse((await rootBytes()).toString('utf8')) as { signed: Record<string, unknown> & { keys: Record<string, unknown>; roles: Record<string, unknown> } };
    const forged = structuredClone(root.signed);
    forged['version'] = 4;
    forged.keys[usurper.publicKey.keyID] = usurper.publicKey.toJSON();
    forged.roles['root'] = { keyids: [usurper.publicKey.keyID], threshold: 1 };
    server.override('/metadata/4.root.json', handSignedRoot(forged, [[usurper.publicKey.keyID, usurper]]));
    await trustError(verifier.verifyRelease('app', '1.0.0'), 'TRUST_BAD_SIGNATURE');
    expect(await trustedRootVersion(metadataDir)).toBe(3);
  });
});

test('the forged-chain helper produces metadata the verifier accepts when nothing is changed', async () => {
  // Guards the custom-field cases above: they fail for the custom fields, not for the forgery.
  await publishApp1();
  for (const [url, bytes] of await forgedChain(repository, onlineOf(keys), (targets) => targets)) server.override(url, bytes);
  const { verifier } = await newVerifier();
  await expect(verifier.verifyRelease('app', '1.0.0')).resolves.toMatchObject({ infoHash: app1.infoHash });
  expect(server.requests).toContain('/metadata/3.targets.json');
});
