import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { FileMetadataStore, TrustError, type TrustErrorCode, TufRepository } from '../src';
import { DAY, HOUR, type Keys, TempDirs, currentMetadata, makeMetainfo, newKeys, newRepository, newSigner, onlineOf } from './support';

const dirs = new TempDirs();
let keys: Keys;
const t0 = new Date('2030-03-01T12:00:00Z');

beforeEach(() => {
  keys = newKeys();
});
afterAll(() => dirs.cleanup());

async function trustError(promise: Promise<unknown>, code: TrustErrorCode): Promise<TrustError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(TrustError);
  expect((error as TrustError).code).toBe(code);
  return error as TrustError;
}

const release = (name: string, version: string, extra: { channel?: string; seed?: string; now?: Date } = {}) => ({
  name,
  version,
  ...makeMetainfo(extra.seed ?? `${name}@${version}`),
  ...(extra.channel ? { channel: extra.channel } : {}),
  now: extra.now ?? t0,
});

describe('initialize', () => {
  test('writes root v1 and empty targets, snapshot and timestamp v1 in the consistent-snapshot layout', async () => {
    const { dir, repository } = await newRepository(dirs, keys, t0);
    expect((await readdir(dir)).sort()).toEqual(['1.root.json', '1.snapshot.json', '1.targets.json', 'root.json', 'timestamp.json']);
    const { root, timestamp, snapshot, targets } = await currentMetadata(repository);
    expect(root.signed.consistentSnapshot).toBe(true);
    expect(root.signed.roles['root']).toMatchObject({ keyIDs: [keys.root.publicKey.keyID], threshold: 1 });
    expect(root.signed.roles['timestamp']?.keyIDs).toEqual([keys.timestamp.publicKey.keyID]);
    expect(() => root.verifyDelegate('root', root)).not.toThrow();
    expect(() => root.verifyDelegate('timestamp', timestamp)).not.toThrow();
    expect(() => root.verifyDelegate('snapshot', snapshot)).not.toThrow();
    expect(() => root.verifyDelegate('targets', targets)).not.toThrow();
    expect(targets.signed.targets).toEqual({});
    // Length and hashes pin each file, not only its version number.
    expect(timestamp.signed.snapshotMeta).toMatchObject({ version: 1, length: expect.any(Number), hashes: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(snapshot.signed.meta['targets.json']).toMatchObject({ version: 1, length: expect.any(Number), hashes: { sha256: expect.any(String) } });
    expect(repository.expiries()).toEqual({
      root: new Date(t0.getTime() + 365 * DAY),
      targets: new Date(t0.getTime() + 90 * DAY),
      snapshot: new Date(t0.getTime() + 7 * DAY),
      timestamp: new Date(t0.getTime() + DAY),
    });
  });

  test('refuses a store that already holds a repository, and bad thresholds and options', async () => {
    const { dir, store } = await newRepository(dirs, keys, t0);
    await trustError(TufRepository.initialize({ store, rootKeys: [keys.root], onlineKeys: onlineOf(keys), now: t0 }), 'TRUST_ALREADY_INITIALIZED');
    const empty = () => new FileMetadataStore(join(dir, 'fresh'));
    await trustError(TufRepository.initialize({ store: empty(), rootKeys: [keys.root], rootThreshold: 2, onlineKeys: onlineOf(keys), now: t0 }), 'TRUST_THRESHOLD');
    await trustError(TufRepository.initialize({ store: empty(), rootKeys: [], onlineKeys: onlineOf(keys), now: t0 }), 'TRUST_THRESHOLD');
    await trustError(TufRepository.initialize({ store: empty(), rootKeys: [keys.root, keys.root], onlineKeys: onlineOf(keys), now: t0 }), 'TRUST_BAD_KEY');
    await trustError(TufRepository.initialize({ store: empty(), rootKeys: [keys.root], onlineKeys: onlineOf(keys), now: t0, expiry: { timestamp: 0 } }), 'TRUST_BAD_OPTION');
    await trustError(TufRepository.initialize({ store: empty(), rootKeys: [keys.root], onlineKeys: onlineOf(keys), now: t0, renewWhenRemaining: 1 }), 'TRUST_BAD_OPTION');
    expect(await empty().read('root.json')).toBeUndefined();
  });
});

describe('open', () => {
  test('verifies the stored metadata and refuses signers the root does not list', async () => {
    const { store, repository } = await newRepository(dirs, keys, t0);
    await repository.publish(release('app', '1.0.0'));
    const reopened = await TufRepository.open({ store, onlineSigners: onlineOf(keys), now: t0 });
    expect(await reopened.listTargets()).toEqual(await repository.listTargets());
    await trustError(TufRepository.open({ store, onlineSigners: { ...onlineOf(keys), snapshot: newSigner() }, now: t0 }), 'TRUST_KEY_MISMATCH');
    await trustError(TufRepository.open({ store: new FileMetadataStore(await dirs.make()), onlineSigners: onlineOf(keys), now: t0 }), 'TRUST_NOT_INITIALIZED');
  });

  test('refuses a store whose metadata was changed, so it never re-signs a tampered file', async () => {
    const { dir, store, repository } = await newRepository(dirs, keys, t0);
    await repository.publish(release('app', '1.0.0'));
    const { targets } = await currentMetadata(repository);
    const json = targets.toJSON() as { signed: { targets: Record<string, { length: number }> } };
    (json.signed.targets['app/1.0.0.torrent'] as { length: number }).length += 1;
    await writeFile(join(dir, '2.targets.json'), JSON.stringify(json));
    const error = await trustError(TufRepository.open({ store, onlineSigners: onlineOf(keys), now: t0 }), 'TRUST_STORE_CORRUPT');
    expect(error.cause).toBeDefined();
  });

  test('re-signs metadata that expired while the controller was down', async () => {
    const { store } = await newRepository(dirs, keys, t0);
    const later = new Date(t0.getTime() + 3 * DAY);
    const reopened = await TufRepository.open({ store, onlineSigners: onlineOf(keys), now: later });
    expect(reopened.expiries().timestamp).toEqual(new Date(later.getTime() + DAY));
  });
});

describe('publish', () => {
  test('adds NAME/VERSION.torrent with custom fields and bumps targets, snapshot and timestamp', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const input = release('app', '1.2.3', { channel: 'beta' });
    const result = await repository.publish(input);
    expect(result).toMatchObject({ name: 'app', version: '1.2.3', channel: 'beta', infoHash: input.infoHash, length: input.metainfoBytes.length, path: 'app/1.2.3.torrent', created: true });
    const { timestamp, snapshot, targets } = await currentMetadata(repository);
    expect([timestamp.signed.version, snapshot.signed.version, targets.signed.version]).toEqual([2, 2, 2]);
    expect(targets.signed.targets['app/1.2.3.torrent']?.toJSON()).toEqual({
      length: input.metainfoBytes.length,
      hashes: { sha256: result.sha256 },
      custom: { infoHash: input.infoHash, name: 'app', version: '1.2.3', channel: 'beta' },
    });
    expect(await repository.targetBytes(`app/${result.sha256}.1.2.3.torrent`)).toEqual(input.metainfoBytes);
    expect(await repository.listTargets()).toEqual([{ name: 'app', version: '1.2.3', channel: 'beta', infoHash: input.infoHash, length: input.metainfoBytes.length, sha256: result.sha256, path: 'app/1.2.3.torrent' }]);
  });

  test('versions per name only go up, in SemVer precedence', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    await repository.publish(release('app', '1.0.0'));
    await repository.publish(release('app', '1.0.1-rc.1'));
    await repository.publish(release('app', '1.0.1-rc.2'));
    await repository.publish(release('app', '1.0.1'));
    await repository.publish(release('other', '0.1.0'));
    for (const version of ['0.9.0', '1.0.1-rc.3', '1.0.1+build.7']) {
      const error = await trustError(repository.publish(release('app', version)), 'TRUST_VERSION_NOT_NEWER');
      expect(error.message).toMatch(/versions only go up/);
    }
    await trustError(repository.publish(release('app', 'latest')), 'TRUST_VERSION_UNORDERED');
    expect((await repository.listTargets()).map((record) => `${record.name}@${record.version}`)).toEqual(['app@1.0.0', 'app@1.0.1-rc.1', 'app@1.0.1-rc.2', 'app@1.0.1', 'other@0.1.0']);
  });

  test('a first version that is not SemVer is accepted, and then nothing can follow it', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    await repository.publish(release('tool', '2024.01.15'));
    const error = await trustError(repository.publish(release('tool', '2.0.0')), 'TRUST_VERSION_UNORDERED');
    expect(error.message).toMatch(/tool@2024\.01\.15 is not a SemVer/);
  });

  test('republishing identical bytes is idempotent; other bytes or channel are refused', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const input = release('app', '1.0.0');
    const first = await repository.publish(input);
    await repository.publish(release('app', '1.1.0'));
    const before = await currentMetadata(repository);
    const again = await repository.publish({ ...input, now: new Date(t0.getTime() + HOUR) });
    expect(again).toEqual({ ...first, created: false });
    expect((await currentMetadata(repository)).timestamp.signed.version).toBe(before.timestamp.signed.version);
    const error = await trustError(repository.publish(release('app', '1.0.0', { seed: 'different bytes' })), 'TRUST_VERSION_EXISTS');
    expect(error.message).toMatch(/app@1\.0\.0 is already published/);
    await trustError(repository.publish({ ...input, channel: 'beta' }), 'TRUST_VERSION_EXISTS');
  });

  test('signs an optional install command into custom; republishing with another one is refused', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const input = { ...release('app', '1.0.0'), installCommand: 'systemctl restart app' };
    const result = await repository.publish(input);
    expect(result).toMatchObject({ install: 'systemctl restart app', created: true });
    const { targets } = await currentMetadata(repository);
    expect(targets.signed.targets['app/1.0.0.torrent']?.custom).toEqual({ infoHash: input.infoHash, name: 'app', version: '1.0.0', channel: 'stable', install: 'systemctl restart app' });
    expect((await repository.listTargets())[0]?.install).toBe('systemctl restart app');
    expect(await repository.publish(input)).toMatchObject({ install: 'systemctl restart app', created: false });
    await trustError(repository.publish({ ...input, installCommand: 'systemctl restart other' }), 'TRUST_VERSION_EXISTS');
    await trustError(repository.publish({ ...input, installCommand: undefined }), 'TRUST_VERSION_EXISTS');
    const plain = release('tool', '1.0.0');
    expect(await repository.publish(plain)).not.toHaveProperty('install');
    await trustError(repository.publish({ ...plain, installCommand: './install.sh' }), 'TRUST_VERSION_EXISTS');
  });

  test('refuses install commands that are not a bounded, NUL-free, non-empty string', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const bad: unknown[] = ['', '   ', 'x'.repeat(4097), 'a\0b', 7, ['sh'], null, { command: 'x' }];
    for (const installCommand of bad) {
      const error = await trustError(repository.publish({ ...release('app', '1.0.0'), installCommand: installCommand as string }), 'TRUST_INVALID_INSTALL');
      expect(error.message).toMatch(/^install command must/);
    }
    await expect(repository.publish({ ...release('app', '1.0.0'), installCommand: 'x'.repeat(4096) })).resolves.toMatchObject({ created: true });
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 200 }), async (installCommand) => {
        const outcome = await repository.publish({ ...release('prop', '1.0.0'), installCommand }).catch((err: TrustError) => err);
        const acceptable = installCommand.trim() !== '' && !installCommand.includes('\0');
        if (acceptable) expect(outcome instanceof TrustError ? outcome.code : 'published').toMatch(/^(published|TRUST_VERSION_EXISTS)$/);
        else expect((outcome as TrustError).code).toBe('TRUST_INVALID_INSTALL');
      }),
      { numRuns: 40 },
    );
  });

  test('refuses invalid names, versions, channels and info-hashes', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const cases: Array<[Partial<ReturnType<typeof release>>, TrustErrorCode]> = [
      [{ name: 'App' }, 'TRUST_INVALID_NAME'],
      [{ name: '.app' }, 'TRUST_INVALID_NAME'],
      [{ name: 'a/b' }, 'TRUST_INVALID_NAME'],
      [{ name: 'a'.repeat(65) }, 'TRUST_INVALID_NAME'],
      [{ name: '' }, 'TRUST_INVALID_NAME'],
      // As a REST body could carry them: the checks see through the TypeScript types.
      [{ name: undefined as unknown as string }, 'TRUST_INVALID_NAME'],
      [{ version: 100 as unknown as string }, 'TRUST_INVALID_VERSION'],
      [{ infoHash: null as unknown as string }, 'TRUST_INVALID_INFOHASH'],
      [{ version: '' }, 'TRUST_INVALID_VERSION'],
      [{ version: '1.0.0/x' }, 'TRUST_INVALID_VERSION'],
      [{ version: '1'.repeat(65) }, 'TRUST_INVALID_VERSION'],
      [{ version: '1.0.0 ' }, 'TRUST_INVALID_VERSION'],
      [{ channel: 'Stable' }, 'TRUST_INVALID_CHANNEL'],
      [{ channel: '' }, 'TRUST_INVALID_CHANNEL'],
      [{ channel: 'c'.repeat(33) }, 'TRUST_INVALID_CHANNEL'],
      [{ infoHash: 'abc' }, 'TRUST_INVALID_INFOHASH'],
      [{ infoHash: makeMetainfo('another').infoHash }, 'TRUST_INFOHASH_MISMATCH'],
      [{ metainfoBytes: Buffer.from('not bencode') }, 'TRUST_BAD_METAINFO'],
    ];
    for (const [override, code] of cases) await trustError(repository.publish({ ...release('app', '1.0.0'), ...override }), code);
    expect(await repository.listTargets()).toEqual([]);
    expect((await currentMetadata(repository)).targets.signed.version).toBe(1);
  });

  test('accepts every name, version and channel of the documented forms', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const metainfo = makeMetainfo('shared');
    await fc.assert(
      fc.asyncProperty(
        fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,63}$/),
        fc.stringMatching(/^[0-9A-Za-z.+-]{1,64}$/),
        fc.stringMatching(/^[a-z0-9-]{1,32}$/),
        async (name, version, channel) => {
          const outcome = await repository.publish({ name, version, channel, ...metainfo, now: t0 }).catch((err: TrustError) => err);
          // Ordering may refuse a second version of a name; the forms themselves never are.
          if (outcome instanceof TrustError) expect(outcome.code).toMatch(/^TRUST_VERSION_(NOT_NEWER|UNORDERED|EXISTS)$/);
        },
      ),
      { numRuns: 40 },
    );
  });

  test('concurrent publishes are serialised into one consistent chain', async () => {
    const { store, repository } = await newRepository(dirs, keys, t0);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => repository.publish(release(`pkg${i}`, '1.0.0'))));
    expect(results.every((result) => result.created)).toBe(true);
    const { timestamp, snapshot, targets } = await currentMetadata(repository);
    expect([timestamp.signed.version, snapshot.signed.version, targets.signed.version]).toEqual([13, 13, 13]);
    expect(Object.keys(targets.signed.targets)).toHaveLength(12);
    await expect(TufRepository.open({ store, onlineSigners: onlineOf(keys), now: t0 })).resolves.toBeInstanceOf(TufRepository);
  });
});

