/**
 * `npm run bench:swarm -- [--scenario a|b|c|d] [--hosts H] [--size 64MiB] [--up 20mbit]
 *                         [--seed-up RATE] [--origin-up RATE|none] [--down RATE] [--piece-length 256K]
 *                         [--swarm JSON] [--profile DIR] [--no-libtorrent | --only-libtorrent]`
 *
 * Shoal in the multi-host lab (test/lab/lab.ts): one seeding host (or the origin alone) and N
 * downloaders with shaped uplinks; reports per-host completion, bytes each host sent (interface
 * counters), origin bytes, CPU, the lower bound T* and efficiency T* / T_last, and where the time
 * went. Then the same scenario again with stock libtorrent 2.0 peers in a lab built the same way
 * (libtorrent-run.ts), when python3-libtorrent is importable, and a table of both side by side.
 * Writes test/bench/results/swarm-<time>.json (and swarm-latest.json) and prints tables.
 *
 * Scenarios (all of them when --scenario is absent):
 *   a  equal uploads (--up for everyone): N = 8 and N = 16 (or --hosts H: H - 1 downloaders)
 *   b  a fast seeder: --seed-up, default 5 x --up; 8 downloaders
 *   c  mixed uploads: downloaders cycle 1/4, 1/2, 1/2, 1 x --up; seeder --up; 8 downloaders
 *   d  webseed only: no seeding host, the origin is the source; 8 downloaders
 * --hosts counts lab hosts: the seeder plus the downloaders (d: the downloaders).
 * The origin (the controller's REST/origin port on the infrastructure host) is capped at
 * --origin-up, default --up (d: --seed-up if given); `--origin-up none` leaves it unshaped.
 * --swarm JSON is given to every Shoal agent as SHOAL_SWARM (e.g. '{"webseed":"never"}').
 * --profile DIR writes a CPU profile of each Shoal agent into DIR (<agent>.cpuprofile; a later
 * scenario overwrites an earlier one's, so pick one scenario).
 * --no-libtorrent skips the libtorrent runs, --only-libtorrent the Shoal ones.
 *
 * Needs root (network namespaces, tc) and redis-server; runs `npm run build` first. The libtorrent
 * runs need Debian's python3-libtorrent (/usr/bin/python3, or SHOAL_LIBTORRENT_PYTHON) and openssl.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupLeftovers, formatRate, labUnavailableReason, parseRate } from './lab';
import { probeLibtorrent, runLibtorrentScenario } from './libtorrent-run';
import { LINK_PAYLOAD_CEILING, type SwarmReport, type SwarmScenario, runSwarmScenario } from './swarm-run';

const RESULTS_DIR = join(__dirname, '..', 'bench', 'results');
const MiB = 1024 * 1024;
const TARGETS = { efficiencyAtLeast: 0.9, originLoadAtMost: 1.05 };

function parseSize(text: string): number {
  const match = /^(\d+)\s*(k|kib|m|mib|g|gib)?$/i.exec(text.trim());
  if (!match) throw new Error(`not a size: ${text} (use e.g. 64MiB)`);
  const unit = { '': 1, k: 1024, kib: 1024, m: MiB, mib: MiB, g: 1024 * MiB, gib: 1024 * MiB }[(match[2] ?? '').toLowerCase()] ?? 1;
  return Number(match[1]) * unit;
}

interface BenchOptions {
  scenarios: SwarmScenario[];
  shoal: boolean;
  libtorrent: boolean;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      hosts: { type: 'string' },
      size: { type: 'string', default: '64MiB' },
      up: { type: 'string', default: '20mbit' },
      'seed-up': { type: 'string' },
      'origin-up': { type: 'string' },
      down: { type: 'string' },
      'piece-length': { type: 'string', default: '256K' },
      swarm: { type: 'string' },
      profile: { type: 'string' },
      'no-libtorrent': { type: 'boolean', default: false },
      'only-libtorrent': { type: 'boolean', default: false },
    },
  });
  if (values['no-libtorrent'] && values['only-libtorrent']) throw new Error('--no-libtorrent and --only-libtorrent leave nothing to run');
  const hosts = values.hosts === undefined ? undefined : Number(values.hosts);
  if (hosts !== undefined && (!Number.isInteger(hosts) || hosts < 2)) throw new Error('--hosts needs an integer >= 2');
  const up = parseRate(values.up);
  const seedUp = values['seed-up'] === undefined ? undefined : parseRate(values['seed-up']);
  // The origin is capped like one more host unless told otherwise: an unshaped origin would let
  // the swarm lean on an infinitely fast source and make T* (which counts the seed only) meaningless.
  const originUpGiven = values['origin-up'] === undefined || values['origin-up'] === 'none' ? undefined : parseRate(values['origin-up']);
  const originUp = values['origin-up'] === 'none' ? undefined : (originUpGiven ?? up);
  if (values.swarm !== undefined) JSON.parse(values.swarm);
  const common = {
    sizeBytes: parseSize(values.size),
    pieceLength: values['piece-length'],
    ...(values.down ? { download: parseRate(values.down) } : {}),
    ...(originUp ? { originUpload: originUp } : {}),
    ...(values.swarm ? { agentEnv: { SHOAL_SWARM: values.swarm } } : {}),
    ...(values.profile ? { profileDir: resolve(values.profile) } : {}),
  };
  const equal = (count: number): number[] => Array.from({ length: count }, () => up);
  const chosen = values.scenario ?? 'abcd';
  if (!/^[abcd]+$/.test(chosen)) throw new Error(`--scenario takes a, b, c or d (or several: "ad"), not "${chosen}"`);
  const list: SwarmScenario[] = [];
  if (chosen.includes('a')) {
    for (const h of hosts ? [hosts] : [9, 17]) {
      list.push({ name: `a-${h - 1}`, description: `equal uploads ${formatRate(up)}, ${h - 1} downloaders`, seedUpload: seedUp ?? up, downloaderUploads: equal(h - 1), ...common });
    }
  }
  if (chosen.includes('b')) {
    const h = hosts ?? 9;
    const fast = seedUp ?? 5 * up;
    list.push({ name: 'b', description: `fast seeder ${formatRate(fast)}, ${h - 1} downloaders at ${formatRate(up)}`, seedUpload: fast, downloaderUploads: equal(h - 1), ...common });
  }
  if (chosen.includes('c')) {
    const h = hosts ?? 9;
    const mix = [0.25, 0.5, 0.5, 1];
    const uploads = Array.from({ length: h - 1 }, (_, i) => up * (mix[i % mix.length] as number));
    list.push({ name: 'c', description: `mixed uploads ${[...new Set(uploads)].map(formatRate).join('/')}, ${h - 1} downloaders`, seedUpload: seedUp ?? up, downloaderUploads: uploads, ...common });
  }
  if (chosen.includes('d')) {
    const h = hosts ?? 8;
    if (values['origin-up'] === 'none') throw new Error('scenario d needs a capped origin: it is the only source');
    const origin = originUpGiven ?? seedUp ?? up;
    list.push({ name: 'd', description: `webseed only: origin ${formatRate(origin)}, ${h} downloaders at ${formatRate(up)}`, downloaderUploads: equal(h), ...common, originUpload: origin });
  }
  return { scenarios: list, shoal: !values['only-libtorrent'], libtorrent: !values['no-libtorrent'] };
}

function pct(x: number | null): string {
  return x === null ? '    -' : `${(100 * x).toFixed(0).padStart(4)}%`;
}

function secs(x: number | null): string {
  return x === null ? '     -' : x.toFixed(1).padStart(6);
}

function hostTable(r: SwarmReport): string {
  const lines = ['  host  role        upload    tuf s  1st pc s   done s   sent MiB  copies  uplink  cpu s  verified'];
  for (const h of r.hosts) {
    lines.push(
      `  ${h.host.padEnd(5)} ${h.role.padEnd(10)} ${(h.uploadBitsPerSecond ? formatRate(h.uploadBitsPerSecond) : '-').padStart(8)} ${secs(h.tufVerifiedSeconds)} ${secs(h.firstPieceSeconds)}   ${secs(h.completeSeconds)}  ${(h.sentBytes / MiB).toFixed(1).padStart(9)}  ${h.sentCopies.toFixed(2).padStart(6)}  ${pct(h.uplinkUtilisation)}  ${h.cpuSeconds.toFixed(1).padStart(5)}  ${h.verified === null ? '-' : h.verified ? 'yes' : 'NO'}`,
    );
  }
  return lines.join('\n');
}

function summary(r: SwarmReport): string {
  if (r.failure) return `  FAILED: ${r.failure}`;
  const a = r.analysis;
  return [
    `  T* ${r.lowerBound.seconds.toFixed(1)} s (${r.lowerBound.bound})   T_first ${secs(r.tFirst).trim()} s  T_median ${secs(r.tMedian).trim()} s  T_last ${secs(r.tLast).trim()} s`,
    `  efficiency T*/T_last ${r.efficiency?.toFixed(3)} (${r.efficiencyOfAchievable?.toFixed(3)} of what the link framing allows, ceiling ${LINK_PAYLOAD_CEILING.toFixed(3)})`,
    `  origin (${r.rates.originUpload ?? 'unshaped'}) load ${r.origin.load.toFixed(3)} x F (metric), infra interface ${r.origin.interfaceLoad.toFixed(3)} x F` +
      (r.lowerBoundCountingOrigin ? `; counting the origin as a source: T* ${r.lowerBoundCountingOrigin.seconds.toFixed(1)} s, efficiency ${r.efficiencyCountingOrigin?.toFixed(3) ?? '-'}` : ''),
    `  time lost ${secs(a.lostSeconds).trim()} s: framing ${a.framingSeconds.toFixed(1)} s, startup (first piece) ${secs(a.startupSeconds).trim()} s [median TUF ${secs(a.medianTufVerifiedSeconds).trim()} s, first piece ${secs(a.medianFirstPieceSeconds).trim()} s], tail after first copy ${secs(a.tailSeconds).trim()} s`,
    `  uplinks: source ${pct(a.sourceUtilisation).trim()} (>= 80 % from ${secs(a.sourceSaturatedAfterSeconds).trim()} s), all sources ${pct(a.aggregateUtilisation).trim()} [first 10 % ${pct(a.utilisationByPhase.first10).trim()}, middle ${pct(a.utilisationByPhase.middle80).trim()}, last 10 % ${pct(a.utilisationByPhase.last10).trim()}]`,
    `  duplicates ${a.duplicateBytes === null ? '-' : (a.duplicateBytes / MiB).toFixed(1)} MiB (${pct(a.duplicateShare).trim()} of N·F, the clients' count); wire bytes / delivered ${a.wireBytesPerDeliveredByte.toFixed(3)}`,
    `  CPU: machine ${pct(r.cpu.machineBusy).trim()} busy of ${r.cpu.cores} cores; ${r.client === 'shoal' ? 'agents' : `${r.client} peers`} ${r.cpu.agentsSeconds.toFixed(1)} s, controller ${r.cpu.controllerSeconds.toFixed(1)} s, redis ${r.cpu.redisSeconds.toFixed(1)} s, driver ${r.cpu.driverSeconds.toFixed(1)} s, other work on the machine ${r.cpu.outsideSeconds.toFixed(1)} s; setup ${r.setupSeconds.toFixed(1)} s`,
    `  every copy verified: ${r.allVerified ? 'yes' : 'NO'}; lab leftovers: ${r.leftovers.length ? r.leftovers.join(', ') : 'none'}`,
  ].join('\n');
}

