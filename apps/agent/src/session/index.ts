export * from './errors';
export * from './geometry';
export * from './policy';
export * from './piece-download';
export * from './package-session';
