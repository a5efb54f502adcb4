import { Body, Controller, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { AuthenticatedRequest } from '../api/auth.guard';
import { RequireRole } from '../api/auth.guard';
import { CreateRolloutDto } from './rollouts.dto';
import { RolloutsService } from './rollouts.service';

@ApiTags('rollouts')
@ApiBearerAuth()
@Controller('v1/rollouts')
export class RolloutsController {
  constructor(private readonly rollouts: RolloutsService) {}

  /** Starts pushing a release to the agents the selector picks, wave by wave. */
  @Post()
  @RequireRole('publisher')
  create(@Body() body: CreateRolloutDto, @Req() request: AuthenticatedRequest) {
    return this.rollouts.create(body, request.apiToken?.name ?? 'unknown');
  }

  /** The newest rollouts first, with per-wave progress. */
  @Get()
  @RequireRole('viewer')
  list() {
    return this.rollouts.list();
  }

  @Get(':id')
  @RequireRole('viewer')
  get(@Param('id') id: string) {
    return this.rollouts.get(id);
  }

  /** No new commands go out (within a quarter of a second); agents already commanded carry on. */
  @Post(':id/pause')
  @RequireRole('publisher')
  @HttpCode(200)
  pause(@Param('id') id: string) {
    return this.rollouts.pause(id);
  }

  @Post(':id/resume')
  @RequireRole('publisher')
  @HttpCode(200)
  resume(@Param('id') id: string) {
    return this.rollouts.resume(id);
  }

  /** Ends the rollout for good; agents still fetching its release are told to cancel. */
  @Post(':id/abort')
  @RequireRole('publisher')
  @HttpCode(200)
  abort(@Param('id') id: string) {
    return this.rollouts.abort(id);
  }
}
