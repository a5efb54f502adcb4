import { Agent as HttpsAgent } from 'node:https';
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { agentMallocTuningAdvice } from '@shoal/config';
import { RevocationSet, type SignedRevocationList, verifyRevocationList } from '@shoal/pki';
import { type AnnounceEvent, type AnnounceResponse, type ControllerCommand, type FetchReleaseMessage, shoalV1 } from '@shoal/proto';
import { PackageStore, finishedPackagePath, reuseHeldFiles } from '@shoal/store';
import type { PeerInfo } from '@shoal/dht';
import type { Location } from '@shoal/topology';
import { truncatedInfoHash } from '@shoal/torrent';
import { NodeFetcher, ReleaseVerifier, type VerifiedRelease } from '@shoal/trust';
import { AgentBandwidth, type TrafficClass } from '../bandwidth';
import { CONTROL_KEEPALIVE, ControlClient, keepaliveChannelOptions } from '../control/control-client';
import { TrackerClient } from '../control/tracker-client';
import { DhtService, type PackageDiscovery } from '../dht';
import { CertificateRenewer } from '../identity/renewer';
import { loadIdentity } from '../identity/state';
import { type WirePackage, wireName } from '../peer/admission';
import { type AdmittedConnection, PeerServer, type PeerService, type TlsIdentity, connectToPeer } from '../peer/tls';
import { PackageSession, type PexMessageEvent, type PexPeersEvent, type WebseedFetchEvent } from '../session/package-session';
import { WebseedClient } from '../webseed';
import { Catalog, type CatalogEntry } from './catalog';
import type { AgentConfig } from './config';
import { runsOnGlibc } from './heap';
import { type CommandReply, Deliveries, type DeliveredPackage, FetchCancelledError } from './deliveries';
import { ReleaseStates, isRolloutId, releaseKey } from './release-states';

export const AGENT_SOFTWARE_VERSION = '0.1.0';

/** Where the agent learned of a peer. */
export type PeerSource = 'tracker' | 'dht' | 'pex';

/** A peer address for a package, as a discovery source gives it. */
export interface DiscoveredPeer {
  /** The agent id, when the source names it (tracker; DHT: the storing node's certificate); PEX gives addresses only. */
  agentId?: string;
  addresses: string[];
  port: number;
  location: Location;
  seed?: boolean;
}

interface ActivePackage extends DeliveredPackage {
  entry: CatalogEntry;
  pkg: WirePackage;
  store: PackageStore;
  session: PackageSession;
  webseed: WebseedClient | undefined;
  dialled: Set<string>;
  announceTimer?: NodeJS.Timeout;
  /** DHT announces and lookups for the package (absent with the DHT off). */
  discovery?: PackageDiscovery;
  /** Backoff while the package has no peer (see nextAnnounce). */
  retrySeconds?: number;
  /** Ends `completed` with an error: the session is being stopped before the package completed. */
  fail(err: Error): void;
}

export interface RunningAgent {
  agentId: string;
  peerPort: number;
  statusSocket: string;
  /** As a fetch command without a rollout: resolves once complete (and installed, when asked), rejects with the reason otherwise. */
  fetch(name: string, version: string, options?: { install?: boolean; cls?: TrafficClass }): Promise<void>;
  close(): Promise<void>;
}

/** The environment install hooks get from the agent's own: nothing else (no secrets, no SHOAL_* settings). */
const HOOK_BASE_ENV = ['PATH', 'HOME'] as const;

/**
 * The agent daemon: identity kept fresh, control stream, peer-wire listener, and one session per
 * package — fetched releases are verified with TUF before their swarm is joined, announced to the
 * tracker, downloaded piece by verified piece, finished atomically, then seeded.
 */
