import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { scratchDir } from '@shoal/testing';
import { type Metainfo, createPackage, diskPath, parseMetainfo } from '@shoal/torrent';
import { AgentBandwidth, burstFor } from '../src/bandwidth';
import { WebseedClient, WebseedError, pieceSpan, piecedFiles, webseedFileUrl } from '../src/webseed';

/**
 * The webseed client against a real local HTTPS server (certificate from a fleet CA made here)
 * that serves a multi-file package and misbehaves on demand: short, long and endless bodies,
 * wrong statuses and ranges, silence, redirects, dropped keep-alive sockets.
 */
const PIECE = 16 * 1024;
const FILES: [string, number][] = [
  ['empty', 0],
  ['one', 1],
  ['block-minus', PIECE - 1],
  ['block', PIECE],
  ['block-plus', PIECE + 1],
  ['sub/odd name #1 %.bin', 50_001],
  ['sub/deeper/é.dat', 5 * PIECE + 123],
];

let scratch: { path: string; remove(): Promise<void> };
let meta: Metainfo;
let caPem: string;
/** Package bytes by path as laid out on disk (`pkg/<path>`). */
const content = new Map<string, Buffer>();
let server: Server;
let base: string;
let plainServer: Server;
let plainBase: string;
/** Misbehaviour of the server for the current test; undefined serves correctly. */
let misbehave: ((req: IncomingMessage, res: ServerResponse, range: { start: number; end: number; data: Buffer }) => boolean | void) | undefined;
let requestsSeen: string[] = [];
const clients: WebseedClient[] = [];

function client(options: Partial<ConstructorParameters<typeof WebseedClient>[0]> = {}): WebseedClient {
  const made = new WebseedClient({ metainfo: meta, urls: [base], ca: caPem, ...options });
  clients.push(made);
  return made;
}

/** The bytes of piece `index`, straight from the files. */
function expected(index: number): Buffer {
  const span = pieceSpan(meta, piecedFiles(meta), index);
  return (content.get(diskPath(meta, span.file).join('/')) as Buffer).subarray(span.offset, span.offset + span.length);
}

/** The piece indexes of the file at `path` inside the package. */
function piecesOf(path: string): number[] {
  const file = meta.files.find((f) => f.path.join('/') === path);
  if (!file) throw new Error(path);
  return Array.from({ length: file.numPieces }, (_, i) => file.firstPiece + i);
}

async function failure(promise: Promise<unknown>): Promise<WebseedError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof WebseedError) return err;
    throw err;
  }
  throw new Error('the fetch succeeded');
}

function serve(req: IncomingMessage, res: ServerResponse): void {
  requestsSeen.push(req.url ?? '');
  const path = (req.url ?? '').split('?')[0] as string;
  if (path.startsWith('/redirect/')) {
    res.writeHead(302, { location: path.replace('/redirect/', '/files/') });
    res.end();
    return;
  }
  if (path.startsWith('/loop/')) {
    res.writeHead(307, { location: path });
    res.end();
    return;
  }
  const key = path.startsWith('/files/') ? path.slice('/files/'.length).split('/').map(decodeURIComponent).join('/') : '';
  const data = content.get(key);
  if (!data) {
    res.writeHead(404).end();
    return;
  }
  const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  const start = match ? Number(match[1]) : 0;
  const end = match ? Number(match[2]) : data.length - 1;
  if (misbehave?.(req, res, { start, end, data })) return;
  if (!match) {
    res.writeHead(200, { 'content-length': data.length }).end(data);
    return;
  }
  res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': end - start + 1 });
  res.end(data.subarray(start, end + 1));
}

function listen(made: Server): Promise<number> {
  return new Promise((resolve) => made.listen(0, '127.0.0.1', () => resolve((made.address() as AddressInfo).port)));
}

