import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestFleet, scratchDir, startTestFleet } from '@shoal/testing';
import { type Metainfo, createPackage, diskPath, parseMetainfo } from '@shoal/torrent';
import { WebseedClient, pieceSpan, piecedFiles } from '../src/webseed';

/**
 * The webseed client against the development origin of a real controller process (HTTPS with
 * the fleet CA): packages made by createPackage with --webseed pointing at /origin/.
 */
const PIECE = 16 * 1024;
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
let origin: string;
const clients: WebseedClient[] = [];

async function originBytesSent(): Promise<number> {
  const metrics = await fleet.rest<string>('GET', '/metrics', { token: null });
  const line = metrics.body.split('\n').find((l) => l.startsWith('shoal_origin_bytes_sent_total '));
  return Number(line?.split(' ')[1]);
}

async function pack(path: string, url: string): Promise<Metainfo> {
  const meta = parseMetainfo((await createPackage(path, { pieceLength: PIECE, urlList: [url], sslCert: fleet.caPem })).bytes);
  expect(meta.urlList).toEqual([url]);
  return meta;
}

async function fetchAll(meta: Metainfo, urls: readonly string[]): Promise<WebseedClient> {
  const client = new WebseedClient({ metainfo: meta, urls, ca: fleet.caPem, maxConcurrent: 3 });
  clients.push(client);
  const files = piecedFiles(meta);
  const pieces = await Promise.all(Array.from({ length: meta.numPieces }, (_, i) => client.fetchPiece(i)));
  for (const [index, piece] of pieces.entries()) {
    const span = pieceSpan(meta, files, index);
    const onDisk = await readFile(join(origin, ...diskPath(meta, span.file)));
    expect(piece.equals(onDisk.subarray(span.offset, span.offset + span.length))).toBe(true);
  }
  return client;
}

beforeAll(async () => {
  scratch = await scratchDir('webseed-origin');
  origin = join(scratch.path, 'origin');
  const files: [string, number][] = [
    ['pkg/empty', 0],
    ['pkg/tiny', 3],
    ['pkg/exact', 2 * PIECE],
    ['pkg/bin/tool #2 (100%).bin', 3 * PIECE + 7],
    ['pkg/docs/ünïcode name.txt', PIECE - 1],
    ['pkg/docs/more/deep.dat', 200_001],
    ['single.iso', 4 * PIECE + 99],
  ];
  for (const [path, length] of files) {
    await mkdir(join(origin, path, '..'), { recursive: true });
    await writeFile(join(origin, path), randomBytes(length));
  }
  fleet = await startTestFleet(3, 'webseed', { SHOAL_ORIGIN_DIR: origin });
}, 60_000);

afterAll(async () => {
  for (const client of clients) await client.close();
  await fleet?.stop();
  await scratch?.remove();
});

test('every piece of a multi-file package comes from the controller origin, and the origin counts the bytes', async () => {
  const meta = await pack(join(origin, 'pkg'), `${fleet.controller.restUrl}/origin/`);
  const before = await originBytesSent();
  const client = await fetchAll(meta, meta.urlList);
  expect(client.stats).toEqual({ requests: meta.numPieces, bytes: meta.totalLength, failures: 0 });
  expect((await originBytesSent()) - before).toBe(meta.totalLength);
});

test('a single-file package whose webseed URL is the file itself', async () => {
  const meta = await pack(join(origin, 'single.iso'), `${fleet.controller.restUrl}/origin/single.iso`);
  expect(meta.singleFile).toBe(true);
  expect((await fetchAll(meta, meta.urlList)).stats.failures).toBe(0);
});

test('a URL the origin does not know fails over to the one it does', async () => {
  const meta = await pack(join(origin, 'pkg'), `${fleet.controller.restUrl}/origin/`);
  const client = await fetchAll(meta, [`${fleet.controller.restUrl}/origin/elsewhere/`, ...meta.urlList]);
  // The unknown URL is tried first only until the other has served a piece; the first three
  // fetches start together, so one to three of them fail over.
  expect(client.stats.failures).toBeGreaterThanOrEqual(1);
  expect(client.stats.failures).toBeLessThanOrEqual(3);
});
