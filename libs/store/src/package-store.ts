import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { FileHashTree, type Metainfo, type PackageFile, blockHashes, checkComponent, diskPath, merkleRoot, pieceLayerOf } from '@shoal/torrent';
import { Bitfield } from './bitfield';
import { StoreError, fsError } from './errors';
import { type FileStat, type FileSystem, type StoreFile, nodeFileSystem, readFully, writeFileAtomic, writeFully } from './fs';
import { HandlePool } from './handle-pool';
import {
  JOURNAL_HEADER_SIZE,
  JOURNAL_RECORD_SIZE,
  JournalReplay,
  PIECE_DURABLE,
  PIECE_UNKNOWN,
  PIECE_WRITTEN,
  RECORD_DROPPED,
  RECORD_DURABLE,
  RECORD_WRITTEN,
  type RecordKind,
  encodeHeader,
  encodeRecords,
  headerMatches,
  recordSeed,
} from './journal';

export type WriteResult = 'verified' | 'corrupt';

/** A file offered to `adoptFile`: where it is, and what its own package's metainfo says it is. */
export interface AdoptSource {
  path: string;
  /** Its pieces root (undefined for an empty file). */
  piecesRoot: Buffer | undefined;
  length: number;
}

/** What `adoptFile` did with one file. */
export interface AdoptResult {
  /** Pieces of the file. */
  pieces: number;
  /** Verified before the call (or meanwhile, by a download): left alone. */
  alreadyVerified: number;
  /** Verified from the source's bytes and journaled, as a downloaded piece would be. */
  adopted: number;
  /** Bytes in the adopted pieces. */
  adoptedBytes: number;
  /** Read from the source but not matching their hash: still missing, to be fetched. */
  rejected: number;
  /**
   * 'clone': the whole file was copied with `FileSystem.copyInto` (reflink where the filesystem
   * can), then read back and verified piece by piece. 'pieces': each missing piece was read from
   * the source and written with `writePiece` (a file that already had verified pieces). 'none':
   * nothing to copy.
   */
  method: 'clone' | 'pieces' | 'none';
}

/**
 * How much of the journal to believe at open:
 * - 'journal' (default): pieces with a DURABLE record are trusted without reading them (after a
 *   check of file sizes); pieces with only a WRITTEN record are re-hashed; nothing else is read.
 * - 'full': every piece is read and hashed; the journal is rewritten from the result.
 */
export type Recheck = 'journal' | 'full';

export interface JournalOptions {
  /**
   * Make written pieces durable (fdatasync their files, append DURABLE records, fdatasync the
   * journal) once this many are waiting. Default 32.
   */
  syncEveryPieces?: number;
  /** ... or once this long has passed since the last sync, checked on each write. Default 2000. */
  syncIntervalMs?: number;
  /** Rewrite the journal at open when it holds more than 2 x verified + this many records. Default 4096. */
  compactSlack?: number;
}

export interface PackageStoreOptions {
  /** Store root: holds `partial/`, `complete/` (and `trash/` for the seed cache). */
  root: string;
  metainfo: Metainfo;
  /** Clock in milliseconds (journal sync interval, completion time). Default Date.now. */
  now?: () => number;
  recheck?: Recheck;
  journal?: JournalOptions;
  /** Data files kept open at once (least recently used closed first). Default 64. */
  maxOpenFiles?: number;
  /** The store's only I/O dependency; default: the real filesystem. */
  fs?: FileSystem;
  /** Called after each journal sync with the pieces it made durable (a metric, a test probe). */
  onDurable?: (pieces: readonly number[]) => void;
}

/** What `open` found and did: how much it trusted, re-hashed, repaired. */
export interface ResumeReport {
  /** 'new' when the package was not in the store, else the folder it was found in. */
  found: 'new' | 'partial' | 'complete';
  recheck: Recheck;
  /** Journal records with a good checksum. */
  journalRecords: number;
  /** Records skipped for a bad checksum (torn or garbage) with the others kept. */
  badRecords: number;
  /** Bytes of a partial record at the end of the journal (a torn append), cut off. */
  tornBytes: number;
  /** The journal was missing or its header did not match the package: every piece re-hashed. */
  journalReset: boolean;
  /** Pieces trusted on a DURABLE record, without reading them. */
  trusted: number;
  /** Pieces read back and hashed (WRITTEN records, files of the wrong size, 'full'). */
  rehashed: number;
  /** Of those, pieces whose data did not verify: they will be fetched again. */
  rehashFailed: number;
  /** Pieces the journal vouched for that were lost with a missing or shortened file. */
  lostWithFiles: number;
  /** Data files that were missing or of the wrong size (paths relative to the package folder). */
  filesRepaired: string[];
  /** The journal was rewritten without its dead records. */
  compacted: boolean;
  /** Verified pieces after open. */
  verified: number;
}

const DATA_DIR = 'data';
const JOURNAL_FILE = 'pieces.journal';
/** Written into the package folder just before it moves to complete/: its proof of completion. */
export const COMPLETE_MARKER = 'shoal-package.json';
const MARKER_FORMAT = 'shoal-package/1';

const DEFAULTS = { syncEveryPieces: 32, syncIntervalMs: 2000, compactSlack: 4096, maxOpenFiles: 64 };

/** Packages open in this process, by folder: two stores on one package would race. */
const OPEN_PACKAGES = new Set<string>();

interface Slot {
  /** Position in meta.files. */
  key: number;
  file: PackageFile;
  tree?: FileHashTree;
}

class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * The pieces of one package on disk.
 *
 * Layout under the store root:
 *
 *     partial/<infoHashHex>/pieces.journal       resume journal (see journal.ts)
 *     partial/<infoHashHex>/data/<diskPath>      data files, created sparse at their final size
 *     complete/<infoHashHex>/                    the same folder once every piece is verified
 *     complete/<infoHashHex>/shoal-package.json  completion marker (info-hash, sizes, time)
 *
 * A piece is hashed against the package's piece layer before anything is written; only verified
 * data reaches the files, and only verified pieces are served. The package appears under
 * complete/ in one atomic rename, after every file was fsync'd.
 */
