import { readFile, rename, writeFile } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import {
  type CertificateAuthority,
  type IssuedCertificate,
  type PeerIdentity,
  type RevocationEntry,
  type RevocationReason,
  RevocationSet,
  type SignedRevocationList,
  readPeerIdentity,
  verifyRevocationList,
} from '@shoal/pki';
import { ShoalError } from '@shoal/torrent';
import { KEY_PREFIX } from '../redis';

const serialsKey = (agentId: string) => `${KEY_PREFIX}agent:${agentId}:serials`;
/** Identities of this many distinct certificates are kept parsed (a fleet's live certificates). */
const MAX_CACHED_IDENTITIES = 100_000;

/**
 * The controller's use of the fleet CA: issuing agent certificates, remembering their serials,
 * and the signed revocation list (kept in the data folder, so it survives Redis). Emits
 * 'revoked' with the new RevocationSet whenever the list changes.
 */
export class FleetPki extends EventEmitter {
  private readonly identities = new Map<string, PeerIdentity>();
  private readonly identitiesByBuffer = new WeakMap<Buffer, PeerIdentity>();

  private constructor(
    readonly authority: CertificateAuthority,
    private readonly redis: Redis,
    private readonly file: string,
    private signedList: SignedRevocationList,
    private revokedSet: RevocationSet,
    private readonly retentionMs: number,
  ) {
    super();
  }

  /** `retentionMs`: how long after revocation a serial stays listed (its certificate has expired by then). */
  static async open(authority: CertificateAuthority, redis: Redis, file: string, retentionMs: number, now: Date): Promise<FleetPki> {
    let signed: SignedRevocationList;
    try {
      signed = JSON.parse(await readFile(file, 'utf8')) as SignedRevocationList;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      signed = authority.signRevocationList({ version: 1, revoked: [], now });
      await writeAtomic(file, signed);
    }
    const list = verifyRevocationList(signed, authority.certPem, { fleet: authority.fleet });
    return new FleetPki(authority, redis, file, signed, new RevocationSet(list), retentionMs);
  }

  get fleet(): string {
    return this.authority.fleet;
  }

  get revocations(): SignedRevocationList {
    return this.signedList;
  }

  get revocationVersion(): number {
    return this.revokedSet.version;
  }

  isRevoked(serial: string): boolean {
    return this.revokedSet.has(serial);
  }

  async issueAgentCertificate(agentId: string, publicKeyPem: string, lifetimeSeconds: number, now: Date): Promise<IssuedCertificate> {
    const issued = this.authority.issueAgentCertificate({ agentId, publicKeyPem, packageScopes: ['*'], now, lifetimeSeconds });
    await this.redis
      .multi()
      .zadd(serialsKey(agentId), issued.notAfter.getTime(), issued.serial)
      .zremrangebyscore(serialsKey(agentId), '-inf', now.getTime())
      .exec();
    return issued;
  }

  /** Revokes every unexpired certificate of an agent; returns the serials newly listed. */
  async revokeAgent(agentId: string, reason: RevocationReason, now: Date): Promise<string[]> {
    const serials = await this.redis.zrangebyscore(serialsKey(agentId), now.getTime(), '+inf');
    const fresh = serials.filter((s) => !this.revokedSet.has(s));
    if (fresh.length > 0) await this.revoke(fresh.map((serial) => ({ serial, revokedAt: now, reason })), now);
    return fresh;
  }

  private async revoke(entries: RevocationEntry[], now: Date): Promise<void> {
    const current = verifyRevocationList(this.signedList, this.authority.certPem, { fleet: this.fleet });
    const kept = current.revoked.filter((e) => now.getTime() - e.revokedAt.getTime() < this.retentionMs);
    const signed = this.authority.signRevocationList({ version: current.version + 1, revoked: [...kept, ...entries], now });
    await writeAtomic(this.file, signed);
    this.signedList = signed;
    this.revokedSet = new RevocationSet(verifyRevocationList(signed, this.authority.certPem, { fleet: this.fleet }));
    this.emit('revoked', this.revokedSet);
  }

  /**
   * Who is calling, from the client certificate TLS already verified against the fleet CA; a
   * revoked certificate is refused here, on every call.
   */
  identify(certificateDer: Buffer | undefined): PeerIdentity {
    if (!certificateDer) throw new ShoalError('AUTH_NO_CERTIFICATE', 'a fleet client certificate is required');
    // Parsing a certificate costs more than the rest of an announce: remember what each one
    // says, by Buffer (the gRPC layer hands the same one for every call on a connection), else by
    // content. The revocation check below still runs on every call.
    let identity = this.identitiesByBuffer.get(certificateDer);
    if (!identity) {
      const key = certificateDer.toString('latin1');
      identity = this.identities.get(key);
      if (!identity) {
        identity = readPeerIdentity(certificateDer, { fleet: this.fleet });
        if (this.identities.size >= MAX_CACHED_IDENTITIES) this.identities.clear();
        this.identities.set(key, identity);
      }
      this.identitiesByBuffer.set(certificateDer, identity);
    }
    if (this.revokedSet.has(identity.serial)) {
      throw new ShoalError('AUTH_CERTIFICATE_REVOKED', `certificate ${identity.serial} has been revoked`);
    }
    return identity;
  }
}

async function writeAtomic(file: string, signed: SignedRevocationList): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(signed)}\n`);
  await rename(temporary, file);
}
