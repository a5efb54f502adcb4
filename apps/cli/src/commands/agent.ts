import type { Output } from '../io';

export const AGENT_USAGE = `usage: shoal agent enroll --token TOKEN --controller HOST:PORT --ca FILE --data-dir DIR [--json]

  Enrolls this host in a fleet: the key pair is made here (the private key stays in
  DIR/identity, mode 0600), and the certificate comes from the controller's enrollment port
  (7445 by default), which must present a certificate of the fleet CA in FILE.
  The token may come from SHOAL_BOOTSTRAP_TOKEN instead, to keep it out of process lists.`;

/** Loads the agent only when this command runs. */
export function agent(argv: string[], out: Output): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { agentCommand } = require('@shoal/agent') as typeof import('@shoal/agent');
  return agentCommand(argv, out);
}
