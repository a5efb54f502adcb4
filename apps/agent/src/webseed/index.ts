export { WebseedClient, type WebseedClientOptions, type WebseedStats } from './webseed-client';
export { WebseedError, type WebseedErrorCode } from './errors';
export { type PieceSpan, pieceSpan, piecedFiles, webseedFileUrl } from './piece-map';