beforeAll(async () => {
  scratch = await scratchDir('webseed');
  const root = join(scratch.path, 'pkg');
  for (const [path, length] of FILES) {
    await mkdir(join(root, path, '..'), { recursive: true });
    const data = randomBytes(length);
    await writeFile(join(root, path), data);
    content.set(`pkg/${path}`, data);
  }
  meta = parseMetainfo((await createPackage(root, { pieceLength: PIECE })).bytes);

  const now = new Date();
  const ca = createFleetCa({ fleet: 'webseed', now, keyBits: 2048 });
  caPem = ca.certPem;
  const key = generateRsaKeyPair(2048);
  const cert = CertificateAuthority.load(ca.certPem, ca.keyPem).issueControllerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], publicKeyPem: key.publicKeyPem, now });
  server = createHttpsServer({ key: key.keyPem, cert: cert.certPem }, serve);
  base = `https://127.0.0.1:${await listen(server)}/files/`;
  plainServer = createHttpServer(serve);
  plainBase = `http://127.0.0.1:${await listen(plainServer)}/files/`;
}, 60_000);

afterEach(async () => {
  misbehave = undefined;
  requestsSeen = [];
  for (const made of clients.splice(0)) await made.close();
});

afterAll(async () => {
  for (const made of [server, plainServer]) {
    made?.closeAllConnections();
    await new Promise((resolve) => made?.close(resolve));
  }
  await scratch?.remove();
});

describe('piece geometry and URLs', () => {
  test('pieces map to files, with the last piece of each file short', () => {
    expect(meta.numPieces).toBe(1 + 1 + 1 + 2 + 4 + 6);
    const files = piecedFiles(meta);
    const spans = Array.from({ length: meta.numPieces }, (_, i) => pieceSpan(meta, files, i));
    expect(spans.map((s) => [s.file.path.join('/'), s.offset, s.length])).toEqual([
      ['block', 0, PIECE],
      ['block-minus', 0, PIECE - 1],
      ['block-plus', 0, PIECE],
      ['block-plus', PIECE, 1],
      ['one', 0, 1],
      ['sub/deeper/é.dat', 0, PIECE],
      ['sub/deeper/é.dat', PIECE, PIECE],
      ['sub/deeper/é.dat', 2 * PIECE, PIECE],
      ['sub/deeper/é.dat', 3 * PIECE, PIECE],
      ['sub/deeper/é.dat', 4 * PIECE, PIECE],
      ['sub/deeper/é.dat', 5 * PIECE, 123],
      ['sub/odd name #1 %.bin', 0, PIECE],
      ['sub/odd name #1 %.bin', PIECE, PIECE],
      ['sub/odd name #1 %.bin', 2 * PIECE, PIECE],
      ['sub/odd name #1 %.bin', 3 * PIECE, 50_001 - 3 * PIECE],
    ]);
    for (const bad of [-1, meta.numPieces, 1.5, Number.NaN]) expect(() => pieceSpan(meta, files, bad)).toThrow(expect.objectContaining({ code: 'WEBSEED_BAD_PIECE' }));
  });

  test('BEP 19 URLs: folder URLs get name and path, percent-encoded; a single-file URL is the file', () => {
    const odd = meta.files.find((f) => f.path[0] === 'sub' && f.path[1] === 'odd name #1 %.bin') as Metainfo['files'][number];
    expect(webseedFileUrl(new URL('https://cdn.example/pub/'), meta, odd).href).toBe('https://cdn.example/pub/pkg/sub/odd%20name%20%231%20%25.bin');
    expect(webseedFileUrl(new URL('https://cdn.example/pub'), meta, odd).href).toBe('https://cdn.example/pub/pkg/sub/odd%20name%20%231%20%25.bin');
    expect(webseedFileUrl(new URL('https://cdn.example/pub/?sig=a%2Fb#frag'), meta, odd).href).toBe('https://cdn.example/pub/pkg/sub/odd%20name%20%231%20%25.bin?sig=a%2Fb');
    const single = { name: 'app.iso', singleFile: true };
    expect(webseedFileUrl(new URL('https://cdn.example/app-1.iso'), single, { path: ['app.iso'] }).href).toBe('https://cdn.example/app-1.iso');
    expect(webseedFileUrl(new URL('https://cdn.example/isos/'), single, { path: ['app.iso'] }).href).toBe('https://cdn.example/isos/app.iso');
  });

  test('only http(s) URLs count; with none, fetchPiece says so', async () => {
    expect(client({ urls: ['ftp://x/', 'not a url', 'file:///etc/'] }).available).toBe(false);
    expect((await failure(client({ urls: [] }).fetchPiece(0))).code).toBe('WEBSEED_NO_URL');
    expect(client({ urls: ['ftp://x/', base] }).available).toBe(true);
    for (const bad of [{ maxConcurrent: 0 }, { maxConcurrent: 1.5 }, { timeoutMs: 0 }, { timeoutMs: Number.NaN }]) {
      expect(() => new WebseedClient({ metainfo: meta, urls: [base], ...bad })).toThrow(expect.objectContaining({ code: 'WEBSEED_BAD_OPTIONS' }));
    }
  });
});

