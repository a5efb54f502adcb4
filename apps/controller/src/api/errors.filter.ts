import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { ShoalError } from '@shoal/torrent';

/** Which HTTP status a ShoalError code maps to, by the code's meaning. */
export function statusOf(code: string): number {
  if (/NOT_FOUND|UNKNOWN_RELEASE|UNKNOWN_AGENT/.test(code)) return HttpStatus.NOT_FOUND;
  if (/EXISTS|NOT_NEWER|CONFLICT/.test(code)) return HttpStatus.CONFLICT;
  if (/NO_MATCH/.test(code)) return HttpStatus.UNPROCESSABLE_ENTITY;
  if (/TOO_LARGE/.test(code)) return HttpStatus.PAYLOAD_TOO_LARGE;
  return HttpStatus.BAD_REQUEST;
}

/**
 * One error shape for every route: `{ statusCode, error, message }`. Typed errors from the libs
 * are the caller's fault (4xx) by construction; anything else is ours (500, logged).
 */
@Catch()
export class ErrorsFilter implements ExceptionFilter {
  private readonly logger = new Logger('http');

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    let status: number;
    let error: string;
    let message: string | string[];
    if (exception instanceof HttpException) {
      status = exception.getStatus();
      const body = exception.getResponse();
      message = typeof body === 'string' ? body : ((body as { message?: string | string[] }).message ?? exception.message);
      error = HttpStatus[status] ?? 'ERROR';
    } else if (exception instanceof ShoalError) {
      status = statusOf(exception.code);
      error = exception.code;
      message = exception.message;
    } else if (isClientHttpError(exception)) {
      // body-parser rejects requests (bad JSON, bad gzip, too large, bad charset) with
      // http-errors style errors: a 4xx status and `expose`, no class to test for.
      status = exception.status;
      error = HttpStatus[status] ?? 'BAD_REQUEST';
      message = exception.message;
    } else {
      this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
      status = HttpStatus.INTERNAL_SERVER_ERROR;
      error = 'INTERNAL';
      message = 'internal error';
    }
    // A route may have set another Content-Type (a TUF target) before it threw.
    response.status(status).type('application/json').json({ statusCode: status, error, message });
  }
}

/** An http-errors client error: a 4xx status, and `expose` saying its message is safe to show. */
function isClientHttpError(e: unknown): e is { status: number; message: string } {
  if (typeof e !== 'object' || e === null) return false;
  const { status, expose, message } = e as { status?: unknown; expose?: unknown; message?: unknown };
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 500 && expose === true && typeof message === 'string';
}
