import { createHash } from 'node:crypto';
import { type Metainfo, parseMetainfo } from '@shoal/torrent';
import { type Key, MetaFile, Metadata, MetadataKind, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { TrustError } from './errors';
import { type Signer, checkKeys, signMetadata } from './keys';
import {
  DEFAULT_CHANNEL,
  type ReleaseRecord,
  checkChannel,
  checkInstallCommand,
  checkName,
  checkNewerThan,
  checkVersion,
  isInfoHash,
  parseServedTargetPath,
  parseTargetPath,
  readCustom,
  servedTargetPath,
  targetPathOf,
} from './release';
import { compareSemVer, parseSemVer } from './semver';
import { SerialQueue } from './queue';
import type { MetadataStore } from './store';

export type OnlineRole = 'targets' | 'snapshot' | 'timestamp';
export type TopLevelRole = 'root' | OnlineRole;
export type OnlineSigners = Record<OnlineRole, Signer>;

const DAY = 24 * 60 * 60 * 1000;

/** Lifetimes in milliseconds of newly signed metadata (../shared/DESIGN.md, "Trust"). */
export const DEFAULT_EXPIRY: Readonly<Record<TopLevelRole, number>> = { root: 365 * DAY, targets: 90 * DAY, snapshot: 7 * DAY, timestamp: DAY };

/** Online metadata is re-signed once no more than this fraction of its lifetime is left. */
export const DEFAULT_RENEW_WHEN_REMAINING = 0.5;

export interface RepositoryOptions {
  /** Lifetime in milliseconds per role; roles left out keep DEFAULT_EXPIRY. */
  expiry?: Partial<Record<TopLevelRole, number>>;
  /** Fraction of a role's lifetime left at which `refresh` re-signs it (0 < f < 1). */
  renewWhenRemaining?: number;
}

export interface InitializeOptions extends RepositoryOptions {
  store: MetadataStore;
  /** Every root key signs root v1; `rootThreshold` of them must sign each later root. */
  rootKeys: readonly Signer[];
  rootThreshold?: number;
  onlineKeys: OnlineSigners;
  now: Date;
}

export interface OpenOptions extends RepositoryOptions {
  store: MetadataStore;
  onlineSigners: OnlineSigners;
  now: Date;
}

export interface PublishRequest {
  name: string;
  version: string;
  /** Defaults to DEFAULT_CHANNEL. */
  channel?: string;
  /** Shell command agents may run once the release is verified and complete (signed with it; see checkInstallCommand). */
  installCommand?: string;
  metainfoBytes: Buffer;
  /** Hex SHA-256 info-hash of `metainfoBytes` (checked against them). */
  infoHash: string;
  now: Date;
}

export interface PublishResult extends ReleaseRecord {
  /** False when the identical release was already published (an idempotent retry). */
  created: boolean;
}

export interface RotateRootRequest {
  newRootKeys: readonly Key[];
  newThreshold: number;
  /** A threshold of the current root keys: clients only trust the new root through them. */
  oldRootSigners: readonly Signer[];
  /** A threshold of the new root keys: TUF requires the new root to be signed by itself too. */
  newRootSigners: readonly Signer[];
  now: Date;
}

interface State {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
}

/** @tufjs/models 4 does not export its JSON types from the package index. */
type JSONObject = ReturnType<Key['toJSON']>;

/** Keys and threshold per top-level role: what a root says, before it is signed. */
type RootLayout = Record<TopLevelRole, { keys: readonly Key[]; threshold: number }>;

type Write = readonly [name: string, bytes: Buffer];

interface Settings {
  lifetimes: Record<TopLevelRole, number>;
  renewWhenRemaining: number;
}

// The TUF specification version @tufjs/models writes by default.
const SPEC_VERSION = '1.0.31';
const ROOT_FILE = 'root.json';
const TIMESTAMP_FILE = 'timestamp.json';
const TARGETS_META = 'targets.json';
/** Store names of target bytes start here; the rest is the path a client fetches. */
const TARGETS_DIR = 'targets/';
/** Every metadata file name a consistent-snapshot client may ask for. */
const METADATA_FILE = /^(?:root|timestamp)\.json$|^[1-9]\d{0,15}\.(?:root|snapshot|targets)\.json$/;
const ONLINE_ROLES: readonly OnlineRole[] = ['targets', 'snapshot', 'timestamp'];

const versionedFile = (version: number, role: TopLevelRole): string => `${version}.${role}.json`;
const sha256Hex = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const serialise = (metadata: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer => Buffer.from(JSON.stringify(metadata.toJSON()));
/** TUF writes expiry as ISO 8601 in UTC without fractions of a second. */
const expiresAt = (now: Date, lifetime: number): string => new Date(now.getTime() + lifetime).toISOString().replace(/\.\d{3}Z$/, 'Z');
/** Length and hashes as well as the version, so a file from another repository state with the same version number is refused. */
const metaFileOf = (version: number, bytes: Buffer): MetaFile => new MetaFile({ version, length: bytes.length, hashes: { sha256: sha256Hex(bytes) } });

function parseMetadata(kind: MetadataKind.Root, bytes: Buffer): Metadata<Root>;
function parseMetadata(kind: MetadataKind.Timestamp, bytes: Buffer): Metadata<Timestamp>;
function parseMetadata(kind: MetadataKind.Snapshot, bytes: Buffer): Metadata<Snapshot>;
function parseMetadata(kind: MetadataKind.Targets, bytes: Buffer): Metadata<Targets>;
function parseMetadata(kind: MetadataKind, bytes: Buffer): Metadata<Root | Timestamp | Snapshot | Targets> {
  // The overloads of Metadata.fromJSON need a literal kind; the switch gives each one.
  const json = JSON.parse(bytes.toString('utf8'));
  switch (kind) {
    case MetadataKind.Root:
      return Metadata.fromJSON(kind, json);
    case MetadataKind.Timestamp:
      return Metadata.fromJSON(kind, json);
    case MetadataKind.Snapshot:
      return Metadata.fromJSON(kind, json);
    case MetadataKind.Targets:
      return Metadata.fromJSON(kind, json);
  }
}

function settingsOf(options: RepositoryOptions): Settings {
  const lifetimes = { ...DEFAULT_EXPIRY, ...options.expiry };
  for (const [role, lifetime] of Object.entries(lifetimes)) {
    if (!Number.isSafeInteger(lifetime) || lifetime <= 0) throw new TrustError('TRUST_BAD_OPTION', `expiry.${role} must be a positive whole number of milliseconds, not ${lifetime}`);
  }
  const renewWhenRemaining = options.renewWhenRemaining ?? DEFAULT_RENEW_WHEN_REMAINING;
  if (!(renewWhenRemaining > 0 && renewWhenRemaining < 1)) throw new TrustError('TRUST_BAD_OPTION', `renewWhenRemaining must be between 0 and 1, not ${renewWhenRemaining}`);
  return { lifetimes, renewWhenRemaining };
}

function rootWrites(root: Metadata<Root>): Write[] {
  const bytes = serialise(root);
  return [
    [versionedFile(root.signed.version, 'root'), bytes],
    [ROOT_FILE, bytes],
  ];
}

function layoutOf(root: Root): RootLayout {
  const roleLayout = (role: TopLevelRole) => {
    const { keyIDs, threshold } = root.roles[role] ?? { keyIDs: [], threshold: 1 };
    return { keys: keyIDs.map((id) => root.keys[id] as Key), threshold };
  };
  return { root: roleLayout('root'), targets: roleLayout('targets'), snapshot: roleLayout('snapshot'), timestamp: roleLayout('timestamp') };
}

/** Goes through Root.fromJSON because @tufjs/models 4 does not export its Role class. */
function buildRoot(layout: RootLayout, version: number, expires: string): Root {
  const keys: Record<string, JSONObject> = {};
  const roles: Record<string, JSONObject> = {};
  for (const [role, { keys: roleKeys, threshold }] of Object.entries(layout)) {
    if (!Number.isInteger(threshold) || threshold < 1 || threshold > roleKeys.length) {
      throw new TrustError('TRUST_THRESHOLD', `${role} threshold ${threshold} must be a whole number from 1 to its ${roleKeys.length} keys`);
    }
    checkKeys(roleKeys, `${role} keys`);
    for (const key of roleKeys) keys[key.keyID] = key.toJSON();
    roles[role] = { keyids: roleKeys.map((key) => key.keyID), threshold };
  }
  return Root.fromJSON({ _type: MetadataKind.Root, spec_version: SPEC_VERSION, version, expires, keys, roles, consistent_snapshot: true });
}

/** A release record from a target of the signed metadata; undefined for non-release targets. */
function recordOf(target: TargetFile): ReleaseRecord | undefined {
  const parsed = parseTargetPath(target.path);
  const sha256 = target.hashes['sha256'];
  if (!parsed || sha256 === undefined) return undefined;
  const custom = readCustom(target.custom, parsed.name, parsed.version);
  if (typeof custom === 'string') return undefined;
  return { ...custom, length: target.length, sha256, path: target.path };
}

/**
 * Parses one stored metadata file and checks its signatures and, when another file names it,
 * its length, hashes and version; any failure is the store's corruption, never re-signed.
 */
function verifiedFile<T extends Root | Timestamp | Snapshot | Targets>(
  name: string,
  bytes: Buffer,
  parse: (bytes: Buffer) => Metadata<T>,
  verifySignatures: (metadata: Metadata<T>) => void,
  namedBy?: MetaFile,
): Metadata<T> {
  try {
    namedBy?.verify(bytes);
    const metadata = parse(bytes);
    verifySignatures(metadata);
    if (namedBy && metadata.signed.version !== namedBy.version) throw new Error(`it is version ${metadata.signed.version}, not ${namedBy.version}`);
    return metadata;
  } catch (err) {
    throw new TrustError('TRUST_STORE_CORRUPT', `${name} in the store does not verify: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads the current metadata chain from the store and verifies every file and link in it. */
async function loadState(store: MetadataStore): Promise<State> {
  const read = async (name: string): Promise<Buffer> => {
    const bytes = await store.read(name);
    if (!bytes) throw new TrustError('TRUST_STORE_CORRUPT', `${name} is missing from the store`);
    return bytes;
  };
  const rootBytes = await store.read(ROOT_FILE);
  if (!rootBytes) throw new TrustError('TRUST_NOT_INITIALIZED', 'the store holds no root.json: initialize the repository first');
  const root = verifiedFile(ROOT_FILE, rootBytes, (bytes) => parseMetadata(MetadataKind.Root, bytes), (metadata) => metadata.verifyDelegate(MetadataKind.Root, metadata));
  const timestamp = verifiedFile(TIMESTAMP_FILE, await read(TIMESTAMP_FILE), (bytes) => parseMetadata(MetadataKind.Timestamp, bytes), (metadata) => root.verifyDelegate(MetadataKind.Timestamp, metadata));
  const snapshotMeta = timestamp.signed.snapshotMeta;
  const snapshotFile = versionedFile(snapshotMeta.version, 'snapshot');
  const snapshot = verifiedFile(
    snapshotFile,
    await read(snapshotFile),
    (bytes) => parseMetadata(MetadataKind.Snapshot, bytes),
    (metadata) => root.verifyDelegate(MetadataKind.Snapshot, metadata),
    snapshotMeta,
  );
  const targetsMeta = snapshot.signed.meta[TARGETS_META];
  if (!targetsMeta) throw new TrustError('TRUST_STORE_CORRUPT', `${snapshotFile} lists no ${TARGETS_META}`);
  const targetsFile = versionedFile(targetsMeta.version, 'targets');
  const targets = verifiedFile(
    targetsFile,
    await read(targetsFile),
    (bytes) => parseMetadata(MetadataKind.Targets, bytes),
    (metadata) => root.verifyDelegate(MetadataKind.Targets, metadata),
    targetsMeta,
  );
  return { root, targets, snapshot, timestamp };
}

/**
 * The controller's TUF repository: roles root, targets, snapshot and timestamp, consistent
 * snapshots on, one release per target `NAME/VERSION.torrent`. Mutations of one instance run
 * one at a time; several instances on one store need a lock around them that the store provides.
 */
export class TufRepository {
  private readonly queue = new SerialQueue();

  private constructor(
    private readonly store: MetadataStore,
    private state: State,
    private signers: OnlineSigners,
    private readonly settings: Settings,
  ) {}

  /** Creates root v1 (signed by every root key) and empty targets, snapshot and timestamp v1. */
  static async initialize(options: InitializeOptions): Promise<TufRepository> {
    const { store, rootKeys, onlineKeys, now } = options;
    const settings = settingsOf(options);
    if (await store.read(ROOT_FILE)) throw new TrustError('TRUST_ALREADY_INITIALIZED', 'the store already holds a repository');
    const layout: RootLayout = {
      root: { keys: rootKeys.map((signer) => signer.publicKey), threshold: options.rootThreshold ?? 1 },
      targets: { keys: [onlineKeys.targets.publicKey], threshold: 1 },
      snapshot: { keys: [onlineKeys.snapshot.publicKey], threshold: 1 },
      timestamp: { keys: [onlineKeys.timestamp.publicKey], threshold: 1 },
    };
    const root = new Metadata(buildRoot(layout, 1, expiresAt(now, settings.lifetimes.root)));
    for (const signer of rootKeys) signMetadata(root, signer);
    const writes = rootWrites(root);
    const state = signOnline('targets', now, { root, targetFiles: {}, previous: undefined, signers: onlineKeys, lifetimes: settings.lifetimes }, writes);
    for (const [name, bytes] of writes) await store.write(name, bytes);
    return new TufRepository(store, state, onlineKeys, settings);
  }

  /**
   * Opens the repository in `store` after verifying its metadata, then re-signs whatever online
   * metadata `refresh(now)` would, so a controller that was down serves fresh metadata at once.
   */
  static async open(options: OpenOptions): Promise<TufRepository> {
    const settings = settingsOf(options);
    const state = await loadState(options.store);
    for (const role of ONLINE_ROLES) {
      checkKeys([options.onlineSigners[role].publicKey], `${role} signer`);
      const keyId = options.onlineSigners[role].publicKey.keyID;
      if (!state.root.signed.roles[role]?.keyIDs.includes(keyId)) {
        throw new TrustError('TRUST_KEY_MISMATCH', `key ${keyId} is not a ${role} key of root v${state.root.signed.version}`);
      }
    }
    const repository = new TufRepository(options.store, state, options.onlineSigners, settings);
    await repository.refresh(options.now);
    return repository;
  }

  /**
   * Publishes `NAME@VERSION` as target `NAME/VERSION.torrent` and signs new targets, snapshot and
   * timestamp. Republishing identical bytes on the same channel with the same install command
   * returns the existing release.
   */
  publish(request: PublishRequest): Promise<PublishResult> {
    return this.queue.run(() => this.publishNow(request));
  }

  /** Re-signs online metadata with little lifetime left (see RepositoryOptions); true if any was. */
  refresh(now: Date): Promise<boolean> {
    return this.queue.run(async () => {
      const due = ONLINE_ROLES.find((role) => Date.parse(this.state[role].signed.expires) - now.getTime() <= this.settings.lifetimes[role] * this.settings.renewWhenRemaining);
      if (!due) return false;
      await this.commit(due, now, {});
      return true;
    });
  }

  /** Root N+1 lists `newKey` as the only `role` key (signed by the root keys); `role` is re-signed with it. */
  rotateOnlineKey(role: OnlineRole, newKey: Signer, rootSigners: readonly Signer[], now: Date): Promise<void> {
    return this.queue.run(async () => {
      const layout = layoutOf(this.state.root.signed);
      layout[role] = { keys: [newKey.publicKey], threshold: 1 };
      const root = this.signNewRoot(layout, rootSigners, [], now);
      await this.commit(role, now, { root, signers: { ...this.signers, [role]: newKey } });
    });
  }

  /** Root N+1 with new root keys and threshold, signed by both the old and the new root keys. */
  rotateRoot(request: RotateRootRequest): Promise<void> {
    return this.queue.run(async () => {
      const layout = layoutOf(this.state.root.signed);
      layout.root = { keys: request.newRootKeys, threshold: request.newThreshold };
      const root = this.signNewRoot(layout, request.oldRootSigners, request.newRootSigners, request.now);
      for (const [name, bytes] of rootWrites(root)) await this.store.write(name, bytes);
      this.state = { ...this.state, root };
    });
  }

  /** Every release in the current targets metadata, by name and then version precedence. */
  async listTargets(): Promise<ReleaseRecord[]> {
    const records = Object.values(this.state.targets.signed.targets).flatMap((target) => recordOf(target) ?? []);
    return records.sort((a, b) => (a.name !== b.name ? (a.name < b.name ? -1 : 1) : compareVersions(a.version, b.version)));
  }

  /** Bytes of a metadata file a client asks for (`root.json`, `N.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json`). */
  async metadata(fileName: string): Promise<Buffer | undefined> {
    return METADATA_FILE.test(fileName) ? this.store.read(fileName) : undefined;
  }

  /** Bytes of a target at the path a client asks for below the targets URL (`NAME/SHA256.VERSION.torrent`). */
  async targetBytes(path: string): Promise<Buffer | undefined> {
    return parseServedTargetPath(path) ? this.store.read(TARGETS_DIR + path) : undefined;
  }

  /** When the current metadata of each role expires (root needs the offline keys to renew). */
  expiries(): Record<TopLevelRole, Date> {
    const at = (role: TopLevelRole) => new Date(this.state[role].signed.expires);
    return { root: at('root'), targets: at('targets'), snapshot: at('snapshot'), timestamp: at('timestamp') };
  }

  private async publishNow(request: PublishRequest): Promise<PublishResult> {
    const { name, version, channel = DEFAULT_CHANNEL, installCommand, metainfoBytes, now } = request;
    checkName(name);
    checkVersion(version);
    checkChannel(channel);
    if (installCommand !== undefined) checkInstallCommand(installCommand);
    const infoHash = typeof request.infoHash === 'string' ? request.infoHash.toLowerCase() : '';
    if (!isInfoHash(infoHash)) throw new TrustError('TRUST_INVALID_INFOHASH', `info-hash ${JSON.stringify(request.infoHash)} must be 64 hex digits`);
    let metainfo: Metainfo;
    try {
      metainfo = parseMetainfo(metainfoBytes);
    } catch (err) {
      throw new TrustError('TRUST_BAD_METAINFO', `${name}@${version}: the metainfo does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (metainfo.infoHash.toString('hex') !== infoHash) {
      throw new TrustError('TRUST_INFOHASH_MISMATCH', `${name}@${version}: the metainfo's info-hash is ${metainfo.infoHash.toString('hex')}, not ${infoHash}`);
    }

    const path = targetPathOf(name, version);
    const sha256 = sha256Hex(metainfoBytes);
    const custom: Record<string, string> = { infoHash, name, version, channel };
    if (installCommand !== undefined) custom['install'] = installCommand;
    const release: ReleaseRecord = { name, version, channel, infoHash, length: metainfoBytes.length, sha256, path, ...(installCommand === undefined ? {} : { install: installCommand }) };
    const existing = this.state.targets.signed.targets[path];
    if (existing) {
      const published = recordOf(existing);
      if (published && published.sha256 === sha256 && published.length === release.length && published.channel === channel && published.install === installCommand) {
        return { ...published, created: false };
      }
      throw new TrustError(
        'TRUST_VERSION_EXISTS',
        `${name}@${version} is already published with other metainfo, channel (${published?.channel ?? 'unknown'}) or install command; publish a new version instead`,
      );
    }
    const versions = Object.keys(this.state.targets.signed.targets).flatMap((other) => {
      const parsed = parseTargetPath(other);
      return parsed?.name === name ? [parsed.version] : [];
    });
    checkNewerThan(name, version, versions);

    const target = new TargetFile({ path, length: release.length, hashes: { sha256 }, unrecognizedFields: { custom } });
    await this.commit('targets', now, {
      targetFiles: { ...this.state.targets.signed.targets, [path]: target },
      writes: [[TARGETS_DIR + servedTargetPath(path, sha256), metainfoBytes]],
    });
    return { ...release, created: true };
  }

  /**
   * Root N+1 for `layout`, signed by `signers` and `newRootSigners`; refused unless a threshold
   * of the current root keys and a threshold of its own root keys signed it, as clients check.
   */
  private signNewRoot(layout: RootLayout, signers: readonly Signer[], newRootSigners: readonly Signer[], now: Date): Metadata<Root> {
    const current = this.state.root;
    const root = new Metadata(buildRoot(layout, current.signed.version + 1, expiresAt(now, this.settings.lifetimes.root)));
    const currentRootKeys = current.signed.roles['root']?.keyIDs ?? [];
    const newRootKeys = layout.root.keys.map((key) => key.keyID);
    for (const [group, allowed, which] of [
      [signers, currentRootKeys, `a root key of root v${current.signed.version}`],
      [newRootSigners, newRootKeys, 'one of the new root keys'],
    ] as const) {
      for (const signer of group) {
        if (!allowed.includes(signer.publicKey.keyID)) throw new TrustError('TRUST_KEY_MISMATCH', `key ${signer.publicKey.keyID} is not ${which}`);
        signMetadata(root, signer);
      }
    }
    for (const [trusted, which] of [
      [current, `the current root keys (v${current.signed.version})`],
      [root, 'the new root keys'],
    ] as const) {
      try {
        trusted.verifyDelegate(MetadataKind.Root, root);
      } catch (err) {
        throw new TrustError('TRUST_THRESHOLD', `root v${root.signed.version} is not signed by a threshold of ${which}: ${(err as Error).message}`, { cause: err });
      }
    }
    return root;
  }

  /** Signs `from` and the roles below it, writes everything in order and only then adopts it. */
  private async commit(from: OnlineRole, now: Date, change: { root?: Metadata<Root>; signers?: OnlineSigners; targetFiles?: Record<string, TargetFile>; writes?: Write[] }): Promise<void> {
    const signers = change.signers ?? this.signers;
    const root = change.root ?? this.state.root;
    const writes: Write[] = [...(change.writes ?? []), ...(change.root ? rootWrites(change.root) : [])];
    const state = signOnline(from, now, { root, targetFiles: change.targetFiles ?? this.state.targets.signed.targets, previous: this.state, signers, lifetimes: this.settings.lifetimes }, writes);
    for (const [name, bytes] of writes) await this.store.write(name, bytes);
    this.state = state;
    this.signers = signers;
  }
}

/**
 * New metadata for `from` and every role that names it (targets -> snapshot -> timestamp), each
 * one version up; appends the files to `writes` with timestamp.json last, so a client never
 * sees a timestamp that points at a file not yet written.
 */
function signOnline(
  from: OnlineRole,
  now: Date,
  inputs: { root: Metadata<Root>; targetFiles: Record<string, TargetFile>; previous: State | undefined; signers: OnlineSigners; lifetimes: Record<TopLevelRole, number> },
  writes: Write[],
): State {
  const { root, previous, signers, lifetimes } = inputs;
  const nextVersion = (role: OnlineRole) => (previous?.[role].signed.version ?? 0) + 1;
  const common = (role: OnlineRole) => ({ version: nextVersion(role), specVersion: SPEC_VERSION, expires: expiresAt(now, lifetimes[role]) });

  let targets = previous?.targets;
  let targetsMeta = previous?.snapshot.signed.meta[TARGETS_META];
  if (from === 'targets' || !targets || !targetsMeta) {
    targets = new Metadata(new Targets({ ...common('targets'), targets: inputs.targetFiles }));
    signMetadata(targets, signers.targets);
    const bytes = serialise(targets);
    writes.push([versionedFile(targets.signed.version, 'targets'), bytes]);
    targetsMeta = metaFileOf(targets.signed.version, bytes);
  }
  let snapshot = previous?.snapshot;
  let snapshotMeta = previous?.timestamp.signed.snapshotMeta;
  if (from !== 'timestamp' || !snapshot || !snapshotMeta) {
    snapshot = new Metadata(new Snapshot({ ...common('snapshot'), meta: { [TARGETS_META]: targetsMeta } }));
    signMetadata(snapshot, signers.snapshot);
    const bytes = serialise(snapshot);
    writes.push([versionedFile(snapshot.signed.version, 'snapshot'), bytes]);
    snapshotMeta = metaFileOf(snapshot.signed.version, bytes);
  }
  const timestamp = new Metadata(new Timestamp({ ...common('timestamp'), snapshotMeta }));
  signMetadata(timestamp, signers.timestamp);
  writes.push([TIMESTAMP_FILE, serialise(timestamp)]);
  return { root, targets, snapshot, timestamp };
}

/** SemVer precedence when both versions parse (all published ones after the first do); text order otherwise. */
function compareVersions(a: string, b: string): number {
  const semA = parseSemVer(a);
  const semB = parseSemVer(b);
  if (semA && semB) return compareSemVer(semA, semB);
  return a < b ? -1 : a > b ? 1 : 0;
}
