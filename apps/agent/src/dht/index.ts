export * from './dht-service';
export * from './errors';
export * from './framing';