describe('fetching', () => {
  test('every piece of a multi-file package over HTTPS with the fleet CA, on kept-alive connections', async () => {
    const seed = client();
    const connections = new Set<Socket>();
    const count = (socket: Socket) => connections.add(socket);
    server.on('secureConnection', count);
    try {
      for (let i = 0; i < meta.numPieces; i++) expect((await seed.fetchPiece(i)).equals(expected(i))).toBe(true);
    } finally {
      server.off('secureConnection', count);
    }
    expect(connections.size).toBe(1);
    expect(seed.stats).toEqual({ requests: meta.numPieces, bytes: meta.totalLength, failures: 0 });
    expect(requestsSeen).toContain('/files/pkg/sub/odd%20name%20%231%20%25.bin');
    expect(requestsSeen).toContain('/files/pkg/sub/deeper/%C3%A9.dat');
  });

  test('plain http works too, and pieces may be fetched in parallel', async () => {
    const seed = client({ urls: [plainBase] });
    const pieces = await Promise.all(Array.from({ length: meta.numPieces }, (_, i) => seed.fetchPiece(i)));
    pieces.forEach((piece, i) => expect(piece.equals(expected(i))).toBe(true));
  });

  test('a download cap holds response bodies back (no faster than the cap), and time held back is not silence', async () => {
    const cap = 32 * 1024;
    const gate = new AgentBandwidth({ upload: { limit: 0, backgroundLimit: 0 }, download: { limit: cap, backgroundLimit: 0 } }).gatesFor('normal').download;
    // The cap holds reads back for over three seconds, several times the timeout. (The timeout is
    // not shorter: on a loaded CI machine 250 ms without a byte happened between paced reads.)
    const seed = client({ readGate: gate, timeoutMs: 800 });
    const started = performance.now();
    const pieces = await Promise.all(Array.from({ length: meta.numPieces }, (_, i) => seed.fetchPiece(i)));
    const seconds = (performance.now() - started) / 1000;
    pieces.forEach((piece, i) => expect(piece.equals(expected(i))).toBe(true));
    // What passed beyond the initial burst (and the chunks in flight when reads paused) kept to the cap.
    expect(meta.totalLength - burstFor(cap) - 4 * PIECE).toBeLessThan(1.5 * cap * seconds);
  });

  test('without the CA the server certificate is refused', async () => {
    const error = await failure(client({ ca: undefined }).fetchPiece(0));
    expect(error.code).toBe('WEBSEED_NETWORK');
    expect(error.message).toMatch(/certificate/);
  });

  test('redirects are followed; a redirect loop is cut', async () => {
    const redirected = client({ urls: [base.replace('/files/', '/redirect/')] });
    expect((await redirected.fetchPiece(3)).equals(expected(3))).toBe(true);
    expect(redirected.stats.requests).toBe(2);
    expect((await failure(client({ urls: [base.replace('/files/', '/loop/')] }).fetchPiece(3))).code).toBe('WEBSEED_BAD_RESPONSE');
  });
});

