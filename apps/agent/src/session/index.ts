export * from './errors';
export * from './geometry';
export * from './package-session';