export class PackageStore {
  readonly infoHashHex: string;
  readonly root: string;
  private readonly fs: FileSystem;
  private readonly now: () => number;
  private readonly syncEveryPieces: number;
  private readonly syncIntervalMs: number;
  private readonly compactSlack: number;
  private readonly onDurable: ((pieces: readonly number[]) => void) | undefined;
  private readonly slots: Slot[];
  /** Slots of files that hold pieces, in piece order, for lookups by piece index. */
  private readonly pieceSlots: Slot[];
  private readonly verified: Bitfield;
  private readonly seed: number;
  private readonly handles: HandlePool;
  private readonly lock = new Mutex();
  private readonly inflight = new Map<number, Promise<WriteResult>>();
  /** Pieces written, waiting for the next group commit of WRITTEN records (`recordWritten`). */
  private toRecord: { slot: Slot; index: number }[] = [];
  private recordRound: Promise<void> | undefined;
  /** Files being rewritten whole by `adoptFile`, by slot key: writes to them wait (never fail). */
  private readonly cloning = new Map<number, Promise<void>>();
  private readonly ops = new Set<Promise<unknown>>();
  private location: 'partial' | 'complete' = 'partial';
  private journal: StoreFile | undefined;
  private journalLength = 0;
  /** Verified pieces with a WRITTEN record, waiting for their DURABLE one. */
  private pending: number[] = [];
  /** Files written since their last fdatasync. */
  private dirty = new Set<number>();
  private lastSync = 0;
  private state: 'opening' | 'open' | 'closing' | 'closed' = 'opening';
  private report: ResumeReport;

  private constructor(
    readonly metainfo: Metainfo,
    root: string,
    options: PackageStoreOptions,
  ) {
    this.root = resolve(root);
    this.infoHashHex = metainfo.infoHash.toString('hex');
    this.fs = options.fs ?? nodeFileSystem;
    this.now = options.now ?? Date.now;
    this.syncEveryPieces = options.journal?.syncEveryPieces ?? DEFAULTS.syncEveryPieces;
    this.syncIntervalMs = options.journal?.syncIntervalMs ?? DEFAULTS.syncIntervalMs;
    this.compactSlack = options.journal?.compactSlack ?? DEFAULTS.compactSlack;
    this.onDurable = options.onDurable;
    this.slots = metainfo.files.map((file, key) => ({ key, file }));
    this.pieceSlots = this.slots.filter((s) => s.file.numPieces > 0);
    this.verified = new Bitfield(metainfo.numPieces);
    this.seed = recordSeed(metainfo.infoHash);
    this.handles = new HandlePool(this.fs, options.maxOpenFiles ?? DEFAULTS.maxOpenFiles, (key) => this.filePath(this.slots[key] as Slot));
    this.report = {
      found: 'new',
      recheck: options.recheck ?? 'journal',
      journalRecords: 0,
      badRecords: 0,
      tornBytes: 0,
      journalReset: false,
      trusted: 0,
      rehashed: 0,
      rehashFailed: 0,
      lostWithFiles: 0,
      filesRepaired: [],
      compacted: false,
      verified: 0,
    };
  }

  /**
   * Opens (or creates) the package's folder under `root` and rebuilds which pieces are verified
   * from the journal; see `Recheck` for what is read back. Data files missing or of the wrong
   * size lose the pieces the journal vouched for in them, and are recreated at their size.
   */
  static async open(options: PackageStoreOptions): Promise<PackageStore> {
    checkOptions(options);
    const store = new PackageStore(options.metainfo, options.root, options);
    const key = join(store.root, store.infoHashHex);
    if (OPEN_PACKAGES.has(key)) {
      throw new StoreError('STORE_BUSY', `package ${store.infoHashHex} is already open in this process`, store.root);
    }
    OPEN_PACKAGES.add(key);
    try {
      await store.load();
    } catch (err) {
      await store.handles.closeAll();
      await store.journal?.close().catch(() => undefined);
      OPEN_PACKAGES.delete(key);
      throw err;
    }
    store.state = 'open';
    return store;
  }

  // ---- paths ---------------------------------------------------------------------------------

  /** `<root>/partial/<infoHashHex>`: where the package lives until it is finished. */
  get partialDir(): string {
    return join(this.root, 'partial', this.infoHashHex);
  }

  /** `<root>/complete/<infoHashHex>`: the stable home of the finished package. */
  get completeDir(): string {
    return join(this.root, 'complete', this.infoHashHex);
  }

  /** The folder the package is in now. */
  get dir(): string {
    return this.location === 'complete' ? this.completeDir : this.partialDir;
  }

  /** The package's files as `verifyPackageData` wants them: the single file, or the package folder. */
  get packagePath(): string {
    const first = this.metainfo.files[0] as PackageFile;
    return join(this.dir, DATA_DIR, diskPath(this.metainfo, first)[0] as string);
  }

  /** `packagePath` once finished: stable for as long as the package stays in the store. */
  get completePackagePath(): string {
    return finishedPackagePath(this.root, this.metainfo);
  }

  private get journalPath(): string {
    return join(this.dir, JOURNAL_FILE);
  }

  private filePath(slot: Slot, dir = this.dir): string {
    return join(dir, DATA_DIR, ...diskPath(this.metainfo, slot.file));
  }

  // ---- state ---------------------------------------------------------------------------------

  /** A snapshot of the verified pieces. */
  have(): Bitfield {
    return this.verified.clone();
  }

  hasPiece(index: number): boolean {
    return this.verified.get(index);
  }

  get verifiedCount(): number {
    return this.verified.count;
  }

  /** Every piece verified (the package may still be in partial/ until `finish`). */
  isComplete(): boolean {
    return this.verified.isFull;
  }

  /** The package is in complete/. */
  get finished(): boolean {
    return this.location === 'complete';
  }

  /** What `open` found and did. */
  get resume(): ResumeReport {
    return { ...this.report, filesRepaired: [...this.report.filesRepaired] };
  }

  /** Byte length of a piece (the last piece of each file may be short). */
  pieceSize(index: number): number {
    const slot = this.slotOf(index);
    return this.treeOf(slot).pieceSize(index - slot.file.firstPiece);
  }

  // ---- writing -------------------------------------------------------------------------------

