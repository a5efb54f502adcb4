import { type CanActivate, type ExecutionContext, Injectable, SetMetadata, UnauthorizedException, ForbiddenException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { ApiTokens, type ApiTokenRecord, type Role, roleAllows } from '../auth/api-tokens';

const ROLE_KEY = 'shoal:role';

/** The least role a route needs; routes without it are public (health, metrics, TUF). */
export const RequireRole = (role: Role) => SetMetadata(ROLE_KEY, role);

export interface AuthenticatedRequest extends Request {
  apiToken?: ApiTokenRecord;
}

@Injectable()
export class ApiTokenGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: ApiTokens,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const needed = this.reflector.getAllAndOverride<Role | undefined>(ROLE_KEY, [context.getHandler(), context.getClass()]);
    if (!needed) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!match) throw new UnauthorizedException('an API token is required: Authorization: Bearer <token>');
    const record = this.tokens.authenticate(match[1] as string);
    if (!record) throw new UnauthorizedException('API token is not valid');
    if (!roleAllows(record.role, needed)) {
      throw new ForbiddenException(`this needs the ${needed} role; the token has ${record.role}`);
    }
    request.apiToken = record;
    return true;
  }
}