/** Both clients' runs of one scenario; a client that did not run is null (with the reason for libtorrent). */
interface ScenarioResult {
  scenario: string;
  description: string;
  shoal: SwarmReport | null;
  libtorrent: SwarmReport | null;
  libtorrentSkipped: string | null;
}

function num(x: number | null | undefined, digits: number, width: number): string {
  return (x === null || x === undefined ? '-' : x.toFixed(digits)).padStart(width);
}

/** The seeding host's copies sent (interface counters); null without a seeding host or a result. */
function seedCopies(r: SwarmReport | null): number | null {
  return r?.hosts.find((h) => h.role === 'seed')?.sentCopies ?? null;
}

/** Per-host completion, copies sent and CPU of both clients in one scenario. */
function hostComparison(result: ScenarioResult): string {
  const { shoal, libtorrent } = result;
  const byHost = (r: SwarmReport | null, host: string) => r?.hosts.find((h) => h.host === host);
  const hosts = (shoal?.hosts.length ? shoal : libtorrent)?.hosts ?? [];
  const lines = ['  host  role        upload  |  Shoal: done s  copies  cpu s  |  libtorrent: done s  copies  cpu s'];
  for (const h of hosts) {
    const s = byHost(shoal, h.host);
    const l = byHost(libtorrent, h.host);
    lines.push(
      `  ${h.host.padEnd(5)} ${h.role.padEnd(10)} ${(h.uploadBitsPerSecond ? formatRate(h.uploadBitsPerSecond) : '-').padStart(8)} |       ${secs(s?.completeSeconds ?? null)}  ${num(s?.sentCopies, 2, 6)}  ${num(s?.cpuSeconds, 1, 5)}  |            ${secs(l?.completeSeconds ?? null)}  ${num(l?.sentCopies, 2, 6)}  ${num(l?.cpuSeconds, 1, 5)}`,
    );
  }
  return lines.join('\n');
}