  /**
   * Verifies a whole piece against the piece layer, then writes it in place. 'corrupt' means the
   * data does not hash to the piece (or has the wrong length): nothing was written or marked, and
   * the caller should blame the sender and fetch it again. 'verified' means the piece is stored
   * and may be served; it is durable across a crash once its journal batch is synced.
   *
   * Throws STORE_DISK_FULL / STORE_PERMISSION / STORE_IO when the disk refuses: the piece is then
   * not marked, and everything verified before stays verified.
   */
  async writePiece(index: number, data: Uint8Array): Promise<WriteResult> {
    this.checkOpen();
    const slot = this.slotOf(index);
    if (!(data instanceof Uint8Array)) {
      throw new StoreError('STORE_BAD_OPTION', `piece ${index}: data must be a Buffer or Uint8Array`);
    }
    if (!this.treeOf(slot).verifyPiece(index - slot.file.firstPiece, data)) return 'corrupt';
    if (this.verified.get(index)) return 'verified';
    const running = this.inflight.get(index);
    if (running) return running;
    const clone = this.cloning.get(slot.key);
    const write = (): Promise<WriteResult> => (this.verified.get(index) ? Promise.resolve('verified') : this.storePiece(index, slot, data));
    const job = this.track(clone ? clone.then(write) : write()).finally(() => this.inflight.delete(index));
    this.inflight.set(index, job);
    return job;
  }

  private async storePiece(index: number, slot: Slot, data: Uint8Array): Promise<WriteResult> {
    const local = index - slot.file.firstPiece;
    const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const path = this.filePath(slot);
    try {
      await this.handles.use(slot.key, (file) => writeFully(file, buffer, local * this.metainfo.pieceLength));
    } catch (err) {
      throw fsError(err, path, `writing piece ${index}`);
    }
    await this.recordVerified(slot, index);
    return 'verified';
  }

  /**
   * A piece whose verified bytes are in its file: WRITTEN record, then marked (servable), then
   * made durable with its batch. The one way a piece becomes verified while the store is open.
   */
  private async recordVerified(slot: Slot, index: number): Promise<void> {
    await this.recordWritten(slot, index);
    if (this.pending.length >= this.syncEveryPieces || this.now() - this.lastSync >= this.syncIntervalMs) {
      await this.lock.run(() => this.syncLocked());
    }
  }

  /**
   * Group commit: the WRITTEN records of every piece whose data landed while the previous append
   * (or a sync) held the journal go out in one write. One append per piece, one after the other,
   * capped a loopback download at the journal's round-trip rate: a leech sat with all its piece
   * slots waiting here and no request outstanding. Rejects every piece of the round if the
   * append fails.
   */
  private recordWritten(slot: Slot, index: number): Promise<void> {
    this.toRecord.push({ slot, index });
    this.recordRound ??= this.lock.run(async () => {
      // Pieces that arrive from here on wait for the next round.
      const round = this.toRecord;
      this.toRecord = [];
      this.recordRound = undefined;
      await this.appendRecords(RECORD_WRITTEN, round.map((r) => r.index));
      for (const r of round) {
        this.verified.set(r.index);
        this.pending.push(r.index);
        this.dirty.add(r.slot.key);
      }
    });
    return this.recordRound;
  }

  /**
   * Makes every verified piece durable now: fdatasync the files written since the last sync, then
   * append their DURABLE records and fdatasync the journal. Writes do this by themselves every
   * `syncEveryPieces` pieces or `syncIntervalMs`; the store starts no timers, so call this from
   * a timer to bound the window while downloads are idle.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    return this.track(this.lock.run(() => this.syncLocked()));
  }

  private async syncLocked(): Promise<void> {
    const batch = this.pending;
    const files = [...this.dirty];
    this.pending = [];
    this.dirty = new Set();
    if (batch.length === 0) {
      this.lastSync = this.now();
      return;
    }
    for (const key of files) {
      const slot = this.slots[key] as Slot;
      try {
        await this.handles.use(key, (file) => file.datasync());
      } catch (err) {
        // After a failed fdatasync the kernel may have dropped the dirty pages: the pieces of that
        // file in this batch can no longer be vouched for, so they are unmarked (fetched again).
        const lost = new Set(batch.filter((i) => this.slotOf(i) === slot));
        for (const i of lost) this.verified.set(i, false);
        this.pending = batch.filter((i) => !lost.has(i)).concat(this.pending);
        for (const k of files) if (k !== key) this.dirty.add(k);
        throw fsError(err, this.filePath(slot), 'syncing written pieces to disk');
      }
    }
    try {
      await this.appendRecords(RECORD_DURABLE, batch);
      await (this.journal as StoreFile).datasync();
    } catch (err) {
      this.pending = batch.concat(this.pending);
      throw fsError(err, this.journalPath, 'syncing the journal');
    }
    this.lastSync = this.now();
    try {
      this.onDurable?.(batch);
    } catch {
      // An observer's failure is not a store failure.
    }
  }

  /**
   * Positional append at the known end of the journal: after a failed or short write the next
   * append overwrites whatever was left, so the journal never drifts off its record boundaries.
   */
  private async appendRecords(kind: RecordKind, indices: readonly number[]): Promise<void> {
    const journal = this.journal as StoreFile;
    const bytes = encodeRecords(this.seed, kind, indices);
    try {
      await writeFully(journal, bytes, this.journalLength);
    } catch (err) {
      await journal.truncate(this.journalLength).catch(() => undefined);
      throw fsError(err, this.journalPath, 'appending to the journal');
    }
    this.journalLength += bytes.length;
  }

  // ---- reuse ---------------------------------------------------------------------------------

