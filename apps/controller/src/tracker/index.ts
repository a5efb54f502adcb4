export * from './tracker.errors';
export * from './tracker.service';
export { type SwarmKeys, PRUNE_LIMIT, MAX_WRITES_PER_SCRIPT } from './tracker.store';
export { MAX_ADDRESSES, MAX_SCRAPE_HASHES, INFO_HASH_BYTES, parseObservedAddress } from './tracker.validation';
