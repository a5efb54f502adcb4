/**
 * Agent benchmark: agent B fetches a package from agent A over the mutual-TLS peer wire (both
 * real processes, with a real controller), against a plain Node TLS 1.3 socket pushing the same
 * number of bytes in the same run; and B's peak RSS, which must not grow with package size.
 * A second baseline adds to the plain socket the receiver's work no verifying download can
 * skip (SHA-256 of every byte, positional writes to a file, fdatasync), and CPU seconds per GiB
 * of both agents (every thread, kernel time included) are set against those of the baselines:
 * on a 2-core machine, where both agents share the cores with the kernel, CPU is the budget.
 *
 * Usage: npm run bench -- agent [--size 1GiB] [--rss-size 4GiB] [--piece-length 1M] [--profile DIR]
 * (--rss-size: a fresh leech then fetches a package of that size for its peak RSS; 0 skips it.
 * --profile writes the timed run's agents' CPU profiles to DIR)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, closeSync, writeSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CertificateAuthority, generateRsaKeyPair } from '@shoal/pki';
import { type AgentProcess, type TestFleet, agentStatus, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';
import { plainTls } from './plain-tls';

const RESULTS_DIR = join(__dirname, 'results');
const MiB = 1024 * 1024;
const TARGETS = { throughputVsPlainTls: 0.7, peakRssMiB: 200 };

export function parseSize(text: string): number {
  const match = /^(\d+)\s*(k|kib|m|mib|g|gib)?$/i.exec(text.trim());
  const unit = { k: 1024, kib: 1024, m: MiB, mib: MiB, g: 1024 * MiB, gib: 1024 * MiB }[(match?.[2] ?? '').toLowerCase() as 'k'] ?? 1;
  if (!match) throw new Error(`not a size: ${text}`);
  return Number(match[1]) * unit;
}

/** CPU seconds a process has used so far, all its threads (utime + stime from /proc). */
function processCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak resident set of a live process, from /proc (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const kib = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return kib / 1024;
}

export function writeRandomFile(path: string, size: number): void {
  const chunk = randomBytes(16 * MiB);
  const fd = openSync(path, 'w');
  try {
    for (let offset = 0, n = 0; offset < size; offset += chunk.length, n++) {
      chunk.writeUInt32LE(n, 0);
      writeSync(fd, chunk, 0, Math.min(chunk.length, size - offset));
    }
  } finally {
    closeSync(fd);
  }
}

interface BenchRelease {
  name: string;
  pkg: string;
}

