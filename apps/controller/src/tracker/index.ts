export * from './tracker.errors';
export * from './tracker.service';
export { MAX_ADDRESSES, MAX_SCRAPE_HASHES, INFO_HASH_BYTES, parseObservedAddress } from './tracker.validation';
