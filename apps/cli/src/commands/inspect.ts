import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { diskPath, truncatedInfoHash } from '@shoal/torrent';
import { EXIT_OK, UsageError } from '../errors';
import { formatBytes } from '../format';
import { type Output, readPackage } from '../io';

export const INSPECT_USAGE = `usage: shoal inspect <pkg.torrent> [--json]

Shows a package's name, info-hash, size, piece length and files.`;

export async function inspect(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' } },
  });
  if (positionals.length !== 1) throw new UsageError(`inspect takes exactly one package file\n${INSPECT_USAGE}`);
  const meta = await readPackage(positionals[0] as string);
  const ca = meta.sslCert === undefined ? undefined : describeCa(meta.sslCert);
  const report = {
    name: meta.name,
    infoHash: meta.infoHash.toString('hex'),
    wireInfoHash: truncatedInfoHash(meta.infoHash).toString('hex'),
    totalLength: meta.totalLength,
    pieceLength: meta.pieceLength,
    pieces: meta.numPieces,
    files: meta.files.map((f) => ({
      path: diskPath(meta, f).join('/'),
      length: f.length,
      executable: f.executable,
      piecesRoot: f.piecesRoot?.toString('hex') ?? null,
    })),
    webseeds: meta.urlList,
    ca: ca ?? null,
  };
  if (values.json) {
    out.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT_OK;
  }
  const lines = [
    `name:          ${report.name}`,
    `info-hash:     ${report.infoHash}`,
    `wire hash:     ${report.wireInfoHash}`,
    `size:          ${formatBytes(report.totalLength)} (${report.totalLength} bytes) in ${report.files.length} file${report.files.length === 1 ? '' : 's'}`,
    `piece length:  ${formatBytes(report.pieceLength)} (${report.pieces} pieces)`,
    `fleet CA:      ${!ca ? 'none (not bound to a fleet)' : 'error' in ca ? ca.error : `${ca.subject} (sha256 ${ca.fingerprint256})`}`,
    `webseeds:      ${report.webseeds.length ? report.webseeds.join(' ') : 'none'}`,
    'files:',
    ...report.files.map((f) => `  ${formatBytes(f.length).padStart(10)}  ${f.executable ? 'x' : ' '} ${f.path}`),
  ];
  out.stdout.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}

function describeCa(pem: string): { subject: string; fingerprint256: string } | { error: string } {
  try {
    const cert = new X509Certificate(pem);
    return { subject: cert.subject.replace(/\n/g, ', '), fingerprint256: cert.fingerprint256 };
  } catch {
    return { error: 'info.ssl-cert is not a parsable PEM certificate' };
  }
}
