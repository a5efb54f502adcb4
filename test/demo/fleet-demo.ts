/**
 * The main job: a local fleet distributes a release. Starts Redis if none answers at REDIS_URL,
 * a controller (real process, serving the webseed origin), and 6 agents as separate processes on
 * loopback, each in its own site; generates a 256 MiB release in the origin, packs and publishes
 * it, tells every agent to fetch it, shows live per-agent progress with peer-vs-origin bytes,
 * verifies every copy with `shoal verify`, and exits 0 once all six hold a verified copy
 * (non-zero with the reason otherwise).
 *
 * Options: --size MiB (default 256), --agents N (default 6), --timeout seconds (default 300).
 * Redis database 1 of REDIS_URL is flushed and used.
 */
import { runShoal, startSwarmFleet, type AgentPackageStatus, type SwarmFleet } from '@shoal/testing';

const MiB = 1024 * 1024;
const SITES = [
  { region: 'eu-west', zone: 'eu-west-1', site: 'dub-1' },
  { region: 'eu-west', zone: 'eu-west-1', site: 'dub-2' },
  { region: 'eu-west', zone: 'eu-west-2', site: 'ams-1' },
  { region: 'us-east', zone: 'us-east-1', site: 'iad-1' },
  { region: 'us-east', zone: 'us-east-2', site: 'atl-1' },
  { region: 'ap-south', zone: 'ap-south-1', site: 'bom-1' },
];

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`);
  return value;
}

/** A release shaped like a game patch: a binary, libraries, asset packs, a few small files. */
function releaseFiles(totalBytes: number): Record<string, number> {
  const files: Record<string, number> = { 'bin/game': Math.floor(totalBytes * 0.125), 'lib/engine.so': Math.floor(totalBytes * 0.25) };
  const packs = 8;
  for (let i = 0; i < packs; i++) files[`assets/pack${i}.dat`] = Math.floor((totalBytes * 0.625) / packs) - 4096;
  files['README'] = 4096 * packs;
  return files;
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1).padStart(7);
}

function table(fleet: SwarmFleet, rows: Map<string, AgentPackageStatus | undefined>, elapsed: number, originBytes: number, size: number): string {
  const lines = [`  ${elapsed.toFixed(1)} s   origin served ${mib(originBytes)} MiB (${(originBytes / size).toFixed(2)} x the release)`];
  lines.push('  agent      site          progress                          from peers  from origin  uploaded  peers');
  for (const [name, s] of rows) {
    const labels = fleet.specs.get(name)?.labels ?? {};
    const ratio = s ? s.verifiedPieces / s.totalPieces : 0;
    const bar = `${'#'.repeat(Math.round(ratio * 24)).padEnd(24, '.')} ${(ratio * 100).toFixed(0).padStart(3)}%`;
    const state = s?.complete ? ' done' : '';
    lines.push(
      `  ${name.padEnd(10)} ${(labels.site ?? '').padEnd(13)} ${bar}${state.padEnd(5)}  ${mib(s?.bytesDownloaded ?? 0)}  ${mib(s?.bytesFromWebseed ?? 0)}     ${mib(s?.bytesUploaded ?? 0)}  ${String(s?.peers ?? 0).padStart(5)}`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const sizeMiB = option('size', 256);
  const agentCount = option('agents', 6);
  const timeoutSeconds = option('timeout', 300);
  const specs = Array.from({ length: agentCount }, (_, i) => ({ name: `agent-${i + 1}`, labels: { ...(SITES[i % SITES.length] as (typeof SITES)[number]), role: 'edge' } }));

  console.log(`Starting a controller (with a webseed origin) and ${agentCount} agents on loopback ...`);
  const fleet = await startSwarmFleet({ db: 1, fleet: 'demo', agents: specs });
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    console.log(`Generating and publishing a ${sizeMiB} MiB release in the origin ...`);
    const release = await fleet.publish('game-patch', '1.0.0', releaseFiles(sizeMiB * MiB));
    console.log(`Published game-patch@1.0.0 (${(release.bytes / MiB).toFixed(0)} MiB, 1 MiB pieces, webseed ${fleet.originUrl}); every agent is told to fetch it.\n`);
    const originBefore = await fleet.originBytes();
    const started = performance.now();
    await Promise.all(specs.map((s) => fleet.fetch(s.name, release)));

    const tty = process.stdout.isTTY === true;
    let lastPrint = 0;
    let printedLines = 0;
    for (;;) {
      if (interrupted) throw new Error('interrupted');
      const elapsed = (performance.now() - started) / 1000;
      const rows = new Map<string, AgentPackageStatus | undefined>();
      for (const s of specs) rows.set(s.name, await fleet.packageStatus(s.name, release).catch(() => undefined));
      const originBytes = (await fleet.originBytes()) - originBefore;
      const done = [...rows.values()].every((r) => r?.complete === true);
      if (tty || done || elapsed - lastPrint >= 5) {
        const text = table(fleet, rows, elapsed, originBytes, release.bytes);
        if (tty && printedLines > 0) process.stdout.write(`\x1b[${printedLines}A\x1b[J`);
        process.stdout.write(`${text}\n${tty ? '' : '\n'}`);
        printedLines = text.split('\n').length;
        lastPrint = elapsed;
      }
      if (done) break;
      if (elapsed > timeoutSeconds) {
        const late = [...rows].filter(([, r]) => !r?.complete).map(([n]) => n);
        throw new Error(`not every agent completed within ${timeoutSeconds} s: ${late.join(', ')} still fetching`);
      }
      await new Promise((r) => setTimeout(r, tty ? 300 : 1000));
    }
    const seconds = (performance.now() - started) / 1000;

    console.log('\nChecking every copy with `shoal verify` ...');
    let peerBytes = 0;
    for (const s of specs) {
      const status = await fleet.packageStatus(s.name, release);
      if (!status?.path) throw new Error(`${s.name} reports no finished path`);
      const verified = runShoal(['verify', release.torrentPath, status.path, '--json']);
      if (verified.status !== 0) throw new Error(`${s.name}: shoal verify failed: ${verified.stdout}${verified.stderr}`);
      peerBytes += status.bytesDownloaded;
    }
    const originBytes = (await fleet.originBytes()) - originBefore;
    const total = release.bytes * agentCount;
    console.log(
      [
        `All ${agentCount} agents hold a verified copy of game-patch@1.0.0 after ${seconds.toFixed(1)} s.`,
        `  delivered ${(total / MiB).toFixed(0)} MiB in all: ${(peerBytes / MiB).toFixed(0)} MiB from peers, ${(originBytes / MiB).toFixed(0)} MiB from the origin`,
        `  origin load: ${(originBytes / release.bytes).toFixed(2)} x the release (${((100 * originBytes) / total).toFixed(0)} % of what a plain CDN would have served)`,
      ].join('\n'),
    );
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await fleet.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`demo failed: ${err.message}`);
    if (process.env.SHOAL_DEMO_DEBUG) console.error(err.stack);
    process.exit(1);
  },
);