export async function startAgent(config: AgentConfig): Promise<RunningAgent> {
  const log = pino({ level: config.logLevel, base: { service: 'shoal-agent' } });
  const files = await loadIdentity(config.dataDir);
  const { agentId, fleet, endpoints } = files.enrollment;
  let identity: TlsIdentity = { keyPem: files.keyPem, certPem: files.certPem, caPem: files.caPem };
  // The last verified revocation list, kept across restarts: revoked peers stay refused before
  // the control stream is back (and while the controller is unreachable).
  const revocationsPath = join(config.dataDir, 'revocations.json');
  let revocations = await loadRevocations(revocationsPath, identity.caPem, fleet, log);
  const peerId = Buffer.concat([Buffer.from('-SH0100-'), randomBytes(12)]);
  const catalog = new Catalog(join(config.dataDir, 'packages'));
  const storeRoot = join(config.dataDir, 'store');
  const active = new Map<string, ActivePackage>();
  /** Connections this agent dialled: the peer server tracks the ones it accepted. */
  const dialledConnections = new Set<AdmittedConnection>();
  /** Sessions being started, so that two commands for one package share one. */
  const activating = new Map<string, Promise<ActivePackage>>();
  /** Sessions being stopped: a new one for the package waits until the store is closed. */
  const stopping = new Map<string, Promise<void>>();
  const metrics = agentMetrics(() => active.values());
  const bandwidth = new AgentBandwidth({
    upload: { limit: config.uploadLimit, backgroundLimit: config.backgroundUploadLimit },
    download: { limit: config.downloadLimit, backgroundLimit: config.backgroundDownloadLimit },
  });
  const selfLocation: Location = locationOf(files.enrollment.labels);
  /** Where peers sit, as the tracker reported (accepted connections are placed by it too). */
  const peerLocations = new Map<string, Location>();
  let closing = false;

  // Created once the listener has its port (the DHT announces it); connections before then are refused.
  let dht: DhtService | undefined;
  const peerServer = new PeerServer({
    identity,
    fleet,
    packageFor: (hex) => active.get(hex)?.pkg,
    isRevoked: (serial) => revocations.has(serial),
    ...(config.dht ? { acceptDht: (c) => (dht ? dht.accept(c) : c.socket.destroy()) } : {}),
  });
  const connectionCount = (): number => {
    let total = 0;
    for (const item of active.values()) total += item.session.progress.peers;
    return total;
  };
  peerServer.on('connection', (c: AdmittedConnection) => {
    if (connectionCount() >= config.maxConnections) {
      c.socket.destroy();
      metrics.refused.inc({ code: 'AGENT_CONNECTION_LIMIT' });
      log.info({ peer: c.peer.agentId, limit: config.maxConnections }, 'peer refused: agent connection limit');
      return;
    }
    active.get(wireName(c.pkg.infoHash))?.session.attach(c.socket, 'acceptor', c.peer.agentId, peerLocations.get(c.peer.agentId));
  });
  peerServer.on('refused', (r: { code: string; message: string; service: PeerService }) => {
    if (r.service === 'dht') dht?.countRefused(r.code);
    else metrics.refused.inc({ code: r.code });
    log.info(r, 'peer refused');
  });
  const address = await peerServer.listen(config.peerListen.port, config.peerListen.host);
  if (config.dht) {
    dht = new DhtService({
      identity: () => identity,
      fleet,
      isRevoked: (serial) => revocations.has(serial),
      port: address.port,
      advertiseAddresses: config.advertiseAddress ? [config.advertiseAddress] : [],
      statePath: join(config.dataDir, 'dht.json'),
      bootstrap: config.dhtBootstrap,
      settings: config.dhtSettings,
      siteOf: (peer) => peerLocations.get(peer)?.site || undefined,
      log,
      registry: metrics.registry,
    });
    await dht.start();
  }

  const trackerClient = () =>
    new TrackerClient(
      // Keepalive as on the control stream: an announce that times out opens a new stream, but
      // on the same connection, so a dead one must be found by pings to be replaced.
      new (shoalV1().Tracker)(
        endpoints.grpc,
        grpc.credentials.createSsl(Buffer.from(identity.caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certPem)),
        keepaliveChannelOptions(CONTROL_KEEPALIVE),
      ),
    );
  let tracker = trackerClient();

  const renewer = new CertificateRenewer({ dataDir: config.dataDir, keyPem: identity.keyPem, certPem: identity.certPem, caPem: identity.caPem, controller: endpoints.grpc });
  renewer.on('renewed', (certPem: string) => {
    identity = { ...identity, certPem };
    peerServer.setIdentity(identity);
    tracker.close();
    tracker = trackerClient();
    log.info('certificate renewed');
  });
  renewer.on('failed', (err: Error) => log.warn({ err: err.message }, 'certificate renewal failed; retrying'));
  renewer.start();

  const announce = async (entry: ActivePackage, event: AnnounceEvent): Promise<AnnounceResponse | undefined> => {
    const progress = entry.session.progress;
    const left = (progress.totalPieces - progress.verifiedPieces) * entry.entry.metainfo.pieceLength;
    try {
      return await tracker.announce({
        infoHash: truncatedInfoHash(entry.entry.metainfo.infoHash),
        port: address.port,
        addresses: config.advertiseAddress ? [config.advertiseAddress] : [],
        left: Math.max(0, left),
        uploaded: progress.bytesUploaded,
        downloaded: progress.bytesDownloaded,
        event,
        numwant: config.maxPeersPerPackage,
      });
    } catch (err) {
      log.warn({ package: entry.entry.name, err: (err as Error).message }, 'announce failed');
      return undefined;
    }
  };

  /**
   * Peers found for a package (tracker, DHT or PEX) are dialled here, ranked by topology, up to
   * the connection limits. A peer is known by its agent id when the source names it (tracker,
   * DHT: from the certificate of the node that stored it), else by its address (PEX); either way
   * the TLS handshake decides who it is and whether it is admitted.
   */
  const dial = (entry: ActivePackage, found: DiscoveredPeer[], source: PeerSource) => {
    metrics.peersDiscovered.inc({ source }, found.length);
    if (entry.session.isComplete()) return;
    const candidates = found
      .map((peer) => ({ ...peer, id: peer.agentId ?? `${peer.addresses[0] ?? ''}:${peer.port}` }))
      // A peer that dialled us is connected too: dialling it back made a duplicate that one side
      // closes, and its closing freed the peer for the next discovery round to dial again (a
      // 16-agent lab run kept making TLS handshakes to the end of the transfer).
      .filter((peer) => peer.agentId !== agentId && !entry.dialled.has(peer.id) && !(peer.agentId && entry.session.isConnectedTo(peer.agentId)) && peer.addresses.length > 0);
    for (const c of candidates) if (c.agentId) peerLocations.set(c.agentId, c.location);
    const slots = Math.min(config.maxPeersPerPackage - entry.dialled.size, config.maxConnections - connectionCount());
    for (const peer of entry.session.swarm.rankCandidates(candidates, selfLocation, agentId, slots)) {
      const host = peer.addresses[0] as string;
      entry.dialled.add(peer.id);
      connectToPeer({ host, port: peer.port, pkg: entry.pkg, identity, fleet, isRevoked: (s) => revocations.has(s) }).then(
        (c) => {
          dialledConnections.add(c);
          c.socket.once('close', () => {
            entry.dialled.delete(peer.id);
            dialledConnections.delete(c);
          });
          metrics.peersConnected.inc({ source });
          entry.session.attach(c.socket, 'initiator', c.peer.agentId, peer.location, peer.seed);
        },
        (err: Error) => {
          entry.dialled.delete(peer.id);
          log.info({ peer: peer.id, source, err: err.message }, 'could not connect to peer');
        },
      );
    }
  };

  /** A peer a DHT lookup found: placed where the tracker last said it sits (if it did). */
  const fromDht = (peer: PeerInfo): DiscoveredPeer => ({
    agentId: peer.agentId,
    addresses: [...peer.addresses],
    port: peer.port,
    location: peerLocations.get(peer.agentId) ?? { region: '', zone: '', site: '' },
  });

  /**
   * A tracker answer: its peers are dialled and, as every agent runs a DHT node on its peer port,
   * they are the controller's node list the DHT joins through. No answer (controller or Redis
   * down): the DHT looks for peers at once instead of waiting for its next round.
   */
  const trackerAnswered = (entry: ActivePackage, response: AnnounceResponse | undefined) => {
    if (!response) {
      entry.discovery?.lookupNow();
      return;
    }
    const peers = fromTracker(response);
    dial(entry, peers, 'tracker');
    dht?.learnEndpoints(peers.flatMap((peer) => (peer.addresses[0] ? [{ host: peer.addresses[0], port: peer.port }] : [])));
  };

  const fromTracker = (response: AnnounceResponse): DiscoveredPeer[] =>
    response.peers.map((peer) => ({
      agentId: peer.agentId,
      addresses: peer.addresses,
      port: peer.port,
      location: { region: peer.region, zone: peer.zone, site: peer.site },
      seed: peer.seed,
    }));

  /**
   * Seconds until the next announce: the tracker's interval, except while an unfinished package
   * has no peer at all, when waiting a whole interval would stall it (a seed may have announced
   * a moment after us): then 1, 2, 4 ... seconds, up to the interval.
   */
  const nextAnnounce = (entry: ActivePackage, interval: number): number => {
    if (entry.session.isComplete() || entry.session.progress.peers > 0) {
      entry.retrySeconds = undefined;
      return interval;
    }
    entry.retrySeconds = Math.min(interval, entry.retrySeconds === undefined ? 1 : entry.retrySeconds * 2);
    return entry.retrySeconds;
  };

  const schedule = (entry: ActivePackage, seconds: number) => {
    entry.announceTimer = setTimeout(async () => {
      if (active.get(wireName(entry.entry.metainfo.infoHash)) !== entry) return;
      const response = await announce(entry, 'ANNOUNCE_EVENT_NONE');
      trackerAnswered(entry, response);
      if (active.get(wireName(entry.entry.metainfo.infoHash)) === entry) schedule(entry, nextAnnounce(entry, response?.intervalSeconds ?? 30));
    }, seconds * 1000);
    entry.announceTimer.unref();
  };

  /**
   * Files this host already holds in another package (same pieces root: same content, whatever
   * the path) are copied and verified locally instead of fetched. Before the session starts: it
   * reads the store's pieces once.
   */
  const reuseFiles = async (entry: CatalogEntry, store: PackageStore): Promise<void> => {
    const held = (await catalog.list())
      .filter((e) => e.infoHashHex !== entry.infoHashHex)
      .map((e) => ({ metainfo: e.metainfo, packagePath: finishedPackagePath(storeRoot, e.metainfo) }));
    if (held.length === 0) return;
    try {
      const reuse = await reuseHeldFiles(store, held);
      metrics.reusedBytes.inc(reuse.bytesAdopted);
      log.info(
        { package: `${entry.name}@${entry.version}`, files: reuse.filesComplete, bytes: reuse.bytesAdopted, rejected: reuse.piecesRejected, skipped: reuse.failures.length },
        'reused files already on this host',
      );
    } catch (err) {
      // Reuse only saves transfer: on a disk error here the swarm fetches what is missing.
      log.warn({ package: entry.name, err: (err as Error).message }, 'reusing local files failed');
    }
  };

  /** The package's session: the running one, or a new one (which deliveries then track). */
  const activate = (entry: CatalogEntry, cls: TrafficClass): Promise<ActivePackage> => {
    if (closing) return Promise.reject(new Error('the agent is stopping'));
    const key = wireName(entry.metainfo.infoHash);
    const existing = active.get(key);
    if (existing) {
      if (cls === 'normal') existing.gates.cls = 'normal';
      return Promise.resolve(existing);
    }
    let starting = activating.get(key);
    if (!starting) {
      starting = (async () => {
        await stopping.get(key);
        const item = await startSession(entry, cls);
        deliveries.track(entry.name, entry.version, item);
        return item;
      })();
      activating.set(key, starting);
      const done = () => activating.delete(key);
      starting.then(done, done);
    }
    return starting;
  };

  const startSession = async (entry: CatalogEntry, cls: TrafficClass): Promise<ActivePackage> => {
    const store = await PackageStore.open({ root: storeRoot, metainfo: entry.metainfo });
    if (!store.isComplete()) await reuseFiles(entry, store);
    const gates = bandwidth.gatesFor(cls);
    const webseed =
      entry.metainfo.urlList.length > 0 ? new WebseedClient({ metainfo: entry.metainfo, urls: entry.metainfo.urlList, ca: identity.caPem, readGate: gates.download }) : undefined;
    const session = new PackageSession({
      metainfo: entry.metainfo,
      store,
      peerId,
      selfName: agentId,
      swarm: config.swarm,
      bandwidth: gates,
      listenPort: address.port,
      ...(webseed ? { webseed } : {}),
    });
    session.on('webseed-fetch', (e: WebseedFetchEvent) => metrics.webseedFetches.inc({ reason: e.reason }));
    session.on('webseed-error', (err: Error) => log.warn({ package: entry.name, err: err.message }, 'webseed fetch failed'));
    session.on('peer-closed', (e: { peerName: string; reason: { code: string; message: string } }) =>
      log.info({ package: entry.name, peer: e.peerName, code: e.reason.code, reason: e.reason.message }, 'peer connection closed'),
    );
    session.on('peer-banned', (e: { peerName: string; strikes: number }) => log.warn({ package: entry.name, ...e }, 'peer banned for corrupt data'));
    session.on('piece-corrupt', (e: { index: number; peers: string[] }) => log.warn({ package: entry.name, ...e }, 'piece failed verification'));
    // PEX (BEP 11) gives addresses only: the TLS handshake decides who answers there, and admits it or not.
    session.on('pex-peers', (e: PexPeersEvent) => {
      const item = active.get(wireName(entry.metainfo.infoHash));
      if (item?.session !== session) return;
      dial(item, e.peers.map((p) => ({ addresses: [p.address], port: p.port, location: { region: '', zone: '', site: '' }, seed: p.seed })), 'pex');
    });
    session.on('pex-message', (e: PexMessageEvent) => {
      metrics.pexMessages.inc({ direction: e.direction });
      // Debug only: a peer flooding bad PEX must not flood the log too (the counter shows it).
      if (e.reason) log.debug({ package: entry.name, peer: e.peerName, code: e.reason.code, reason: e.reason.message }, 'ut_pex message ignored');
    });
    const pkg: WirePackage = { name: entry.name, infoHash: entry.metainfo.infoHash };
    let markComplete: () => void = () => undefined;
    let markFailed: (err: Error) => void = () => undefined;
    const completed = new Promise<void>((resolve, reject) => {
      markComplete = resolve;
      markFailed = reject;
    });
    // Deliveries watch every session's outcome; a session stopped at shutdown has no other watcher.
    completed.catch(() => undefined);
    let finished = false;
    const item: ActivePackage = {
      entry,
      pkg,
      store,
      session,
      webseed,
      dialled: new Set(),
      completed,
      gates,
      get packagePath() {
        return store.completePackagePath;
      },
      progress: () => {
        const p = session.progress;
        return { verifiedPieces: p.verifiedPieces, totalPieces: p.totalPieces, bytesFromPeers: p.bytesDownloaded, bytesFromOrigin: p.bytesFromWebseed };
      },
      // Complete once finished on disk, not merely once the last piece verified.
      isComplete: () => finished,
      fail: (err) => markFailed(err),
    };
    active.set(wireName(entry.metainfo.infoHash), item);
    // Before the tracker's answer, which may be slow or never come.
    item.discovery = dht?.track(truncatedInfoHash(entry.metainfo.infoHash), {
      wantsPeers: () => !session.isComplete(),
      onPeers: (peers) => dial(item, peers.map(fromDht), 'dht'),
    });
    const onComplete = async () => {
      await store.finish();
      finished = true;
      metrics.completed.inc();
      log.info({ package: `${entry.name}@${entry.version}`, path: store.completePackagePath }, 'package complete and verified');
      markComplete();
      await announce(item, 'ANNOUNCE_EVENT_COMPLETED');
    };
    const onFinishFailed = (err: Error) => {
      log.error({ package: `${entry.name}@${entry.version}`, err: err.message }, 'finishing the package failed');
      void deactivate(item, err);
    };
    session.on('store-error', (err: Error) => {
      log.error({ package: `${entry.name}@${entry.version}`, err: err.message }, 'the package store failed; stopping the package');
      void deactivate(item, err);
    });
    if (session.isComplete()) await onComplete().catch(onFinishFailed);
    else {
      session.once('complete', () => void onComplete().catch(onFinishFailed));
      // Time to the first verified piece of this session (of the resumed fetch, after a restart): the
      // start-up half of a delivery, which the lab measures by this line.
      session.once('piece-verified', (index: number) => log.info({ package: `${entry.name}@${entry.version}`, index }, 'first piece verified'));
    }
    const first = await announce(item, 'ANNOUNCE_EVENT_STARTED');
    // Stopped (cancelled) while it announced: no peers, no more announces.
    if (active.get(wireName(entry.metainfo.infoHash)) !== item) return item;
    trackerAnswered(item, first);
    schedule(item, nextAnnounce(item, first?.intervalSeconds ?? 30));
    return item;
  };

  /**
   * Stops a package's session: no more peers, announces (the tracker hears STOPPED) or webseed
   * fetches; the store is closed with its verified pieces, so a later session resumes from them.
   */
  const deactivate = (item: ActivePackage, reason: Error): Promise<void> => {
    const key = wireName(item.entry.metainfo.infoHash);
    if (active.get(key) !== item) return stopping.get(key) ?? Promise.resolve();
    active.delete(key);
    if (item.announceTimer) clearTimeout(item.announceTimer);
    item.discovery?.stop();
    item.fail(reason);
    const stopped = (async () => {
      await Promise.all([announce(item, 'ANNOUNCE_EVENT_STOPPED'), item.session.close(), item.webseed?.close()]);
      await item.store.close().catch((err: Error) => log.warn({ package: item.entry.name, err: err.message }, 'closing the package store failed'));
    })();
    stopping.set(key, stopped);
    const done = () => {
      if (stopping.get(key) === stopped) stopping.delete(key);
    };
    stopped.then(done, done);
    return stopped;
  };

  const activeRelease = (name: string, version: string): ActivePackage | undefined => {
    for (const item of active.values()) if (item.entry.name === name && item.entry.version === version) return item;
    return undefined;
  };

  // Kept alive between TUF fetches; destroyed on close, or its idle sockets would keep the process up.
  const tufAgent = new HttpsAgent({ ca: identity.caPem, keepAlive: true });
  const verifier = new ReleaseVerifier({
    metadataDir: join(config.dataDir, 'tuf'),
    trustedRootBytes: files.tufRoot,
    metadataBaseUrl: endpoints.tufMetadata,
    targetBaseUrl: endpoints.tufTargets,
    fetcher: new NodeFetcher({ agent: tufAgent }),
  });

  const states = await ReleaseStates.load(join(config.dataDir, 'releases.json'), log);
  const deliveries: Deliveries = new Deliveries({
    states,
    policy: config,
    log,
    countInstall: (result) => metrics.installs.inc({ result }),
    baseEnv: Object.fromEntries(HOOK_BASE_ENV.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name] as string]]))),
    host: {
      verify: async (name, version) => {
        log.info({ release: releaseKey(name, version) }, 'fetching release');
        // Only a release that TUF verifies names a swarm worth joining.
        const release = await verifier.verifyRelease(name, version);
        log.info({ release: releaseKey(name, version), infoHash: release.infoHash }, 'release verified with TUF');
        return release;
      },
      activate: async (release: VerifiedRelease, cls) => activate(await catalog.add({ name: release.name, version: release.version, metainfoBytes: release.metainfoBytes }), cls),
      activeOf: activeRelease,
      stop: async (name, version) => {
        const item = activeRelease(name, version);
        if (item && !item.isComplete()) await deactivate(item, new FetchCancelledError(releaseKey(name, version)));
      },
      report: (progress) => control.report(progress),
    },
  });

  const fetch: RunningAgent['fetch'] = async (name, version, options = {}) => {
    const result = await deliveries.fetch({ name, version, install: options.install ?? false, cls: options.cls ?? 'normal', rolloutId: '' });
    if (!result.ok) throw new Error(result.message);
  };

  const answer = (what: string, reply: (ok: boolean, message?: string) => void) => (result: CommandReply) => {
    if (!result.ok) log.warn({ command: what, reason: result.message }, 'command failed');
    reply(result.ok, result.message);
  };

  const onCommand = (command: ControllerCommand, reply: (ok: boolean, message?: string) => void) => {
    if (command.fetch) {
      const request = fetchRequestOf(command.fetch);
      if (typeof request === 'string') return reply(false, request);
      deliveries.fetch(request).then(answer(`fetch ${releaseKey(request.name, request.version)}`, reply), (err: Error) => reply(false, err.message));
    } else if (command.cancel) {
      const { name, version } = command.cancel;
      deliveries.cancel(name, version).then(answer(`cancel ${releaseKey(name, version)}`, reply), (err: Error) => reply(false, err.message));
    } else if (command.revocations) {
      try {
        const list = verifyRevocationList(command.revocations, identity.caPem, { fleet, minVersion: revocations.version });
        revocations = new RevocationSet(list);
        metrics.revocationVersion.set(list.version);
        let closed = peerServer.enforceRevocations() + (dht?.enforceRevocations() ?? 0);
        for (const c of dialledConnections) {
          if (revocations.has(c.peer.serial)) {
            c.socket.destroy();
            closed++;
          }
        }
        // Applied at once; reported once it is also on disk for the next start.
        saveRevocations(revocationsPath, command.revocations).then(
          () => {
            log.info({ version: list.version, closed }, 'revocation list applied');
            reply(true);
          },
          (err: Error) => {
            log.warn({ version: list.version, closed, err: err.message }, 'revocation list applied but not saved');
            reply(false, `applied but not saved: ${err.message}`);
          },
        );
      } catch (err) {
        reply(false, (err as Error).message);
      }
    } else if (command.renew) {
      renewer.renewNow().then(
        () => reply(true),
        (err: Error) => reply(false, err.message),
      );
    } else {
      reply(false, 'unsupported command');
    }
  };

  // Before the hello: it reports what recovery leaves.
  const held = await catalog.list();
  deliveries.recover((name, version) => held.some((entry) => entry.name === name && entry.version === version));

  const control = new ControlClient({
    controller: endpoints.grpc,
    identity: () => identity,
    softwareVersion: AGENT_SOFTWARE_VERSION,
    revocationVersion: () => revocations.version,
    releases: () => deliveries.snapshot(),
  });
  control.on('command', onCommand);
  control.on('connected', () => log.info('control stream open'));
  control.on('rejected', (s: { details: string }) => log.error({ reason: s.details }, 'the controller refuses this agent'));
  control.start();

  for (const entry of held) {
    if (!deliveries.shouldResume(entry.name, entry.version)) {
      log.info({ release: releaseKey(entry.name, entry.version) }, 'not resuming a cancelled fetch');
      continue;
    }
    activate(entry, deliveries.classOf(entry.name, entry.version)).catch((err: Error) => log.error({ package: entry.name, err: err.message }, 'could not resume package'));
  }

  const status = await serveStatus(config.statusSocket, () => ({
    agentId,
    fleet,
    peerPort: address.port,
    revocationVersion: revocations.version,
    dht: dht?.status() ?? null,
    packages: [...active.values()].map((a) => {
      const state = states.get(a.entry.name, a.entry.version);
      return {
        name: a.entry.name,
        version: a.entry.version,
        infoHash: a.entry.infoHashHex,
        complete: a.isComplete(),
        ...a.session.progress,
        path: a.isComplete() ? a.packagePath : null,
        bandwidthClass: a.gates.cls,
        phase: state?.phase ?? null,
        message: state?.message ?? '',
        exitCode: state?.exitCode ?? -1,
        rolloutId: state?.rolloutId ?? '',
      };
    }),
    /** Every release remembered (newest first), active or not: cancelled and failed ones too. */
    releases: deliveries.list().map(({ updatedAt, ...state }) => ({ ...state, updatedAt: new Date(updatedAt).toISOString() })),
  }), metrics.registry);

  const mallocAdvice = agentMallocTuningAdvice(process.env, runsOnGlibc());
  if (mallocAdvice) log.warn(mallocAdvice);
  log.info({ agentId, fleet, peerPort: address.port, status: config.statusSocket }, 'agent started');
  return {
    agentId,
    peerPort: address.port,
    statusSocket: config.statusSocket,
    fetch,
    close: async () => {
      closing = true;
      control.stop();
      renewer.stop();
      await deliveries.close();
      await Promise.all([...active.values()].map((item) => deactivate(item, new Error('the agent is stopping'))));
      tracker.close();
      tufAgent.destroy();
      await dht?.close();
      await peerServer.close();
      await new Promise<void>((resolve) => status.close(() => resolve()));
    },
  };
}

