import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Endpoints } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';

/**
 * What an enrolled agent keeps in its data folder. The private key is generated here and never
 * leaves the host (0600); the rest is what the controller answered at enrollment.
 */
export const identityLayout = (dataDir: string) => ({
  key: join(dataDir, 'identity', 'agent-key.pem'),
  certificate: join(dataDir, 'identity', 'agent.pem'),
  ca: join(dataDir, 'identity', 'ca.pem'),
  tufRoot: join(dataDir, 'identity', 'tuf-root.json'),
  enrollment: join(dataDir, 'identity', 'enrollment.json'),
});

export interface EnrollmentRecord {
  agentId: string;
  fleet: string;
  endpoints: Endpoints;
  labels: Record<string, string>;
  enrolledAt: string;
}

export interface AgentIdentityFiles {
  keyPem: string;
  certPem: string;
  caPem: string;
  tufRoot: Buffer;
  enrollment: EnrollmentRecord;
}

export class IdentityError extends ShoalError {}

export async function loadIdentity(dataDir: string): Promise<AgentIdentityFiles> {
  const paths = identityLayout(dataDir);
  try {
    return {
      keyPem: await readFile(paths.key, 'utf8'),
      certPem: await readFile(paths.certificate, 'utf8'),
      caPem: await readFile(paths.ca, 'utf8'),
      tufRoot: await readFile(paths.tufRoot),
      enrollment: JSON.parse(await readFile(paths.enrollment, 'utf8')) as EnrollmentRecord,
    };
  } catch (err) {
    throw new IdentityError(
      'AGENT_NOT_ENROLLED',
      `${dataDir}: no agent identity (run "shoal agent enroll --token ... --controller ... --ca ..." first): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

export async function saveIdentity(dataDir: string, files: AgentIdentityFiles): Promise<void> {
  const paths = identityLayout(dataDir);
  await mkdir(join(dataDir, 'identity'), { recursive: true, mode: 0o700 });
  await writeAtomic(paths.key, files.keyPem, 0o600);
  await writeAtomic(paths.ca, files.caPem, 0o644);
  await writeAtomic(paths.tufRoot, files.tufRoot, 0o644);
  await writeAtomic(paths.enrollment, `${JSON.stringify(files.enrollment, null, 2)}\n`, 0o644);
  // The certificate last: its presence means the rest is in place.
  await writeAtomic(paths.certificate, files.certPem, 0o644);
}

export async function saveCertificate(dataDir: string, certPem: string): Promise<void> {
  await writeAtomic(identityLayout(dataDir).certificate, certPem, 0o644);
}

/** Milliseconds since the epoch at which a certificate is half-way through its life. */
export function halfLife(certPem: string): number {
  const cert = new X509Certificate(certPem);
  const from = new Date(cert.validFrom).getTime();
  const to = new Date(cert.validTo).getTime();
  return from + (to - from) / 2;
}

export async function writeAtomic(path: string, content: string | Buffer, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode });
  await chmod(temporary, mode);
  await rename(temporary, path);
}
