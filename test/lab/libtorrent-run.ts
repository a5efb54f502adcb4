/**
 * The same swarm scenario with stock libtorrent 2.0 (Debian's python3-libtorrent) in place of the
 * Shoal agents: the yardstick of issue 6. The lab, the shaping, the infrastructure host (the
 * controller serving the origin, capped alike), the release and the measurements are the ones of
 * swarm-run.ts; only the participants differ. Each lab host runs one
 * apps/agent/test/interop/lt_peer.py process in its namespace, which:
 *   - holds a certificate the lab's controller issued through enrollment (`shoal agent enroll` in
 *     that host, like an agent's), and joins the release as an SSL torrent (the metainfo's
 *     `ssl-cert` is the fleet CA), so libtorrent's peers talk TLS with mutual certificate checks
 *     as Shoal's do;
 *   - listens on the host's address, peer port 6881 (TLS over TCP, uTP off: Shoal's transport);
 *   - keeps libtorrent's defaults otherwise: choking, seeding, request queues, end game, and the
 *     metainfo's url-list webseed (the lab origin, https, capped as for Shoal). libtorrent opens an
 *     SSL torrent's https webseeds with the torrent's own TLS context, so it checks the origin
 *     against the fleet CA (an origin whose certificate another CA issued fails with "unknown
 *     ca"): both clients use the very same origin, no plain-HTTP stand-in is needed;
 *   - learns its peers from the driver: there is no BitTorrent tracker in a Shoal fleet (Shoal's is
 *     gRPC over mTLS), so at t0 every host is handed every other host's address (connect_peer),
 *     which is what a tracker answering with the whole swarm would do.
 * The downloaders' torrents are added paused, so neither peers nor the webseed are used before
 * t0, the moment every process gets its start command; the seed has checked its copy by then.
 * Completion is libtorrent's torrent_finished_alert (every piece hash-checked), reported with
 * the machine clock; the copies are checked with `shoal verify` after the processes quit.
 * A peer process dies with the lab (its process group and namespace), quits when its input ends
 * (the driver is gone), and quits by itself once the run's time is up.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@shoal/testing';
import { identityLayout } from '../../apps/agent/src/identity/state';
import type { LabProcess } from './lab';
import { PEER_PORT } from './shoal-lab';
import { type SwarmClientKind, type SwarmPeer, type SwarmReport, type SwarmScenario, runScenario } from './swarm-run';

/** Debian's interpreter: python3-libtorrent is importable only there (see shared/STACK.md). */
export const LIBTORRENT_PYTHON = process.env.SHOAL_LIBTORRENT_PYTHON ?? '/usr/bin/python3';
const PEER_PROGRAM = join(__dirname, '..', '..', 'apps', 'agent', 'test', 'interop', 'lt_peer.py');
/** Seconds between the progress events each peer prints (timeline, piece counts). */
const PROGRESS_EVERY_S = 1;
/** Setup and verification time the peers allow on top of the transfer before they quit by themselves. */
const PEER_EXTRA_LIFETIME_S = 600;
const START_TIMEOUT_MS = 60_000;
const QUIT_TIMEOUT_MS = 10_000;

/** The libtorrent version, or why libtorrent cannot run here. */
export function probeLibtorrent(): { version: string } | { unavailable: string } {
  const probe = spawnSync(LIBTORRENT_PYTHON, ['-c', 'import libtorrent; print(libtorrent.__version__)'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return { unavailable: `${LIBTORRENT_PYTHON} cannot import libtorrent (apt-get install python3-libtorrent): ${probe.error?.message ?? probe.stderr.trim().split('\n').pop()}` };
  }
  return { version: probe.stdout.trim() };
}

interface PeerEvent {
  event: string;
  /** Epoch milliseconds. */
  time: number;
  [field: string]: unknown;
}

/** What lt_peer.py says in its "progress" and "status" events. */
interface PeerStatus extends PeerEvent {
  pieces: number;
  downloaded: number;
  webseedDownloaded: number;
  uploaded: number;
  hashFailures: number;
}

function parseEvent(line: string): PeerEvent | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as PeerEvent;
  } catch {
    return undefined;
  }
}

function isEvent(name: string): (line: string) => boolean {
  return (line) => parseEvent(line)?.event === name;
}

function eventTime(line: string): number {
  return (parseEvent(line) as PeerEvent).time;
}

/** A failure's transcript without the periodic progress events, which would bury the rest. */
function withoutProgress(message: string): string {
  return message
    .split('\n')
    .filter((line) => parseEvent(line)?.event !== 'progress')
    .join('\n');
}

/** The next event named `name` from now on (not one already printed). */
function nextEvent(peerProcess: LabProcess, name: string, timeoutMs: number): Promise<PeerEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(() => reject(new Error(`libtorrent peer: no "${name}" event within ${timeoutMs} ms`))), timeoutMs);
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      unsubscribe();
      settle();
    };
    const unsubscribe = peerProcess.onLine((line) => {
      const event = parseEvent(line);
      if (event?.event === name) finish(() => resolve(event));
    });
    void peerProcess.exited.then(() => finish(() => reject(new Error(`libtorrent peer exited before its "${name}" event`))));
  });
}

