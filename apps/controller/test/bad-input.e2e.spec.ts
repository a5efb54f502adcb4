import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import * as fc from 'fast-check';
import { createCsr, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { shoalV1, unary } from '@shoal/proto';
import { runShoal, scratchDir } from '@shoal/testing';
import { type EnrolledAgent, type TestFleet, startTestFleet } from '@shoal/testing';

/**
 * Every REST route and gRPC method fed wrong types, missing fields and oversized values: the
 * answer is a 4xx (or INVALID_ARGUMENT / UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED),
 * never a 500, never INTERNAL, and the controller stays up without logging errors.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
let viewerToken: string;
let publisherToken: string;
let agent: EnrolledAgent;
/** A package bound to the fleet CA, one packed without --ca, and one bound to another CA. */
let boundPackage: Buffer;
let unboundPackage: Buffer;
let otherCaPackage: Buffer;

/** The status, details and controller error code of a call; code OK (0) when it succeeded. */
async function grpcFailure(call: Promise<unknown>): Promise<{ code: number; details: string; shoalCode?: string }> {
  try {
    await call;
    return { code: grpc.status.OK, details: 'the call succeeded' };
  } catch (err) {
    const e = err as grpc.ServiceError;
    const shoalCode = e.metadata?.get('shoal-error-code')[0];
    return { code: e.code, details: e.details, ...(shoalCode ? { shoalCode: String(shoalCode) } : {}) };
  }
}

/** A CSR whose signature no longer verifies: the last byte of the DER (inside the signature) flipped. */
function brokenSignature(csrPem: string): string {
  const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der.writeUInt8((der.readUInt8(der.length - 1) ^ 0x01) & 0xff, der.length - 1);
  return `-----BEGIN CERTIFICATE REQUEST-----\n${(der.toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

type Reply = { status: number; headers: Record<string, string | string[] | undefined>; body: unknown };

beforeAll(async () => {
  fleet = await startTestFleet(12);
  scratch = await scratchDir('bad-input');
  const viewer = await fleet.rest<{ token: string }>('POST', '/v1/api-tokens', { json: { name: 'viewer', role: 'viewer' } });
  const publisher = await fleet.rest<{ token: string }>('POST', '/v1/api-tokens', { json: { name: 'publisher', role: 'publisher' } });
  expect([viewer.status, publisher.status]).toEqual([201, 201]);
  viewerToken = viewer.body.token;
  publisherToken = publisher.body.token;
  agent = await fleet.enroll({ tokenBody: { labels: { site: 'par' } } });

  const dir = join(scratch.path, 'pkg');
  await mkdir(dir);
  await writeFile(join(dir, 'a.bin'), Buffer.alloc(40_000, 7));
  await writeFile(join(dir, 'b.txt'), 'hello\n');
  const bound = runShoal(['pack', dir, '-o', join(scratch.path, 'bound.torrent'), '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]);
  const unbound = runShoal(['pack', dir, '-o', join(scratch.path, 'unbound.torrent')]);
  await writeFile(join(scratch.path, 'other-ca.pem'), createFleetCa({ fleet: 'other', now: new Date(), keyBits: 2048 }).certPem);
  const other = runShoal(['pack', dir, '-o', join(scratch.path, 'other.torrent'), '--ca', join(scratch.path, 'other-ca.pem')]);
  expect([bound.status, unbound.status, other.status, bound.stderr, unbound.stderr, other.stderr]).toEqual([0, 0, 0, '', '', '']);
  boundPackage = await readFile(join(scratch.path, 'bound.torrent'));
  unboundPackage = await readFile(join(scratch.path, 'unbound.torrent'));
  otherCaPackage = await readFile(join(scratch.path, 'other.torrent'));
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await scratch?.remove();
});

/** One HTTPS request with full control over headers and body (the harness sets them for us). */
function send(method: string, path: string, options: { headers?: Record<string, string | number>; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, fleet.controller.restUrl), { method, ca: fleet.caPem, headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const admin = (): Record<string, string> => ({ authorization: `Bearer ${fleet.adminToken}` });

/** Asserts a 4xx answer with exactly `status` and the one JSON error shape {statusCode, error, message}. */
function expectError(reply: { status: number; body: unknown; headers?: Reply['headers'] }, status: number, what = ''): void {
  const described = `${what} -> ${reply.status} ${JSON.stringify(reply.body).slice(0, 300)}`;
  expect({ described, status: reply.status }).toEqual({ described, status });
  expect(reply.status).toBeGreaterThanOrEqual(400);
  expect(reply.status).toBeLessThan(500);
  const body = reply.body as { statusCode?: unknown; error?: unknown; message?: unknown };
  expect({ described, shape: typeof body === 'object' && body !== null ? Object.keys(body).sort() : body }).toEqual({ described, shape: ['error', 'message', 'statusCode'] });
  expect(body.statusCode).toBe(status);
  expect(typeof body.error).toBe('string');
  expect((body.error as string).length).toBeGreaterThan(0);
  const message = body.message;
  expect(typeof message === 'string' || (Array.isArray(message) && message.every((m) => typeof m === 'string'))).toBe(true);
  if (reply.headers) expect(String(reply.headers['content-type'])).toMatch(/^application\/json/);
}

interface Route {
  method: string;
  path: string;
  role: 'admin' | 'publisher' | 'viewer';
  json?: unknown;
}

const SOME_ID = '0123456789abcdef';

function protectedRoutes(): Route[] {
  return [
    { method: 'POST', path: '/v1/bootstrap-tokens', role: 'admin', json: {} },
    { method: 'GET', path: '/v1/bootstrap-tokens', role: 'admin' },
    { method: 'DELETE', path: `/v1/bootstrap-tokens/${SOME_ID}`, role: 'admin' },
    { method: 'GET', path: '/v1/agents', role: 'viewer' },
    { method: 'GET', path: `/v1/agents/${agent.agentId}`, role: 'viewer' },
    { method: 'PUT', path: `/v1/agents/${agent.agentId}/labels`, role: 'admin', json: { labels: { site: 'par' } } },
    { method: 'POST', path: `/v1/agents/${agent.agentId}/revoke`, role: 'admin', json: {} },
    { method: 'GET', path: '/v1/revocations', role: 'viewer' },
    { method: 'POST', path: '/v1/api-tokens', role: 'admin', json: { name: 'x', role: 'viewer' } },
    { method: 'GET', path: '/v1/api-tokens', role: 'admin' },
    { method: 'DELETE', path: `/v1/api-tokens/${SOME_ID}`, role: 'admin' },
    { method: 'GET', path: '/v1/releases', role: 'viewer' },
    { method: 'POST', path: '/v1/releases?name=app&version=1.0.0', role: 'publisher' },
    { method: 'GET', path: '/v1/releases/app/1.0.0', role: 'viewer' },
  ];
}

describe('REST: authentication and roles', () => {
  test('every protected route answers 401 without a token, or with a malformed, unknown or foreign one', async () => {
    const badHeaders: (Record<string, string> | undefined)[] = [
      undefined,
      { authorization: 'Bearer' },
      { authorization: 'Basic YWRtaW46YWRtaW4=' },
      { authorization: 'Bearer not-a-token' },
      { authorization: `Bearer sat_${SOME_ID}_${'A'.repeat(43)}` },
      { authorization: `Bearer ${'x'.repeat(8000)}` },
      { authorization: `Bearer ${fleet.adminToken}x` },
      { authorization: `Bearer ${fleet.adminToken} ${fleet.adminToken}` },
    ];
    for (const route of protectedRoutes()) {
      for (const headers of badHeaders) {
        const body = route.json === undefined ? undefined : Buffer.from(JSON.stringify(route.json));
        const reply = await send(route.method, route.path, {
          headers: { ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': body.length } : {}) },
          ...(body ? { body } : {}),
        });
        expectError(reply, 401, `${route.method} ${route.path} ${JSON.stringify(headers)?.slice(0, 40)}`);
      }
    }
    // A bootstrap token is not an API token.
    const bootstrap = await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: {} });
    expectError(await fleet.rest('GET', '/v1/agents', { token: bootstrap.body.token }), 401, 'bootstrap token as API token');
  });

  test('a viewer token is refused (403) on admin and publisher routes, and accepted on viewer routes', async () => {
    for (const route of protectedRoutes()) {
      const reply = await fleet.rest(route.method, route.path, { token: viewerToken, ...(route.json === undefined ? {} : { json: route.json }) });
      if (route.role === 'viewer') {
        expect({ route: route.path, status: reply.status }).toEqual({ route: route.path, status: route.path.startsWith('/v1/releases/') ? 404 : 200 });
      } else {
        expectError(reply, 403, `viewer ${route.method} ${route.path}`);
        expect((reply.body as { message: string }).message).toMatch(new RegExp(`needs the ${route.role} role; the token has viewer`));
      }
    }
    // A publisher may publish but not administer.
    expectError(await fleet.rest('GET', '/v1/api-tokens', { token: publisherToken }), 403, 'publisher on admin route');
  });

  test('public routes need no token; unknown routes and methods are 404', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/tuf/metadata/root.json', '/tuf/metadata/1.root.json', '/tuf/metadata/timestamp.json']) {
      const reply = await fleet.rest('GET', path, { token: null });
      expect({ path, status: reply.status }).toEqual({ path, status: 200 });
    }
    expect(String((await send('GET', '/metrics')).headers['content-type'])).toMatch(/^text\/plain/);
    const openapi = (await fleet.rest<{ paths: Record<string, unknown> }>('GET', '/openapi.json', { token: null })).body;
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/v1/bootstrap-tokens', '/v1/agents/{id}/labels', '/v1/releases', '/tuf/targets/{name}/{file}']));
    for (const [method, path] of [
      ['GET', '/v1/nope'],
      ['GET', '/v2/agents'],
      ['PATCH', '/v1/agents'],
      ['POST', '/healthz'],
      ['DELETE', '/v1/releases/app/1.0.0'],
      ['PUT', '/v1/bootstrap-tokens'],
      ['GET', '/tuf/metadata'],
      ['GET', '/tuf/targets/app'],
      ['GET', `/${'z'.repeat(4000)}`],
    ] as const) {
      expectError(await send(method, path, { headers: admin() }), 404, `${method} ${path.slice(0, 40)}`);
    }
  });
});

describe('REST: request bodies', () => {
  test('malformed JSON, non-object JSON and unsupported encodings are 4xx with the error shape', async () => {
    const bodies: [string, number][] = [
      ['{', 400],
      ['{"ttlSeconds":', 400],
      ['{"a":1}}', 400],
      ["{'single':'quotes'}", 400],
      ['\u0000\u0001\u0002', 400],
      ['null', 400],
      ['"a string"', 400],
      ['42', 400],
      ['true', 400],
      ['[]', 400],
      ['[{"ttlSeconds":3600}]', 400],
      ['{"ttlSeconds":1e999}', 400],
    ];
    for (const [text, status] of bodies) {
      const body = Buffer.from(text);
      for (const path of ['/v1/bootstrap-tokens', '/v1/api-tokens']) {
        const reply = await send('POST', path, { headers: { ...admin(), 'content-type': 'application/json', 'content-length': body.length }, body });
        expectError(reply, status, `POST ${path} ${JSON.stringify(text)}`);
      }
      const reply = await send('PUT', `/v1/agents/${agent.agentId}/labels`, { headers: { ...admin(), 'content-type': 'application/json', 'content-length': body.length }, body });
      expectError(reply, status, `PUT labels ${JSON.stringify(text)}`);
    }
    const invalidUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]);
    expectError(await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), 'content-type': 'application/json', 'content-length': invalidUtf8.length }, body: invalidUtf8 }), 400, 'invalid UTF-8');
    const json = Buffer.from('{}');
    const cases: [Record<string, string | number>, Buffer, number, string][] = [
      [{ 'content-type': 'application/json; charset=latin1' }, json, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ 'content-type': 'application/json', 'content-encoding': 'snappy' }, json, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ 'content-type': 'application/json', 'content-encoding': 'gzip' }, Buffer.from('not gzip at all'), 400, 'BAD_REQUEST'],
      [{ 'content-type': 'application/json', 'content-encoding': 'deflate' }, Buffer.from([0x78, 0x9c, 0xff, 0xff]), 400, 'BAD_REQUEST'],
      [{ 'content-type': 'application/json', 'content-encoding': 'br' }, Buffer.from('\u00ff\u00ff\u00ff'), 400, 'BAD_REQUEST'],
    ];
    for (const [headers, body, status, error] of cases) {
      const reply = await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), ...headers, 'content-length': body.length }, body });
      expectError(reply, status, JSON.stringify(headers));
      expect((reply.body as { error: string }).error).toBe(error);
    }
    // A gzip body that decodes fine is accepted: encodings are not refused wholesale.
    const gz = gzipSync(Buffer.from(JSON.stringify({ uses: 2 })));
    const accepted = await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gz.length }, body: gz });
    expect(accepted.status).toBe(201);
  });

  test('JSON bodies over 64 KiB are 413, by size or by declared length, on every JSON route', async () => {
    const big = Buffer.from(JSON.stringify({ description: 'x'.repeat(70 * 1024) }));
    for (const [method, path] of [
      ['POST', '/v1/bootstrap-tokens'],
      ['POST', '/v1/api-tokens'],
      ['PUT', `/v1/agents/${agent.agentId}/labels`],
      ['POST', `/v1/agents/${agent.agentId}/revoke`],
    ] as const) {
      const reply = await send(method, path, { headers: { ...admin(), 'content-type': 'application/json', 'content-length': big.length }, body: big });
      expectError(reply, 413, `${method} ${path}`);
      expect((reply.body as { error: string }).error).toBe('PAYLOAD_TOO_LARGE');
    }
    // Chunked (no content-length): the limit still holds.
    const chunked = await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: big });
    expectError(chunked, 413, 'chunked');
    // Just under the limit, but a field over its own limit: 400, not 413.
    const under = Buffer.from(JSON.stringify({ description: 'x'.repeat(60 * 1024) }));
    expectError(await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), 'content-type': 'application/json', 'content-length': under.length }, body: under }), 400, 'long description');
    // Without a token a large body is still refused before anything is stored.
    expectError(await send('POST', '/v1/bootstrap-tokens', { headers: { 'content-type': 'application/json', 'content-length': big.length }, body: big }), 413, 'big, no token');
  });
});

describe('REST: bootstrap tokens', () => {
  test('wrong types, out-of-range numbers, bad names and unknown fields are 400 and create nothing', async () => {
    const before = (await fleet.rest<unknown[]>('GET', '/v1/bootstrap-tokens')).body.length;
    const bad: object[] = [
      { ttlSeconds: '3600' },
      { ttlSeconds: 3600.5 },
      { ttlSeconds: 59 },
      { ttlSeconds: 0 },
      { ttlSeconds: -1 },
      { ttlSeconds: 30 * 86400 + 1 },
      { ttlSeconds: 1e300 },
      { ttlSeconds: [3600] },
      { ttlSeconds: { value: 3600 } },
      { ttlSeconds: true },
      { uses: 0 },
      { uses: 100001 },
      { uses: '1' },
      { uses: 1.5 },
      { uses: Number.MAX_SAFE_INTEGER + 2 },
      { agentName: 'UPPER' },
      { agentName: '-leading-dash' },
      { agentName: '' },
      { agentName: 'a'.repeat(64) },
      { agentName: 'with space' },
      { agentName: 'evil/../x' },
      { agentName: 'a\u0000b' },
      { agentName: 7 },
      { agentName: ['edge-1'] },
      { description: 'x'.repeat(201) },
      { description: 5 },
      { description: { text: 'x' } },
      { labels: [] },
      { labels: ['site=par'] },
      { labels: 'site=par' },
      { labels: 5 },
      { labels: { site: 5 } },
      { labels: { site: null } },
      { labels: { site: ['par'] } },
      { labels: { site: { nested: 'x' } } },
      { labels: { 'Bad Key': 'v' } },
      { labels: { '': 'v' } },
      { labels: { '-site': 'v' } },
      { labels: { ['k'.repeat(64)]: 'v' } },
      { labels: { site: 'v'.repeat(64) } },
      { labels: { site: 'has space' } },
      { labels: { site: 'new\nline' } },
      { labels: { site: '\u202e' } },
      { labels: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
      { admin: true },
      { ttlSeconds: 3600, extra: 'field' },
      { token: 'sbt_choose_my_own' },
    ];
    for (const body of bad) {
      const reply = await fleet.rest('POST', '/v1/bootstrap-tokens', { json: body });
      expectError(reply, 400, JSON.stringify(body).slice(0, 100));
    }
    // Prototype keys are data, never structure: refused, or dropped (class-transformer drops
    // `__proto__` before validation sees it), never a 500 and never a polluted object.
    for (const text of ['{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{"admin":true}}}', '{"labels":{"__proto__":{"x":"y"}}}', '{"labels":{"__proto__":"x"}}']) {
      const body = Buffer.from(text);
      const reply = await send('POST', '/v1/bootstrap-tokens', { headers: { ...admin(), 'content-type': 'application/json', 'content-length': body.length }, body });
      if (reply.status === 201) expect({ text, labels: (reply.body as { record: { labels: object } }).record.labels }).toEqual({ text, labels: {} });
      else expectError(reply, 400, text);
    }
    const created = (await fleet.rest<{ labels: object }[]>('GET', '/v1/bootstrap-tokens')).body;
    expect(created.length - before).toBeLessThanOrEqual(4);
    expect(created.every((t) => Object.getPrototypeOf(t.labels) === Object.prototype && !('admin' in t.labels))).toBe(true);
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  test('null for an optional field is the default; limits at the edges are accepted', async () => {
    for (const body of [{ ttlSeconds: 60 }, { ttlSeconds: 30 * 86400 }, { uses: 1 }, { uses: 100000 }, { agentName: 'a'.repeat(63) }, { description: 'x'.repeat(200) }, { labels: {} }, { ttlSeconds: null }, { description: null }]) {
      const reply = await fleet.rest('POST', '/v1/bootstrap-tokens', { json: body });
      expect({ body, status: reply.status }).toEqual({ body, status: 201 });
    }
  });

  test('DELETE with odd, long or unknown ids is 404; a viewer is refused', async () => {
    for (const id of [SOME_ID, 'UPPER0123456789A', 'x', '0123456789abcdef0', '%00', '..%2F..%2Fapi-tokens.json', 'a'.repeat(5000), '%E2%80%AE', 'null', '%20']) {
      expectError(await fleet.rest('DELETE', `/v1/bootstrap-tokens/${id}`), 404, `DELETE ${id.slice(0, 30)}`);
    }
    expectError(await fleet.rest('DELETE', '/v1/bootstrap-tokens/%zz'), 400, 'bad escape');
  });
});

describe('REST: agents and labels', () => {
  test('odd, long and unknown agent ids are 404 on every agent route', async () => {
    const ids = ['agent-000000000000', 'UPPER', '-x', 'a'.repeat(64), 'a'.repeat(5000), '%00', 'a%0Ab', '..%2F..%2Fetc%2Fpasswd', '%E2%80%AE', '*', 'agent%20one'];
    for (const id of ids) {
      expectError(await fleet.rest('GET', `/v1/agents/${id}`), 404, `GET ${id.slice(0, 30)}`);
      expectError(await fleet.rest('PUT', `/v1/agents/${id}/labels`, { json: { labels: {} } }), 404, `PUT ${id.slice(0, 30)}`);
      expectError(await fleet.rest('POST', `/v1/agents/${id}/revoke`, { json: {} }), 404, `revoke ${id.slice(0, 30)}`);
    }
    for (const path of ['/v1/agents/%zz', '/v1/agents/%/labels', '/v1/agents/%E0%A4%A/revoke']) {
      const method = path.endsWith('labels') ? 'PUT' : path.endsWith('revoke') ? 'POST' : 'GET';
      expectError(await fleet.rest(method, path, { json: { labels: {} } }), 400, `${method} ${path}`);
    }
  });

  test('label bodies with wrong types, bad keys and values, or unknown fields are 400 and change nothing', async () => {
    const bad: unknown[] = [
      {},
      { labels: null },
      { labels: [] },
      { labels: 'site=par' },
      { labels: 1 },
      { labels: { site: 1 } },
      { labels: { site: true } },
      { labels: { site: null } },
      { labels: { site: {} } },
      { labels: { 'Site': 'x' } },
      { labels: { 'a b': 'x' } },
      { labels: { ['k'.repeat(64)]: 'x' } },
      { labels: { site: 'x'.repeat(64) } },
      { labels: { site: 'a/b' } },
      { labels: { site: '\u0007' } },
      { labels: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) },
      { labels: { site: 'x' }, state: 'revoked' },
      { labels: { site: 'x' }, id: 'someone-else' },
    ];
    for (const body of bad) {
      expectError(await fleet.rest('PUT', `/v1/agents/${agent.agentId}/labels`, { json: body }), 400, JSON.stringify(body).slice(0, 100));
    }
    const after = await fleet.rest<{ labels: object; state: string }>('GET', `/v1/agents/${agent.agentId}`);
    expect(after.body).toMatchObject({ labels: { site: 'par' }, state: 'active' });
    // The edges that are allowed.
    const edge = { labels: { ...Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, 'v'.repeat(63)])), 'topology.example/site': '' } };
    expect((await fleet.rest('PUT', `/v1/agents/${agent.agentId}/labels`, { json: edge })).status).toBe(200);
    expect((await fleet.rest('PUT', `/v1/agents/${agent.agentId}/labels`, { json: { labels: { site: 'par' } } })).status).toBe(200);
  });

  test('revoke bodies with wrong types are 400 and revoke nothing', async () => {
    for (const body of [{ reason: 5 }, { reason: 'x'.repeat(201) }, { reason: ['x'] }, { reason: 'x', now: true }, []]) {
      expectError(await fleet.rest('POST', `/v1/agents/${agent.agentId}/revoke`, { json: body }), 400, JSON.stringify(body).slice(0, 60));
    }
    expect((await fleet.rest<{ state: string }>('GET', `/v1/agents/${agent.agentId}`)).body.state).toBe('active');
  });
});

describe('REST: API tokens', () => {
  test('bad names, roles and unknown fields are 400; bad ids are 404; a token cannot revoke itself', async () => {
    const bad: unknown[] = [
      {},
      { name: 'x' },
      { role: 'viewer' },
      { name: '', role: 'viewer' },
      { name: 'n'.repeat(65), role: 'viewer' },
      { name: 'a/b', role: 'viewer' },
      { name: 'tab\there', role: 'viewer' },
      { name: 5, role: 'viewer' },
      { name: ['x'], role: 'viewer' },
      { name: 'x', role: 'root' },
      { name: 'x', role: 'Admin' },
      { name: 'x', role: 0 },
      { name: 'x', role: null },
      { name: 'x', role: ['admin'] },
      { name: 'x', role: 'viewer', hash: '00' },
      { name: 'x', role: 'viewer', id: SOME_ID },
    ];
    for (const body of bad) {
      expectError(await fleet.rest('POST', '/v1/api-tokens', { json: body }), 400, JSON.stringify(body).slice(0, 80));
    }
    for (const id of [SOME_ID, 'x', 'a'.repeat(5000), '%00', '..%2Fadmin.token']) {
      expectError(await fleet.rest('DELETE', `/v1/api-tokens/${id}`), 404, `DELETE ${id.slice(0, 30)}`);
    }
    expectError(await fleet.rest('DELETE', '/v1/api-tokens/%zz'), 400, 'bad escape');
    const ownId = fleet.adminToken.split('_')[1] as string;
    expectError(await fleet.rest('DELETE', `/v1/api-tokens/${ownId}`), 409, 'self');
    const list = (await fleet.rest<{ id: string; hash?: string }[]>('GET', '/v1/api-tokens')).body;
    expect(list.map((t) => t.id)).toContain(ownId);
    expect(list.every((t) => t.hash === undefined)).toBe(true);
  });
});

describe('REST: releases and the TUF repository', () => {
  const pkgHeaders = (body: Buffer, token = fleet.adminToken, type = 'application/x-bittorrent') => ({
    authorization: `Bearer ${token}`,
    'content-type': type,
    'content-length': body.length,
  });

  test('bad name, version and channel query values are 400 before the body is looked at', async () => {
    const queries = [
      '',
      'name=app',
      'version=1.0.0',
      'name=&version=1.0.0',
      'name=App&version=1.0.0',
      'name=.app&version=1.0.0',
      'name=..%2F..%2Fx&version=1.0.0',
      `name=${'a'.repeat(65)}&version=1.0.0`,
      'name=app&name=other&version=1.0.0',
      'name[x]=app&version=1.0.0',
      'name=app&version=',
      'name=app&version=1%200',
      'name=app&version=1.0.0%2F..',
      `name=app&version=${'1'.repeat(65)}`,
      'name=app&version=1.0.0&version=2.0.0',
      'name=app&version=1.0.0&channel=',
      'name=app&version=1.0.0&channel=Stable',
      `name=app&version=1.0.0&channel=${'c'.repeat(33)}`,
      'name=app&version=1.0.0&channel=a_b',
      'name=app&version=1.0.0&extra=1',
      'name=app%00&version=1.0.0',
    ];
    for (const query of queries) {
      expectError(await send('POST', `/v1/releases?${query}`, { headers: pkgHeaders(boundPackage), body: boundPackage }), 400, query);
    }
  });

  test('no body, the wrong content type, garbage, truncated metainfo and unbound packages are 4xx', async () => {
    const path = '/v1/releases?name=bad&version=1.0.0';
    expectError(await send('POST', path, { headers: { ...admin() } }), 400, 'no body');
    expectError(await send('POST', path, { headers: pkgHeaders(Buffer.alloc(0)), body: Buffer.alloc(0) }), 400, 'empty body');
    expectError(await send('POST', path, { headers: pkgHeaders(boundPackage, fleet.adminToken, 'text/plain'), body: boundPackage }), 400, 'text/plain');
    expectError(await send('POST', path, { headers: pkgHeaders(boundPackage, fleet.adminToken, 'application/octet-stream'), body: boundPackage }), 400, 'octet-stream');
    expectError(await send('POST', path, { headers: pkgHeaders(boundPackage, fleet.adminToken, 'application/json'), body: boundPackage }), 400, 'package as JSON');
    const json = Buffer.from('{"metainfo":"x"}');
    expectError(await send('POST', path, { headers: pkgHeaders(json, fleet.adminToken, 'application/json'), body: json }), 400, 'JSON body');
    const garbage: Buffer[] = [
      Buffer.from([0xff, 0xff, 0xff]),
      Buffer.from('d'),
      Buffer.from('de'),
      Buffer.from('i1e'),
      Buffer.from('d4:infod4:name3:appee'),
      Buffer.from('d4:infoi99999999999999999999999999ee'),
      Buffer.from(`${'l'.repeat(10_000)}${'e'.repeat(10_000)}`),
      Buffer.from(`${'d1:a'.repeat(5_000)}i1e${'e'.repeat(5_000)}`),
      Buffer.from('d4:info999999999:xe'),
      Buffer.from('<html>not a torrent</html>'),
      Buffer.alloc(100_000, 0),
    ];
    for (const body of garbage) {
      expectError(await send('POST', path, { headers: pkgHeaders(body), body }), 400, `garbage ${body.subarray(0, 20).toString('hex')}`);
    }
    for (const cut of [1, 10, Math.floor(boundPackage.length / 2), boundPackage.length - 1]) {
      const body = boundPackage.subarray(0, cut);
      expectError(await send('POST', path, { headers: pkgHeaders(body), body }), 400, `truncated at ${cut}`);
    }
    // One character of the embedded CA certificate changed: not this fleet's CA any more.
    const flipped = Buffer.from(boundPackage);
    const at = flipped.indexOf('-----BEGIN CERTIFICATE-----') + 200;
    flipped.writeUInt8(flipped.readUInt8(at) === 0x41 ? 0x42 : 0x41, at);
    const flippedReply = await send('POST', path, { headers: pkgHeaders(flipped), body: flipped });
    expectError(flippedReply, 400, 'CA flipped');
    expect(flippedReply.body).toMatchObject({ error: 'RELEASE_WRONG_CA' });
    // Without a CA, or bound to another fleet's CA: refused with the reason.
    for (const [what, bytes] of [
      ['unbound', unboundPackage],
      ['other CA', otherCaPackage],
    ] as const) {
      const reply = await send('POST', path, { headers: pkgHeaders(bytes), body: bytes });
      expectError(reply, 400, what);
      expect(reply.body).toMatchObject({ error: 'RELEASE_WRONG_CA', message: expect.stringMatching(/not bound to this fleet/) });
    }
    // Larger than the largest package allowed (64 MiB by default).
    const huge = Buffer.alloc(64 * 1024 * 1024 + 1, 0x64);
    expectError(await send('POST', path, { headers: pkgHeaders(huge), body: huge }), 413, 'over 64 MiB');
    // No release came of any of this.
    expect((await fleet.rest<unknown[]>('GET', '/v1/releases')).body).toEqual([]);
  });

  test('a valid package: bad versions and conflicts are 409, lower versions are refused', async () => {
    const first = await send('POST', '/v1/releases?name=edge&version=2.0.0', { headers: pkgHeaders(boundPackage, publisherToken), body: boundPackage });
    expect(first.status).toBe(201);
    const again = await send('POST', '/v1/releases?name=edge&version=2.0.0', { headers: pkgHeaders(boundPackage), body: boundPackage });
    expect(again.status).toBe(200);
    expectError(await send('POST', '/v1/releases?name=edge&version=2.0.0&channel=beta', { headers: pkgHeaders(boundPackage), body: boundPackage }), 409, 'other channel');
    expectError(await send('POST', '/v1/releases?name=edge&version=1.9.9', { headers: pkgHeaders(boundPackage), body: boundPackage }), 409, 'lower');
    expectError(await send('POST', '/v1/releases?name=edge&version=2.0.0-rc.1', { headers: pkgHeaders(boundPackage), body: boundPackage }), 409, 'prerelease');
    // Not SemVer, after a SemVer version: no ordering to defend, so refused.
    const unordered = await send('POST', '/v1/releases?name=edge&version=not.semver', { headers: pkgHeaders(boundPackage), body: boundPackage });
    expectError(unordered, 400, 'not semver');
    expect(unordered.body).toMatchObject({ error: 'TRUST_VERSION_UNORDERED' });
    expect((await fleet.rest<{ version: string }[]>('GET', '/v1/releases')).body.map((r) => r.version)).toEqual(['2.0.0']);
  });

  test('release lookups and TUF paths with odd, long or hostile values are 404 (or 400 for bad escapes)', async () => {
    for (const [name, version] of [
      ['app', '9.9.9'],
      ['UPPER', '1'],
      ['a'.repeat(3000), '1'],
      ['edge', 'v'.repeat(3000)],
      ['..%2F..', 'admin.token'],
      ['%00', '%00'],
      ['edge', '2.0.0%2F..'],
    ] as const) {
      expectError(await fleet.rest('GET', `/v1/releases/${name}/${version}`), 404, `release ${name.slice(0, 20)}@${version.slice(0, 20)}`);
    }
    expectError(await fleet.rest('GET', '/v1/releases/%zz/1'), 400, 'release bad escape');
    for (const file of ['2.root.json', '0.root.json', 'snapshot.json', 'targets.json', '1.targets.JSON', '..%2F..%2Fadmin.token', '..%2Fca%2Fca-key.pem', '%2Fetc%2Fpasswd', 'a'.repeat(5000), '%00', `${'9'.repeat(17)}.root.json`]) {
      const reply = await send('GET', `/tuf/metadata/${file}`);
      expectError(reply, 404, `metadata ${file.slice(0, 30)}`);
    }
    expectError(await send('GET', '/tuf/metadata/%zz'), 400, 'metadata bad escape');
    for (const [name, file] of [
      ['edge', '2.0.0.torrent'],
      ['edge', `${'0'.repeat(64)}.2.0.0.torrent`],
      ['..', '..%2F..%2Fadmin.token'],
      ['edge', '..%2F..%2F..%2Fadmin.token'],
      ['%2E%2E', `${'0'.repeat(64)}.2.0.0.torrent`],
      ['a'.repeat(3000), 'b'.repeat(3000)],
      ['edge', '%00'],
    ] as const) {
      expectError(await send('GET', `/tuf/targets/${name}/${file}`), 404, `target ${name.slice(0, 20)}/${file.slice(0, 30)}`);
    }
    expectError(await send('GET', '/tuf/targets/edge/%zz'), 400, 'target bad escape');
  });
});

describe('REST: random JSON never breaks a route (fast-check)', () => {
  const arbitraryBody = fc.oneof(
    fc.jsonValue(),
    fc.record(
      { ttlSeconds: fc.jsonValue(), uses: fc.jsonValue(), agentName: fc.jsonValue(), labels: fc.oneof(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue())), description: fc.jsonValue() },
      { requiredKeys: [] },
    ),
    fc.record({ labels: fc.oneof(fc.jsonValue(), fc.dictionary(fc.string({ maxLength: 70 }), fc.oneof(fc.string({ maxLength: 70 }), fc.jsonValue()), { maxKeys: 20 })) }, { requiredKeys: [] }),
  );

  test('POST /v1/bootstrap-tokens and PUT /v1/agents/:id/labels answer < 500 with the error shape', async () => {
    const target = await fleet.enroll();
    await fc.assert(
      fc.asyncProperty(arbitraryBody, async (body) => {
        for (const [method, path] of [
          ['POST', '/v1/bootstrap-tokens'],
          ['PUT', `/v1/agents/${target.agentId}/labels`],
        ] as const) {
          const reply = await fleet.rest(method, path, { json: body });
          if (reply.status >= 400) expectError(reply, reply.status, `${method} ${path} ${JSON.stringify(body).slice(0, 200)}`);
          else expect([200, 201]).toContain(reply.status);
        }
      }),
      { numRuns: 50 },
    );
  });
});

describe('gRPC: Enrollment', () => {
  const csr = (() => {
    let cached: { keyPem: string; publicKeyPem: string; csrPem: string } | undefined;
    return () => {
      if (!cached) {
        const key = generateRsaKeyPair(2048);
        cached = { ...key, csrPem: createCsr({ keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, commonName: 'a' }) };
      }
      return cached;
    };
  })();
  const enroll = (request: object) => unary(fleet.enrollClient(), 'Enroll', { bootstrapToken: '', csrPem: '', hostname: 'h', softwareVersion: '1', ...request });
  const newToken = async () => (await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: { uses: 1 } })).body.token;

  test('bad tokens are UNAUTHENTICATED; bad CSRs, hostnames and versions are INVALID_ARGUMENT; the token keeps its use', async () => {
    const token = await newToken();
    const good = csr().csrPem;
    const certPem = fleet.caPem;
    const cases: [object, grpc.status, string][] = [
      [{ bootstrapToken: '', csrPem: good }, grpc.status.UNAUTHENTICATED, 'ENROLL_TOKEN_MALFORMED'],
      [{ bootstrapToken: 'x'.repeat(100_000), csrPem: good }, grpc.status.UNAUTHENTICATED, 'ENROLL_TOKEN_MALFORMED'],
      [{ bootstrapToken: `${token}\u0000`, csrPem: good }, grpc.status.UNAUTHENTICATED, 'ENROLL_TOKEN_MALFORMED'],
      [{ bootstrapToken: fleet.adminToken, csrPem: good }, grpc.status.UNAUTHENTICATED, 'ENROLL_TOKEN_MALFORMED'],
      [{ bootstrapToken: token, csrPem: '' }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: 'x'.repeat(200_000) }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: '-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n' }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.alloc(300, 0x30).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n` }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: brokenSignature(good) }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: certPem }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_CSR'],
      [{ bootstrapToken: token, csrPem: good, hostname: 'h'.repeat(10_000) }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_REQUEST'],
      [{ bootstrapToken: token, csrPem: good, hostname: 'host\u0000name' }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_REQUEST'],
      [{ bootstrapToken: token, csrPem: good, hostname: 'host\nname' }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_REQUEST'],
      [{ bootstrapToken: token, csrPem: good, softwareVersion: 'v'.repeat(65) }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_REQUEST'],
      [{ bootstrapToken: token, csrPem: good, softwareVersion: '\u001b[31m' }, grpc.status.INVALID_ARGUMENT, 'ENROLL_BAD_REQUEST'],
    ];
    for (const [request, code, shoalCode] of cases) {
      const failure = await grpcFailure(enroll(request));
      const what = JSON.stringify(request).slice(0, 120);
      expect({ what, ...failure, details: typeof failure.details }).toEqual({ what, code, shoalCode, details: 'string' });
      expect(failure.details.length).toBeGreaterThan(0);
    }
    // Not one of those spent the token's single use.
    await expect(enroll({ bootstrapToken: token, csrPem: good })).resolves.toMatchObject({ agentId: expect.stringMatching(/^agent-/) });
  });

  test('agent services are not served on the enrollment port', async () => {
    const client = new (shoalV1().Tracker)(fleet.controller.enrollAddress, grpc.credentials.createSsl(Buffer.from(fleet.caPem)));
    const failure = await grpcFailure(unary(client, 'Announce', { infoHash: Buffer.alloc(20), port: 1 }));
    client.close();
    expect(failure.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});

describe('gRPC: agent services over mutual TLS', () => {
  const tracker = () => fleet.mtlsClient('Tracker', agent);
  const identity = () => fleet.mtlsClient('Identity', agent);
  const hash = Buffer.alloc(20, 0xab);
  const announce = (request: object) => unary(tracker(), 'Announce', { infoHash: hash, port: 6881, left: 0, ...request });

  async function expectInvalid(call: Promise<unknown>, what: string, details?: RegExp): Promise<void> {
    const failure = await grpcFailure(call);
    expect({ what, code: failure.code, details: failure.details }).toEqual({ what, code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(details ?? /./) });
  }

  test('Announce with bad info-hashes, ports, addresses, counters and events is INVALID_ARGUMENT naming the field', async () => {
    for (const length of [0, 19, 21, 32, 1000]) await expectInvalid(announce({ infoHash: Buffer.alloc(length, 1) }), `info_hash ${length}`, /^info_hash: /);
    for (const port of [0, 65536, 70000, 2 ** 32 - 1]) await expectInvalid(announce({ port }), `port ${port}`, /^port: /);
    await expectInvalid(announce({ addresses: Array.from({ length: 9 }, (_, i) => `10.0.0.${i + 1}`) }), '9 addresses', /^addresses: at most 8/);
    for (const address of ['', 'not-an-ip', '999.1.1.1', '1.2.3.4:80', '[::1]', '0.0.0.0', '::', 'fe80::1%eth0', '10.0.0.1\n', '\u0000', 'x'.repeat(10_000), 'localhost', '10.0.0.1/8']) {
      await expectInvalid(announce({ addresses: ['10.9.9.9', address] }), `address ${JSON.stringify(address.slice(0, 20))}`, /^addresses\[1\]: /);
    }
    // 2^64 goes on the wire as the largest uint64, which no JavaScript number holds exactly.
    await expectInvalid(announce({ left: 2 ** 64 }), 'left 2^64-1', /^left: /);
    await expectInvalid(announce({ uploaded: 2 ** 60 }), 'uploaded 2^60', /^uploaded: /);
    await expectInvalid(announce({ event: 99 }), 'event 99', /^event: /);
    // The edges that are allowed, and a huge numwant is capped rather than refused.
    await expect(announce({ port: 65535, addresses: Array.from({ length: 8 }, (_, i) => `10.0.1.${i + 1}`), numwant: 2 ** 32 - 1 })).resolves.toMatchObject({ intervalSeconds: expect.any(Number) });
    await expect(announce({ event: 'ANNOUNCE_EVENT_STOPPED' })).resolves.toMatchObject({ peers: [] });
  });

  test('Scrape with too many or malformed hashes is INVALID_ARGUMENT', async () => {
    await expectInvalid(unary(tracker(), 'Scrape', { infoHashes: Array.from({ length: 101 }, (_, i) => Buffer.alloc(20, i)) }), '101 hashes', /at most 100/);
    for (const length of [0, 19, 21, 1000]) {
      await expectInvalid(unary(tracker(), 'Scrape', { infoHashes: [hash, Buffer.alloc(length, 2)] }), `scrape hash ${length}`, /^info_hashes\[1\]: /);
    }
    await expect(unary(tracker(), 'Scrape', { infoHashes: Array.from({ length: 100 }, (_, i) => Buffer.alloc(20, i)) })).resolves.toMatchObject({ swarms: expect.any(Array) });
  });

  test('Renew with empty, oversized or broken CSRs is INVALID_ARGUMENT; GetRevocations takes any version', async () => {
    for (const csrPem of ['', 'x'.repeat(200_000), '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----', agent.certPem]) {
      const failure = await grpcFailure(unary(identity(), 'Renew', { csrPem }));
      expect({ csr: csrPem.slice(0, 30), code: failure.code, shoalCode: failure.shoalCode }).toEqual({ csr: csrPem.slice(0, 30), code: grpc.status.INVALID_ARGUMENT, shoalCode: 'ENROLL_BAD_CSR' });
      expect(failure.details).toMatch(/certificate request refused/);
    }
    for (const newerThan of [0, 1, Number.MAX_SAFE_INTEGER, -1]) {
      await expect(unary(identity(), 'GetRevocations', { newerThan })).resolves.toMatchObject({ payload: expect.any(String), signature: expect.any(String) });
    }
  });

  test('a fleet certificate that is not an agent certificate is refused', async () => {
    const controllerIdentity = {
      certPem: await readFile(join(fleet.dataDir, 'tls', 'controller.pem'), 'utf8'),
      keyPem: await readFile(join(fleet.dataDir, 'tls', 'controller-key.pem'), 'utf8'),
    };
    expect(new X509Certificate(controllerIdentity.certPem).checkIssued(new X509Certificate(fleet.caPem))).toBe(true);
    const failure = await grpcFailure(unary(fleet.mtlsClient('Tracker', controllerIdentity), 'Announce', { infoHash: hash, port: 1 }, { deadlineMs: 3000 }));
    expect(failure).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'only agent certificates may call this', shoalCode: 'AUTH_NOT_AN_AGENT' });
  });

  test('bytes that do not decode as the request message are INVALID_ARGUMENT on every method', async () => {
    const credentials = grpc.credentials.createSsl(Buffer.from(fleet.caPem), Buffer.from(agent.keyPem), Buffer.from(agent.certPem));
    const mtls = new grpc.Client(fleet.controller.grpcAddress, credentials);
    const enrollPort = new grpc.Client(fleet.controller.enrollAddress, grpc.credentials.createSsl(Buffer.from(fleet.caPem)));
    const call = (client: grpc.Client, method: string, bytes: Buffer) =>
      new Promise<Buffer>((resolve, reject) => {
        client.makeUnaryRequest(
          method,
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
          (err: grpc.ServiceError | null, value?: Buffer) => (err ? reject(err) : resolve(value as Buffer)),
        );
      });
    const garbage = [
      Buffer.from([0xff, 0xff, 0xff]),
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // field 1, a length far past the end
      Buffer.from([0x0f]), // wire type 7
      Buffer.from([0x08]), // a varint field with no varint
      Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // an 11-byte varint
    ];
    try {
      for (const bytes of garbage) {
        for (const [client, method] of [
          [mtls, '/shoal.v1.Tracker/Announce'],
          [mtls, '/shoal.v1.Tracker/Scrape'],
          [mtls, '/shoal.v1.Identity/Renew'],
          [mtls, '/shoal.v1.Identity/GetRevocations'],
          [enrollPort, '/shoal.v1.Enrollment/Enroll'],
        ] as const) {
          const failure = await grpcFailure(call(client, method, bytes));
          const what = `${method} ${bytes.toString('hex')}`;
          const undecodable = bytes.length === 3 && bytes[0] === 0xff;
          // Protobuf decoding is lenient (a known field is read by its declared type, whatever the
          // wire type says): some of these decode, and are then refused by validation, or, for
          // GetRevocations, which takes nothing it must check, answered.
          const codes = !undecodable && method.endsWith('GetRevocations') ? [grpc.status.INVALID_ARGUMENT, grpc.status.OK] : [grpc.status.INVALID_ARGUMENT];
          expect({ what, ok: codes.includes(failure.code), details: failure.details }).toEqual({
            what,
            ok: true,
            details: undecodable ? expect.stringMatching(/^malformed request: /) : expect.any(String),
          });
        }
      }
      // Wrong wire types for known fields: info_hash as a varint, port as bytes.
      for (const bytes of [Buffer.from([0x08, 0x01]), Buffer.from([0x12, 0x01, 0x00])]) {
        const failure = await grpcFailure(call(mtls, '/shoal.v1.Tracker/Announce', bytes));
        expect({ bytes: bytes.toString('hex'), code: failure.code }).toEqual({ bytes: bytes.toString('hex'), code: grpc.status.INVALID_ARGUMENT });
      }
      // Over the 256 KiB message limit: grpc-js refuses it before decoding.
      const oversized = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x14]), Buffer.alloc(0x50000, 1)]);
      for (const [client, method] of [
        [mtls, '/shoal.v1.Tracker/Announce'],
        [enrollPort, '/shoal.v1.Enrollment/Enroll'],
      ] as const) {
        const failure = await grpcFailure(call(client, method, oversized));
        expect({ method, code: failure.code }).toEqual({ method, code: grpc.status.RESOURCE_EXHAUSTED });
      }
      const big = await grpcFailure(unary(fleet.enrollClient(), 'Enroll', { bootstrapToken: '', csrPem: 'x'.repeat(300 * 1024), hostname: 'h', softwareVersion: '1' }));
      expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      // An empty message is a valid (all-defaults) request: refused by validation, not decoding.
      const empty = await grpcFailure(call(mtls, '/shoal.v1.Tracker/Announce', Buffer.alloc(0)));
      expect(empty).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^info_hash: /) });
    } finally {
      mtls.close();
      enrollPort.close();
    }
  });
});

