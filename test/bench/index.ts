/**
 * `npm run bench [-- NAME] [options]`: runs one benchmark by name, or all of them in turn.
 * Each writes a JSON report under test/bench/results/ with ratios against baselines measured in
 * the same run.
 *   pack      shoal pack vs sha256sum / openssl / libtorrent on a 2 GiB file; peak RSS
 *   tracker   announces per second and latency against one controller process over mTLS
 *   agent     agent-to-agent throughput vs a plain TLS socket; the leech's peak RSS
 *   wire      peer-wire throughput layer by layer (wire, read, write, store, session) vs plain TLS
 *   sim       the swarm core in its simulator, 200 and 1,000 peers: completion vs T*, CPU seconds
 *   rollout   rollout create -> 1,000 control-stream agents commanded, vs the controller's bare fan-out
 *   dht       the DHT core in its simulator, 10,000 nodes: rounds, success with dead/hostile nodes
 */
import { describeFailure, packBench } from './pack.bench';
import { trackerBench } from './tracker.bench';
import { agentBench } from './agent.bench';
import { wireBench } from './wire.bench';
import { simBench } from './swarm-sim';
import { rolloutBench } from './rollout.bench';
import { dhtBench } from './dht';

const BENCHMARKS: Record<string, (argv: string[]) => Promise<void>> = { pack: packBench, tracker: trackerBench, agent: agentBench, wire: wireBench, sim: simBench, rollout: rolloutBench, dht: dhtBench };

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first !== undefined && !first.startsWith('-')) {
    const bench = BENCHMARKS[first];
    if (!bench) throw new Error(`unknown benchmark "${first}"; known: ${Object.keys(BENCHMARKS).join(', ')}`);
    await bench(rest);
    return;
  }
  for (const [name, bench] of Object.entries(BENCHMARKS)) {
    console.log(`\n== ${name}`);
    await bench(name === 'pack' ? argv : []);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(describeFailure(err));
  process.exitCode = 1;
});
