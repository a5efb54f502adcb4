import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { createCsr } from '@shoal/pki';
import { type RenewResponse, shoalV1, unary } from '@shoal/proto';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { halfLife, saveCertificate } from './state';

export interface RenewerOptions {
  dataDir: string;
  keyPem: string;
  certPem: string;
  caPem: string;
  /** host:port of the controller's mutual-TLS listener. */
  controller: string;
  /** Retry delays after a failed renewal grow from this, doubling, up to maxRetryMs. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/**
 * Renews the agent certificate at half-life over mutual TLS (with the current certificate), keeps
 * the key, stores the new certificate, and emits 'renewed' (certPem). Failures are retried with
 * backoff until the certificate expires; each is emitted as 'failed' (Error).
 */
export class CertificateRenewer extends EventEmitter {
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;

  constructor(private options: RenewerOptions) {
    super();
  }

  get certPem(): string {
    return this.options.certPem;
  }

  start(): void {
    this.schedule(Math.max(0, halfLife(this.options.certPem) - Date.now()));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One renewal now; resolves with the new certificate. */
  async renewNow(): Promise<string> {
    const publicKeyPem = createPublicKey(this.options.keyPem).export({ type: 'spki', format: 'pem' }).toString();
    const csrPem = createCsr({ keyPem: this.options.keyPem, publicKeyPem, commonName: 'shoal-agent' });
    const client = new (shoalV1().Identity)(
      this.options.controller,
      grpc.credentials.createSsl(Buffer.from(this.options.caPem), Buffer.from(this.options.keyPem), Buffer.from(this.options.certPem)),
    );
    try {
      const { certificatePem } = await unary<object, RenewResponse>(client, 'Renew', { csrPem });
      const renewed = new X509Certificate(certificatePem);
      if (!renewed.checkIssued(new X509Certificate(this.options.caPem))) throw new Error('renewed certificate is not from the fleet CA');
      await saveCertificate(this.options.dataDir, certificatePem);
      this.options = { ...this.options, certPem: certificatePem };
      return certificatePem;
    } finally {
      client.close();
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    // setTimeout cannot wait longer than 2^31-1 ms; a long wait is done in steps.
    const step = Math.min(delayMs, 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      if (step < delayMs) return this.schedule(delayMs - step);
      this.renewNow().then(
        (certPem) => {
          this.failures = 0;
          this.emit('renewed', certPem);
          this.schedule(Math.max(0, halfLife(certPem) - Date.now()));
        },
        (err: unknown) => {
          this.failures++;
          this.emit('failed', err);
          const min = this.options.minRetryMs ?? 5_000;
          const max = this.options.maxRetryMs ?? 300_000;
          this.schedule(Math.min(max, min * 2 ** (this.failures - 1)));
        },
      );
    }, step);
    this.timer.unref();
  }
}
