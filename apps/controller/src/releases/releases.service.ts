import { X509Certificate } from 'node:crypto';
import { ShoalError, parseMetainfo } from '@shoal/torrent';
import type { ReleaseRecord, TufRepository } from '@shoal/trust';

export interface PublishInput {
  name: string;
  version: string;
  channel?: string;
  /** Install command to sign into the release (checked by libs/trust). */
  installCommand?: string;
  metainfoBytes: Buffer;
}

/**
 * Publishing: a package is checked as untrusted input (every BEP 52 rule, bound to this fleet's
 * CA) before the TUF repository signs it as a release.
 */
export class ReleasesService {
  private readonly caDer: Buffer;

  constructor(
    private readonly repository: TufRepository,
    caPem: string,
    private readonly maxReleaseBytes: number,
    private readonly clock: () => number,
  ) {
    this.caDer = new X509Certificate(caPem).raw;
  }

  async publish(input: PublishInput): Promise<ReleaseRecord & { created: boolean }> {
    if (input.metainfoBytes.length === 0) throw new ShoalError('RELEASE_EMPTY', 'the request body must be the package (.torrent) bytes');
    if (input.metainfoBytes.length > this.maxReleaseBytes) {
      throw new ShoalError('RELEASE_TOO_LARGE', `package of ${input.metainfoBytes.length} bytes exceeds ${this.maxReleaseBytes}`);
    }
    const meta = parseMetainfo(input.metainfoBytes, { maxInputLength: this.maxReleaseBytes, maxStringLength: this.maxReleaseBytes });
    if (meta.sslCert === undefined || !this.isFleetCa(meta.sslCert)) {
      throw new ShoalError(
        'RELEASE_WRONG_CA',
        'the package is not bound to this fleet: pack it with --ca <the fleet CA certificate> so agents can admit its peers',
      );
    }
    return this.repository.publish({
      name: input.name,
      version: input.version,
      ...(input.channel ? { channel: input.channel } : {}),
      ...(input.installCommand !== undefined ? { installCommand: input.installCommand } : {}),
      metainfoBytes: input.metainfoBytes,
      infoHash: meta.infoHash.toString('hex'),
      now: new Date(this.clock()),
    });
  }

  list(): Promise<ReleaseRecord[]> {
    return this.repository.listTargets();
  }

  async get(name: string, version: string): Promise<ReleaseRecord> {
    const found = (await this.list()).find((r) => r.name === name && r.version === version);
    if (!found) throw new ShoalError('RELEASE_NOT_FOUND', `no release ${name}@${version}`);
    return found;
  }

  private isFleetCa(pem: string): boolean {
    try {
      return new X509Certificate(pem).raw.equals(this.caDer);
    } catch {
      return false;
    }
  }
}