describe('bad answers', () => {
  const piece = () => piecesOf('sub/odd name #1 %.bin')[1] as number;

  test('a status other than 206 or 200', async () => {
    for (const status of [404, 500, 403]) {
      misbehave = (_req, res) => {
        res.writeHead(status).end('no');
        return true;
      };
      const error = await failure(client().fetchPiece(piece()));
      expect([error.code, error.status]).toEqual(['WEBSEED_HTTP_STATUS', status]);
    }
  });

  test('a body shorter than the range: declared, ended early, or cut off mid-body', async () => {
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': end - start });
      res.end(data.subarray(start, end));
      return true;
    };
    expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_SHORT_BODY');
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}` });
      res.end(data.subarray(start, end - 10));
      return true;
    };
    expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_SHORT_BODY');
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': end - start + 1 });
      res.write(data.subarray(start, start + 100), () => res.socket?.destroy());
      return true;
    };
    const error = await failure(client().fetchPiece(piece()));
    expect(error.code).toBe('WEBSEED_SHORT_BODY');
  });

  test('a body longer than asked is cut off, even an endless one', async () => {
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-length': end - start + 2 });
      res.end(Buffer.concat([data.subarray(start, end + 1), Buffer.from('xx')]));
      return true;
    };
    expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_LONG_BODY');
    let served = 0;
    let serverSawClose!: () => void;
    const closed = new Promise<void>((resolve) => (serverSawClose = resolve));
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length}` });
      const chunk = randomBytes(64 * 1024);
      const pump = () => {
        while (!res.destroyed) {
          served += chunk.length;
          if (!res.write(chunk)) break;
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', serverSawClose);
      pump();
      return true;
    };
    const endless = client();
    expect((await failure(endless.fetchPiece(piece()))).code).toBe('WEBSEED_LONG_BODY');
    await closed;
    // Cut off at the first chunk past the piece; the rest of what the server pushed was never read.
    expect(endless.stats.bytes).toBeLessThanOrEqual(PIECE + 64 * 1024);
    expect(served).toBeGreaterThan(PIECE);
  });

  test('Content-Range for other bytes or another file size', async () => {
    for (const shift of [1, -1]) {
      misbehave = (_req, res, { start, end, data }) => {
        res.writeHead(206, { 'content-range': `bytes ${start + shift}-${end + shift}/${data.length}` });
        res.end(data.subarray(start, end + 1));
        return true;
      };
      expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_BAD_RANGE');
    }
    for (const header of [undefined, 'bytes */50001', 'items 0-1/2']) {
      misbehave = (_req, res, { start, end, data }) => {
        res.writeHead(206, header ? { 'content-range': header } : {});
        res.end(data.subarray(start, end + 1));
        return true;
      };
      expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_BAD_RANGE');
    }
    misbehave = (_req, res, { start, end, data }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${data.length + 1}` });
      res.end(data.subarray(start, end + 1));
      return true;
    };
    expect((await failure(client().fetchPiece(piece()))).message).toMatch(/50002 bytes there, the package says 50001/);
    misbehave = (_req, res, { start, end }) => {
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/*`, 'content-encoding': 'gzip' });
      res.end();
      return true;
    };
    expect((await failure(client().fetchPiece(piece()))).code).toBe('WEBSEED_BAD_RESPONSE');
  });

  test('a 200 that ignores Range: taken for a piece starting its file, refused elsewhere', async () => {
    misbehave = (_req, res, { data }) => {
      res.writeHead(200, { 'content-length': data.length }).end(data);
      return true;
    };
    const [first, second] = piecesOf('sub/deeper/é.dat') as [number, number];
    const seed = client();
    expect((await seed.fetchPiece(first)).equals(expected(first))).toBe(true);
    expect((await failure(seed.fetchPiece(second))).code).toBe('WEBSEED_BAD_RANGE');
    const [whole] = piecesOf('block-minus') as [number];
    expect((await seed.fetchPiece(whole)).equals(expected(whole))).toBe(true);
    misbehave = (_req, res, { data }) => {
      res.writeHead(200).end(Buffer.concat([data, Buffer.from('!')]));
      return true;
    };
    expect((await failure(seed.fetchPiece(whole))).code).toBe('WEBSEED_LONG_BODY');
  });

  test('silence is a timeout', async () => {
    misbehave = () => true;
    const error = await failure(client({ timeoutMs: 300 }).fetchPiece(0));
    expect(error.code).toBe('WEBSEED_TIMEOUT');
  });
});

