import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Allow, IsBoolean, IsIn, IsOptional, IsString, MaxLength } from 'class-validator';

/** Waves, selector, gate and window are checked by rollouts/plan.ts, which names the bad part. */
export class CreateRolloutDto {
  @ApiProperty({ description: 'the release, NAME@VERSION; it must be published (TUF-signed)', example: 'app@1.4.2' })
  @IsString()
  @MaxLength(160)
  release!: string;

  @ApiPropertyOptional({ description: 'agents whose labels match every term; empty: the whole fleet', example: 'region=eu-west,role=edge,site!=lab' })
  @IsOptional()
  @IsString()
  selector?: string;

  @ApiProperty({
    description: 'cumulative reach of each wave: shares of the matching agents or counts, growing',
    oneOf: [{ type: 'string', example: '5%,25%,100%' }, { type: 'array', items: { type: 'string' }, example: ['10', '50%', '100%'] }],
  })
  @Allow()
  waves!: unknown;

  @ApiPropertyOptional({
    description: 'wave gate; missing fields keep their defaults (success 95 %, no failure cap, no soak, 30 min timeout)',
    oneOf: [
      { type: 'string', example: 'success=90%,failures=2,soak=5m,timeout=30m' },
      {
        type: 'object',
        properties: {
          minSuccessRatio: { type: 'number', minimum: 0, maximum: 1 },
          maxFailures: { type: 'integer', minimum: 0, nullable: true },
          soakSeconds: { type: 'integer', minimum: 0 },
          waveTimeoutSeconds: { type: 'integer', minimum: 1 },
        },
      },
    ],
  })
  @Allow()
  gate?: unknown;

  @ApiPropertyOptional({ description: 'daily maintenance window in UTC: commands go out only inside it', example: '22:00-04:00' })
  @IsOptional()
  @IsString()
  window?: string;

  @ApiPropertyOptional({ enum: ['normal', 'background'], default: 'normal', description: 'background: the agents use their lower bandwidth caps and yield to other transfers' })
  @IsOptional()
  @IsIn(['normal', 'background'])
  bandwidthClass?: 'normal' | 'background';

  @ApiPropertyOptional({ default: true, description: "run each agent's install hook for the package once the release is verified" })
  @IsOptional()
  @IsBoolean()
  install?: boolean;
}
