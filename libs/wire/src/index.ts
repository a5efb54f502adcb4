export * from './errors';
export * from './handshake';
export * from './messages';
export * from './decoder';
export * from './extension';
export * from './connection';
export * from './pex';