/** One line per scenario: the bound, then Shoal's and libtorrent's figures. */
function sideBySide(results: ScenarioResult[]): string {
  const lines = [
    '                         |  Shoal                                              |  libtorrent',
    '  scenario   N    T* s   |  T_last s   eff.  origin: sent  wire  seed cp  cpu s |  T_last s   eff.  origin: sent  wire  seed cp  cpu s',
  ];
  const cells = (r: SwarmReport | null, skipped: string | null): string =>
    !r
      ? (skipped ? 'skipped' : 'not run').padEnd(51)
      : r.failure
        ? 'FAILED'.padEnd(51)
        : `${secs(r.tLast)}  ${num(r.efficiency, 3, 5)}        ${num(r.origin.load, 2, 6)} ${num(r.origin.interfaceLoad, 2, 5)}   ${num(seedCopies(r), 2, 6)}  ${num(r.cpu.agentsSeconds, 0, 5)}`;
  for (const x of results) {
    const any = x.shoal ?? x.libtorrent;
    lines.push(
      `  ${x.scenario.padEnd(9)} ${String(any?.downloaders ?? '-').padStart(2)}  ${num(any?.lowerBound.seconds, 1, 6)}   |  ${cells(x.shoal, null)} |  ${cells(x.libtorrent, x.libtorrentSkipped)}`,
    );
  }
  lines.push(
    '  eff. = T*/T_last; origin sent = the origin\'s byte count (shoal_origin_bytes_sent_total: bytes handed to its sockets, also those of responses the client',
    '  abandoned) / F; origin wire = bytes out of the infrastructure host\'s interface (TLS, TCP/IP and control traffic included) / F; seed cp = copies the',
    "  seeding host sent (interface); cpu s = CPU seconds of the client's processes (agents or libtorrent peers)",
  );
  return lines.join('\n');
}

