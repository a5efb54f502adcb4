import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PackageStore } from '@shoal/store';
import { ShoalError, diskPath, parseMetainfo } from '@shoal/torrent';
import { Catalog, type CatalogEntry } from './catalog';

/**
 * Seeds an agent from data already on this host (the publisher's build output, a mirror):
 * every piece is read from `dataPath`, verified against the package and written to the store,
 * which then holds a finished copy the daemon serves. A piece that does not verify stops the
 * import with the file it came from; nothing unverified enters the store.
 */
export async function importLocalPackage(options: { dataDir: string; name: string; version: string; metainfoBytes: Buffer; dataPath: string }): Promise<CatalogEntry> {
  const metainfo = parseMetainfo(options.metainfoBytes);
  // As `shoal verify` takes it: the packed file itself, or the folder holding it or the package.
  const dataIsFile = (await stat(options.dataPath).catch(() => undefined))?.isFile() === true;
  const store = await PackageStore.open({ root: join(options.dataDir, 'store'), metainfo });
  try {
    const piece = Buffer.allocUnsafe(metainfo.pieceLength);
    for (const file of metainfo.files) {
      if (file.numPieces === 0) continue;
      const path = metainfo.singleFile && dataIsFile ? options.dataPath : join(options.dataPath, ...file.path);
      const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        throw new ShoalError('AGENT_IMPORT_MISSING', `${path}: cannot read ${diskPath(metainfo, file).join('/')}: ${err.code ?? err.message}`);
      });
      try {
        for (let i = 0; i < file.numPieces; i++) {
          const length = Math.min(metainfo.pieceLength, file.length - i * metainfo.pieceLength);
          const { bytesRead } = await handle.read(piece, 0, length, i * metainfo.pieceLength);
          const verdict = bytesRead === length ? await store.writePiece(file.firstPiece + i, piece.subarray(0, length)) : 'corrupt';
          if (verdict !== 'verified') {
            throw new ShoalError('AGENT_IMPORT_CORRUPT', `${path}: piece ${i} of ${diskPath(metainfo, file).join('/')} does not match the package`);
          }
        }
      } finally {
        await handle.close();
      }
    }
    await store.finish();
  } finally {
    await store.close();
  }
  return new Catalog(join(options.dataDir, 'packages')).add({ name: options.name, version: options.version, metainfoBytes: options.metainfoBytes });
}
