import type { Output } from '../io';

export const AGENT_USAGE = `usage: shoal agent <enroll|start|import> [options]

  shoal agent enroll --token TOKEN --controller HOST:PORT --ca FILE --data-dir DIR [--json]
      enrolls this host: the key pair is made here (DIR/identity, mode 0600), the certificate
      comes from the controller's enrollment port, which must present a certificate of the fleet
      CA in FILE. The token may come from SHOAL_BOOTSTRAP_TOKEN instead.
  shoal agent start [--data-dir DIR] [--config FILE.json]
      runs the agent in the foreground until SIGINT/SIGTERM (settings: SHOAL_AGENT_DATA_DIR,
      SHOAL_PEER_LISTEN, SHOAL_ADVERTISE_ADDRESS, SHOAL_STATUS_SOCKET, SHOAL_MAX_PEERS, SHOAL_LOG_LEVEL)
  shoal agent import <pkg.torrent> <path> --name NAME --version VERSION --data-dir DIR [--json]
      verifies local data against a package and adds it to the store, for the agent to seed`;

export const STATUS_USAGE = `usage: shoal status [--data-dir DIR | --socket PATH] [--json]

Shows what the local agent holds and fetches (its status socket, DIR/agent.sock by default).`;

/** The agent is loaded only when one of its commands runs. */
function agentModule(): typeof import('@shoal/agent') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('@shoal/agent') as typeof import('@shoal/agent');
}

export function agent(argv: string[], out: Output): Promise<number> {
  return agentModule().agentCommand(argv, out);
}

export function status(argv: string[], out: Output): Promise<number> {
  return agentModule().statusCommand(argv, out);
}