describe('failover, concurrency, keep-alive and close', () => {
  test('a failing URL hands over to the next, which is then tried first', async () => {
    const dead = createHttpServer();
    const deadPort = await listen(dead);
    await new Promise((resolve) => dead.close(resolve));
    const seed = client({ urls: [`https://127.0.0.1:${deadPort}/files/`, base] });
    expect((await seed.fetchPiece(2)).equals(expected(2))).toBe(true);
    expect(seed.stats).toMatchObject({ requests: 2, failures: 1 });
    expect((await seed.fetchPiece(3)).equals(expected(3))).toBe(true);
    expect(seed.stats).toMatchObject({ requests: 3, failures: 1 });
    const notFound = client({ urls: [base.replace('/files/', '/nothing/'), base] });
    expect((await notFound.fetchPiece(4)).equals(expected(4))).toBe(true);
  });

  test('when every URL fails, the error lists each attempt', async () => {
    const seed = client({ urls: [base.replace('/files/', '/nothing/'), base] });
    misbehave = (_req, res) => {
      res.writeHead(503).end();
      return true;
    };
    const error = await failure(seed.fetchPiece(5));
    expect(error.code).toBe('WEBSEED_HTTP_STATUS');
    expect(error.attempts.map((a) => a.status)).toEqual([404, 503]);
    expect(seed.stats.failures).toBe(2);
  });

  test('no more than maxConcurrent requests are in flight; the rest wait', async () => {
    const held: (() => void)[] = [];
    let inFlight = 0;
    let most = 0;
    let heldThree!: () => void;
    const threeHeld = new Promise<void>((resolve) => (heldThree = resolve));
    const hold = (req: IncomingMessage, res: ServerResponse) => {
      inFlight++;
      most = Math.max(most, inFlight);
      held.push(() => {
        inFlight--;
        misbehave = undefined;
        serve(req, res);
        misbehave = hold;
      });
      if (held.length === 3) heldThree();
      return true;
    };
    misbehave = hold;
    const seed = client({ maxConcurrent: 3 });
    const fetches = Array.from({ length: meta.numPieces }, (_, i) => seed.fetchPiece(i));
    await threeHeld;
    // Every fetch was called before the server saw three requests: the others are queued, not sent.
    expect(seed.stats.requests).toBe(3);
    for (let released = 0; released < meta.numPieces; released++) {
      while (held.length === 0) await new Promise((resolve) => setImmediate(resolve));
      (held.shift() as () => void)();
    }
    const pieces = await Promise.all(fetches);
    pieces.forEach((piece, i) => expect(piece.equals(expected(i))).toBe(true));
    expect(most).toBe(3);
  });

  test('a kept-alive socket the server dropped is retried once on a new connection, not counted as a failure', async () => {
    const seed = client();
    expect((await seed.fetchPiece(0)).equals(expected(0))).toBe(true);
    misbehave = (req) => {
      misbehave = undefined;
      req.socket.destroy();
      return true;
    };
    expect((await seed.fetchPiece(1)).equals(expected(1))).toBe(true);
    expect(seed.stats).toEqual({ requests: 3, bytes: expected(0).length + expected(1).length, failures: 0 });
  });

  test('close() fails what is in flight and queued, and drops every connection', async () => {
    misbehave = () => true;
    const seed = client({ maxConcurrent: 2 });
    let connected!: () => void;
    const twoConnected = new Promise<void>((resolve) => (connected = resolve));
    let connections = 0;
    const count = () => ++connections === 2 && connected();
    server.on('secureConnection', count);
    const fetches = [0, 1, 2, 3].map((i) => failure(seed.fetchPiece(i)));
    await twoConnected;
    server.off('secureConnection', count);
    await seed.close();
    expect((await Promise.all(fetches)).map((e) => e.code)).toEqual(['WEBSEED_CLOSED', 'WEBSEED_CLOSED', 'WEBSEED_CLOSED', 'WEBSEED_CLOSED']);
    expect(seed.available).toBe(false);
    expect((await failure(seed.fetchPiece(0))).code).toBe('WEBSEED_CLOSED');
    while ((await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))) > 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  });

  test('close() after fetches drops the idle keep-alive sockets', async () => {
    const seed = client({ urls: [plainBase] });
    await Promise.all([0, 1, 2].map((i) => seed.fetchPiece(i)));
    expect(await connectionsOf(plainServer)).toBeGreaterThan(0);
    await seed.close();
    while ((await connectionsOf(plainServer)) > 0) await new Promise((resolve) => setImmediate(resolve));
  });
});

function connectionsOf(made: Server): Promise<number> {
  return new Promise((resolve, reject) => made.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}
