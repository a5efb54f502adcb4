export * from './event-queue';
export * from './options';
export * from './random';
export * from './scenarios';
export * from './simulator';
