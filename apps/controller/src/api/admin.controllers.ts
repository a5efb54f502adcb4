import { Body, ConflictException, Controller, Delete, Get, HttpCode, NotFoundException, Param, Post, Put, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { ApiTokens } from '../auth/api-tokens';
import { BootstrapTokens } from '../enrollment/bootstrap-tokens.service';
import { Metrics } from '../observability/metrics';
import { FleetPki } from '../pki/fleet-pki';
import { AgentRegistry } from '../registry/agents.service';
import { checkLabels } from '../registry/labels';
import type { AuthenticatedRequest } from './auth.guard';
import { RequireRole } from './auth.guard';
import { ControlStreams } from '../control/control-streams';
import { ReleasesService } from '../releases/releases.service';
import { CreateApiTokenDto, CreateBootstrapTokenDto, FetchReleaseDto, ReleaseRefDto, RevokeAgentDto, SetLabelsDto } from './dto';

const ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

function checkId(id: string, what: string): string {
  if (!ID.test(id)) throw new NotFoundException(`no ${what} ${JSON.stringify(id.slice(0, 80))}`);
  return id;
}

@ApiTags('bootstrap tokens')
@ApiBearerAuth()
@Controller('v1/bootstrap-tokens')
@RequireRole('admin')
export class BootstrapTokensController {
  constructor(private readonly tokens: BootstrapTokens) {}

  /** Creates a token agents enroll with; the secret is shown only in this answer. */
  @Post()
  create(@Body() body: CreateBootstrapTokenDto) {
    return this.tokens.create({
      ttlSeconds: body.ttlSeconds ?? 3600,
      uses: body.uses ?? 1,
      ...(body.agentName ? { agentName: body.agentName } : {}),
      labels: body.labels === undefined ? {} : checkLabels(body.labels),
      ...(body.description ? { description: body.description } : {}),
    });
  }

  @Get()
  list() {
    return this.tokens.list();
  }

  @Delete(':id')
  @HttpCode(204)
  async revoke(@Param('id') id: string): Promise<void> {
    if (!/^[0-9a-f]{16}$/.test(id) || !(await this.tokens.revoke(id))) throw new NotFoundException(`no bootstrap token ${JSON.stringify(id.slice(0, 80))}`);
  }
}

@ApiTags('agents')
@ApiBearerAuth()
@Controller('v1/agents')
export class AgentsController {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly pki: FleetPki,
    private readonly metrics: Metrics,
    private readonly control: ControlStreams,
    private readonly releases: ReleasesService,
  ) {}

  @Get()
  @RequireRole('viewer')
  async list() {
    const connected = new Set(this.control.connected());
    return (await this.registry.list()).map((agent) => ({ ...agent, controlStream: connected.has(agent.id) }));
  }

  @Get(':id')
  @RequireRole('viewer')
  async get(@Param('id') id: string) {
    const agent = await this.registry.get(checkId(id, 'agent'));
    if (!agent) throw new NotFoundException(`no agent ${id}`);
    return agent;
  }

  @Put(':id/labels')
  @RequireRole('admin')
  async setLabels(@Param('id') id: string, @Body() body: SetLabelsDto) {
    const agent = await this.registry.setLabels(checkId(id, 'agent'), checkLabels(body.labels));
    if (!agent) throw new NotFoundException(`no agent ${id}`);
    return agent;
  }

  /**
   * Tells a connected agent, over its control stream, to fetch a release (it verifies the
   * release with TUF itself), and to install it when `install` is set. 409 when the agent has no
   * control stream open.
   */
  @Post(':id/fetch')
  @RequireRole('publisher')
  @HttpCode(202)
  async fetch(@Param('id') id: string, @Body() body: FetchReleaseDto) {
    const agent = await this.registry.get(checkId(id, 'agent'));
    if (!agent) throw new NotFoundException(`no agent ${id}`);
    await this.releases.get(body.name, body.version);
    const commandId = this.control.send(id, {
      fetch: {
        name: body.name,
        version: body.version,
        install: body.install ?? false,
        bandwidthClass: body.bandwidthClass === 'background' ? 'BANDWIDTH_CLASS_BACKGROUND' : 'BANDWIDTH_CLASS_NORMAL',
        rolloutId: '',
      },
    });
    if (!commandId) throw new ConflictException(`agent ${id} has no control stream open`);
    return { agentId: id, commandId };
  }

  /**
   * Tells a connected agent to cancel its fetch (and install hook) of a release; it keeps the
   * pieces it verified. 409 when the agent has no control stream open.
   */
  @Post(':id/cancel')
  @RequireRole('publisher')
  @HttpCode(202)
  async cancel(@Param('id') id: string, @Body() body: ReleaseRefDto) {
    const agent = await this.registry.get(checkId(id, 'agent'));
    if (!agent) throw new NotFoundException(`no agent ${id}`);
    const commandId = this.control.send(id, { cancel: { name: body.name, version: body.version } });
    if (!commandId) throw new ConflictException(`agent ${id} has no control stream open`);
    return { agentId: id, commandId };
  }

  /** Revokes every unexpired certificate of the agent, at once at the controller. */
  @Post(':id/revoke')
  @RequireRole('admin')
  async revoke(@Param('id') id: string, @Body() _body: RevokeAgentDto) {
    const agent = await this.registry.get(checkId(id, 'agent'));
    if (!agent) throw new NotFoundException(`no agent ${id}`);
    await this.registry.setState(id, 'revoked');
    const serials = await this.pki.revokeAgent(id, 'keyCompromise', new Date());
    this.metrics.revocations.inc(serials.length);
    return { agentId: id, revokedSerials: serials, revocationListVersion: this.pki.revocationVersion };
  }
}

@ApiTags('revocations')
@ApiBearerAuth()
@Controller('v1/revocations')
export class RevocationsController {
  constructor(private readonly pki: FleetPki) {}

  /** The signed revocation list agents receive. */
  @Get()
  @RequireRole('viewer')
  get() {
    return this.pki.revocations;
  }
}

@ApiTags('api tokens')
@ApiBearerAuth()
@Controller('v1/api-tokens')
@RequireRole('admin')
export class ApiTokensController {
  constructor(private readonly tokens: ApiTokens) {}

  /** Creates an API token; the secret is shown only in this answer. */
  @Post()
  create(@Body() body: CreateApiTokenDto) {
    return this.tokens.create(body.name, body.role, new Date());
  }

  @Get()
  list() {
    return this.tokens.list();
  }

  @Delete(':id')
  @HttpCode(204)
  async revoke(@Param('id') id: string, @Req() request: AuthenticatedRequest): Promise<void> {
    if (request.apiToken?.id === id) throw new ConflictException('a token cannot revoke itself');
    if (!/^[0-9a-f]{16}$/.test(id) || !(await this.tokens.revoke(id))) throw new NotFoundException(`no API token ${JSON.stringify(id.slice(0, 80))}`);
  }
}