async function loadRevocations(path: string, caPem: string, fleet: string, log: pino.Logger): Promise<RevocationSet> {
  const empty = new RevocationSet({ fleet, version: 0, issuedAt: new Date(0), revoked: [] });
  let saved: string;
  try {
    saved = await readFile(path, 'utf8');
  } catch {
    return empty;
  }
  try {
    return new RevocationSet(verifyRevocationList(JSON.parse(saved) as SignedRevocationList, caPem, { fleet, minVersion: 0 }));
  } catch (err) {
    log.warn({ path, err: (err as Error).message }, 'ignoring a saved revocation list that does not verify');
    return empty;
  }
}

async function saveRevocations(path: string, list: SignedRevocationList): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify({ payload: list.payload, signature: list.signature }), { mode: 0o600 });
  await rename(temporary, path);
}

/** A FetchRelease command as deliveries take it, or why it is refused. */
function fetchRequestOf(fetch: FetchReleaseMessage): Parameters<Deliveries['fetch']>[0] | string {
  if (!isRolloutId(fetch.rolloutId)) return 'rollout_id must be up to 128 printable ASCII characters';
  return {
    name: fetch.name,
    version: fetch.version,
    install: fetch.install === true,
    cls: fetch.bandwidthClass === 'BANDWIDTH_CLASS_BACKGROUND' ? 'background' : 'normal',
    rolloutId: fetch.rolloutId,
  };
}

