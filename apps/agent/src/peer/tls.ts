import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { type SecureContext, type TLSSocket, type Server, connect, createSecureContext, createServer } from 'node:tls';
import type { AgentIdentity } from '@shoal/pki';
import { AdmissionError, DHT_SERVER_NAME, type WirePackage, admitFleetAgent, admitPeer, wireName } from './admission';

export interface TlsIdentity {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** A TLS connection with an admitted fleet agent. */
export interface FleetConnection {
  socket: TLSSocket;
  peer: AgentIdentity;
}

export interface AdmittedConnection extends FleetConnection {
  pkg: WirePackage;
}

export interface PeerServerOptions {
  identity: TlsIdentity;
  fleet: string;
  /** The package a client names by SNI, if this agent serves it. */
  packageFor(wireHashHex: string): WirePackage | undefined;
  isRevoked(serial: string): boolean;
  /**
   * Takes the connections whose SNI is DHT_SERVER_NAME, admitted as fleet agents (no package
   * scope). Without it, that SNI is refused like an unknown package.
   */
  acceptDht?(connection: FleetConnection): void;
}

/** What the listener carries: the peer wire of a package, or the DHT. */
export type PeerService = 'peer' | 'dht';

const TLS_OPTIONS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

/**
 * The peer-wire listener: TLS 1.3 with mutual certificate checks against the fleet CA. The client
 * names the package by SNI (hex of the 20-byte info-hash, as libtorrent's SSL torrents do); an
 * unknown package fails the handshake. After the handshake the peer must pass `admitPeer`, and a
 * revocation pushed later closes its live connections.
 *
 * The reserved SNI DHT_SERVER_NAME selects the DHT instead (see `acceptDht`): the same port, the
 * same certificate checks, without a package.
 *
 * Events: 'connection' (AdmittedConnection), 'refused' ({ code, message, remoteAddress, service }).
 */
export class PeerServer extends EventEmitter {
  private readonly server: Server;
  private context: SecureContext;
  private readonly live = new Map<TLSSocket, AdmittedConnection>();

  constructor(private readonly options: PeerServerOptions) {
    super();
    this.context = contextFor(options.identity);
    this.server = createServer({
      ...TLS_OPTIONS,
      key: options.identity.keyPem,
      cert: options.identity.certPem,
      ca: options.identity.caPem,
      requestCert: true,
      rejectUnauthorized: true,
      SNICallback: (servername, done) => {
        const name = servername.toLowerCase();
        if (this.options.packageFor(name) || (name === DHT_SERVER_NAME && this.options.acceptDht)) done(null, this.context);
        else done(new AdmissionError('PEER_UNKNOWN_PACKAGE', `no package ${JSON.stringify(servername.slice(0, 64))} here`));
      },
    });
    this.server.on('secureConnection', (socket) => this.admit(socket));
    this.server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      const code = err instanceof AdmissionError ? err.code : 'PEER_CERTIFICATE_INVALID';
      this.emit('refused', { code, message: err.message, remoteAddress: socket.remoteAddress, service: serviceOf(socket) });
    });
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    return this.server.address() as AddressInfo;
  }

  /** After renewal: new connections get the new certificate, live ones keep theirs. */
  setIdentity(identity: TlsIdentity): void {
    this.context = contextFor(identity);
    this.server.setSecureContext({ ...TLS_OPTIONS, key: identity.keyPem, cert: identity.certPem, ca: identity.caPem });
  }

  /** Closes every live connection whose peer is now revoked; returns how many. */
  enforceRevocations(): number {
    let closed = 0;
    for (const [socket, connection] of this.live) {
      if (this.options.isRevoked(connection.peer.serial)) {
        socket.destroy(new AdmissionError('PEER_REVOKED', `certificate ${connection.peer.serial} was revoked`));
        closed++;
      }
    }
    return closed;
  }

  connections(): AdmittedConnection[] {
    return [...this.live.values()];
  }

  async close(): Promise<void> {
    for (const socket of this.live.keys()) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private admit(socket: TLSSocket): void {
    if (serviceOf(socket) === 'dht' && this.options.acceptDht) {
      this.admitDht(socket, this.options.acceptDht);
      return;
    }
    const pkg = this.options.packageFor((socket.servername || '').toLowerCase());
    try {
      if (!pkg) throw new AdmissionError('PEER_UNKNOWN_PACKAGE', 'no SNI naming a package');
      const peer = admitPeer(socket.getPeerX509Certificate()?.raw, pkg, this.options.fleet, this.options.isRevoked);
      const connection = { socket, peer, pkg };
      socket.setNoDelay(true);
      this.live.set(socket, connection);
      socket.once('close', () => this.live.delete(socket));
      this.emit('connection', connection);
    } catch (err) {
      this.refuse(socket, err);
    }
  }

  /** DHT connections are the DHT node's to track and close (revocations included). */
  private admitDht(socket: TLSSocket, acceptDht: (connection: FleetConnection) => void): void {
    let peer: AgentIdentity;
    try {
      peer = admitFleetAgent(socket.getPeerX509Certificate()?.raw, this.options.fleet, this.options.isRevoked);
    } catch (err) {
      this.refuse(socket, err);
      return;
    }
    socket.setNoDelay(true);
    acceptDht({ socket, peer });
  }

  private refuse(socket: TLSSocket, err: unknown): void {
    const code = err instanceof AdmissionError ? err.code : 'PEER_CERTIFICATE_INVALID';
    this.emit('refused', { code, message: (err as Error).message, remoteAddress: socket.remoteAddress, service: serviceOf(socket) });
    socket.destroy();
  }
}

