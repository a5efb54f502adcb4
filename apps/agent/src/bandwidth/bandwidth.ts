import { type DirectionLimits, type TrafficClass, TrafficShaper } from './shaper';

/** What a transfer asks before it moves more bytes, and tells once they moved. */
export interface Gate {
  record(bytes: number): void;
  /** Milliseconds to wait before moving more (0: now). */
  delay(): number;
}

export interface BandwidthLimits {
  upload: DirectionLimits;
  download: DirectionLimits;
}

/** The gates of one package: its class may change while it is active (a normal fetch joins a background one). */
export interface PackageGates {
  cls: TrafficClass;
  readonly download: Gate;
  readonly upload: Gate;
}

/**
 * The agent's upload and download caps, shared by all its packages (see TrafficShaper for how
 * the background class yields). `clock` is monotonic milliseconds.
 */
export class AgentBandwidth {
  private readonly upload: TrafficShaper;
  private readonly download: TrafficShaper;

  constructor(
    limits: BandwidthLimits,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.upload = new TrafficShaper(limits.upload, clock());
    this.download = new TrafficShaper(limits.download, clock());
  }

  gatesFor(cls: TrafficClass): PackageGates {
    const gate = (shaper: TrafficShaper): Gate => ({
      record: (bytes) => shaper.record(gates.cls, bytes, this.clock()),
      delay: () => shaper.delay(gates.cls, this.clock()),
    });
    const gates: PackageGates = { cls, download: gate(this.download), upload: gate(this.upload) };
    return gates;
  }
}
