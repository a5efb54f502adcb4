import { Controller, Get, Header, ServiceUnavailableException } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { Redis } from 'ioredis';
import { Metrics } from '../observability/metrics';

@ApiTags('health')
@Controller()
export class HealthController {
  constructor(
    private readonly redis: Redis,
    private readonly metrics: Metrics,
  ) {}

  /** The process is up. */
  @Get('healthz')
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** The controller can serve: Redis answers. */
  @Get('readyz')
  async readyz(): Promise<{ status: 'ready' }> {
    const answer = await Promise.race([
      this.redis.ping().catch(() => 'down'),
      new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 1000).unref()),
    ]);
    if (answer !== 'PONG') throw new ServiceUnavailableException(`redis: ${answer}`);
    return { status: 'ready' };
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
