export { AgentBandwidth, type BandwidthLimits, type Gate, type PackageGates } from './bandwidth';
export { type PacedReads, pacedReads } from './pace';
export { parseRate } from './rate';
export { type DirectionLimits, type TrafficClass, TrafficShaper, burstFor } from './shaper';
export { TokenBucket } from './token-bucket';
