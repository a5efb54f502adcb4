import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { ROLES, type Role } from '../auth/api-tokens';
import { AGENT_ID } from '../registry/labels';

export class CreateBootstrapTokenDto {
  @ApiPropertyOptional({ description: 'seconds until the token expires', default: 3600, minimum: 60, maximum: 30 * 86400 })
  @IsOptional()
  @IsInt()
  @Min(60)
  @Max(30 * 86400)
  ttlSeconds?: number;

  @ApiPropertyOptional({ description: 'how many enrollments the token allows', default: 1, minimum: 1, maximum: 100000 })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(100000)
  uses?: number;

  @ApiPropertyOptional({ description: 'agent id every enrollment with this token gets', pattern: AGENT_ID.source })
  @IsOptional()
  @IsString()
  @Matches(AGENT_ID)
  agentName?: string;

  @ApiPropertyOptional({ description: 'labels given to agents enrolled with this token (region, zone, site, ...)', type: 'object', additionalProperties: { type: 'string' } })
  @IsOptional()
  @IsObject()
  labels?: Record<string, string>;

  @ApiPropertyOptional({ maxLength: 200 })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  description?: string;
}

export class SetLabelsDto {
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' } })
  @IsObject()
  labels!: Record<string, string>;
}

export class RevokeAgentDto {
  @ApiPropertyOptional({ maxLength: 200 })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  reason?: string;
}

export class CreateApiTokenDto {
  @ApiProperty({ maxLength: 64, pattern: '^[A-Za-z0-9 ._-]{1,64}$' })
  @IsString()
  @Matches(/^[A-Za-z0-9 ._-]{1,64}$/)
  name!: string;

  @ApiProperty({ enum: ROLES })
  @IsIn(ROLES)
  role!: Role;
}

export class PublishQueryDto {
  @ApiProperty({ description: 'package name', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })
  @IsString()
  @Matches(/^[a-z0-9][a-z0-9._-]{0,63}$/)
  name!: string;

  @ApiProperty({ description: 'version; versions of a name only go up', pattern: '^[0-9A-Za-z.+-]{1,64}$' })
  @IsString()
  @Matches(/^[0-9A-Za-z.+-]{1,64}$/)
  version!: string;

  @ApiPropertyOptional({ default: 'stable', pattern: '^[a-z0-9-]{1,32}$' })
  @IsOptional()
  @IsString()
  @Matches(/^[a-z0-9-]{1,32}$/)
  channel?: string;

  @ApiPropertyOptional({
    description: 'install command signed into the release: agents run it with /bin/sh -c once every byte is verified, only where their configuration allows it',
    maxLength: 4096,
  })
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  install?: string;
}

/** A release named in a command to one agent (a cancel takes just this). */
export class ReleaseRefDto {
  @ApiProperty({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })
  @IsString()
  @Matches(/^[a-z0-9][a-z0-9._-]{0,63}$/)
  name!: string;

  @ApiProperty({ pattern: '^[0-9A-Za-z.+-]{1,64}$' })
  @IsString()
  @Matches(/^[0-9A-Za-z.+-]{1,64}$/)
  version!: string;
}

export class FetchReleaseDto extends ReleaseRefDto {
  @ApiPropertyOptional({ description: 'run the install hook the agent allows for the release once every byte is verified', default: false })
  @IsOptional()
  @IsBoolean()
  install?: boolean;

  @ApiPropertyOptional({ enum: ['normal', 'background'], default: 'normal', description: 'background: the agent uses its lower caps and yields to normal transfers' })
  @IsOptional()
  @IsIn(['normal', 'background'])
  bandwidthClass?: 'normal' | 'background';
}