describe('refresh', () => {
  test('re-signs timestamp, then snapshot, then targets as each nears expiry', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const at = (ms: number) => new Date(t0.getTime() + ms);
    expect(await repository.refresh(at(11 * HOUR))).toBe(false);

    expect(await repository.refresh(at(12 * HOUR))).toBe(true);
    let versions = await currentMetadata(repository);
    expect([versions.timestamp.signed.version, versions.snapshot.signed.version, versions.targets.signed.version]).toEqual([2, 1, 1]);
    expect(repository.expiries().timestamp).toEqual(at(36 * HOUR));
    expect(await repository.refresh(at(13 * HOUR))).toBe(false);

    expect(await repository.refresh(at(3.5 * DAY))).toBe(true);
    versions = await currentMetadata(repository);
    expect([versions.timestamp.signed.version, versions.snapshot.signed.version, versions.targets.signed.version]).toEqual([3, 2, 1]);

    expect(await repository.refresh(at(45 * DAY))).toBe(true);
    versions = await currentMetadata(repository);
    expect([versions.timestamp.signed.version, versions.snapshot.signed.version, versions.targets.signed.version]).toEqual([4, 3, 2]);
    expect(repository.expiries().targets).toEqual(at(135 * DAY));
    expect(repository.expiries().root).toEqual(at(365 * DAY));
  });

  test('honours a configured margin', async () => {
    const { store } = await newRepository(dirs, keys, t0);
    const repository = await TufRepository.open({ store, onlineSigners: onlineOf(keys), now: t0, renewWhenRemaining: 0.25 });
    expect(await repository.refresh(new Date(t0.getTime() + 12 * HOUR))).toBe(false);
    expect(await repository.refresh(new Date(t0.getTime() + 18 * HOUR))).toBe(true);
  });
});

