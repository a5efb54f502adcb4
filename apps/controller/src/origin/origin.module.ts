import { type DynamicModule, Module } from '@nestjs/common';
import { Metrics } from '../observability/metrics';
import { OriginController } from './origin.controller';
import { OriginFiles } from './origin-files';

/** The development webseed origin; imported only when `originDir` is configured. */
@Module({})
export class OriginModule {
  static serving(files: OriginFiles, metrics: Metrics): DynamicModule {
    return {
      module: OriginModule,
      controllers: [OriginController],
      providers: [
        { provide: OriginFiles, useValue: files },
        { provide: Metrics, useValue: metrics },
      ],
    };
  }
}
