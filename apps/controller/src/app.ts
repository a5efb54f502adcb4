import 'reflect-metadata';
import { type DynamicModule, type LoggerService, Module, ValidationPipe } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { json, raw } from 'express';
import type { Redis } from 'ioredis';
import pino from 'pino';
import { Redis as RedisClass } from 'ioredis';
import { TufRepository } from '@shoal/trust';
import { ApiTokens } from './auth/api-tokens';
import { ApiTokenGuard } from './api/auth.guard';
import { AgentsController, ApiTokensController, BootstrapTokensController, RevocationsController } from './api/admin.controllers';
import { ErrorsFilter } from './api/errors.filter';
import { HealthController } from './api/health.controller';
import { PACKAGE_MEDIA_TYPE, ReleasesController, TufController } from './api/releases.controller';
import type { ControllerConfig } from './config';
import { loadDataDir } from './data-dir';
import { type CommandResultEvent, ControlStreams } from './control/control-streams';
import { BootstrapTokens } from './enrollment/bootstrap-tokens.service';
import { EnrollmentService } from './enrollment/enrollment.service';
import { startGrpc } from './grpc/servers';
import { Metrics } from './observability/metrics';
import { OriginFiles, OriginModule } from './origin';
import { FleetPki } from './pki/fleet-pki';
import { KEY_PREFIX, connectRedis } from './redis';
import { AgentRegistry } from './registry/agents.service';
import { ReleasesService } from './releases/releases.service';
import { RolloutsController, RolloutsService } from './rollouts';
import { TrackerService } from './tracker';

export interface RunningController {
  fleet: string;
  restPort: number;
  grpcPort: number;
  enrollPort: number;
  close(): Promise<void>;
}

/** Revoked serials stay listed this long past the longest agent certificate lifetime. */
const REVOCATION_RETENTION_SLACK_MS = 86_400_000;

/**
 * Starts a controller: REST (NestJS over HTTPS), the two gRPC listeners, and the timers that keep
 * TUF metadata fresh. Everything it holds is released by `close()`.
 */
export async function startController(config: ControllerConfig): Promise<RunningController> {
  const log = pino({ level: config.logLevel, base: { service: 'shoal-controller' } });
  const clock = () => Date.now();
  const data = await loadDataDir(config.dataDir, [config.publicHost], new Date());
  const redis = connectRedis(config.redisUrl);
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
  const closers: (() => Promise<unknown>)[] = [async () => redis.quit().catch(() => redis.disconnect())];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch((err: unknown) => log.error({ err }, 'while closing'));
  };
  try {
    const metrics = new Metrics();
    const pki = await FleetPki.open(
      data.authority,
      redis,
      data.paths.revocations,
      config.agentCertLifetimeSeconds * 1000 + REVOCATION_RETENTION_SLACK_MS,
      new Date(),
    );
    const repository = await TufRepository.open({ store: data.store, onlineSigners: data.onlineSigners, now: new Date() });
    const apiTokens = await ApiTokens.open(data.paths.apiTokens);
    const bootstrapTokens = new BootstrapTokens(redis, clock);
    const registry = new AgentRegistry(redis, clock);
    const releases = new ReleasesService(repository, data.authority.certPem, config.maxReleaseBytes, clock);
    const tracker = new TrackerService(
      redis,
      {
        intervalSeconds: config.trackerIntervalSeconds,
        peerTtlSeconds: config.trackerPeerTtlSeconds,
        defaultNumwant: config.trackerDefaultNumwant,
        maxNumwant: config.trackerMaxNumwant,
        remoteShare: config.trackerRemoteShare,
        keyPrefix: KEY_PREFIX,
      },
      clock,
      Math.random,
    );

    const origin = config.originDir ? await OriginFiles.open(config.originDir) : undefined;

    const control = new ControlStreams(pki, registry);
    control.on('connected', (agentId: string) => log.info({ agentId }, 'control stream opened'));
    control.on('disconnected', (agentId: string) => log.info({ agentId }, 'control stream closed'));
    control.on('result', (result: CommandResultEvent) => log.info(result, 'command result'));
    const rollouts = new RolloutsService(redis, config.redisUrl, control, registry, releases, metrics, clock, log);
    closers.push(() => rollouts.close());
    const rest = await NestFactory.create<NestExpressApplication>(
      ControllerModule.with({ redis, metrics, pki, repository, apiTokens, bootstrapTokens, registry, releases, control, rollouts, origin }),
      {
        httpsOptions: { key: data.tls.keyPem, cert: data.tls.certPem },
        bodyParser: false,
        logger: nestLogger(log),
      },
    );
    rest.use(json({ limit: '64kb' }));
    rest.use(raw({ type: PACKAGE_MEDIA_TYPE, limit: config.maxReleaseBytes }));
    rest.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true, validationError: { target: false } }));
    const document = SwaggerModule.createDocument(
      rest,
      new DocumentBuilder().setTitle('Shoal controller').setDescription('Admin and publishing API of a Shoal fleet').setVersion('1').addBearerAuth().build(),
    );
    SwaggerModule.setup('docs', rest, document, { jsonDocumentUrl: 'openapi.json', yamlDocumentUrl: 'openapi.yaml' });
    // Bounds how long a client may take to send a request (a declared-but-never-sent body included).
    rest.getHttpServer().requestTimeout = 60_000;
    await rest.listen(config.restListen.port, config.restListen.host);
    closers.push(() => rest.close());
    const restPort = portOf(rest.getHttpServer().address());
    const restUrl = `https://${hostForUrl(config.publicHost)}:${restPort}`;

    const enrollment = new EnrollmentService(
      bootstrapTokens,
      pki,
      registry,
      {
        agentCertLifetimeSeconds: config.agentCertLifetimeSeconds,
        endpoints: { grpc: '', rest: restUrl, tufMetadata: `${restUrl}/tuf/metadata`, tufTargets: `${restUrl}/tuf/targets` },
        tufRoot: async () => (await repository.metadata('root.json')) ?? Buffer.alloc(0),
      },
      clock,
    );
    const grpc = await startGrpc(
      {
        enrollment,
        control,
        tracker,
        pki,
        registry,
        tls: { caPem: data.authority.certPem, certPem: data.tls.certPem, keyPem: data.tls.keyPem },
        observe: (method, code, seconds, err) => {
          metrics.grpcCalls.inc({ method, code: String(code) });
          metrics.grpcSeconds.observe({ method }, seconds);
          if (err) log.error({ method, err }, 'gRPC call failed');
        },
      },
      { mtls: config.grpcListen, enroll: config.enrollListen, keepaliveSeconds: config.grpcKeepaliveSeconds },
    );
    closers.push(() => grpc.close());
    enrollment.setGrpcEndpoint(`${hostForUrl(config.publicHost)}:${grpc.mtlsPort}`);
    // After the control streams can open: resumed waves find the agents as they reconnect.
    await rollouts.start();

    const refresh = setInterval(() => {
      repository.refresh(new Date()).then(
        (changed) => changed && log.info('TUF metadata re-signed'),
        (err: unknown) => log.error({ err }, 'TUF refresh failed'),
      );
    }, config.tufRefreshSeconds * 1000);
    refresh.unref();
    closers.push(async () => clearInterval(refresh));

    log.info({ fleet: data.fleet, rest: restUrl, grpc: grpc.mtlsPort, enroll: grpc.enrollPort, ...(origin ? { origin: origin.root } : {}) }, 'controller started');
    return { fleet: data.fleet, restPort, grpcPort: grpc.mtlsPort, enrollPort: grpc.enrollPort, close };
  } catch (err) {
    await close();
    throw err;
  }
}