  /**
   * Takes file `fileIndex` from a copy already on this machine (the same file in another package,
   * e.g. the previous version) instead of fetching it. The source is not trusted: its claimed
   * pieces root and length must be this file's, its size on disk must be the file's length, and
   * then every piece is hashed against this package's piece layer and journaled exactly as a
   * downloaded piece is (`writePiece`'s path). Pieces that do not verify stay missing, to be
   * fetched; pieces verified before are left alone.
   *
   * A file with no verified piece yet is copied whole with `FileSystem.copyInto` (a reflink where
   * the filesystem can) and read back; writes to it wait meanwhile. A file with some verified
   * pieces gets its missing pieces read from the source and passed to `writePiece`. Memory: two
   * pieces at most.
   *
   * Throws STORE_REUSE_MISMATCH / STORE_REUSE_MISSING / STORE_REUSE_UNREADABLE when the source is
   * at fault (nothing verified is lost; see `isReuseSourceError`), STORE_BAD_RANGE for a bad
   * index, and the usual disk errors for this store's own files.
   */
  async adoptFile(fileIndex: number, source: AdoptSource): Promise<AdoptResult> {
    this.checkOpen();
    if (!Number.isSafeInteger(fileIndex) || fileIndex < 0 || fileIndex >= this.slots.length) {
      throw new StoreError('STORE_BAD_RANGE', `file ${String(fileIndex)} is outside 0..${this.slots.length - 1}`);
    }
    return this.track(this.adopt(this.slots[fileIndex] as Slot, source));
  }

  private async adopt(slot: Slot, source: AdoptSource): Promise<AdoptResult> {
    const file = slot.file;
    const mismatch = (why: string): StoreError => new StoreError('STORE_REUSE_MISMATCH', `not the same file as ${file.path.join('/')}: ${why}`, source.path);
    const claimed = source.piecesRoot;
    if (file.piecesRoot ? !claimed || !file.piecesRoot.equals(claimed) : claimed !== undefined) throw mismatch('another pieces root');
    if (source.length !== file.length) throw mismatch(`${source.length} bytes, not ${file.length}`);
    let info: FileStat | undefined;
    try {
      info = await this.fs.stat(source.path);
    } catch (err) {
      throw reuseError(err, source.path, 'looking at');
    }
    if (!info || !info.isFile) throw new StoreError('STORE_REUSE_MISSING', 'no file to reuse there', source.path);
    if (info.size !== file.length) throw mismatch(`${info.size} bytes on disk, not ${file.length}`);

    const result: AdoptResult = { pieces: file.numPieces, alreadyVerified: 0, adopted: 0, adoptedBytes: 0, rejected: 0, method: 'none' };
    for (let local = 0; local < file.numPieces; local++) if (this.verified.get(file.firstPiece + local)) result.alreadyVerified++;
    if (result.alreadyVerified === file.numPieces) return result;

    // One whole-file copy at a time per file; writes to the file wait for it (see writePiece).
    for (let other = this.cloning.get(slot.key); other; other = this.cloning.get(slot.key)) await other;
    let cloned = false;
    let release = (): void => undefined;
    this.cloning.set(slot.key, new Promise<void>((resolve) => (release = resolve)));
    try {
      const writing: Promise<unknown>[] = [];
      for (const [index, job] of this.inflight) if (this.slotOf(index) === slot) writing.push(job);
      await Promise.allSettled(writing);
      if (!this.pieces(slot).some((index) => this.verified.get(index))) {
        cloned = true;
        await this.cloneAndVerify(slot, source.path, result);
      }
    } finally {
      this.cloning.delete(slot.key);
      release();
    }
    if (!cloned) await this.copyMissingPieces(slot, source.path, result);
    return result;
  }

  /** Copies the source over a file holding no verified piece, then verifies and journals each piece. */
  private async cloneAndVerify(slot: Slot, sourcePath: string, result: AdoptResult): Promise<void> {
    const path = this.filePath(slot);
    const length = slot.file.length;
    const restoreSize = (): Promise<void> =>
      this.step(path, 'restoring the size of a data file', () => this.handles.use(slot.key, (file) => file.truncate(length)));
    try {
      await this.fs.copyInto(sourcePath, path);
    } catch (err) {
      // The file may be cut short or half copied: it held no verified piece, so only its size matters.
      await restoreSize().catch(() => undefined);
      const errno = (err as NodeJS.ErrnoException).code ?? '';
      throw TARGET_ERRNOS.has(errno) ? fsError(err, path, `copying ${sourcePath} in`) : reuseError(err, sourcePath, 'copying from');
    }
    result.method = 'clone';
    // The source may have changed size since it was looked at: the file keeps its own.
    await restoreSize();
    const tree = this.treeOf(slot);
    const buffers = [Buffer.allocUnsafe(tree.pieceSize(0)), Buffer.allocUnsafe(tree.pieceSize(0))];
    const read = (local: number): Promise<number> =>
      this.step(path, `reading back reused piece ${slot.file.firstPiece + local}`, () =>
        this.handles.use(slot.key, (file) => readFully(file, buffers[local % 2] as Buffer, tree.pieceSize(local), local * this.metainfo.pieceLength)),
      );
    // Reads one piece ahead, so the disk works while a piece is hashed.
    let ahead: Promise<number> | undefined = read(0);
    try {
      for (let local = 0; local < slot.file.numPieces && ahead; local++) {
        const got = await ahead;
        ahead = local + 1 < slot.file.numPieces && this.state === 'open' ? read(local + 1) : undefined;
        const size = tree.pieceSize(local);
        if (got === size && tree.verifyPiece(local, (buffers[local % 2] as Buffer).subarray(0, size))) {
          await this.recordVerified(slot, slot.file.firstPiece + local);
          result.adopted++;
          result.adoptedBytes += size;
        } else {
          result.rejected++;
        }
      }
    } finally {
      await ahead?.catch(() => undefined);
    }
    this.checkStillOpen(result);
  }

