import { pipeline } from 'node:stream/promises';
import { Controller, Get, HttpException, HttpStatus, Req, Res } from '@nestjs/common';
import { ApiParam, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Metrics } from '../observability/metrics';
import { OriginError, OriginFiles } from './origin-files';
import { notModified, rangeStillValid, resolveRange } from './ranges';

const PREFIX = '/origin/';
/** Read size per chunk: large enough that a 16 MiB piece is a few dozen reads. */
const READ_CHUNK = 256 * 1024;

/**
 * The development origin: the configured folder, public and read-only, as BEP 19 webseeds (a CDN)
 * serve it. GET and HEAD (Express answers HEAD with the GET route), one byte range per request,
 * conditional requests, streamed from disk. No credentials: like a CDN's, the content is public,
 * and agents verify every piece against the signed metainfo anyway.
 */
@ApiTags('origin')
@Controller('origin')
export class OriginController {
  constructor(
    private readonly files: OriginFiles,
    private readonly metrics: Metrics,
  ) {}

  /**
   * A file below the origin folder. `Range: bytes=a-b` (one range) gets 206; several ranges or
   * an unsatisfiable one get 416 with `Content-Range: bytes *\/size`.
   */
  @Get('*path')
  @ApiProduces('application/octet-stream')
  @ApiParam({ name: 'path', description: 'file path below the origin folder, each component percent-encoded' })
  @ApiResponse({ status: 200, description: 'the whole file' })
  @ApiResponse({ status: 206, description: 'the one byte range asked for' })
  @ApiResponse({ status: 304, description: 'If-None-Match / If-Modified-Since matched' })
  @ApiResponse({ status: 404, description: 'no such file, or a path that is not allowed' })
  @ApiResponse({ status: 416, description: 'unsatisfiable, malformed or multiple ranges' })
  async serve(@Req() request: Request, @Res() response: Response): Promise<void> {
    const file = await this.files.resolve(encodedPathOf(request.originalUrl));
    let streaming = false;
    try {
      const validators = { etag: file.etag, lastModified: file.lastModified };
      response.setHeader('Accept-Ranges', 'bytes');
      response.setHeader('ETag', file.etag);
      response.setHeader('Last-Modified', file.lastModified.toUTCString());
      if (notModified({ ifNoneMatch: request.headers['if-none-match'], ifModifiedSince: request.headers['if-modified-since'] }, validators)) {
        response.status(HttpStatus.NOT_MODIFIED).end();
        return;
      }
      const range = rangeStillValid(headerText(request.headers['if-range']), validators) ? resolveRange(request.headers.range, file.size) : { kind: 'full' as const };
      if (range.kind === 'unsatisfiable') {
        response.setHeader('Content-Range', `bytes */${file.size}`);
        throw new HttpException(range.reason, HttpStatus.REQUESTED_RANGE_NOT_SATISFIABLE);
      }
      const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, file.size - 1];
      response.status(range.kind === 'partial' ? HttpStatus.PARTIAL_CONTENT : HttpStatus.OK);
      if (range.kind === 'partial') response.setHeader('Content-Range', `bytes ${start}-${end}/${file.size}`);
      response.setHeader('Content-Type', 'application/octet-stream');
      response.setHeader('Content-Length', String(end - start + 1));
      if (request.method === 'HEAD' || end < start) {
        response.end();
        return;
      }
      const body = file.handle.createReadStream({ start, end, highWaterMark: READ_CHUNK });
      streaming = true;
      body.on('data', (chunk: string | Buffer) => this.metrics.originBytesSent.inc(chunk.length));
      // A client that hangs up mid-body ends the pipeline with an error; nothing to report.
      await pipeline(body, response).catch(() => undefined);
    } finally {
      // The read stream closes the file itself once it runs.
      if (!streaming) await file.handle.close();
    }
  }
}

/** The request path below /origin/, still percent-encoded (decoding is the resolver's job). */
function encodedPathOf(originalUrl: string): string {
  const path = originalUrl.split('?', 1)[0] as string;
  // Express matches routes case-insensitively: /ORIGIN/x arrives here too.
  if (path.slice(0, PREFIX.length).toLowerCase() !== PREFIX) throw new OriginError('ORIGIN_NOT_FOUND', 'not an origin path');
  return path.slice(PREFIX.length);
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
