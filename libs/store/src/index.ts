export * from './errors';
export * from './bitfield';
export * from './fs';
export * from './journal';
export * from './package-store';
export * from './seed-cache';
export * from './reuse';