  /** Reads each missing piece of a partly present file from the source and hands it to writePiece. */
  private async copyMissingPieces(slot: Slot, sourcePath: string, result: AdoptResult): Promise<void> {
    result.method = 'pieces';
    const missing = this.pieces(slot).filter((index) => !this.verified.get(index));
    let input: StoreFile;
    try {
      input = await this.fs.open(sourcePath, 'r');
    } catch (err) {
      throw reuseError(err, sourcePath, 'opening');
    }
    const read = async (index: number): Promise<Buffer> => {
      const data = Buffer.allocUnsafe(this.pieceSize(index));
      try {
        const got = await readFully(input, data, data.length, (index - slot.file.firstPiece) * this.metainfo.pieceLength);
        // A short read (the source shrank) fails verification in writePiece.
        return data.subarray(0, got);
      } catch (err) {
        throw reuseError(err, sourcePath, `reading piece ${index} from`);
      }
    };
    let ahead: Promise<Buffer> | undefined;
    try {
      ahead = missing.length > 0 ? read(missing[0] as number) : undefined;
      for (let k = 0; k < missing.length && ahead; k++) {
        const data = await ahead;
        ahead = k + 1 < missing.length && this.state === 'open' ? read(missing[k + 1] as number) : undefined;
        const index = missing[k] as number;
        if (this.verified.get(index)) {
          result.alreadyVerified++;
          continue;
        }
        if ((await this.writePiece(index, data)) === 'verified') {
          result.adopted++;
          result.adoptedBytes += data.length;
        } else {
          result.rejected++;
        }
      }
    } finally {
      await ahead?.catch(() => undefined);
      await input.close().catch(() => undefined);
    }
    this.checkStillOpen(result);
  }

  /** An adoption cut short by `close` says so, rather than passing for a file with bad pieces. */
  private checkStillOpen(result: AdoptResult): void {
    if (this.state !== 'open' && result.alreadyVerified + result.adopted + result.rejected < result.pieces) {
      throw new StoreError('STORE_CLOSED', `package ${this.infoHashHex} closed while a file was being reused; ${result.adopted} pieces were kept`);
    }
  }

  private pieces(slot: Slot): number[] {
    return Array.from({ length: slot.file.numPieces }, (_, local) => slot.file.firstPiece + local);
  }

  // ---- reading -------------------------------------------------------------------------------

