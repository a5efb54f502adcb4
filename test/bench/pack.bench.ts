/**
 * Packing benchmark. Times `shoal pack` on one large file against two references:
 *   - `sha256sum`: one core of plain SHA-256, the speed any v2 hasher should come close to;
 *   - libtorrent 2.0's torrent creator: the conformance oracle of ../shared/DESIGN.md "Content",
 *     which also checks on the way that shoal's info-hash is the one libtorrent computes.
 * Writes a JSON report to test/bench/results/ and prints a table. Exits 0 when a speed or memory
 * target is missed (this is a report), and non-zero when a contender crashes or the info-hashes
 * disagree.
 *
 * Usage: npm run bench -- [--size 256MiB] [--runs 3] [--dir /var/tmp]
 *        (SHOAL_BENCH_SIZE sets the size when --size is absent; default 2GiB)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem, type as osType } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

const REPO_ROOT = resolve(__dirname, '..', '..');
const SHOAL_BIN = join(REPO_ROOT, 'bin', 'shoal.js');
const LIBTORRENT_HELPER = join(__dirname, 'libtorrent_hash.py');
const RESULTS_DIR = join(__dirname, 'results');
/** Debian's python3-libtorrent is importable only from the system interpreter, not from pyenv's. */
const SYSTEM_PYTHON = '/usr/bin/python3';
const GNU_TIME = '/usr/bin/time';
/** Wall seconds, user CPU seconds, system CPU seconds, peak RSS in KiB. */
const TIME_FORMAT = '%e %U %S %M';

/** The piece length every contender that takes one is given, so their work is the same. */
const PIECE_LENGTH = MiB;
const DEFAULT_SIZE = '2GiB';
const DEFAULT_RUNS = '3';
/** Random bytes are slow to make; one pattern, restamped per block, fills gigabytes quickly. */
const PATTERN_SIZE = 64 * MiB;
/** BEP 52 leaf size: stamping every leaf keeps all leaves distinct across pattern copies. */
const LEAF_SIZE = 16 * KiB;
const WARM_UP_CHUNK = 16 * MiB;

const TARGETS = {
  /** sha256sum wall / shoal wall: shoal at least 0.9x as fast as one core of SHA-256. */
  shoalVsSha256sum: 0.9,
  /** libtorrent wall / shoal wall: shoal no slower than libtorrent. */
  shoalVsLibtorrent: 1.0,
  /** Peak RSS of `shoal pack`, whatever the input size (it streams). */
  shoalPeakRssMiB: 150,
} as const;

interface BenchOptions {
  sizeBytes: number;
  runs: number;
  dir: string;
}

type ContenderName = 'sha256sum' | 'opensslSha256' | 'shoal' | 'shoalDefaultPieces' | 'libtorrent';

interface Contender {
  name: ContenderName;
  label: string;
  command: string;
  args: string[];
}

interface Measurement {
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
}

interface ContenderRuns {
  contender: Contender;
  runs: Measurement[];
  /** Standard output of each run, in run order. */
  outputs: string[];
}

interface Summary {
  median: Measurement;
  min: Measurement;
  throughputMiBps: number;
}

/** What `shoal pack --json` prints (the fields we use). */
interface ShoalPackOutput {
  infoHash: string;
  pieceLength: number;
}

/** What libtorrent_hash.py prints. */
interface LibtorrentOutput {
  hashSeconds: number;
  infoHashV2: string;
  libtorrentVersion: string;
}

/** One info-hash per piece length, and who computed it. */
interface InfoHashAgreement {
  pieceLength: number;
  infoHash: string;
  computedBy: ContenderName[];
}

class CorrectnessError extends Error {}

// ---------------------------------------------------------------------------------------------
// Options

function readOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string' },
      runs: { type: 'string' },
      dir: { type: 'string' },
    },
  });
  return {
    sizeBytes: parseByteSize(values.size ?? process.env['SHOAL_BENCH_SIZE'] ?? DEFAULT_SIZE),
    runs: parsePositiveInteger(values.runs ?? DEFAULT_RUNS, '--runs'),
    dir: values.dir ?? tmpdir(),
  };
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: KiB, kib: KiB, m: MiB, mib: MiB, g: GiB, gib: GiB };

