import { randomBytes } from 'node:crypto';
import { checkCsr } from '@shoal/pki';
import type { EnrollRequest, EnrollResponse, Endpoints, RenewRequest, RenewResponse } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import type { FleetPki } from '../pki/fleet-pki';
import type { AgentRegistry } from '../registry/agents.service';
import { type BootstrapTokens, EnrollmentError } from './bootstrap-tokens.service';

export interface EnrollmentSettings {
  agentCertLifetimeSeconds: number;
  endpoints: Endpoints;
  /** Latest TUF root.json: the agent's trust anchor for releases. */
  tufRoot: () => Promise<Buffer>;
}

const MAX_FIELD = { hostname: 253, softwareVersion: 64 } as const;

/** Enroll (token + CSR -> certificate) and Renew (certificate + CSR -> fresh certificate). */
export class EnrollmentService {
  constructor(
    private readonly tokens: BootstrapTokens,
    private readonly pki: FleetPki,
    private readonly registry: AgentRegistry,
    private readonly settings: EnrollmentSettings,
    private readonly clock: () => number,
  ) {}

  /** The mutual-TLS gRPC address is known only once its listener is bound. */
  setGrpcEndpoint(address: string): void {
    this.settings.endpoints = { ...this.settings.endpoints, grpc: address };
  }

  async enroll(request: EnrollRequest, peerAddress: string): Promise<EnrollResponse> {
    for (const field of ['hostname', 'softwareVersion'] as const) {
      if (request[field].length > MAX_FIELD[field] || /[\u0000-\u001f]/.test(request[field])) {
        throw new EnrollmentError('ENROLL_BAD_REQUEST', `${field} must be printable and at most ${MAX_FIELD[field]} characters`);
      }
    }
    // The CSR is checked before the token is spent, so a broken agent does not burn its uses.
    const publicKeyPem = this.checkedPublicKey(request.csrPem);
    const grant = await this.tokens.consume(request.bootstrapToken);
    const agentId = grant.agentName ?? `agent-${randomBytes(6).toString('hex')}`;
    const now = new Date(this.clock());
    const issued = await this.pki.issueAgentCertificate(agentId, publicKeyPem, this.settings.agentCertLifetimeSeconds, now);
    await this.registry.recordEnrollment({
      id: agentId,
      labels: grant.labels,
      hostname: request.hostname,
      softwareVersion: request.softwareVersion,
      addresses: [peerAddress],
      certificateSerial: issued.serial,
      certificateExpiresAt: issued.notAfter.toISOString(),
    });
    return {
      agentId,
      certificatePem: issued.certPem,
      caPem: this.pki.authority.certPem,
      tufRoot: await this.settings.tufRoot(),
      endpoints: this.settings.endpoints,
      labels: grant.labels,
      revocations: this.pki.revocations,
    };
  }

  async renew(agentId: string, request: RenewRequest): Promise<RenewResponse> {
    const publicKeyPem = this.checkedPublicKey(request.csrPem);
    const agent = await this.registry.get(agentId);
    if (!agent || agent.state !== 'active') {
      throw new ShoalError('AUTH_AGENT_REVOKED', `agent ${agentId} is not an active fleet member`);
    }
    const now = new Date(this.clock());
    const issued = await this.pki.issueAgentCertificate(agentId, publicKeyPem, this.settings.agentCertLifetimeSeconds, now);
    await this.registry.recordCertificate(agentId, issued.serial, issued.notAfter.toISOString());
    return { certificatePem: issued.certPem };
  }

  private checkedPublicKey(csrPem: unknown): string {
    try {
      return checkCsr(csrPem as string).publicKeyPem;
    } catch (err) {
      if (err instanceof ShoalError) throw new EnrollmentError('ENROLL_BAD_CSR', `certificate request refused: ${err.message}`, { cause: err });
      throw err;
    }
  }
}
