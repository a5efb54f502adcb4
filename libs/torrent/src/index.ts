export * from './errors';
export * from './bencode';
export * from './merkle';
export * from './paths';
export * from './metainfo';
export * from './io/create';
export * from './io/hash-pool';
export * from './io/verify-data';
