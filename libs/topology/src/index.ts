export * from './location';
export * from './peer-index';