  /**
   * `length` bytes at `begin` of a verified piece. Throws STORE_BAD_RANGE for a range outside the
   * piece and STORE_PIECE_NOT_VERIFIED for a piece not verified: nothing unverified is served.
   */
  async readBlock(index: number, begin: number, length: number): Promise<Buffer> {
    this.checkOpen();
    const slot = this.slotOf(index);
    const size = this.treeOf(slot).pieceSize(index - slot.file.firstPiece);
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(length) || begin < 0 || length < 1 || begin + length > size) {
      throw new StoreError('STORE_BAD_RANGE', `block ${String(begin)}+${String(length)} is outside piece ${index} (${size} bytes)`);
    }
    if (!this.verified.get(index)) {
      throw new StoreError('STORE_PIECE_NOT_VERIFIED', `piece ${index} is not verified`);
    }
    return this.track(this.readRange(index, slot, begin, length));
  }

  /**
   * The 16 KiB leaf hashes of a verified piece, computed from its data (for BEP 52 `hashes`
   * replies, with FileHashTree.hashesFor). The data is checked against the piece layer on the
   * way: a piece that rotted on disk is dropped (STORE_DATA_DAMAGED) and will be fetched again.
   */
  async leafHashes(index: number): Promise<Buffer> {
    this.checkOpen();
    const slot = this.slotOf(index);
    if (!this.verified.get(index)) {
      throw new StoreError('STORE_PIECE_NOT_VERIFIED', `piece ${index} is not verified`);
    }
    return this.track(
      (async () => {
        const tree = this.treeOf(slot);
        const local = index - slot.file.firstPiece;
        const data = await this.readRange(index, slot, 0, tree.pieceSize(local));
        const leaves = blockHashes(data);
        if (!merkleRoot(leaves, tree.leavesPerPiece).equals(tree.pieceHash(local))) {
          await this.dropDamaged(index);
          throw new StoreError('STORE_DATA_DAMAGED', `piece ${index} no longer matches its hash on disk; dropped`, this.filePath(slot));
        }
        return leaves;
      })(),
    );
  }

  private async readRange(index: number, slot: Slot, begin: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    const position = (index - slot.file.firstPiece) * this.metainfo.pieceLength + begin;
    let got: number;
    try {
      got = await this.handles.use(slot.key, (file) => readFully(file, buffer, length, position));
    } catch (err) {
      throw fsError(err, this.filePath(slot), `reading piece ${index}`);
    }
    if (got < length) {
      await this.dropDamaged(index);
      throw new StoreError('STORE_DATA_DAMAGED', `piece ${index} is cut short on disk; dropped`, this.filePath(slot));
    }
    return buffer;
  }

  /**
   * Withdraws a verified piece whose data went bad on disk. A finished package moves back to
   * partial/: nothing incomplete stays under complete/.
   */
  private dropDamaged(index: number): Promise<void> {
    return this.lock.run(async () => {
      if (!this.verified.set(index, false)) return;
      this.pending = this.pending.filter((i) => i !== index);
      try {
        await this.appendRecords(RECORD_DROPPED, [index]);
        await (this.journal as StoreFile).datasync();
      } catch {
        // Without the record the next open trusts the piece again and this check catches it again.
      }
      if (this.location === 'complete') await this.moveBackToPartial();
    });
  }

  // ---- finishing -----------------------------------------------------------------------------

  /**
   * Once every piece is verified: fsync every file, the journal and the folders, write the
   * completion marker, then rename partial/<hash> to complete/<hash> in one step. Returns
   * `completePackagePath`. Idempotent. A crash at any point leaves either the whole partial
   * folder (finish again after reopening) or the whole complete one.
   */
  async finish(): Promise<string> {
    this.checkOpen();
    return this.track(
      this.lock.run(async () => {
        if (this.location === 'complete') return this.completePackagePath;
        if (!this.verified.isFull) {
          const missing = this.metainfo.numPieces - this.verified.count;
          throw new StoreError('STORE_NOT_COMPLETE', `${missing} of ${this.metainfo.numPieces} pieces are not verified yet`, this.partialDir);
        }
        for (const slot of this.pieceSlots) {
          try {
            await this.handles.use(slot.key, (file) => file.datasync());
          } catch (err) {
            throw fsError(err, this.filePath(slot), 'syncing the package before completion');
          }
        }
        this.dirty.clear();
        await this.syncLocked();
        const dataDir = join(this.partialDir, DATA_DIR);
        const folders = new Set<string>([dataDir]);
        for (const slot of this.slots) {
          for (let dir = dirname(this.filePath(slot)); dir.startsWith(dataDir) && !folders.has(dir); dir = dirname(dir)) {
            folders.add(dir);
          }
        }
        await this.step(this.partialDir, 'syncing the package folders', async () => {
          for (const folder of folders) await this.fs.syncDir(folder);
          await writeFileAtomic(this.fs, join(this.partialDir, COMPLETE_MARKER), this.marker());
        });
        await this.step(this.completeDir, 'moving the finished package into place', async () => {
          if (await this.fs.stat(this.completeDir)) {
            throw new StoreError('STORE_LAYOUT', 'something is already there; the finished package stays in partial/', this.completeDir);
          }
          await this.fs.mkdir(dirname(this.completeDir));
          await this.fs.rename(this.partialDir, this.completeDir);
          this.location = 'complete';
          await this.fs.syncDir(dirname(this.completeDir));
          await this.fs.syncDir(dirname(this.partialDir));
        });
        return this.completePackagePath;
      }),
    );
  }

  private marker(): Buffer {
    const meta = this.metainfo;
    const body = {
      format: MARKER_FORMAT,
      infoHash: this.infoHashHex,
      name: meta.name,
      pieceLength: meta.pieceLength,
      numPieces: meta.numPieces,
      totalLength: meta.totalLength,
      files: meta.files.length,
      completedAt: new Date(this.now()).toISOString(),
    };
    return Buffer.from(`${JSON.stringify(body, null, 2)}\n`);
  }

  private async moveBackToPartial(): Promise<void> {
    await this.step(this.partialDir, 'moving a damaged package back to partial/', async () => {
      await this.fs.remove(this.partialDir);
      await this.fs.mkdir(dirname(this.partialDir));
      await this.fs.rename(this.completeDir, this.partialDir);
      this.location = 'partial';
      await this.fs.syncDir(dirname(this.completeDir));
      await this.fs.syncDir(dirname(this.partialDir));
      await this.fs.remove(join(this.partialDir, COMPLETE_MARKER));
    });
  }

  // ---- closing -------------------------------------------------------------------------------

  /** Waits for running operations, syncs the journal, closes every file. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    await Promise.allSettled([...this.ops]);
    let error: unknown;
    try {
      await this.lock.run(() => this.syncLocked());
    } catch (err) {
      error = err;
    }
    await this.handles.closeAll();
    await this.journal?.close().catch(() => undefined);
    this.journal = undefined;
    this.state = 'closed';
    OPEN_PACKAGES.delete(join(this.root, this.infoHashHex));
    if (error) throw error;
  }

  // ---- opening -------------------------------------------------------------------------------

  private async load(): Promise<void> {
    const partialRoot = dirname(this.partialDir);
    const completeRoot = dirname(this.completeDir);
    await this.step(this.root, 'creating the store folders', async () => {
      await this.fs.mkdir(partialRoot);
      await this.fs.mkdir(completeRoot);
    });
    await this.removeStaleTemps(partialRoot);
    const complete = await this.statOf(this.completeDir);
    const partial = await this.statOf(this.partialDir);
    if (complete) {
      if (!complete.isDirectory) throw new StoreError('STORE_LAYOUT', 'expected a package folder, found a file', this.completeDir);
      this.location = 'complete';
      this.report.found = 'complete';
      // The complete folder supersedes a partial one (which only a foreign hand could have made).
      if (partial) await this.step(this.partialDir, 'removing a stale partial folder', () => this.fs.remove(this.partialDir));
    } else if (partial) {
      if (!partial.isDirectory) throw new StoreError('STORE_LAYOUT', 'expected a package folder, found a file', this.partialDir);
      this.report.found = 'partial';
    } else {
      await this.createSkeleton();
      this.report.found = 'new';
    }
    await this.removeStaleTemps(this.dir);
    await this.resumeFromJournal();
    this.lastSync = this.now();
    if (this.location === 'complete') {
      if (!this.verified.isFull) await this.moveBackToPartial();
      else await this.ensureMarker();
    }
    this.report.verified = this.verified.count;
  }

  /** Builds the folder, the sparse files and the journal aside, then renames it into place. */
  private async createSkeleton(): Promise<void> {
    const temp = join(dirname(this.partialDir), `.${this.infoHashHex}.${randomBytes(6).toString('hex')}.tmp`);
    await this.step(temp, 'creating the package folder', async () => {
      try {
        for (const slot of this.slots) {
          const path = this.filePath(slot, temp);
          await this.fs.mkdir(dirname(path));
          const file = await this.fs.open(path, 'wx');
          try {
            await file.truncate(slot.file.length);
          } finally {
            await file.close();
          }
        }
        const journal = await this.fs.open(join(temp, JOURNAL_FILE), 'wx');
        try {
          await writeFully(journal, encodeHeader(this.metainfo), 0);
          await journal.datasync();
        } finally {
          await journal.close();
        }
        await this.fs.syncDir(temp);
        await this.fs.rename(temp, this.partialDir);
      } catch (err) {
        await this.fs.remove(temp).catch(() => undefined);
        throw err;
      }
      await this.fs.syncDir(dirname(this.partialDir));
    });
  }

  /**
   * Removes what a crash in the middle of an atomic replacement leaves: `.<hash>.*.tmp` folders in
   * partial/ (a half-built package folder), `.*.tmp` files in the package folder (a journal being
   * rewritten, a marker being written). Data files live under data/ and are never touched.
   */
  private async removeStaleTemps(folder: string): Promise<void> {
    const prefix = folder === dirname(this.partialDir) ? `.${this.infoHashHex}.` : '.';
    const entries = await this.step(folder, 'listing a store folder', () => this.fs.list(folder));
    for (const entry of entries) {
      if (entry.name.startsWith(prefix) && entry.name.endsWith('.tmp')) {
        const path = join(folder, entry.name);
        await this.step(path, 'removing a folder left by an interrupted open', () => this.fs.remove(path));
      }
    }
  }

  private async resumeFromJournal(): Promise<void> {
    const report = this.report;
    const replay = await this.openJournal();
    const full = report.recheck === 'full' || report.journalReset;

    // Fast check of file sizes: the journal cannot vouch for bytes a file no longer has.
    const actualSize = new Map<number, number>();
    const drop: number[] = [];
    for (const slot of this.slots) {
      const path = this.filePath(slot);
      const info = await this.statOf(path);
      if (info && !info.isFile) throw new StoreError('STORE_LAYOUT', 'expected a data file, found a folder', path);
      const size = info ? info.size : -1;
      actualSize.set(slot.key, size);
      if (size === slot.file.length) continue;
      report.filesRepaired.push(slot.file.path.join('/'));
      for (let local = 0; local < slot.file.numPieces; local++) {
        const index = slot.file.firstPiece + local;
        const end = local * this.metainfo.pieceLength + this.treeOf(slot).pieceSize(local);
        if (end > size) {
          if (replay.state[index] !== PIECE_UNKNOWN) {
            if (replay.state[index] === PIECE_DURABLE) report.lostWithFiles++;
            drop.push(index);
          }
          replay.state[index] = PIECE_UNKNOWN;
        } else if (size < slot.file.length && replay.state[index] === PIECE_DURABLE) {
          // A shortened file may have been cut and regrown: read what the journal vouched for.
          replay.state[index] = PIECE_WRITTEN;
        }
      }
    }

    // Trust DURABLE records; re-hash what only a WRITTEN record (or 'full') speaks for.
    const recovered: number[] = [];
    const piece = Buffer.allocUnsafe(this.metainfo.pieceLength);
    for (const slot of this.pieceSlots) {
      const size = actualSize.get(slot.key) as number;
      for (let local = 0; local < slot.file.numPieces; local++) {
        const index = slot.file.firstPiece + local;
        const state = replay.state[index];
        if (state === PIECE_DURABLE && !full) {
          this.verified.set(index);
          report.trusted++;
          continue;
        }
        if (!full && state !== PIECE_WRITTEN) continue;
        const length = this.treeOf(slot).pieceSize(local);
        if (local * this.metainfo.pieceLength + length > size) continue;
        report.rehashed++;
        const got = await this.step(this.filePath(slot), `re-hashing piece ${index}`, () =>
          this.handles.use(slot.key, (file) => readFully(file, piece, length, local * this.metainfo.pieceLength)),
        );
        if (got === length && this.treeOf(slot).verifyPiece(local, piece.subarray(0, length))) {
          this.verified.set(index);
          recovered.push(index);
        } else {
          report.rehashFailed++;
          if (state !== PIECE_UNKNOWN) drop.push(index);
        }
      }
    }

    // Record what was learnt before repairing sizes: once a file has its length again, only a
    // DROPPED record keeps a DURABLE one from vouching for the zeros in it.
    const recoveredFiles = new Set(recovered.map((i) => this.slotOf(i).key));
    for (const key of recoveredFiles) {
      const slot = this.slots[key] as Slot;
      await this.step(this.filePath(slot), 'syncing re-hashed pieces', () => this.handles.use(key, (file) => file.datasync()));
    }
    const wasted = replay.records - 2 * this.verified.count;
    if (full || wasted > this.compactSlack) {
      await this.rewriteJournal();
      report.compacted = true;
    } else if (drop.length > 0 || recovered.length > 0) {
      await this.appendRecords(RECORD_DROPPED, drop);
      await this.appendRecords(RECORD_DURABLE, recovered);
      await this.step(this.journalPath, 'syncing the journal', () => (this.journal as StoreFile).datasync());
    }

    for (const slot of this.slots) {
      const size = actualSize.get(slot.key) as number;
      if (size === slot.file.length) continue;
      const path = this.filePath(slot);
      await this.step(path, 'restoring the size of a data file', async () => {
        await this.fs.mkdir(dirname(path));
        const file = await this.fs.open(path, size < 0 ? 'w+' : 'r+');
        try {
          await file.truncate(slot.file.length);
        } finally {
          await file.close();
        }
      });
    }
  }

  /** Opens the journal and replays it; a missing or foreign journal is replaced. */
  private async openJournal(): Promise<JournalReplay> {
    const path = this.journalPath;
    const replay = new JournalReplay(this.seed, this.metainfo.numPieces);
    const info = await this.statOf(path);
    if (!info) {
      this.report.journalReset = true;
      await this.step(path, 'creating the journal', () => writeFileAtomic(this.fs, path, encodeHeader(this.metainfo)));
    } else if (!info.isFile) {
      throw new StoreError('STORE_LAYOUT', 'expected the journal file, found a folder', path);
    }
    const journal = await this.step(path, 'opening the journal', () => this.fs.open(path, 'r+'));
    this.journal = journal;
    await this.step(path, 'reading the journal', async () => {
      const size = await journal.size();
      const header = Buffer.alloc(JOURNAL_HEADER_SIZE);
      const got = await readFully(journal, header, JOURNAL_HEADER_SIZE, 0);
      if (got < JOURNAL_HEADER_SIZE || !headerMatches(header, this.metainfo)) {
        // Not this package's journal (or a damaged one): it vouches for nothing. It is rewritten
        // after the full re-hash.
        this.report.journalReset = true;
        this.journalLength = Math.min(size, JOURNAL_HEADER_SIZE);
        return;
      }
      const chunk = Buffer.allocUnsafe(JOURNAL_RECORD_SIZE * 65536);
      let position = JOURNAL_HEADER_SIZE;
      while (size - position >= JOURNAL_RECORD_SIZE) {
        const want = Math.min(chunk.length, Math.floor((size - position) / JOURNAL_RECORD_SIZE) * JOURNAL_RECORD_SIZE);
        const n = await readFully(journal, chunk, want, position);
        const whole = Math.floor(n / JOURNAL_RECORD_SIZE) * JOURNAL_RECORD_SIZE;
        replay.apply(chunk.subarray(0, whole));
        position += whole;
        if (n < want) break;
      }
      this.journalLength = position;
      this.report.tornBytes = size - position;
      this.report.journalRecords = replay.records;
      this.report.badRecords = replay.badRecords;
      if (size > position) await journal.truncate(position);
    });
    return replay;
  }

  /** Writes a fresh journal (header + a DURABLE record per verified piece) and swaps it in. */
  private async rewriteJournal(): Promise<void> {
    const path = this.journalPath;
    const temp = join(this.dir, `.${JOURNAL_FILE}.${randomBytes(6).toString('hex')}.tmp`);
    await this.step(path, 'rewriting the journal', async () => {
      try {
        const file = await this.fs.open(temp, 'wx');
        let length = JOURNAL_HEADER_SIZE;
        try {
          await writeFully(file, encodeHeader(this.metainfo), 0);
          // In batches, so memory stays small whatever the number of pieces.
          let batch: number[] = [];
          for (let i = 0; i <= this.metainfo.numPieces; i++) {
            if (i < this.metainfo.numPieces && this.verified.get(i)) batch.push(i);
            if (batch.length === 65536 || (i === this.metainfo.numPieces && batch.length > 0)) {
              const bytes = encodeRecords(this.seed, RECORD_DURABLE, batch);
              await writeFully(file, bytes, length);
              length += bytes.length;
              batch = [];
            }
          }
          await file.datasync();
        } finally {
          await file.close();
        }
        await this.fs.rename(temp, path);
        await this.fs.syncDir(this.dir);
        await this.journal?.close().catch(() => undefined);
        this.journal = await this.fs.open(path, 'r+');
        this.journalLength = length;
      } catch (err) {
        await this.fs.remove(temp).catch(() => undefined);
        throw err;
      }
    });
  }

  private async ensureMarker(): Promise<void> {
    const path = join(this.completeDir, COMPLETE_MARKER);
    let ok = false;
    try {
      const file = await this.fs.open(path, 'r');
      try {
        const buffer = Buffer.alloc(64 * 1024);
        const n = await readFully(file, buffer, buffer.length, 0);
        const body = JSON.parse(buffer.subarray(0, n).toString('utf8')) as { infoHash?: unknown };
        ok = body.infoHash === this.infoHashHex;
      } finally {
        await file.close();
      }
    } catch {
      ok = false;
    }
    if (!ok) await this.step(path, 'writing the completion marker', () => writeFileAtomic(this.fs, path, this.marker()));
  }

  // ---- helpers -------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.state !== 'open') {
      throw new StoreError('STORE_CLOSED', `package ${this.infoHashHex} is ${this.state === 'opening' ? 'not open yet' : 'closed'}`);
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.ops.add(promise);
    const done = (): void => {
      this.ops.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  private slotOf(index: number): Slot {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.metainfo.numPieces) {
      throw new StoreError('STORE_BAD_RANGE', `piece ${String(index)} is outside 0..${this.metainfo.numPieces - 1}`);
    }
    let lo = 0;
    let hi = this.pieceSlots.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.pieceSlots[mid] as Slot).file.firstPiece <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.pieceSlots[lo] as Slot;
  }

  private treeOf(slot: Slot): FileHashTree {
    if (!slot.tree) {
      const file = slot.file;
      slot.tree = new FileHashTree(file.length, this.metainfo.pieceLength, file.piecesRoot as Buffer, pieceLayerOf(this.metainfo, file));
    }
    return slot.tree;
  }

  private async statOf(path: string): ReturnType<FileSystem['stat']> {
    return this.step(path, 'looking at', () => this.fs.stat(path));
  }

  /** Runs a filesystem step, turning its errors into StoreErrors that name `path`. */
  private async step<T>(path: string, action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fsError(err, path, action);
    }
  }
}

