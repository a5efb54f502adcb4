import { parseArgs } from 'node:util';
import { createPackage } from '@shoal/torrent';
import { EXIT_OK, UsageError } from '../errors';
import { formatBytes, parseSize } from '../format';
import { type Output, readCaCertificate, writeFileAtomic } from '../io';
import { ProgressBar } from '../progress';
import { VERSION } from '../version';

export const PACK_USAGE = `usage: shoal pack <path> -o <pkg.torrent> [--piece-length N] [--webseed URL]... [--ca ca.pem] [--threads N] [--json]

Hashes a file or a folder into a BitTorrent v2 package.
  -o, --output FILE      where to write the package (required)
  --piece-length N       bytes per piece: a power of two >= 16K (e.g. 262144, 256K, 4M);
                         default: about 2,000 pieces, between 16 KiB and 16 MiB
  --webseed URL          HTTP(S) origin serving the same files (BEP 19); repeatable
  --ca FILE              fleet CA certificate (PEM) the package is bound to (info.ssl-cert)
  --threads N            worker threads hashing blocks (0: hash on the main thread);
                         default: one per core, at most 4
  --json                 print the result as JSON`;

export async function pack(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      'piece-length': { type: 'string' },
      webseed: { type: 'string', multiple: true },
      ca: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) throw new UsageError(`pack takes exactly one path\n${PACK_USAGE}`);
  if (!values.output) throw new UsageError(`pack needs -o <pkg.torrent>\n${PACK_USAGE}`);
  let pieceLength: number | undefined;
  if (values['piece-length'] !== undefined) {
    pieceLength = parseSize(values['piece-length']);
    if (pieceLength === undefined) throw new UsageError(`--piece-length: "${values['piece-length']}" is not a size`);
  }
  let hashThreads: number | undefined;
  if (values.threads !== undefined) {
    hashThreads = Number(values.threads);
    if (!Number.isSafeInteger(hashThreads) || hashThreads < 0 || hashThreads > 64) {
      throw new UsageError(`--threads: "${values.threads}" is not a thread count between 0 and 64`);
    }
  }
  const sslCert = values.ca === undefined ? undefined : await readCaCertificate(values.ca);
  const bar = new ProgressBar('pack');
  const { bytes, metainfo } = await createPackage(positionals[0] as string, {
    ...(pieceLength !== undefined ? { pieceLength } : {}),
    ...(sslCert !== undefined ? { sslCert } : {}),
    ...(hashThreads !== undefined ? { hashThreads } : {}),
    urlList: values.webseed ?? [],
    createdBy: `shoal/${VERSION}`,
    onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, p.file),
  }).finally(() => bar.finish());
  await writeFileAtomic(values.output, bytes);
  const summary = {
    output: values.output,
    name: metainfo.name,
    infoHash: metainfo.infoHash.toString('hex'),
    totalLength: metainfo.totalLength,
    files: metainfo.files.length,
    pieceLength: metainfo.pieceLength,
    pieces: metainfo.numPieces,
  };
  if (values.json) {
    out.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    out.stdout.write(
      `${summary.infoHash}  ${summary.output} (${summary.files} file${summary.files === 1 ? '' : 's'}, ` +
        `${formatBytes(summary.totalLength)}, ${summary.pieces} pieces of ${formatBytes(summary.pieceLength)})\n`,
    );
  }
  return EXIT_OK;
}
