import { type Metainfo, type PackageFile, diskPath } from '@shoal/torrent';
import { WebseedError } from './errors';

/** Where a piece's bytes live: v2 pieces never span files, so one file and one byte range. */
export interface PieceSpan {
  file: PackageFile;
  /** Offset of the piece in its file. */
  offset: number;
  /** The piece's real length: pieceLength, or less for the last piece of a file. */
  length: number;
}

/** Files that own pieces (empty files own none), in piece order, for a binary search. */
export function piecedFiles(meta: Metainfo): PackageFile[] {
  return meta.files.filter((file) => file.numPieces > 0).sort((a, b) => a.firstPiece - b.firstPiece);
}

export function pieceSpan(meta: Metainfo, files: readonly PackageFile[], index: number): PieceSpan {
  if (!Number.isSafeInteger(index) || index < 0 || index >= meta.numPieces) {
    throw new WebseedError('WEBSEED_BAD_PIECE', `piece ${index} is not in the package (${meta.numPieces} pieces)`);
  }
  let low = 0;
  let high = files.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if ((files[middle] as PackageFile).firstPiece <= index) low = middle;
    else high = middle - 1;
  }
  const file = files[low];
  if (!file || index >= file.firstPiece + file.numPieces) {
    throw new WebseedError('WEBSEED_BAD_PIECE', `piece ${index} belongs to no file of the package`);
  }
  const offset = (index - file.firstPiece) * meta.pieceLength;
  return { file, offset, length: Math.min(meta.pieceLength, file.length - offset) };
}

/**
 * The URL of a file at a webseed (BEP 19). A URL whose path ends in '/' is a folder: the file's
 * path as the package lays it out on disk (`<name>/<path...>`, or the file name alone for a
 * single-file package) is appended, each component percent-encoded. Otherwise, for a single-file
 * package the URL is the file itself; for a multi-file package it is taken as a folder anyway (as
 * libtorrent does with such torrents). A query string (a signed CDN URL) is kept.
 */
export function webseedFileUrl(base: URL, meta: Pick<Metainfo, 'name' | 'singleFile'>, file: Pick<PackageFile, 'path'>): URL {
  const url = new URL(base.href);
  url.hash = '';
  if (meta.singleFile && !url.pathname.endsWith('/')) return url;
  const folder = url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/`;
  url.pathname = folder + diskPath(meta, file).map(encodeURIComponent).join('/');
  return url;
}

/** The http(s) URLs among `urls`, parsed; anything else (ftp:, garbage) is dropped. */
export function usableUrls(urls: readonly string[]): URL[] {
  const usable: URL[] = [];
  for (const text of urls) {
    if (!URL.canParse(text)) continue;
    const url = new URL(text);
    if (url.protocol === 'http:' || url.protocol === 'https:') usable.push(url);
  }
  return usable;
}
