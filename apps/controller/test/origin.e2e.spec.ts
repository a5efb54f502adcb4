import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request } from 'node:https';
import { join } from 'node:path';
import { type TestFleet, runShoal, scratchDir, startTestFleet } from '@shoal/testing';

/**
 * The development webseed origin of a real controller process: ranges, HEAD, conditional
 * requests, keep-alive, path safety against a folder holding symbolic links, a FIFO and dotfiles,
 * and the bytes-sent counter on /metrics.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const SECRET = 'outside the origin: must never be served';
const big = randomBytes(1024 * 1024 + 77);
const odd = randomBytes(100_003);

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  reusedSocket: boolean;
}

/** Sends `path` byte for byte (no URL normalisation, so `..` and `%2e%2e` reach the server). */
function get(path: string, options: { method?: string; headers?: Record<string, string>; agent?: HttpsAgent } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: fleet.controller.restPort, path, method: options.method ?? 'GET', headers: options.headers ?? {}, ca: fleet.caPem, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), reusedSocket: req.reusedSocket }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function bytesSentCounter(): Promise<number> {
  const metrics = await get('/metrics');
  const line = metrics.body
    .toString()
    .split('\n')
    .find((l) => l.startsWith('shoal_origin_bytes_sent_total '));
  if (!line) throw new Error('shoal_origin_bytes_sent_total is not on /metrics');
  return Number(line.split(' ')[1]);
}

beforeAll(async () => {
  scratch = await scratchDir('origin');
  const origin = join(scratch.path, 'origin');
  await mkdir(join(origin, 'pkg', 'sub'), { recursive: true });
  await writeFile(join(scratch.path, 'secret.txt'), SECRET);
  await writeFile(join(origin, 'pkg', 'big.bin'), big);
  await writeFile(join(origin, 'pkg', 'sub', 'a b#1%.bin'), odd);
  await writeFile(join(origin, 'pkg', 'é.dat'), 'accent');
  await writeFile(join(origin, 'pkg', 'empty'), '');
  await writeFile(join(origin, '.hidden'), SECRET);
  await mkdir(join(origin, '.git'));
  await writeFile(join(origin, '.git', 'config'), SECRET);
  await symlink(join(scratch.path, 'secret.txt'), join(origin, 'link-out'));
  await symlink(scratch.path, join(origin, 'dir-out'));
  await symlink(join(origin, '.hidden'), join(origin, 'link-to-dotfile'));
  await symlink(join(origin, 'pkg', 'big.bin'), join(origin, 'link-in'));
  execFileSync('mkfifo', [join(origin, 'fifo')]);
  // Database 7 is the agent benchmark's, which never runs with the tests; 3 is the agent's webseed suite, which may run at the same time.
  fleet = await startTestFleet(7, 'origin', { SHOAL_ORIGIN_DIR: origin });
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await scratch?.remove();
});

test('the controller says where its origin is', () => {
  const started = fleet.controller.logs.find((l) => l.includes('controller started')) as string;
  expect(JSON.parse(started)).toMatchObject({ origin: join(scratch.path, 'origin') });
});