/** The labels the agent enrolled with, as a topology location. */
function locationOf(labels: Record<string, string>): Location {
  return { region: labels.region ?? '', zone: labels.zone ?? '', site: labels.site ?? '' };
}

function agentMetrics(packages: () => Iterable<ActivePackage>) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'shoal_agent_' });
  const sum = (pick: (p: PackageSession['progress']) => number) => () => {
    let total = 0;
    for (const item of packages()) total += pick(item.session.progress);
    return total;
  };
  return {
    registry,
    refused: new Counter({ name: 'shoal_agent_peers_refused_total', help: 'peer connections refused, by reason', labelNames: ['code'] as const, registers: [registry] }),
    completed: new Counter({ name: 'shoal_agent_packages_completed_total', help: 'packages downloaded and verified', registers: [registry] }),
    installs: new Counter({
      name: 'shoal_agent_installs_total',
      help: 'install hook runs, by result (succeeded, failed, timeout, cancelled)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    revocationVersion: new Gauge({ name: 'shoal_agent_revocation_list_version', help: 'version of the revocation list applied', registers: [registry] }),
    peersDiscovered: new Counter({
      name: 'shoal_agent_peers_discovered_total',
      help: 'peer addresses learned for packages, by source (tracker, dht, pex)',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    peersConnected: new Counter({
      name: 'shoal_agent_peers_connected_total',
      help: 'peer connections this agent opened and the peer admitted, by the source that named the peer',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    pexMessages: new Counter({
      name: 'shoal_agent_pex_messages_total',
      help: 'ut_pex (BEP 11) messages, by direction: sent, received, ignored (broke BEP 11 or came too soon)',
      labelNames: ['direction'] as const,
      registers: [registry],
    }),
    reusedBytes: new Counter({
      name: 'shoal_agent_reused_bytes_total',
      help: 'package bytes copied and verified from files this host already held (not fetched)',
      registers: [registry],
    }),
    webseedFetches: new Counter({
      name: 'shoal_agent_webseed_fetches_total',
      help: 'pieces fetched from the webseed (origin), by the reason the swarm fell back to it',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    bytes: new Gauge({
      name: 'shoal_agent_package_bytes',
      help: 'package payload bytes of the active packages: received from peers, fetched from the origin, sent to peers',
      labelNames: ['source'] as const,
      registers: [registry],
      collect() {
        this.set({ source: 'peers' }, sum((p) => p.bytesDownloaded)());
        this.set({ source: 'origin' }, sum((p) => p.bytesFromWebseed)());
        this.set({ source: 'uploaded' }, sum((p) => p.bytesUploaded)());
      },
    }),
  };
}

/** The local status API: GET /status (JSON) and GET /metrics, on a unix socket only this host reaches. */
async function serveStatus(socketPath: string, status: () => object, registry: Registry): Promise<Server> {
  await rm(socketPath, { force: true });
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/status') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(status()));
    } else if (req.method === 'GET' && req.url === '/metrics') {
      registry.metrics().then((text) => {
        res.setHeader('content-type', registry.contentType);
        res.end(text);
      });
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}