/** "2GiB", "256MiB", "256M", "1048576". */
function parseByteSize(text: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = SIZE_UNITS[(match?.[2] ?? '').toLowerCase()];
  const bytes = match && unit !== undefined ? Number(match[1]) * unit : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`size: "${text}" is not a positive size such as 256MiB or 2GiB`);
  return bytes;
}

function parsePositiveInteger(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${what}: "${text}" is not a positive integer`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Scratch folder and input file

/**
 * Runs `body` with a fresh folder under `parent` and removes it afterwards, also when the body
 * throws or the run is interrupted: a forgotten 2 GiB file in /tmp is a nuisance.
 */
async function withScratchDir<T>(parent: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(parent, 'shoal-bench-'));
  const removeAndExit = (signal: NodeJS.Signals) => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', removeAndExit);
  process.once('SIGTERM', removeAndExit);
  try {
    return await body(dir);
  } finally {
    process.off('SIGINT', removeAndExit);
    process.off('SIGTERM', removeAndExit);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Fills `path` with `sizeBytes` of random-looking data. Each copy of the random pattern gets its
 * copy number stamped at the start of every 16 KiB leaf, so no two leaves are identical and no
 * contender could profit from repeated content.
 */
async function writeInputFile(path: string, sizeBytes: number): Promise<void> {
  const pattern = randomBytes(PATTERN_SIZE);
  const handle = await open(path, 'w');
  try {
    for (let offset = 0, copy = 0; offset < sizeBytes; offset += PATTERN_SIZE, copy++) {
      stampLeaves(pattern, copy);
      await writeFully(handle, pattern.subarray(0, Math.min(PATTERN_SIZE, sizeBytes - offset)), offset);
    }
  } finally {
    await handle.close();
  }
}

function stampLeaves(pattern: Buffer, copy: number): void {
  for (let leaf = 0; leaf < pattern.length; leaf += LEAF_SIZE) pattern.writeUInt32LE(copy, leaf);
}

async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

/** Reads the whole file once, so every contender starts from the same warm page cache. */
async function warmPageCache(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(WARM_UP_CHUNK);
    while ((await handle.read(buffer, 0, buffer.length, null)).bytesRead > 0);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Running contenders

function contenders(input: string, scratch: string): Contender[] {
  const pack = (output: string, extra: string[]) => [SHOAL_BIN, 'pack', input, '-o', join(scratch, output), '--json', ...extra];
  return [
    { name: 'sha256sum', label: 'sha256sum', command: 'sha256sum', args: [input] },
    // Debian's sha256sum does not use SHA-NI; OpenSSL does: the fastest one core can hash here.
    { name: 'opensslSha256', label: 'openssl sha256', command: 'openssl', args: ['dgst', '-sha256', input] },
    {
      name: 'shoal',
      label: 'shoal pack',
      command: process.execPath,
      args: pack('shoal-fixed.torrent', ['--piece-length', String(PIECE_LENGTH)]),
    },
    { name: 'shoalDefaultPieces', label: 'shoal pack (default P)', command: process.execPath, args: pack('shoal-default.torrent', []) },
    { name: 'libtorrent', label: 'libtorrent', command: SYSTEM_PYTHON, args: [LIBTORRENT_HELPER, input, String(PIECE_LENGTH)] },
  ];
}

/**
 * Runs every contender `runs` times, taking turns (A B C D A B C D ...) rather than A A A B B B,
 * so a slow spell of the machine spreads over all contenders instead of hitting one.
 */
async function measureAll(list: Contender[], runs: number, timeFile: string): Promise<ContenderRuns[]> {
  const results = list.map((contender): ContenderRuns => ({ contender, runs: [], outputs: [] }));
  for (let run = 1; run <= runs; run++) {
    for (const result of results) {
      process.stdout.write(`run ${run}/${runs}: ${result.contender.label} ... `);
      const { measurement, stdout } = await runTimed(result.contender, timeFile);
      process.stdout.write(`${measurement.wallSeconds.toFixed(2)} s\n`);
      result.runs.push(measurement);
      result.outputs.push(stdout);
    }
  }
  return results;
}

async function runTimed(contender: Contender, timeFile: string): Promise<{ measurement: Measurement; stdout: string }> {
  const { code, stdout, stderr } = await spawnCollecting(GNU_TIME, ['-f', TIME_FORMAT, '-o', timeFile, contender.command, ...contender.args]);
  if (code !== 0) throw new Error(`${contender.label} failed (exit ${code ?? 'by signal'}): ${stderr.trim()}`);
  return { measurement: parseTimeOutput(await readFile(timeFile, 'utf8')), stdout };
}

function spawnCollecting(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** GNU time puts a "Command exited with non-zero status" line first on failure: use the last. */
function parseTimeOutput(text: string): Measurement {
  const lastLine = text.trim().split('\n').pop() ?? '';
  const fields = lastLine.trim().split(/\s+/).map(Number);
  const [wall, user, system, rssKiB] = fields;
  if (fields.length !== 4 || wall === undefined || user === undefined || system === undefined || rssKiB === undefined || fields.some(Number.isNaN)) {
    throw new Error(`cannot read ${GNU_TIME} output: ${JSON.stringify(text)}`);
  }
  return { wallSeconds: wall, cpuSeconds: user + system, peakRssMiB: rssKiB / KiB };
}

// ---------------------------------------------------------------------------------------------
// Reading contender outputs and checking correctness

function parseJsonLine<T>(stdout: string, from: string): T {
  try {
    return JSON.parse(stdout.trim().split('\n').pop() ?? '') as T;
  } catch {
    throw new Error(`${from} printed no JSON: ${JSON.stringify(stdout)}`);
  }
}

function outputsOf<T>(results: ContenderRuns[], name: ContenderName): T[] {
  return runsOf(results, name).outputs.map((stdout) => parseJsonLine<T>(stdout, name));
}

function runsOf(results: ContenderRuns[], name: ContenderName): ContenderRuns {
  const found = results.find((result) => result.contender.name === name);
  if (!found) throw new Error(`no results for ${name}`);
  return found;
}

/**
 * Every run at a given piece length, shoal's or libtorrent's, must give one and the same
 * info-hash: that checks shoal against the oracle and each tool's determinism at once.
 */
function checkInfoHashes(results: ContenderRuns[]): InfoHashAgreement[] {
  const claims: { name: ContenderName; pieceLength: number; infoHash: string }[] = [
    ...(['shoal', 'shoalDefaultPieces'] as const).flatMap((name) =>
      outputsOf<ShoalPackOutput>(results, name).map((out) => ({ name, pieceLength: out.pieceLength, infoHash: out.infoHash })),
    ),
    ...outputsOf<LibtorrentOutput>(results, 'libtorrent').map((out) => ({ name: 'libtorrent' as const, pieceLength: PIECE_LENGTH, infoHash: out.infoHashV2 })),
  ];
  const byPieceLength = new Map<number, InfoHashAgreement>();
  for (const claim of claims) {
    const agreed = byPieceLength.get(claim.pieceLength);
    if (!agreed) {
      byPieceLength.set(claim.pieceLength, { pieceLength: claim.pieceLength, infoHash: claim.infoHash, computedBy: [claim.name] });
    } else if (agreed.infoHash !== claim.infoHash) {
      throw new CorrectnessError(
        `info-hashes differ at piece length ${claim.pieceLength}: ${agreed.computedBy.join(', ')} gave ${agreed.infoHash}, ${claim.name} gave ${claim.infoHash}`,
      );
    } else if (!agreed.computedBy.includes(claim.name)) {
      agreed.computedBy.push(claim.name);
    }
  }
  return [...byPieceLength.values()];
}

// ---------------------------------------------------------------------------------------------
// Statistics and report

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] as number;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] as number) + upper) / 2;
}

function combine(runs: Measurement[], pick: (values: number[]) => number): Measurement {
  return {
    wallSeconds: pick(runs.map((m) => m.wallSeconds)),
    cpuSeconds: pick(runs.map((m) => m.cpuSeconds)),
    peakRssMiB: pick(runs.map((m) => m.peakRssMiB)),
  };
}

function summarise(runs: Measurement[], sizeBytes: number): Summary {
  const med = combine(runs, median);
  return { median: med, min: combine(runs, (values) => Math.min(...values)), throughputMiBps: sizeBytes / MiB / med.wallSeconds };
}

/** The piece length a contender hashed with; sha256sum has none. */
function pieceLengthOf(results: ContenderRuns[], name: ContenderName): number | null {
  if (name === 'sha256sum' || name === 'opensslSha256') return null;
  // shoal's default depends on the input size; it reports what it chose.
  if (name === 'shoalDefaultPieces') return outputsOf<ShoalPackOutput>(results, name)[0]?.pieceLength ?? null;
  return PIECE_LENGTH;
}

function contenderReport(results: ContenderRuns[], r: ContenderRuns, sizeBytes: number) {
  return {
    label: r.contender.label,
    command: [r.contender.command, ...r.contender.args].join(' '),
    pieceLength: pieceLengthOf(results, r.contender.name),
    runs: r.runs,
    ...summarise(r.runs, sizeBytes),
  };
}

function buildReport(options: BenchOptions, results: ContenderRuns[], agreement: InfoHashAgreement[], startedAt: Date) {
  const contenders = Object.fromEntries(results.map((r) => [r.contender.name, contenderReport(results, r, options.sizeBytes)])) as Record<
    ContenderName,
    ReturnType<typeof contenderReport>
  >;
  const { sha256sum, opensslSha256, shoal, libtorrent } = contenders;
  const libtorrentOutputs = outputsOf<LibtorrentOutput>(results, 'libtorrent');
  // The memory target is a ceiling, so judge it by the worst run, not the median one.
  const shoalPeakRssMiB = Math.max(...shoal.runs.map((m) => m.peakRssMiB));
  const ratios = {
    shoalVsSha256sum: sha256sum.median.wallSeconds / shoal.median.wallSeconds,
    shoalVsLibtorrent: libtorrent.median.wallSeconds / shoal.median.wallSeconds,
    // No target: how shoal (all cores) compares with one core of OpenSSL's SHA-NI SHA-256.
    shoalVsOpensslSha256: opensslSha256.median.wallSeconds / shoal.median.wallSeconds,
    // Same bytes for both, so the ratio of CPU seconds is the ratio of CPU per byte (> 1: shoal spends more).
    shoalCpuPerByteVsSha256sum: shoal.median.cpuSeconds / sha256sum.median.cpuSeconds,
    shoalPeakRssMiB,
  };
  return {
    startedAt: startedAt.toISOString(),
    machine: {
      cpuModel: cpus()[0]?.model ?? 'unknown',
      cpuCount: cpus().length,
      os: `${osType()} ${release()}`,
      totalMemoryMiB: Math.round(totalmem() / MiB),
      node: process.version,
      libtorrent: libtorrentOutputs[0]?.libtorrentVersion ?? 'unknown',
    },
    input: { sizeBytes: options.sizeBytes, sizeMiB: options.sizeBytes / MiB, runsPerContender: options.runs },
    contenders,
    libtorrentHashOnlySeconds: {
      runs: libtorrentOutputs.map((out) => out.hashSeconds),
      median: median(libtorrentOutputs.map((out) => out.hashSeconds)),
    },
    correctness: { infoHashesAgree: true, byPieceLength: agreement },
    ratios,
    targets: {
      shoalVsSha256sum: { atLeast: TARGETS.shoalVsSha256sum, value: ratios.shoalVsSha256sum, pass: ratios.shoalVsSha256sum >= TARGETS.shoalVsSha256sum },
      shoalVsLibtorrent: { atLeast: TARGETS.shoalVsLibtorrent, value: ratios.shoalVsLibtorrent, pass: ratios.shoalVsLibtorrent >= TARGETS.shoalVsLibtorrent },
      shoalPeakRssMiB: { below: TARGETS.shoalPeakRssMiB, value: shoalPeakRssMiB, pass: shoalPeakRssMiB < TARGETS.shoalPeakRssMiB },
    },
  };
}

type Report = ReturnType<typeof buildReport>;

async function writeReport(report: Report): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  // Colons are not allowed in file names on every system the results may be copied to.
  const stamped = join(RESULTS_DIR, `pack-${report.startedAt.replace(/:/g, '-')}.json`);
  const text = `${JSON.stringify(report, null, 2)}\n`;
  await writeFile(stamped, text);
  await writeFile(join(RESULTS_DIR, 'pack-latest.json'), text);
  return stamped;
}

function printTable(report: Report): void {
  const columns = ['contender', 'P', 'wall med', 'wall min', 'cpu med', 'cpu/wall', 'RSS MiB', 'MiB/s'];
  const rows = Object.values(report.contenders).map((c) => [
    c.label,
    c.pieceLength === null ? '-' : `${c.pieceLength / KiB}K`,
    `${c.median.wallSeconds.toFixed(2)} s`,
    `${c.min.wallSeconds.toFixed(2)} s`,
    `${c.median.cpuSeconds.toFixed(2)} s`,
    // Above 1 means the contender keeps more than one core busy.
    (c.median.cpuSeconds / c.median.wallSeconds).toFixed(2),
    c.median.peakRssMiB.toFixed(0),
    c.throughputMiBps.toFixed(0),
  ]);
  const widths = columns.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ');
  const { machine, input, targets, ratios } = report;
  const verdict = (pass: boolean) => (pass ? 'PASS' : 'MISS');
  console.log(`\n${input.sizeMiB} MiB, ${input.runsPerContender} run(s) each; ${machine.cpuModel} x${machine.cpuCount}, node ${machine.node}, libtorrent ${machine.libtorrent}`);
  console.log(line(columns));
  for (const row of rows) console.log(line(row));
  console.log(`libtorrent hash-only (timed inside python): median ${report.libtorrentHashOnlySeconds.median.toFixed(2)} s`);
  for (const a of report.correctness.byPieceLength) console.log(`info-hash at P=${a.pieceLength / KiB}K: ${a.infoHash} (agreed by ${a.computedBy.join(', ')})`);
  console.log(`shoalVsSha256sum            ${targets.shoalVsSha256sum.value.toFixed(2)}  target >= ${TARGETS.shoalVsSha256sum}  ${verdict(targets.shoalVsSha256sum.pass)}`);
  console.log(`shoalVsLibtorrent           ${targets.shoalVsLibtorrent.value.toFixed(2)}  target >= ${TARGETS.shoalVsLibtorrent}  ${verdict(targets.shoalVsLibtorrent.pass)}`);
  console.log(`shoalPeakRssMiB             ${targets.shoalPeakRssMiB.value.toFixed(0)}  target < ${TARGETS.shoalPeakRssMiB}  ${verdict(targets.shoalPeakRssMiB.pass)}`);
  console.log(`shoalVsOpensslSha256        ${ratios.shoalVsOpensslSha256.toFixed(2)}  no target (one core of SHA-NI SHA-256)`);
  console.log(`shoalCpuPerByteVsSha256sum  ${ratios.shoalCpuPerByteVsSha256sum.toFixed(2)}  no target (> 1: shoal spends more CPU per byte)`);
}

// ---------------------------------------------------------------------------------------------

export async function packBench(argv: string[]): Promise<void> {
  const options = readOptions(argv);
  const startedAt = new Date();
  await withScratchDir(options.dir, async (scratch) => {
    const input = join(scratch, 'payload.bin');
    console.log(`writing ${options.sizeBytes / MiB} MiB to ${input}`);
    await writeInputFile(input, options.sizeBytes);
    await warmPageCache(input);
    const results = await measureAll(contenders(input, scratch), options.runs, join(scratch, 'time.out'));
    const agreement = checkInfoHashes(results);
    const report = buildReport(options, results, agreement, startedAt);
    printTable(report);
    console.log(`\nreport: ${await writeReport(report)}`);
  });
}

export function describeFailure(err: unknown): string {
  const kind = err instanceof CorrectnessError ? 'CORRECTNESS FAILURE' : 'benchmark failed';
  return `${kind}: ${err instanceof Error ? err.message : String(err)}`;
}
