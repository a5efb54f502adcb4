import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateRsaKeyPair } from '@shoal/pki';
import { type EnrollResponse, shoalV1, unary } from '@shoal/proto';
import { type ControllerProcess, startControllerProcess, runShoal, scratchDir } from './processes';
import { ensureRedis, redisDatabaseUrl } from './redis';
import { Redis } from 'ioredis';

/**
 * A controller as a real process with its own data folder and Redis database, plus the calls an
 * agent and an admin make against it. Each suite passes its own Redis database number.
 */
export interface TestFleet {
  controller: ControllerProcess;
  dataDir: string;
  caPem: string;
  adminToken: string;
  redis: Redis;
  rest<T = unknown>(method: string, path: string, options?: { token?: string | null; json?: unknown; body?: Buffer; contentType?: string }): Promise<{ status: number; body: T }>;
  enrollClient(): grpc.Client;
  mtlsClient(service: 'Identity' | 'Tracker', identity: { keyPem: string; certPem: string }): grpc.Client;
  /** Enrolls over gRPC with a fresh RSA key, or `key` (many simulated agents may share one: keys take long to make). */
  enroll(options?: { tokenBody?: object; bootstrapToken?: string; commonName?: string; key?: { keyPem: string; publicKeyPem: string } }): Promise<EnrolledAgent>;
  /** Runs `shoal agent enroll` (a real process) into `<parent>/<agentName>` with a token pinning that name (and labels); returns the folder. */
  enrollAgentDir(agentName: string, parent: string, labels?: Record<string, string>): Promise<string>;
  /**
   * Stops the controller (SIGKILL with `kill`: a crash, nothing flushed) and starts it again on
   * the same ports, data folder and Redis database, as a supervisor would.
   */
  restartController(options?: { kill?: boolean }): Promise<void>;
  /** Waits until the agent has its control stream open (it can be commanded). */
  untilConnected(agentId: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface EnrolledAgent {
  agentId: string;
  keyPem: string;
  publicKeyPem: string;
  certPem: string;
  response: EnrollResponse;
}

export async function startTestFleet(db: number, fleet = 'e2e', controllerEnv: NodeJS.ProcessEnv = {}): Promise<TestFleet> {
  const redisUrl = redisDatabaseUrl(db);
  await ensureRedis();
  const redis = new Redis(redisUrl);
  await redis.flushdb();
  const scratch = await scratchDir('controller');
  const dataDir = join(scratch.path, 'data');
  const init = runShoal(['controller', 'init', '--data-dir', dataDir, '--fleet', fleet]);
  if (init.status !== 0) throw new Error(`controller init failed: ${init.stderr}`);
  let controller = await startControllerProcess({ dataDir, redisUrl, env: controllerEnv });
  const caPem = await readFile(join(dataDir, 'ca', 'ca.pem'), 'utf8');
  const adminToken = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  const clients: grpc.Client[] = [];
  const v1 = shoalV1();

  const rest: TestFleet['rest'] = (method, path, options = {}) =>
    new Promise((resolve, reject) => {
      const token = options.token === undefined ? adminToken : options.token;
      const payload = options.body ?? (options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json)));
      const req = httpsRequest(
        new URL(path, controller.restUrl),
        {
          method,
          ca: caPem,
          // A fresh connection per call: Node's global agent keeps sockets alive, and one the
          // controller closes after its idle timeout (while a test sat in spawnSync) hangs up the
          // next request that reuses it.
          agent: false,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(payload ? { 'content-type': options.contentType ?? 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (res) => {
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
            resolve({ status: res.statusCode ?? 0, body: body as never });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  const enrollClient = () => {
    const client = new v1.Enrollment(controller.enrollAddress, grpc.credentials.createSsl(Buffer.from(caPem)));
    clients.push(client);
    return client;
  };

  const mtlsClient: TestFleet['mtlsClient'] = (service, identity) => {
    const client = new v1[service](
      controller.grpcAddress,
      grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(identity.keyPem), Buffer.from(identity.certPem)),
    );
    clients.push(client);
    return client;
  };

  const enroll: TestFleet['enroll'] = async (options = {}) => {
    let bootstrapToken = options.bootstrapToken;
    if (!bootstrapToken) {
      const created = await rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: options.tokenBody ?? {} });
      if (created.status !== 201) throw new Error(`token create: ${created.status} ${JSON.stringify(created.body)}`);
      bootstrapToken = created.body.token;
    }
    const key = options.key ?? generateRsaKeyPair(2048);
    const csrPem = createCsr({ keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, commonName: options.commonName ?? 'agent' });
    const response = await unary<object, EnrollResponse>(enrollClient(), 'Enroll', {
      bootstrapToken,
      csrPem,
      hostname: 'test-host',
      softwareVersion: '0.1.0',
    });
    return { agentId: response.agentId, keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, certPem: response.certificatePem, response };
  };

  const untilConnected: TestFleet['untilConnected'] = async (agentId, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const agents = await rest<{ id: string; controlStream: boolean }[]>('GET', '/v1/agents');
      if (agents.body.some((a) => a.id === agentId && a.controlStream)) return;
      if (Date.now() > deadline) throw new Error(`agent ${agentId} never opened its control stream`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const enrollAgentDir: TestFleet['enrollAgentDir'] = async (agentName, parent, labels) => {
    const created = await rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: { agentName, ...(labels ? { labels } : {}) } });
    if (created.status !== 201) throw new Error(`token for ${agentName}: HTTP ${created.status} ${JSON.stringify(created.body)}`);
    const agentDir = join(parent, agentName);
    const run = runShoal(['agent', 'enroll', '--token', created.body.token, '--controller', controller.enrollAddress, '--ca', join(dataDir, 'ca', 'ca.pem'), '--data-dir', agentDir]);
    if (run.status !== 0) throw new Error(`agent enroll failed: ${run.stderr}`);
    return agentDir;
  };

  const restartController: TestFleet['restartController'] = async (options = {}) => {
    const previous = controller;
    if (options.kill) {
      if (previous.process.exitCode === null && previous.process.signalCode === null) {
        const exited = new Promise((resolve) => previous.process.once('exit', resolve));
        previous.process.kill('SIGKILL');
        await exited;
      }
    } else {
      await previous.stop();
    }
    controller = await startControllerProcess({
      dataDir,
      redisUrl,
      env: {
        ...controllerEnv,
        SHOAL_REST_LISTEN: `127.0.0.1:${previous.restPort}`,
        SHOAL_GRPC_LISTEN: previous.grpcAddress,
        SHOAL_ENROLL_LISTEN: previous.enrollAddress,
      },
    });
  };

  return {
    get controller() {
      return controller;
    },
    restartController,
    dataDir,
    untilConnected,
    enrollAgentDir,
    caPem,
    adminToken,
    redis,
    rest,
    enrollClient,
    mtlsClient,
    enroll,
    stop: async () => {
      for (const client of clients) client.close();
      await controller.stop();
      await redis.flushdb();
      redis.disconnect();
      await scratch.remove();
    },
  };
}

/** The gRPC status code and the controller's error code of a failed call. */
export async function grpcFailure(call: Promise<unknown>): Promise<{ code: number; details: string; shoalCode?: string }> {
  try {
    await call;
  } catch (err) {
    const e = err as grpc.ServiceError;
    const shoalCode = e.metadata?.get('shoal-error-code')[0];
    return { code: e.code, details: e.details, ...(shoalCode ? { shoalCode: String(shoalCode) } : {}) };
  }
  throw new Error('the call succeeded');
}
