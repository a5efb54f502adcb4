import { BadRequestException, Controller, Get, Header, NotFoundException, Param, Post, Query, Req, Res, StreamableFile } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { TufRepository } from '@shoal/trust';
import { Metrics } from '../observability/metrics';
import { ReleasesService } from '../releases/releases.service';
import { RequireRole } from './auth.guard';
import { PublishQueryDto } from './dto';

export const PACKAGE_MEDIA_TYPE = 'application/x-bittorrent';

@ApiTags('releases')
@ApiBearerAuth()
@Controller('v1/releases')
export class ReleasesController {
  constructor(
    private readonly releases: ReleasesService,
    private readonly metrics: Metrics,
  ) {}

  @Get()
  @RequireRole('viewer')
  list() {
    return this.releases.list();
  }

  @Get(':name/:version')
  @RequireRole('viewer')
  get(@Param('name') name: string, @Param('version') version: string) {
    return this.releases.get(name, version);
  }

  /**
   * Publishes a package: the body is the .torrent file. It is validated (BEP 52, bound to the
   * fleet CA) and signed as the TUF target NAME/VERSION.torrent. Versions of a name only go up;
   * the same version with other bytes, channel or install command is refused (409); the same
   * again is a no-op (200). `install` signs an install command into the release.
   */
  @Post()
  @RequireRole('publisher')
  @ApiConsumes(PACKAGE_MEDIA_TYPE)
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  async publish(@Query() query: PublishQueryDto, @Req() request: Request, @Res({ passthrough: true }) response: Response) {
    if (!Buffer.isBuffer(request.body)) {
      throw new BadRequestException(`the body must be the package file, sent as Content-Type: ${PACKAGE_MEDIA_TYPE}`);
    }
    const release = await this.releases.publish({
      name: query.name,
      version: query.version,
      ...(query.channel ? { channel: query.channel } : {}),
      ...(query.install !== undefined ? { installCommand: query.install } : {}),
      metainfoBytes: request.body,
    });
    if (release.created) this.metrics.releasesPublished.inc();
    response.status(release.created ? 201 : 200);
    return release;
  }
}

/**
 * The TUF repository, public: metadata is signed, and targets are checked by hash, so agents
 * need no credentials to read them (tuf-js fetches these URLs).
 */
@ApiTags('tuf')
@Controller('tuf')
export class TufController {
  constructor(private readonly repository: TufRepository) {}

  @Get('metadata/:file')
  @Header('Content-Type', 'application/json')
  @Header('Cache-Control', 'no-store')
  async metadata(@Param('file') file: string): Promise<StreamableFile> {
    const bytes = /^[0-9a-z.]{1,64}$/.test(file) ? await this.repository.metadata(file) : undefined;
    if (!bytes) throw new NotFoundException(`no metadata ${JSON.stringify(file.slice(0, 80))}`);
    return new StreamableFile(bytes);
  }

  @Get('targets/:name/:file')
  @Header('Content-Type', PACKAGE_MEDIA_TYPE)
  async target(@Param('name') name: string, @Param('file') file: string): Promise<StreamableFile> {
    const bytes = await this.repository.targetBytes(`${name}/${file}`);
    if (!bytes) throw new NotFoundException(`no target ${JSON.stringify(`${name}/${file}`.slice(0, 120))}`);
    return new StreamableFile(bytes);
  }
}