test('GET serves the whole file with its length, validators and Accept-Ranges', async () => {
  const answer = await get('/origin/pkg/big.bin');
  expect(answer.status).toBe(200);
  expect(answer.body.equals(big)).toBe(true);
  expect(answer.headers).toMatchObject({ 'content-length': String(big.length), 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });
  expect(answer.headers.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
  expect(Date.parse(answer.headers['last-modified'] as string)).toBeGreaterThan(0);
  expect(answer.headers['content-range']).toBeUndefined();
});

test('names are percent-decoded per component', async () => {
  expect((await get('/origin/pkg/sub/a%20b%231%25.bin')).body.equals(odd)).toBe(true);
  expect((await get('/origin/pkg/%C3%A9.dat')).body.toString()).toBe('accent');
});

test('one byte range gets 206 with Content-Range and exactly those bytes', async () => {
  const size = big.length;
  const cases: [string, number, number][] = [
    ['bytes=0-0', 0, 0],
    ['bytes=10-19', 10, 19],
    ['bytes=300000-900000', 300_000, 900_000],
    [`bytes=${size - 5}-`, size - 5, size - 1],
    ['bytes=-7', size - 7, size - 1],
    [`bytes=-${size + 100}`, 0, size - 1],
    ['bytes=1000-99999999999', 1000, size - 1],
    ['BYTES=4-5', 4, 5],
  ];
  for (const [range, start, end] of cases) {
    const answer = await get('/origin/pkg/big.bin', { headers: { range } });
    expect({ range, status: answer.status, contentRange: answer.headers['content-range'], length: answer.headers['content-length'] }).toEqual({
      range,
      status: 206,
      contentRange: `bytes ${start}-${end}/${size}`,
      length: String(end - start + 1),
    });
    expect(answer.body.equals(big.subarray(start, end + 1))).toBe(true);
  }
});

test('HEAD answers the headers of GET without a body', async () => {
  const full = await get('/origin/pkg/big.bin', { method: 'HEAD' });
  expect(full.status).toBe(200);
  expect(full.headers['content-length']).toBe(String(big.length));
  expect(full.headers['accept-ranges']).toBe('bytes');
  expect(full.body.length).toBe(0);
  const ranged = await get('/origin/pkg/big.bin', { method: 'HEAD', headers: { range: 'bytes=5-9' } });
  expect(ranged.status).toBe(206);
  expect(ranged.headers).toMatchObject({ 'content-range': `bytes 5-9/${big.length}`, 'content-length': '5' });
  expect(ranged.body.length).toBe(0);
  expect((await get('/origin/pkg/missing', { method: 'HEAD' })).status).toBe(404);
});

test('unsatisfiable, malformed and multiple ranges get 416 with bytes */size', async () => {
  const size = big.length;
  for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=9-3', 'bytes=-0', 'bytes=abc', 'bytes=-', 'bytes=0-1,4-5', 'bytes=1-2, 3-4']) {
    const answer = await get('/origin/pkg/big.bin', { headers: { range } });
    expect({ range, status: answer.status, contentRange: answer.headers['content-range'] }).toEqual({ range, status: 416, contentRange: `bytes */${size}` });
    expect(answer.body.toString()).toContain('RANGE_NOT_SATISFIABLE');
  }
  const empty = await get('/origin/pkg/empty', { headers: { range: 'bytes=0-' } });
  expect([empty.status, empty.headers['content-range']]).toEqual([416, 'bytes */0']);
});

test('an empty file and a range in another unit are served whole', async () => {
  const empty = await get('/origin/pkg/empty');
  expect([empty.status, empty.headers['content-length'], empty.body.length]).toEqual([200, '0', 0]);
  const items = await get('/origin/pkg/sub/a%20b%231%25.bin', { headers: { range: 'items=0-1' } });
  expect(items.status).toBe(200);
  expect(items.body.equals(odd)).toBe(true);
});

