import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMetainfo } from '@shoal/torrent';
import { Metadata, MetadataKind } from '@tufjs/models';
import { type Fetcher, type TargetFile, Updater } from 'tuf-js';
import { TrustError, type TrustErrorCode } from './errors';
import { SerialQueue } from './queue';
import { checkName, checkVersion, readCustom, targetPathOf } from './release';

export interface ReleaseVerifierOptions {
  /** The client's metadata cache; its root.json is the root the agent trusts now. */
  metadataDir: string;
  /** Root metadata obtained out of band (at enrollment); written to metadataDir on first use. */
  trustedRootBytes: Buffer;
  /** URL whose children are `N.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json`. */
  metadataBaseUrl: string;
  /** URL whose children are `NAME/SHA256.VERSION.torrent`. */
  targetBaseUrl: string;
  /** How to fetch (for example a NodeFetcher with an mTLS agent); tuf-js's own by default. */
  fetcher?: Fetcher;
}

/** A release whose metainfo came through TUF verification: join the swarm of `infoHash` only. */
export interface VerifiedRelease {
  name: string;
  version: string;
  channel: string;
  infoHash: string;
  metainfoBytes: Buffer;
  /** The release's signed install command, when it carries one. */
  install?: string;
}

type Stage = 'metadata' | 'target';

interface Classification {
  code: TrustErrorCode | ((stage: Stage) => TrustErrorCode);
  /** Error class names, compared by name: tuf-js carries its own copy of @tufjs/models. */
  classes: readonly string[];
  /**
   * tuf-js 4 wraps snapshot and targets failures in a RuntimeError whose message embeds the
   * original error's, so the class is lost there and the message is all that tells.
   */
  message: RegExp;
  meaning: string;
}

const mismatchCode = (stage: Stage): TrustErrorCode => (stage === 'target' ? 'TRUST_TARGET_MISMATCH' : 'TRUST_METADATA_MISMATCH');

// First match wins: the rollback messages are BadVersionErrors too, so they come before mismatches.
const CLASSIFICATIONS: readonly Classification[] = [
  { code: 'TRUST_EXPIRED', classes: ['ExpiredMetadataError'], message: /is expired/, meaning: 'metadata has expired' },
  { code: 'TRUST_ROLLBACK', classes: [], message: /is less than current version/, meaning: 'the repository offered metadata older than metadata already trusted' },
  {
    code: 'TRUST_BAD_SIGNATURE',
    classes: ['UnsignedMetadataError'],
    message: /was signed by \d+\/\d+ keys|multiple signatures found for keyid|failed to verify .* signature/,
    meaning: 'metadata is not signed by a threshold of trusted keys',
  },
  {
    code: mismatchCode,
    classes: ['LengthOrHashMismatchError', 'DownloadLengthMismatchError'],
    message: /Expected length|Expected hash|Max length reached/,
    meaning: 'bytes differ in length or hash from what signed metadata says',
  },
  {
    code: 'TRUST_METADATA_MISMATCH',
    classes: ['BadVersionError'],
    message: /does not match snapshot version|doesn't match timestamp|Expected version \d+, got/,
    meaning: 'metadata versions do not match the metadata that names them',
  },
  {
    code: 'TRUST_UNAVAILABLE',
    classes: ['DownloadHTTPError', 'FetchError'],
    message: /Failed to download|HTTP \d{3}|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|socket hang up|no data for/,
    meaning: 'the repository could not be reached',
  },
];

function toTrustError(err: unknown, stage: Stage, release: string): TrustError {
  if (err instanceof TrustError) return err;
  const className = (err as object | undefined)?.constructor?.name ?? '';
  const message = err instanceof Error ? err.message : String(err);
  const match = CLASSIFICATIONS.find((rule) => rule.classes.includes(className) || rule.message.test(message));
  if (!match) {
    return new TrustError(stage === 'target' ? 'TRUST_UNAVAILABLE' : 'TRUST_BAD_METADATA', `${release}: TUF verification failed: ${message}`, { cause: err });
  }
  const code = typeof match.code === 'function' ? match.code(stage) : match.code;
  return new TrustError(code, `${release}: ${match.meaning}: ${message}`, { cause: err });
}

async function tufStep<T>(stage: Stage, release: string, step: () => Promise<T> | T): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw toTrustError(err, stage, release);
  }
}

/**
 * The agent side: verifies a release with tuf-js's Updater (root rotation, rollback, freeze and
 * mix-and-match protection, threshold signatures) and returns the verified metainfo.
 * Verifications run one at a time because they share the metadata cache.
 */
export class ReleaseVerifier {
  private readonly queue = new SerialQueue();

  constructor(private readonly options: ReleaseVerifierOptions) {}

  verifyRelease(name: string, version: string): Promise<VerifiedRelease> {
    return this.queue.run(() => this.verifyNow(name, version));
  }

  private async verifyNow(name: string, version: string): Promise<VerifiedRelease> {
    checkName(name);
    checkVersion(version);
    const release = `${name}@${version}`;
    await this.ensureTrustedRoot(release);
    // A new Updater per verification: it fixes its reference time when constructed.
    const updater = await tufStep(
      'metadata',
      release,
      () =>
        new Updater({
          metadataDir: this.options.metadataDir,
          metadataBaseUrl: this.options.metadataBaseUrl,
          targetBaseUrl: this.options.targetBaseUrl,
          ...(this.options.fetcher ? { fetcher: this.options.fetcher } : {}),
        }),
    );
    await tufStep('metadata', release, () => updater.refresh());
    const info = await tufStep('metadata', release, () => updater.getTargetInfo(targetPathOf(name, version)));
    if (!info) throw new TrustError('TRUST_UNKNOWN_RELEASE', `${release} is not a target of the verified repository metadata`);
    const custom = readCustom(info.custom, name, version);
    if (typeof custom === 'string') throw new TrustError('TRUST_BAD_CUSTOM', `${release}: ${custom}`);
    const metainfoBytes = await tufStep('target', release, () => this.download(updater, info));
    let infoHash: string;
    try {
      infoHash = parseMetainfo(metainfoBytes).infoHash.toString('hex');
    } catch (err) {
      throw new TrustError('TRUST_BAD_METAINFO', `${release}: the signed metainfo does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (infoHash !== custom.infoHash) {
      throw new TrustError('TRUST_BAD_CUSTOM', `${release}: custom.infoHash ${custom.infoHash} is not the metainfo's info-hash ${infoHash}`);
    }
    return { name, version, channel: custom.channel, infoHash, metainfoBytes, ...(custom.install === undefined ? {} : { install: custom.install }) };
  }

  /** Seeds the cache with the out-of-band root, never replacing a root the client moved on to. */
  private async ensureTrustedRoot(release: string): Promise<void> {
    await mkdir(this.options.metadataDir, { recursive: true });
    const rootPath = join(this.options.metadataDir, 'root.json');
    try {
      await access(rootPath);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // Checked before it is written, so bad bytes cannot poison the cache for later calls.
    await tufStep('metadata', release, () => {
      const root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(this.options.trustedRootBytes.toString('utf8')));
      root.verifyDelegate(MetadataKind.Root, root);
    });
    await writeFile(rootPath, this.options.trustedRootBytes, { flag: 'wx' });
  }

  private async download(updater: Updater, info: TargetFile): Promise<Buffer> {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-trust-'));
    try {
      return await readFile(await updater.downloadTarget(info, join(dir, 'metainfo.torrent')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