interface Services {
  redis: Redis;
  metrics: Metrics;
  pki: FleetPki;
  repository: TufRepository;
  apiTokens: ApiTokens;
  bootstrapTokens: BootstrapTokens;
  registry: AgentRegistry;
  releases: ReleasesService;
  control: ControlStreams;
  rollouts: RolloutsService;
  /** The webseed origin folder, when configured. */
  origin: OriginFiles | undefined;
}

@Module({})
class ControllerModule {
  /** The services are built outside Nest (plain classes, shared with the gRPC side) and provided by class. */
  static with(services: Services): DynamicModule {
    return {
      module: ControllerModule,
      imports: services.origin ? [OriginModule.serving(services.origin, services.metrics)] : [],
      controllers: [
        HealthController,
        BootstrapTokensController,
        AgentsController,
        RevocationsController,
        ApiTokensController,
        ReleasesController,
        TufController,
        RolloutsController,
      ],
      providers: [
        { provide: RedisClass, useValue: services.redis },
        { provide: Metrics, useValue: services.metrics },
        { provide: FleetPki, useValue: services.pki },
        { provide: TufRepository, useValue: services.repository },
        { provide: ApiTokens, useValue: services.apiTokens },
        { provide: BootstrapTokens, useValue: services.bootstrapTokens },
        { provide: AgentRegistry, useValue: services.registry },
        { provide: ReleasesService, useValue: services.releases },
        { provide: ControlStreams, useValue: services.control },
        { provide: RolloutsService, useValue: services.rollouts },
        { provide: APP_GUARD, useClass: ApiTokenGuard },
        { provide: APP_FILTER, useClass: ErrorsFilter },
      ],
    };
  }
}

function nestLogger(log: pino.Logger): LoggerService {
  return {
    log: (message: unknown) => log.debug({ nest: true }, String(message)),
    error: (message: unknown, trace?: unknown) => log.error({ nest: true, trace }, String(message)),
    warn: (message: unknown) => log.warn({ nest: true }, String(message)),
  };
}

function portOf(address: unknown): number {
  return typeof address === 'object' && address !== null ? (address as { port: number }).port : 0;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
