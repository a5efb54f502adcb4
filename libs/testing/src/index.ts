export * from './processes';
export * from './redis';
export * from './fleet';
export * from './swarm-fleet';
export * from './control-agents';
