export * from './lookups';
export * from './network';
