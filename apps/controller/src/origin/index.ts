export { OriginModule } from './origin.module';
export { OriginError, type OriginErrorCode, OriginFiles, type OriginFile } from './origin-files';
export { type RangeAnswer, notModified, rangeStillValid, resolveRange } from './ranges';