export const libtorrentPeers: SwarmClientKind = {
  name: 'libtorrent',
  notes: () => {
    const probed = probeLibtorrent();
    return [
      `libtorrent ${'version' in probed ? probed.version : '?'} (python3-libtorrent) through apps/agent/test/interop/lt_peer.py, one process per lab host`,
      "libtorrent's defaults for choking, seeding, requests and webseeds; TCP only (no uTP), no DHT / local peer discovery / UPnP / NAT-PMP",
      'peers: at t0 every host is given every other host (connect_peer), as a tracker answering with the whole swarm would; there is no BitTorrent tracker in the fleet',
      "TLS: SSL torrent (ssl-cert = fleet CA), each host's certificate issued by the lab controller through enrollment",
      "webseed: the metainfo's url-list, the lab origin over https (fleet CA), capped as in the Shoal run",
      't0: the start command (resume the paused torrent, dial the peers); completion: torrent_finished_alert; no TUF step',
    ];
  },
  async start(infra, release, scenario, timeoutMs) {
    const lab = infra.lab;
    const seeded = scenario.seedUpload !== undefined;
    const work = await scratchDir(`lab-${lab.runId}-libtorrent`);
    lab.removeWithLab(work.path);
    // libtorrent 2.0.8 wants a DH parameters file with every SSL certificate (see lt_peer.py).
    const dhParams = join(work.path, 'dhparams.pem');
    execFileSync('openssl', ['genpkey', '-genparam', '-algorithm', 'DH', '-pkeyopt', 'group:ffdhe2048', '-out', dhParams]);
    const specs = lab.hosts.map((host, i) => {
      const seed = seeded && i === 0;
      return { name: seed ? 'lt-seed' : `lt-dl-${seeded ? i : i + 1}`, host, seeding: seed, labels: { region: 'lab', zone: 'lab-1', site: 'lab-1', role: seed ? 'seed' : 'downloader' } };
    });
    const dataDirs = await infra.enroll(specs);
    const releaseFiles = await readdir(release.folder);

    const started: LabProcess[] = [];
    try {
      const all = await Promise.all(
        specs.map(async (spec, i): Promise<SwarmPeer> => {
          const savePath = join(work.path, spec.name);
          await mkdir(savePath, { recursive: true });
          // The seed's copy sits where libtorrent looks for it: <save path>/<file>.
          if (spec.seeding) for (const file of releaseFiles) await copyFile(join(release.folder, file), join(savePath, file));
          const identity = identityLayout(dataDirs[i] as string);
          const config = {
            torrent: release.torrentPath,
            savePath,
            cert: identity.certificate,
            key: identity.key,
            dhParams,
            listen: `${spec.host.address}:${PEER_PORT}`,
            paused: !spec.seeding,
            progressS: PROGRESS_EVERY_S,
            timeoutS: timeoutMs / 1000 + PEER_EXTRA_LIFETIME_S,
          };
          const peerProcess = lab.spawn(spec.host, [LIBTORRENT_PYTHON, PEER_PROGRAM, JSON.stringify(config)], { stdin: true });
          started.push(peerProcess);
          const added = parseEvent(await peerProcess.waitForLine(isEvent('added'), START_TIMEOUT_MS)) as PeerEvent;
          await peerProcess.waitForLine(isEvent('listening'), START_TIMEOUT_MS);
          if (spec.seeding) {
            const checked = parseEvent(await peerProcess.waitForLine(isEvent('checked'), START_TIMEOUT_MS)) as PeerEvent;
            if (checked.seeding !== true) throw new Error(`libtorrent seed in ${spec.host.name} does not hold the release after checking its copy`);
          }
          let latest: PeerStatus | undefined;
          peerProcess.onLine((line) => {
            const event = parseEvent(line);
            if (event?.event === 'progress') latest = event as PeerStatus;
          });
          const peer: SwarmPeer = {
            name: spec.name,
            host: spec.host,
            process: peerProcess,
            milestones: (waitMs) => ({
              firstPiece: peerProcess.waitForLine(isEvent('first-piece'), waitMs).then(eventTime),
              complete: peerProcess.waitForLine(isEvent('finished'), waitMs).then(eventTime, (err: Error) => {
                throw new Error(`${spec.name} in ${spec.host.name}: ${withoutProgress(err.message)}`);
              }),
            }),
            verifiedPieces: async () => latest?.pieces,
            async report() {
              const answer = nextEvent(peerProcess, 'status', START_TIMEOUT_MS);
              peerProcess.send(JSON.stringify({ cmd: 'status' }));
              const s = (await answer) as PeerStatus;
              return { bytesFromPeers: s.downloaded - s.webseedDownloaded, bytesFromWebseed: s.webseedDownloaded, bytesUploaded: s.uploaded, corruptPieces: s.hashFailures };
            },
            copyPath: async () => join(savePath, String(added.name)),
          };
          return peer;
        }),
      );
      return {
        seed: seeded ? all[0] : undefined,
        downloaders: seeded ? all.slice(1) : all,
        start: async () => {
          for (const peer of all) {
            const others = all.filter((p) => p !== peer).map((p) => ({ host: p.host.address, port: PEER_PORT }));
            peer.process.send(JSON.stringify({ cmd: 'start', peers: others }));
          }
        },
        // Quitting closes libtorrent's files before `shoal verify` reads them.
        settle: () => quitAll(started),
        stop: () => quitAll(started),
      };
    } catch (err) {
      await quitAll(started);
      throw err;
    }
  },
};

/** Asks every peer to quit (end of input), and stops those that have not within a few seconds. */
async function quitAll(processes: LabProcess[]): Promise<void> {
  await Promise.all(
    processes.map(async (p) => {
      p.send(JSON.stringify({ cmd: 'quit' }));
      p.endInput();
      const timer = setTimeout(() => void p.stop(), QUIT_TIMEOUT_MS);
      await p.exited;
      clearTimeout(timer);
      await p.stop();
    }),
  );
}

/** libtorrent peers in the lab for `scenario`; the report has the same shape as Shoal's. */
export function runLibtorrentScenario(scenario: SwarmScenario, log: (line: string) => void = () => undefined): Promise<SwarmReport> {
  return runScenario(scenario, libtorrentPeers, log);
}
