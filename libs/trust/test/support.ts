import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileMerkleHasher, buildMetainfo } from '@shoal/torrent';
import { MetaFile, Metadata, MetadataKind, type Root, Snapshot, type TargetFile, Targets, Timestamp } from '@tufjs/models';
import { FileMetadataStore, type Signer, TufRepository, generateSigningKey, signerFromPrivateKeyPem } from '../src';
import { signMetadata } from '../src/keys';

export const HOUR = 60 * 60 * 1000;
export const DAY = 24 * HOUR;

/** Fresh temp directories, removed by `cleanup`. */
export class TempDirs {
  private readonly dirs: string[] = [];

  async make(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-trust-test-'));
    this.dirs.push(dir);
    return dir;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

export function newSigner(): Signer {
  return signerFromPrivateKeyPem(generateSigningKey().privateKeyPem);
}

export interface Keys {
  root: Signer;
  targets: Signer;
  snapshot: Signer;
  timestamp: Signer;
}

export function newKeys(): Keys {
  return { root: newSigner(), targets: newSigner(), snapshot: newSigner(), timestamp: newSigner() };
}

export const onlineOf = (keys: Keys) => ({ targets: keys.targets, snapshot: keys.snapshot, timestamp: keys.timestamp });

/** Real v2 metainfo for a one-file package whose content is derived from `seed`. */
export function makeMetainfo(seed: string): { metainfoBytes: Buffer; infoHash: string } {
  const data = Buffer.from(`package content ${seed}\n`.repeat(100));
  const hasher = new FileMerkleHasher(16 * 1024);
  hasher.update(data);
  const { length, piecesRoot } = hasher.digest();
  const { bytes, metainfo } = buildMetainfo({ name: 'pkg', pieceLength: 16 * 1024, files: [{ path: ['payload.bin'], length, ...(piecesRoot ? { piecesRoot } : {}) }] });
  return { metainfoBytes: bytes, infoHash: metainfo.infoHash.toString('hex') };
}

export async function newRepository(dirs: TempDirs, keys: Keys, now: Date, options: { rootKeys?: Signer[]; rootThreshold?: number } = {}) {
  const dir = await dirs.make();
  const store = new FileMetadataStore(dir);
  const repository = await TufRepository.initialize({
    store,
    rootKeys: options.rootKeys ?? [keys.root],
    ...(options.rootThreshold ? { rootThreshold: options.rootThreshold } : {}),
    onlineKeys: onlineOf(keys),
    now,
  });
  return { dir, store, repository };
}

/**
 * A repository served over real HTTP on loopback the way the controller serves it:
 * `/metadata/<file>` and `/targets/<path>`. `override` replaces (or, with undefined, removes) the
 * bytes at one URL path, to play a compromised mirror or a man in the middle.
 */
export class RepositoryServer {
  readonly requests: string[] = [];
  private readonly overrides = new Map<string, Buffer | undefined>();
  private readonly server: http.Server;

  constructor(public repository: TufRepository) {
    this.server = http.createServer((request, response) => {
      void this.answer(request.url ?? '/').then(
        (bytes) => {
          response.writeHead(bytes ? 200 : 404, { 'content-type': 'application/octet-stream' });
          response.end(bytes);
        },
        () => {
          response.writeHead(500);
          response.end();
        },
      );
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.server.close((err) => (err ? reject(err) : resolve())));
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get metadataBaseUrl(): string {
    return `${this.baseUrl}/metadata/`;
  }

  get targetBaseUrl(): string {
    return `${this.baseUrl}/targets/`;
  }

  override(urlPath: string, bytes: Buffer | undefined): void {
    this.overrides.set(urlPath, bytes);
  }

  clearOverrides(): void {
    this.overrides.clear();
  }

  private async answer(url: string): Promise<Buffer | undefined> {
    const path = decodeURIComponent(new URL(url, 'http://x').pathname);
    this.requests.push(path);
    if (this.overrides.has(path)) return this.overrides.get(path);
    if (path.startsWith('/metadata/')) return this.repository.metadata(path.slice('/metadata/'.length));
    if (path.startsWith('/targets/')) return this.repository.targetBytes(path.slice('/targets/'.length));
    return undefined;
  }
}

/** TUF's expiry format. */
export const tufTime = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

const parse = (bytes: Buffer | undefined): Parameters<typeof Metadata.fromJSON>[1] => JSON.parse((bytes as Buffer).toString('utf8'));

/** The repository's current metadata, parsed with @tufjs/models. */
export async function currentMetadata(repository: TufRepository) {
  const root = Metadata.fromJSON(MetadataKind.Root, parse(await repository.metadata('root.json')));
  const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, parse(await repository.metadata('timestamp.json')));
  const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, parse(await repository.metadata(`${timestamp.signed.snapshotMeta.version}.snapshot.json`)));
  const targetsVersion = (snapshot.signed.meta['targets.json'] as MetaFile).version;
  const targets = Metadata.fromJSON(MetadataKind.Targets, parse(await repository.metadata(`${targetsVersion}.targets.json`)));
  return { root, timestamp, snapshot, targets };
}

/** Signs `metadata` with each signer and returns the file bytes. */
export function sealed(metadata: Metadata<Root | Targets | Snapshot | Timestamp>, ...signers: Signer[]): Buffer {
  for (const signer of signers) signMetadata(metadata, signer);
  return Buffer.from(JSON.stringify(metadata.toJSON()));
}

export function signedTimestamp(version: number, snapshotMeta: MetaFile, expires: Date, signer: Signer): Buffer {
  return sealed(new Metadata(new Timestamp({ version, specVersion: '1.0.31', expires: tufTime(expires), snapshotMeta })), signer);
}

/**
 * What a holder of the online keys could serve: targets, snapshot and timestamp one version
 * past the repository's, with the target files `edit` leaves. Keys are URL paths on the server.
 */
export async function forgedChain(repository: TufRepository, signers: { targets: Signer; snapshot: Signer; timestamp: Signer }, edit: (targets: Record<string, TargetFile>) => Record<string, TargetFile>): Promise<Map<string, Buffer>> {
  const { timestamp, snapshot, targets } = await currentMetadata(repository);
  const expires = tufTime(new Date(Date.now() + DAY));
  const targetsVersion = targets.signed.version + 1;
  const targetsBytes = sealed(new Metadata(new Targets({ version: targetsVersion, specVersion: '1.0.31', expires, targets: edit({ ...targets.signed.targets }) })), signers.targets);
  const snapshotVersion = snapshot.signed.version + 1;
  const snapshotBytes = sealed(
    new Metadata(new Snapshot({ version: snapshotVersion, specVersion: '1.0.31', expires, meta: { 'targets.json': new MetaFile({ version: targetsVersion }) } })),
    signers.snapshot,
  );
  return new Map([
    [`/metadata/${targetsVersion}.targets.json`, targetsBytes],
    [`/metadata/${snapshotVersion}.snapshot.json`, snapshotBytes],
    ['/metadata/timestamp.json', signedTimestamp(timestamp.signed.version + 1, new MetaFile({ version: snapshotVersion }), new Date(Date.now() + DAY), signers.timestamp)],
  ]);
}