describe('gRPC: Tracker.AnnounceStream', () => {
  const hash = Buffer.alloc(20, 0xac);
  type Answer = { id: number; status: number; error: string; errorCode: string; announce: { intervalSeconds: number } | null };

  /** Writes `messages` on one stream (all at once), ends it, and gathers what comes back. */
  function exchange(identity: { keyPem: string; certPem: string }, messages: object[]): Promise<{ answers: Answer[]; end: { code: number; details: string; shoalCode?: string } }> {
    const stream = (fleet.mtlsClient('Tracker', identity) as unknown as { AnnounceStream(): grpc.ClientDuplexStream<object, Answer> }).AnnounceStream();
    const answers: Answer[] = [];
    stream.on('data', (answer: Answer) => answers.push(answer));
    const ended = new Promise<{ code: number; details: string; shoalCode?: string }>((resolve) => {
      stream.on('error', (err: grpc.ServiceError) => {
        const shoalCode = err.metadata?.get('shoal-error-code')[0];
        resolve({ code: err.code, details: err.details, ...(shoalCode ? { shoalCode: String(shoalCode) } : {}) });
      });
      stream.on('end', () => resolve({ code: grpc.status.OK, details: 'ended' }));
    });
    for (const message of messages) stream.write(message);
    stream.end();
    return ended.then((end) => ({ answers, end }));
  }

  test('each bad announce gets its own INVALID_ARGUMENT answer naming the field; the good ones around it are answered', async () => {
    const good = { infoHash: hash, port: 6881, left: 0 };
    const cases: [object, RegExp | null][] = [
      [good, null],
      [{ ...good, infoHash: Buffer.alloc(19) }, /^info_hash: /],
      [{ ...good, port: 0 }, /^port: /],
      [{ ...good, addresses: ['0.0.0.0'] }, /^addresses\[0\]: /],
      [{ ...good, left: 2 ** 64 }, /^left: /],
      [{ ...good, event: 99 }, /^event: /],
      [good, null],
    ];
    const messages: object[] = cases.map(([announce], i) => ({ id: i + 1, announce }));
    messages.push({ id: 100 }); // no announce at all
    messages.push({ id: 2 ** 53 - 1, announce: good });
    const { answers, end } = await exchange(agent, messages);
    expect(end.code).toBe(grpc.status.OK);
    const byId = new Map(answers.map((a) => [a.id, a]));
    expect(byId.size).toBe(messages.length);
    cases.forEach(([, error], i) => {
      const answer = byId.get(i + 1) as Answer;
      if (error === null) expect(answer).toMatchObject({ status: grpc.status.OK, announce: { intervalSeconds: expect.any(Number) } });
      else expect({ i, ...answer }).toMatchObject({ i, status: grpc.status.INVALID_ARGUMENT, errorCode: 'TRACKER_BAD_REQUEST', error: expect.stringMatching(error), announce: null });
    });
    expect(byId.get(100)).toMatchObject({ status: grpc.status.INVALID_ARGUMENT, errorCode: 'TRACKER_BAD_REQUEST', error: expect.stringMatching(/^announce: /) });
    expect(byId.get(2 ** 53 - 1)).toMatchObject({ status: grpc.status.OK });
  });

  test('a flood of announces on one stream is answered in full (read no faster than they are answered)', async () => {
    const { answers, end } = await exchange(agent, Array.from({ length: 600 }, (_, i) => ({ id: i + 1, announce: { infoHash: hash, port: 6881, left: i } })));
    expect(end.code).toBe(grpc.status.OK);
    expect(new Set(answers.filter((a) => a.status === grpc.status.OK).map((a) => a.id)).size).toBe(600);
  });

  test('an agent that stops reading its answers for a while gets every one of them once it reads again', async () => {
    const stream = (fleet.mtlsClient('Tracker', agent) as unknown as { AnnounceStream(): grpc.ClientDuplexStream<object, Answer> }).AnnounceStream();
    const ids = new Set<number>();
    stream.on('data', (answer: Answer) => {
      if (answer.status === grpc.status.OK) ids.add(answer.id);
    });
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.pause();
    // More answers than the HTTP/2 windows and the stream buffers hold while nobody reads them.
    const total = 10_000;
    const writing = (async () => {
      for (let id = 1; id <= total; id++) {
        if (!stream.write({ id, announce: { infoHash: hash, port: 6881, left: id } })) await new Promise((resolve) => stream.once('drain', resolve));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    stream.resume();
    await writing;
    stream.end();
    await ended;
    expect(ids.size).toBe(total);
  }, 90_000);

  test('bytes that do not decode end the stream with INVALID_ARGUMENT; an oversized message with RESOURCE_EXHAUSTED', async () => {
    const credentials = grpc.credentials.createSsl(Buffer.from(fleet.caPem), Buffer.from(agent.keyPem), Buffer.from(agent.certPem));
    const raw = new grpc.Client(fleet.controller.grpcAddress, credentials);
    const send = (bytes: Buffer) =>
      new Promise<{ code: number; details: string }>((resolve) => {
        const stream = raw.makeBidiStreamRequest('/shoal.v1.Tracker/AnnounceStream', (b: Buffer) => b, (b: Buffer) => b);
        stream.on('data', () => undefined);
        stream.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
        stream.on('end', () => resolve({ code: grpc.status.OK, details: 'ended' }));
        stream.write(bytes);
        stream.end();
      });
    try {
      expect(await send(Buffer.from([0xff, 0xff, 0xff]))).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^malformed announce message: /) });
      expect(await send(Buffer.concat([Buffer.from([0x12, 0x80, 0x80, 0x14]), Buffer.alloc(0x50000, 1)]))).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    } finally {
      raw.close();
    }
  });

  test('a fleet certificate that is not an agent certificate ends the stream with PERMISSION_DENIED', async () => {
    const controllerIdentity = {
      certPem: await readFile(join(fleet.dataDir, 'tls', 'controller.pem'), 'utf8'),
      keyPem: await readFile(join(fleet.dataDir, 'tls', 'controller-key.pem'), 'utf8'),
    };
    const { answers, end } = await exchange(controllerIdentity, [{ id: 1, announce: { infoHash: hash, port: 6881 } }]);
    expect(answers).toEqual([]);
    expect(end).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'only agent certificates may call this', shoalCode: 'AUTH_NOT_AN_AGENT' });
  });
});

describe('after all of that', () => {
  test('the controller is alive, healthy, and logged no errors', async () => {
    expect(fleet.controller.process.exitCode).toBeNull();
    expect(fleet.controller.process.signalCode).toBeNull();
    expect(await fleet.rest('GET', '/healthz', { token: null })).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await fleet.rest('GET', '/readyz', { token: null })).toEqual({ status: 200, body: { status: 'ready' } });
    const errors = fleet.controller.logs.filter((line) => /"level":(5\d|60)/.test(line));
    expect(errors).toEqual([]);
    // And gRPC never answered INTERNAL.
    const metrics = (await fleet.rest<string>('GET', '/metrics', { token: null })).body;
    expect(metrics).not.toMatch(/code="13"/);
  });
});