/** A random payload packed, published and imported into the seed's data folder (before the seed starts). */
function prepareRelease(fleet: TestFleet, scratch: string, seedDir: string, name: string, size: number, pieceLength: string | undefined): BenchRelease {
  const folder = join(scratch, name);
  mkdirSync(folder);
  writeRandomFile(join(folder, 'payload.bin'), size);
  const pkg = join(scratch, `${name}.torrent`);
  const packed = runShoal(['pack', folder, '-o', pkg, '--ca', join(fleet.dataDir, 'ca', 'ca.pem'), ...(pieceLength ? ['--piece-length', pieceLength] : [])]);
  if (packed.status !== 0) throw new Error(packed.stderr);
  if (runShoal(['publish', pkg, '--name', name, '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status !== 0) throw new Error(`publish ${name} failed`);
  if (runShoal(['agent', 'import', pkg, folder, '--name', name, '--version', '1.0.0', '--data-dir', seedDir]).status !== 0) throw new Error(`import ${name} failed`);
  return { name, pkg };
}

interface WatchedFetch {
  seconds: number;
  peakRssMiB: number;
  firstPieceSeconds: number | undefined;
  allVerifiedSeconds: number | undefined;
  completePath: string;
}

/** Tells a connected leech to fetch a release and polls its status socket (and its peak RSS) until the copy is complete. */
async function fetchWatched(fleet: TestFleet, leech: AgentProcess, leechName: string, leechDir: string, release: string): Promise<WatchedFetch> {
  const started = process.hrtime.bigint();
  const sent = await fleet.rest('POST', `/v1/agents/${leechName}/fetch`, { json: { name: release, version: '1.0.0' } });
  if (sent.status !== 202) throw new Error(`fetch command: ${sent.status}`);
  let completePath: string | null = null;
  let peak = 0;
  let firstPieceSeconds: number | undefined;
  let allVerifiedSeconds: number | undefined;
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  while (!completePath) {
    await new Promise((r) => setTimeout(r, 50));
    peak = Math.max(peak, peakRssMiB(leech.process.pid as number));
    const status = await agentStatus(leechDir);
    const p = status.packages.find((candidate) => candidate.name === release);
    if (p && p.verifiedPieces > 0) firstPieceSeconds ??= elapsed();
    if (p && p.verifiedPieces === p.totalPieces) allVerifiedSeconds ??= elapsed();
    if (p?.complete) completePath = p.path;
  }
  return { seconds: elapsed(), peakRssMiB: peak, firstPieceSeconds, allVerifiedSeconds, completePath };
}

function verifyCopy(pkg: string, path: string): boolean {
  return runShoal(['verify', pkg, path]).status === 0;
}

export async function agentBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { size: { type: 'string' }, 'rss-size': { type: 'string' }, 'piece-length': { type: 'string' }, profile: { type: 'string' } },
  });
  const nodeArgs = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [];
  const size = parseSize(values.size ?? '1GiB');
  const rssSize = parseSize(values['rss-size'] ?? '4GiB');
  const fleet = await startTestFleet(7, 'bench');
  const scratch = await scratchDir('agent-bench');
  const agents: AgentProcess[] = [];
  try {
    const caFile = join(fleet.dataDir, 'ca', 'ca.pem');
    const dirA = await fleet.enrollAgentDir('seed', scratch.path);
    const bench = prepareRelease(fleet, scratch.path, dirA, 'bench', size, values['piece-length']);
    const seed = await startAgentProcess({ dataDir: dirA, nodeArgs });
    agents.push(seed);
    const dirB = await fleet.enrollAgentDir('leech', scratch.path);
    const leech = await startAgentProcess({ dataDir: dirB, nodeArgs });
    agents.push(leech);
    await fleet.untilConnected('leech');

    const pids = agents.map((a) => a.process.pid as number);
    const cpuBefore = pids.map(processCpuSeconds);
    const run = await fetchWatched(fleet, leech, 'leech', dirB, bench.name);
    const { firstPieceSeconds, allVerifiedSeconds, completePath } = run;
    const peak = run.peakRssMiB;
    const shoalSeconds = run.seconds;
    const [seedCpu, leechCpu] = pids.map((pid, i) => processCpuSeconds(pid) - (cpuBefore[i] as number)) as [number, number];
    const verified = verifyCopy(bench.pkg, completePath);

    const ca = CertificateAuthority.load(readFileSync(caFile, 'utf8'), readFileSync(join(fleet.dataDir, 'ca', 'ca-key.pem'), 'utf8'));
    const key = generateRsaKeyPair();
    const cert = ca.issueControllerCertificate({ dnsNames: ['localhost'], ipAddresses: [], publicKeyPem: key.publicKeyPem, now: new Date() });
    const serverIdentity = { keyPem: key.keyPem, certPem: cert.certPem };
    const plain = await plainTls(size, readFileSync(caFile, 'utf8'), serverIdentity);
    const plainSeconds = plain.seconds;
    const verifying = await plainTls(size, readFileSync(caFile, 'utf8'), serverIdentity, { verifyAndWriteTo: join(scratch.path, 'plain-received.bin') });
    const GiB = size / (1024 * MiB);

    // Peak RSS of a fresh leech fetching a larger package: under budget at every size. Run
    // last, so that its gigabytes of writeback do not slow the timed run or the baselines; the
    // seed restarts to take the new release in.
    let largeRun: WatchedFetch | undefined;
    let largeVerified = true;
    if (rssSize > 0) {
      await seed.stop();
      const large = prepareRelease(fleet, scratch.path, dirA, 'bench-large', rssSize, values['piece-length']);
      agents.push(await startAgentProcess({ dataDir: dirA }));
      const dirC = await fleet.enrollAgentDir('leech-large', scratch.path);
      const leechLarge = await startAgentProcess({ dataDir: dirC });
      agents.push(leechLarge);
      await fleet.untilConnected('leech-large');
      largeRun = await fetchWatched(fleet, leechLarge, 'leech-large', dirC, large.name);
      largeVerified = verifyCopy(large.pkg, largeRun.completePath);
    }

    const peaks = [{ sizeMiB: size / MiB, peakRssMiB: peak }, ...(largeRun ? [{ sizeMiB: rssSize / MiB, peakRssMiB: largeRun.peakRssMiB }] : [])];
    const highest = Math.max(...peaks.map((p) => p.peakRssMiB));
    const report = {
      startedAt: new Date().toISOString(),
      machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
      sizeMiB: size / MiB,
      shoal: {
        seconds: shoalSeconds,
        MiBps: size / MiB / shoalSeconds,
        note: 'from the fetch command to status complete: TUF verification, announce, connect, transfer, verify, finish (fsync)',
        // Phases, as seen by polling the status socket (about 50 ms resolution).
        firstPieceSeconds,
        allPiecesVerifiedSeconds: allVerifiedSeconds,
        transferMiBps: allVerifiedSeconds && firstPieceSeconds ? size / MiB / (allVerifiedSeconds - firstPieceSeconds) : undefined,
      },
      plainTls: { seconds: plainSeconds, MiBps: size / MiB / plainSeconds },
      plainTlsVerifyingAndWriting: { seconds: verifying.seconds, MiBps: size / MiB / verifying.seconds },
      throughputVsPlainTls: plainSeconds / shoalSeconds,
      throughputVsPlainTlsVerifyingAndWriting: verifying.seconds / shoalSeconds,
      cpuSecondsPerGiB: {
        seedAgent: seedCpu / GiB,
        leechAgent: leechCpu / GiB,
        plainTls: plain.cpuSeconds / GiB,
        plainTlsVerifyingAndWriting: verifying.cpuSeconds / GiB,
        note: 'agents: every thread of the process, user + system; plain TLS: both ends in one process (user + system)',
      },
      leechPeakRssMiB: peak,
      leechPeakRss: {
        note: 'VmHWM of a fresh leech process per package size (the larger package by another leech, after the timed run)',
        bySize: peaks,
        growthMiB: largeRun ? largeRun.peakRssMiB - peak : undefined,
      },
      verifiedByCli: verified && largeVerified,
      targets: {
        throughputVsPlainTls: { atLeast: TARGETS.throughputVsPlainTls, pass: plainSeconds / shoalSeconds >= TARGETS.throughputVsPlainTls },
        peakRssMiB: { below: TARGETS.peakRssMiB, highest, pass: highest < TARGETS.peakRssMiB },
      },
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    const text = `${JSON.stringify(report, null, 2)}\n`;
    await writeFile(join(RESULTS_DIR, `agent-${report.startedAt.replace(/:/g, '-')}.json`), text);
    await writeFile(join(RESULTS_DIR, 'agent-latest.json'), text);
    if (!report.verifiedByCli) throw new Error('a fetched copy does not verify (shoal verify)');
    console.log(
      `agent: ${report.sizeMiB} MiB in ${shoalSeconds.toFixed(2)} s (${report.shoal.MiBps.toFixed(0)} MiB/s); plain TLS ${plainSeconds.toFixed(2)} s ` +
        `(${report.plainTls.MiBps.toFixed(0)} MiB/s); ratio ${report.throughputVsPlainTls.toFixed(2)} (target >= ${TARGETS.throughputVsPlainTls}); ` +
        `first piece at ${firstPieceSeconds?.toFixed(2)} s, all verified at ${allVerifiedSeconds?.toFixed(2)} s; ` +
        `leech peak RSS ${peaks.map((p) => `${p.peakRssMiB.toFixed(0)} MiB at ${p.sizeMiB} MiB`).join(', ')} (target < ${TARGETS.peakRssMiB} at every size)`,
    );
    const cpu = report.cpuSecondsPerGiB;
    console.log(
      `  vs plain TLS that also hashes and writes what it receives: ${verifying.seconds.toFixed(2)} s (${report.plainTlsVerifyingAndWriting.MiBps.toFixed(0)} MiB/s), ratio ${report.throughputVsPlainTlsVerifyingAndWriting.toFixed(2)}; ` +
        `CPU s/GiB: seed agent ${cpu.seedAgent.toFixed(1)} + leech agent ${cpu.leechAgent.toFixed(1)}, plain TLS ${cpu.plainTls.toFixed(1)}, plain TLS verifying and writing ${cpu.plainTlsVerifyingAndWriting.toFixed(1)}`,
    );
  } finally {
    for (const agent of agents) await agent.stop();
    await fleet.stop();
    await scratch.remove();
  }
}
