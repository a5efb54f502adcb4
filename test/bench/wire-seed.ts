/** The seed process of the wire benchmark (forked by wire.bench.ts, driven over IPC). */
import { seedChildMain } from './wire.bench';

seedChildMain();