test('conditional requests: If-None-Match, If-Modified-Since and If-Range', async () => {
  const { headers } = await get('/origin/pkg/big.bin', { method: 'HEAD' });
  const etag = headers.etag as string;
  const lastModified = headers['last-modified'] as string;
  expect((await get('/origin/pkg/big.bin', { headers: { 'if-none-match': etag } })).status).toBe(304);
  expect((await get('/origin/pkg/big.bin', { headers: { 'if-none-match': `"other", W/${etag}` } })).status).toBe(304);
  expect((await get('/origin/pkg/big.bin', { method: 'HEAD', headers: { 'if-none-match': '"other"' } })).status).toBe(200);
  expect((await get('/origin/pkg/big.bin', { method: 'HEAD', headers: { 'if-modified-since': lastModified } })).status).toBe(304);
  expect((await get('/origin/pkg/big.bin', { method: 'HEAD', headers: { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' } })).status).toBe(200);
  const current = await get('/origin/pkg/big.bin', { headers: { range: 'bytes=0-3', 'if-range': etag } });
  expect([current.status, current.body.length]).toEqual([206, 4]);
  const byDate = await get('/origin/pkg/big.bin', { headers: { range: 'bytes=0-3', 'if-range': lastModified } });
  expect(byDate.status).toBe(206);
  const changed = await get('/origin/pkg/big.bin', { headers: { range: 'bytes=0-3', 'if-range': '"an-older-version"' } });
  expect(changed.status).toBe(200);
  expect(changed.body.equals(big)).toBe(true);
});

test('connections are kept alive between requests', async () => {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await get('/origin/pkg/big.bin', { agent, headers: { range: 'bytes=0-99' } });
    const second = await get('/origin/pkg/big.bin', { agent, headers: { range: 'bytes=100-199' } });
    expect([first.status, first.reusedSocket, second.status, second.reusedSocket]).toEqual([206, false, 206, true]);
    expect(second.headers.connection).toBe('keep-alive');
  } finally {
    agent.destroy();
  }
});

test('paths that leave the folder, name dotfiles or are not regular files get 404, and nothing of them', async () => {
  const attempts = [
    '/origin/../secret.txt',
    '/origin/pkg/../../secret.txt',
    '/origin/%2e%2e/secret.txt',
    '/origin/%2E%2E/secret.txt',
    '/origin/%2e%2e%2fsecret.txt',
    '/origin/..%2fsecret.txt',
    '/origin/pkg/..%2f..%2fsecret.txt',
    '/origin/..%5csecret.txt',
    '/origin//etc/passwd',
    '/origin/%2fetc%2fpasswd',
    `/origin/${encodeURIComponent(join(scratch.path, 'secret.txt'))}`,
    '/origin/pkg/%00',
    '/origin/./pkg/big.bin',
    '/origin/pkg/./big.bin',
    '/origin/link-out',
    '/origin/dir-out/secret.txt',
    '/origin/link-to-dotfile',
    '/origin/.hidden',
    '/origin/%2ehidden',
    '/origin/.git/config',
    '/origin/pkg',
    '/origin/pkg/',
    '/origin/fifo',
    '/origin/pkg/missing',
    `/origin/${'a/'.repeat(100)}x`,
  ];
  for (const path of attempts) {
    const answer = await get(path);
    expect({ path, status: answer.status }).toEqual({ path, status: 404 });
    expect(answer.body.toString()).not.toContain(SECRET);
  }
  // Symbolic links that stay inside the folder are followed.
  expect((await get('/origin/link-in')).body.equals(big)).toBe(true);
  expect((await get('/origin/pkg/%zz')).status).toBe(400);
});

test('shoal_origin_bytes_sent_total counts the file bytes sent, not HEAD or refused requests', async () => {
  const before = await bytesSentCounter();
  await get('/origin/pkg/big.bin', { headers: { range: 'bytes=1000-1999' } });
  await get('/origin/pkg/sub/a%20b%231%25.bin');
  await get('/origin/pkg/big.bin', { method: 'HEAD' });
  await get('/origin/pkg/big.bin', { headers: { range: 'bytes=0-1,3-4' } });
  await get('/origin/link-out');
  expect((await bytesSentCounter()) - before).toBe(1000 + odd.length);
});

test('the origin needs no API token, and is read-only', async () => {
  expect((await fleet.rest('GET', '/origin/pkg/%C3%A9.dat', { token: null })).status).toBe(200);
  expect((await fleet.rest('PUT', '/origin/pkg/new', { token: null, body: Buffer.from('x'), contentType: 'application/octet-stream' })).status).toBe(404);
  expect((await fleet.rest('DELETE', '/origin/pkg/big.bin', { token: null })).status).toBe(404);
  expect((await get('/origin/pkg/big.bin', { method: 'HEAD' })).status).toBe(200);
});

test('a missing origin folder is a configuration error at start', () => {
  const run = runShoal(['controller', 'start', '--data-dir', fleet.dataDir], { SHOAL_ORIGIN_DIR: join(scratch.path, 'absent') });
  expect(run.status).toBe(2);
  expect(run.stderr).toBe(`invalid configuration:\n  originDir (SHOAL_ORIGIN_DIR): must be an existing folder, got ${JSON.stringify(join(scratch.path, 'absent'))}\n`);
  const notFolder = runShoal(['controller', 'start', '--data-dir', fleet.dataDir], { SHOAL_ORIGIN_DIR: join(scratch.path, 'secret.txt') });
  expect(notFolder.stderr).toContain('originDir (SHOAL_ORIGIN_DIR): must be an existing folder');
});