describe('key rotation', () => {
  test('rotating an online key writes root N+1 and re-signs that role with the new key', async () => {
    const { store, repository } = await newRepository(dirs, keys, t0);
    const newTargets = newSigner();
    await repository.rotateOnlineKey('targets', newTargets, [keys.root], t0);
    const { root, targets, snapshot, timestamp } = await currentMetadata(repository);
    expect(root.signed.version).toBe(2);
    expect(await repository.metadata('2.root.json')).toEqual(await repository.metadata('root.json'));
    expect(root.signed.roles['targets']?.keyIDs).toEqual([newTargets.publicKey.keyID]);
    expect(root.signed.keys[keys.targets.publicKey.keyID]).toBeUndefined();
    expect([targets.signed.version, snapshot.signed.version, timestamp.signed.version]).toEqual([2, 2, 2]);
    expect(() => root.verifyDelegate('targets', targets)).not.toThrow();
    await repository.publish(release('app', '1.0.0'));
    await trustError(TufRepository.open({ store, onlineSigners: onlineOf(keys), now: t0 }), 'TRUST_KEY_MISMATCH');
    await expect(TufRepository.open({ store, onlineSigners: { ...onlineOf(keys), targets: newTargets }, now: t0 })).resolves.toBeInstanceOf(TufRepository);
  });

  test('rotation needs a threshold of root keys', async () => {
    const second = newSigner();
    const { repository } = await newRepository(dirs, keys, t0, { rootKeys: [keys.root, second], rootThreshold: 2 });
    await trustError(repository.rotateOnlineKey('timestamp', newSigner(), [keys.root], t0), 'TRUST_THRESHOLD');
    await trustError(repository.rotateOnlineKey('timestamp', newSigner(), [keys.root, keys.timestamp], t0), 'TRUST_KEY_MISMATCH');
    await repository.rotateOnlineKey('timestamp', newSigner(), [keys.root, second], t0);
    expect((await currentMetadata(repository)).root.signed.version).toBe(2);
  });

  test('root rotation needs the old and the new root keys', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const [a, b] = [newSigner(), newSigner()];
    const request = { newRootKeys: [a.publicKey, b.publicKey], newThreshold: 2, now: t0 };
    const withoutOld = await trustError(repository.rotateRoot({ ...request, oldRootSigners: [], newRootSigners: [a, b] }), 'TRUST_THRESHOLD');
    expect(withoutOld.message).toMatch(/current root keys/);
    const withoutNew = await trustError(repository.rotateRoot({ ...request, oldRootSigners: [keys.root], newRootSigners: [a] }), 'TRUST_THRESHOLD');
    expect(withoutNew.message).toMatch(/new root keys/);
    await trustError(repository.rotateRoot({ ...request, oldRootSigners: [a], newRootSigners: [a, b] }), 'TRUST_KEY_MISMATCH');
    await trustError(repository.rotateRoot({ ...request, newThreshold: 3, oldRootSigners: [keys.root], newRootSigners: [a, b] }), 'TRUST_THRESHOLD');
    expect((await currentMetadata(repository)).root.signed.version).toBe(1);

    await repository.rotateRoot({ ...request, oldRootSigners: [keys.root], newRootSigners: [a, b] });
    const { root } = await currentMetadata(repository);
    expect(root.signed.version).toBe(2);
    expect(Object.keys(root.signatures).sort()).toEqual([keys.root.publicKey.keyID, a.publicKey.keyID, b.publicKey.keyID].sort());
    expect(root.signed.roles['root']).toMatchObject({ keyIDs: [a.publicKey.keyID, b.publicKey.keyID], threshold: 2 });
  });
});

describe('serving', () => {
  test('answers only the file names a client fetches', async () => {
    const { repository } = await newRepository(dirs, keys, t0);
    const { sha256 } = await repository.publish(release('app', '1.0.0'));
    for (const name of ['root.json', '1.root.json', 'timestamp.json', '2.snapshot.json', '2.targets.json']) {
      expect(await repository.metadata(name)).toBeInstanceOf(Buffer);
    }
    for (const name of ['snapshot.json', 'targets.json', '0.root.json', '../root.json', 'targets/app', '2.timestamp.json']) {
      expect(await repository.metadata(name)).toBeUndefined();
    }
    expect(await repository.targetBytes(`app/${sha256}.1.0.0.torrent`)).toBeInstanceOf(Buffer);
    for (const path of ['app/1.0.0.torrent', `app/${sha256}.2.0.0.torrent`, `../app/${sha256}.1.0.0.torrent`, `${sha256}.1.0.0.torrent`]) {
      expect(await repository.targetBytes(path)).toBeUndefined();
    }
  });
});