function printRun(r: SwarmReport): void {
  if (r.hosts.length) console.log(hostTable(r));
  console.log(summary(r));
}

async function main(argv: string[]): Promise<number> {
  const unavailable = labUnavailableReason();
  if (unavailable) throw new Error(`bench:swarm: ${unavailable}`);
  const options = parseOptions(argv);
  const probed = probeLibtorrent();
  const libtorrentUnavailable = options.libtorrent && 'unavailable' in probed ? probed.unavailable : null;
  if (libtorrentUnavailable && !options.shoal) throw new Error(`bench:swarm --only-libtorrent: ${libtorrentUnavailable}`);
  if (libtorrentUnavailable) console.log(`libtorrent runs skipped: ${libtorrentUnavailable}`);
  const removed = cleanupLeftovers();
  if (removed.length) console.log(`removed ${removed.length} namespaces left by earlier crashed lab runs: ${removed.join(', ')}`);
  const startedAt = new Date();
  const results: ScenarioResult[] = [];
  for (const scenario of options.scenarios) {
    const header = `${scenario.name}: ${scenario.description}, ${(scenario.sizeBytes / MiB).toFixed(0)} MiB, ${scenario.pieceLength} pieces`;
    const result: ScenarioResult = { scenario: scenario.name, description: scenario.description, shoal: null, libtorrent: null, libtorrentSkipped: null };
    results.push(result);
    if (options.shoal) {
      console.log(`\n== ${header} — Shoal`);
      result.shoal = await runSwarmScenario(scenario, (line) => console.log(`  ${line}`));
      printRun(result.shoal);
    }
    if (!options.libtorrent) result.libtorrentSkipped = '--no-libtorrent';
    else if (libtorrentUnavailable) result.libtorrentSkipped = libtorrentUnavailable;
    else {
      console.log(`\n== ${header} — libtorrent ${'version' in probed ? probed.version : ''}`);
      result.libtorrent = await runLibtorrentScenario(scenario, (line) => console.log(`  ${line}`));
      printRun(result.libtorrent);
    }
    if (result.shoal && result.libtorrent) {
      console.log(`\n  ${scenario.name}, per host:`);
      console.log(hostComparison(result));
    }
  }

  const shoalReports = results.flatMap((x) => (x.shoal ? [x.shoal] : []));
  if (shoalReports.length) {
    console.log('\n  Shoal');
    console.log('  scenario  N   T* s  T_last s  efficiency  origin load  dup %  source uplink  CPU busy');
    for (const r of shoalReports) {
      console.log(
        `  ${r.scenario.padEnd(8)} ${String(r.downloaders).padStart(2)} ${r.lowerBound.seconds.toFixed(1).padStart(6)} ${secs(r.tLast)}    ${r.efficiency === null ? '    -' : r.efficiency.toFixed(3)}       ${r.origin.load.toFixed(3)}  ${pct(r.analysis.duplicateShare)}         ${pct(r.analysis.sourceUtilisation)}     ${pct(r.cpu.machineBusy)}`,
      );
    }
  }
  console.log('\n  Shoal and libtorrent side by side');
  console.log(sideBySide(results));
  const equalRuns = shoalReports.filter((r) => r.scenario.startsWith('a-'));
  const document = {
    benchmark: 'swarm',
    startedAt: startedAt.toISOString(),
    machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
    argv,
    linkPayloadCeiling: LINK_PAYLOAD_CEILING,
    libtorrent: 'version' in probed ? { version: probed.version } : { unavailable: probed.unavailable },
    // The targets are Shoal's; libtorrent is the yardstick next to them.
    targets: {
      efficiency: { atLeast: TARGETS.efficiencyAtLeast, scenarios: 'a', pass: equalRuns.length ? equalRuns.every((r) => (r.efficiency ?? 0) >= TARGETS.efficiencyAtLeast) : null },
      originLoad: { atMost: TARGETS.originLoadAtMost, pass: shoalReports.length ? shoalReports.every((r) => !r.failure && r.origin.load <= TARGETS.originLoadAtMost) : null },
    },
    scenarios: results,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `swarm-${startedAt.toISOString().replace(/:/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, 'swarm-latest.json'), `${JSON.stringify(document, null, 2)}\n`);
  console.log(`\nreport: ${file}`);
  const broken = results.flatMap((x) => [x.shoal, x.libtorrent]).filter((r) => r && (r.failure || !r.allVerified || r.leftovers.length > 0));
  return broken.length ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    console.error(`bench:swarm failed: ${err.message}`);
    process.exitCode = 1;
  },
);