function serviceOf(socket: TLSSocket): PeerService {
  return (socket.servername || '').toLowerCase() === DHT_SERVER_NAME ? 'dht' : 'peer';
}

/**
 * Dials a peer for a package: SNI names the package, the server must prove to be an agent of the
 * fleet allowed to swarm it and not revoked. Resolves once the handshake is done; with TLS 1.3
 * the server judges our certificate after that, so a refused client sees its socket close.
 */
export async function connectToPeer(options: {
  host: string;
  port: number;
  pkg: WirePackage;
  identity: TlsIdentity;
  fleet: string;
  isRevoked(serial: string): boolean;
  timeoutMs?: number;
}): Promise<AdmittedConnection> {
  const connection = await dialFleetAgent({ ...options, servername: wireName(options.pkg.infoHash) }, (der) =>
    admitPeer(der, options.pkg, options.fleet, options.isRevoked),
  );
  return { ...connection, pkg: options.pkg };
}

/** Dials another agent's DHT node (SNI DHT_SERVER_NAME): any agent of the fleet that is not revoked. */
export function connectToDhtNode(options: {
  host: string;
  port: number;
  identity: TlsIdentity;
  fleet: string;
  isRevoked(serial: string): boolean;
  timeoutMs?: number;
}): Promise<FleetConnection> {
  return dialFleetAgent({ ...options, servername: DHT_SERVER_NAME }, (der) => admitFleetAgent(der, options.fleet, options.isRevoked));
}

function dialFleetAgent(
  options: { host: string; port: number; servername: string; identity: TlsIdentity; timeoutMs?: number },
  admit: (certificateDer: Buffer | undefined) => AgentIdentity,
): Promise<FleetConnection> {
  return new Promise((resolve, reject) => {
    let certificateDer: Buffer | undefined;
    const socket = connect({
      ...TLS_OPTIONS,
      host: options.host,
      port: options.port,
      servername: options.servername,
      secureContext: clientContextFor(options.identity),
      rejectUnauthorized: true,
      // Peers are named by certificate identity, not by host name: `admit` checks it below, on
      // the certificate Node decoded for this call (reading it again from the socket costs as much).
      checkServerIdentity: (_host, certificate) => {
        certificateDer = certificate.raw;
        return undefined;
      },
    });
    const timer = setTimeout(() => socket.destroy(new Error('TLS handshake timed out')), options.timeoutMs ?? 10_000);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      try {
        const peer = admit(certificateDer ?? socket.getPeerX509Certificate()?.raw);
        socket.setNoDelay(true);
        resolve({ socket, peer });
      } catch (err) {
        socket.destroy();
        reject(err);
      }
    });
  });
}

/**
 * One client context per identity (a renewal brings a new identity object): building one parses
 * the key, the certificate and the CA, and a lab agent dialling its peers and DHT nodes spent
 * about 3 % of its CPU doing that once per connection.
 */
const clientContexts = new WeakMap<TlsIdentity, SecureContext>();

function clientContextFor(identity: TlsIdentity): SecureContext {
  let context = clientContexts.get(identity);
  if (!context) {
    context = contextFor(identity);
    clientContexts.set(identity, context);
  }
  return context;
}

function contextFor(identity: TlsIdentity): SecureContext {
  return createSecureContext({ ...TLS_OPTIONS, key: identity.keyPem, cert: identity.certPem, ca: identity.caPem });
}
