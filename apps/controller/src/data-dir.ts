import { X509Certificate, createPublicKey } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { FileMetadataStore, TufRepository, generateSigningKey, signerFromPrivateKeyPem, type OnlineSigners } from '@shoal/trust';
import { ShoalError } from '@shoal/torrent';
import { ApiTokens } from './auth/api-tokens';

/**
 * The controller's data folder, made by `shoal controller init`. Private keys are 0600. The
 * root TUF key is only needed to rotate keys: it may be moved offline after init.
 */
export const layout = (dir: string) => ({
  fleetFile: join(dir, 'fleet.json'),
  caCert: join(dir, 'ca', 'ca.pem'),
  caKey: join(dir, 'ca', 'ca-key.pem'),
  tlsCert: join(dir, 'tls', 'controller.pem'),
  tlsKey: join(dir, 'tls', 'controller-key.pem'),
  tufRootKey: join(dir, 'tuf', 'root-keys', 'root-1.pem'),
  tufOnlineKey: (role: keyof OnlineSigners) => join(dir, 'tuf', 'online-keys', `${role}.pem`),
  tufRepository: join(dir, 'tuf', 'repository'),
  apiTokens: join(dir, 'api-tokens.json'),
  revocations: join(dir, 'revocations.json'),
});

export interface FleetFile {
  fleet: string;
  createdAt: string;
}

export interface InitOptions {
  dataDir: string;
  fleet: string;
  /** Host names and addresses agents reach the controller by (go into its certificate). */
  hosts: string[];
  now: Date;
}

export interface InitResult {
  fleet: string;
  adminToken: string;
  caFingerprintSha256: string;
}

const ONLINE_ROLES: (keyof OnlineSigners)[] = ['targets', 'snapshot', 'timestamp'];
/** Re-issue the controller's TLS certificate at start when less than this is left. */
const TLS_RENEW_BEFORE_MS = 30 * 86_400_000;

export async function initDataDir(options: InitOptions): Promise<InitResult> {
  const paths = layout(options.dataDir);
  if (await exists(paths.fleetFile)) {
    throw new ShoalError('INIT_EXISTS', `${options.dataDir} already holds a controller (fleet.json); refusing to overwrite its keys`);
  }
  const ca = createFleetCa({ fleet: options.fleet, now: options.now });
  await writePrivate(paths.caKey, ca.keyPem);
  await writePublic(paths.caCert, ca.certPem);
  const authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
  await issueControllerTls(authority, paths, options.hosts, options.now);

  const rootKey = generateSigningKey();
  await writePrivate(paths.tufRootKey, rootKey.privateKeyPem);
  const online = Object.fromEntries(ONLINE_ROLES.map((role) => [role, generateSigningKey()])) as Record<keyof OnlineSigners, ReturnType<typeof generateSigningKey>>;
  for (const role of ONLINE_ROLES) await writePrivate(paths.tufOnlineKey(role), online[role].privateKeyPem);
  await TufRepository.initialize({
    store: new FileMetadataStore(paths.tufRepository),
    rootKeys: [signerFromPrivateKeyPem(rootKey.privateKeyPem)],
    onlineKeys: Object.fromEntries(ONLINE_ROLES.map((role) => [role, signerFromPrivateKeyPem(online[role].privateKeyPem)])) as unknown as OnlineSigners,
    now: options.now,
  });

  const tokens = await ApiTokens.open(paths.apiTokens);
  const { token } = await tokens.create('initial admin', 'admin', options.now);
  await writePublic(paths.fleetFile, `${JSON.stringify({ fleet: options.fleet, createdAt: options.now.toISOString() } satisfies FleetFile, null, 2)}\n`);
  return { fleet: options.fleet, adminToken: token, caFingerprintSha256: authority.certificateFingerprintSha256 };
}

export interface LoadedDataDir {
  fleet: string;
  authority: CertificateAuthority;
  tls: { certPem: string; keyPem: string };
  onlineSigners: OnlineSigners;
  store: FileMetadataStore;
  paths: ReturnType<typeof layout>;
}

/** Loads what a running controller needs, renewing its TLS certificate when it nears expiry. */
export async function loadDataDir(dataDir: string, hosts: string[], now: Date): Promise<LoadedDataDir> {
  const paths = layout(dataDir);
  let fleetFile: FleetFile;
  try {
    fleetFile = JSON.parse(await readFile(paths.fleetFile, 'utf8')) as FleetFile;
  } catch (err) {
    throw new ShoalError('DATA_DIR_INVALID', `${dataDir}: not a controller data folder (run "shoal controller init" first): ${(err as Error).message}`, { cause: err });
  }
  const authority = CertificateAuthority.load(await readFile(paths.caCert, 'utf8'), await readFile(paths.caKey, 'utf8'));
  let tlsCert = await readFile(paths.tlsCert, 'utf8');
  const expiresAt = new Date(new X509Certificate(tlsCert).validTo).getTime();
  if (expiresAt - now.getTime() < TLS_RENEW_BEFORE_MS) {
    await issueControllerTls(authority, paths, hosts, now);
    tlsCert = await readFile(paths.tlsCert, 'utf8');
  }
  const onlineSigners = Object.fromEntries(
    await Promise.all(ONLINE_ROLES.map(async (role) => [role, signerFromPrivateKeyPem(await readFile(paths.tufOnlineKey(role), 'utf8'))])),
  ) as unknown as OnlineSigners;
  return {
    fleet: fleetFile.fleet,
    authority,
    tls: { certPem: tlsCert, keyPem: await readFile(paths.tlsKey, 'utf8') },
    onlineSigners,
    store: new FileMetadataStore(paths.tufRepository),
    paths,
  };
}

async function issueControllerTls(authority: CertificateAuthority, paths: ReturnType<typeof layout>, hosts: string[], now: Date): Promise<void> {
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...hosts])];
  // The key is kept across renewals; only a first start makes one.
  const keyPem = (await exists(paths.tlsKey)) ? await readFile(paths.tlsKey, 'utf8') : generateRsaKeyPair(2048).keyPem;
  const issued = authority.issueControllerCertificate({
    dnsNames: names.filter((n) => isIP(n) === 0),
    ipAddresses: names.filter((n) => isIP(n) !== 0),
    publicKeyPem: createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString(),
    now,
  });
  await writePrivate(paths.tlsKey, keyPem);
  await writePublic(paths.tlsCert, issued.certPem);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function writePrivate(path: string, content: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600);
}

async function writePublic(path: string, content: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content, { mode: 0o644 });
}
