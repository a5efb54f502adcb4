import { parseArgs } from 'node:util';
import { verifyPackageData } from '@shoal/torrent';
import { EXIT_OK, EXIT_VERIFY_FAILED, UsageError } from '../errors';
import { formatBytes } from '../format';
import { type Output, readPackage } from '../io';
import { ProgressBar } from '../progress';

export const VERIFY_USAGE = `usage: shoal verify <pkg.torrent> <path> [--json]

Checks data on disk against a package: <path> is what was packed (the file, or the folder).
Exits 0 when every piece verifies, 1 when any piece or file is bad.`;

/** Longest list of piece indices printed per file before summarising. */
const MAX_LISTED_PIECES = 20;

export async function verify(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' } },
  });
  if (positionals.length !== 2) throw new UsageError(`verify takes a package file and a path\n${VERIFY_USAGE}`);
  const [packagePath, dataPath] = positionals as [string, string];
  const meta = await readPackage(packagePath);
  const bar = new ProgressBar('verify');
  const report = await verifyPackageData(meta, dataPath, {
    onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, p.file),
  }).finally(() => bar.finish());
  if (values.json) {
    out.stdout.write(`${JSON.stringify({ infoHash: meta.infoHash.toString('hex'), ...report })}\n`);
  } else {
    for (const file of report.files) {
      if (file.status === 'ok') continue;
      const pieces = file.badPieces.length
        ? ` (bad pieces: ${file.badPieces.slice(0, MAX_LISTED_PIECES).join(', ')}${file.badPieces.length > MAX_LISTED_PIECES ? `, … ${file.badPieces.length} in all` : ''})`
        : '';
      out.stdout.write(`${file.path}: ${file.status}${file.detail ? `: ${file.detail}` : ''}${pieces}\n`);
    }
    const bad = report.files.filter((f) => f.status !== 'ok').length;
    out.stdout.write(
      report.ok
        ? `ok: ${report.files.length} file${report.files.length === 1 ? '' : 's'}, ${formatBytes(meta.totalLength)} verified against ${meta.infoHash.toString('hex')}\n`
        : `FAILED: ${bad} of ${report.files.length} files bad, ${report.badPieces.length} of ${meta.numPieces} pieces bad\n`,
    );
  }
  return report.ok ? EXIT_OK : EXIT_VERIFY_FAILED;
}
