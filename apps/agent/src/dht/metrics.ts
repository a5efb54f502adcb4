import type { DhtCounters, LookupResult } from '@shoal/dht';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What the metrics read from the running service when scraped. */
export interface DhtMetricsSource {
  tableSize(): number;
  storedPeers(): number;
  connections(): { inbound: number; outbound: number };
  counters(): DhtCounters;
}

/** Messages the node dropped, by the core's counter that counts them. */
const DROPPED: Record<string, keyof DhtCounters> = {
  malformed: 'malformed',
  sender_mismatch: 'senderMismatch',
  unexpected: 'unexpected',
  bad_reply: 'badReplies',
};

export type DhtMetrics = ReturnType<typeof dhtMetrics>;

/** The DHT's metrics, registered with the agent's registry (shoal_agent_dht_*). */
export function dhtMetrics(registry: Registry, source: DhtMetricsSource) {
  const registers = [registry];
  /** Core counters already counted, so each scrape adds only what is new. */
  const seen: Partial<Record<keyof DhtCounters, number>> = {};
  const lookups = new Counter({
    name: 'shoal_agent_dht_lookups_total',
    help: 'DHT lookups finished, by kind (find_node, get_peers) and purpose (lookup: peers for a package; bootstrap, refresh, announce)',
    labelNames: ['kind', 'purpose'] as const,
    registers,
  });
  const rounds = new Histogram({
    name: 'shoal_agent_dht_lookup_rounds',
    help: 'round trips a DHT lookup waited through (its longest chain of query and reply)',
    labelNames: ['kind', 'purpose'] as const,
    buckets: [1, 2, 3, 4, 5, 6, 8, 12],
    registers,
  });
  const duration = new Histogram({
    name: 'shoal_agent_dht_lookup_duration_seconds',
    help: 'time from the start of a DHT lookup to its end',
    labelNames: ['kind', 'purpose'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  return {
    /**
     * Our queries by method and how they ended: answered, error (a KRPC error reply), timeout,
     * unreachable (no connection, or it closed first), wrong_node (another certificate at the
     * contact's address), busy (too many in flight on the connection).
     */
    queries: new Counter({
      name: 'shoal_agent_dht_queries_total',
      help: 'DHT queries this node sent, by method and outcome (answered, error, timeout, unreachable, wrong_node, busy)',
      labelNames: ['method', 'outcome'] as const,
      registers,
    }),
    served: new Counter({
      name: 'shoal_agent_dht_queries_served_total',
      help: 'DHT queries other nodes sent this node, by method',
      labelNames: ['method'] as const,
      registers,
    }),
    dropped: new Counter({
      name: 'shoal_agent_dht_messages_dropped_total',
      help: 'DHT messages dropped, by reason (malformed, sender_mismatch: the id is not that of the certificate, unexpected, bad_reply)',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        const now = source.counters();
        for (const [reason, field] of Object.entries(DROPPED)) {
          const delta = now[field] - (seen[field] ?? 0);
          seen[field] = now[field];
          this.inc({ reason }, delta);
        }
      },
    }),
    refused: new Counter({
      name: 'shoal_agent_dht_refused_total',
      help: 'DHT connections refused at admission (foreign or revoked certificate, no certificate, connection limit), by code',
      labelNames: ['code'] as const,
      registers,
    }),
    closed: new Counter({
      name: 'shoal_agent_dht_connections_closed_total',
      help: 'DHT connections closed, by reason (closed: by either side, idle or at shutdown; SOCKET_ERROR; or the transport error code: DHT_BAD_HELLO, DHT_FRAME_TOO_LARGE ...)',
      labelNames: ['reason'] as const,
      registers,
    }),
    announces: new Counter({
      name: 'shoal_agent_dht_announces_total',
      help: 'announce_peer rounds of this node for its packages, by result (stored: at least one node took it; none)',
      labelNames: ['result'] as const,
      registers,
    }),
    tableNodes: new Gauge({
      name: 'shoal_agent_dht_routing_table_nodes',
      help: 'nodes in the DHT routing table',
      registers,
      collect() {
        this.set(source.tableSize());
      },
    }),
    storedPeers: new Gauge({
      name: 'shoal_agent_dht_stored_peers',
      help: 'peers other nodes announced to this node (all info-hashes)',
      registers,
      collect() {
        this.set(source.storedPeers());
      },
    }),
    connections: new Gauge({
      name: 'shoal_agent_dht_connections',
      help: 'open DHT connections, by direction',
      labelNames: ['direction'] as const,
      registers,
      collect() {
        const { inbound, outbound } = source.connections();
        this.set({ direction: 'inbound' }, inbound);
        this.set({ direction: 'outbound' }, outbound);
      },
    }),
    lookupFinished(result: LookupResult): void {
      const labels = { kind: result.kind, purpose: result.purpose };
      lookups.inc(labels);
      rounds.observe(labels, result.rounds);
      duration.observe(labels, (result.finishedAt - result.startedAt) / 1000);
    },
  };
}
