export * from './processes';
export * from './redis';
export * from './fleet';