function checkOptions(options: PackageStoreOptions): void {
  const bad = (message: string): never => {
    throw new StoreError('STORE_BAD_OPTION', message);
  };
  if (typeof options.root !== 'string' || options.root.length === 0) bad('root must be a folder path');
  const meta = options.metainfo;
  if (!meta || !Buffer.isBuffer(meta.infoHash) || meta.infoHash.length !== 32 || !Array.isArray(meta.files) || meta.files.length === 0) {
    bad('metainfo must be parsed v2 metainfo');
  }
  // Paths are hostile input: parseMetainfo checks them, and so does the store before it joins
  // them to a folder, in case a Metainfo was built some other way.
  try {
    checkComponent(meta.name, 'name');
    for (const file of meta.files) for (const component of file.path) checkComponent(component, file.path.join('/'));
  } catch (err) {
    throw new StoreError('STORE_BAD_OPTION', `metainfo: ${(err as Error).message}`, undefined, { cause: err });
  }
  if (options.recheck !== undefined && options.recheck !== 'journal' && options.recheck !== 'full') {
    bad(`recheck must be 'journal' or 'full', not ${JSON.stringify(options.recheck)}`);
  }
  const positiveInt = (value: number | undefined, name: string, min: number): void => {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) bad(`${name} must be an integer >= ${min}, not ${value}`);
  };
  positiveInt(options.journal?.syncEveryPieces, 'journal.syncEveryPieces', 1);
  positiveInt(options.journal?.compactSlack, 'journal.compactSlack', 0);
  positiveInt(options.maxOpenFiles, 'maxOpenFiles', 1);
  const interval = options.journal?.syncIntervalMs;
  if (interval !== undefined && !(Number.isFinite(interval) && interval >= 0)) bad(`journal.syncIntervalMs must be >= 0, not ${interval}`);
}

/** Where a finished package's files are in the store at `root`: the single file, or the package folder. */
export function finishedPackagePath(root: string, metainfo: Metainfo): string {
  const first = metainfo.files[0] as PackageFile;
  return join(resolve(root), 'complete', metainfo.infoHash.toString('hex'), DATA_DIR, diskPath(metainfo, first)[0] as string);
}

/** Errors of a whole-file copy that speak of this store's disk, not of the source. */
const TARGET_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS']);

/** A failure on the file offered for reuse: the caller tries another copy or fetches the file. */
function reuseError(err: unknown, path: string, action: string): StoreError {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const detail = err instanceof Error ? err.message.replace(/\s+/g, ' ').trim() : String(err);
  if (errno === 'ENOENT' || errno === 'ENOTDIR') {
    return new StoreError('STORE_REUSE_MISSING', `no file to reuse there (${errno})`, path, { cause: err });
  }
  return new StoreError('STORE_REUSE_UNREADABLE', `${action} the file to reuse failed: ${detail}`, path, { cause: err });
}
