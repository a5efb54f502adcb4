import type { Output } from '../io';

export const CONTROLLER_USAGE = `usage: shoal controller <init|start> [options]

  shoal controller init --data-dir DIR --fleet NAME [--host HOST]... [--json]
      creates the fleet CA, the controller's TLS certificate, the TUF repository and keys, and
      an admin API token (written to DIR/admin.token, mode 0600)
  shoal controller start [--data-dir DIR] [--config FILE.json]
      runs the controller in the foreground until SIGINT/SIGTERM; settings come from the file
      and SHOAL_* / REDIS_URL environment variables (see README)`;

/**
 * Loads the controller (NestJS, gRPC, TUF: about 0.5 s and 80 MB) only when this command runs,
 * so `shoal pack` and friends start as fast as they did without it.
 */
export function controller(argv: string[], out: Output): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { controllerCommand } = require('@shoal/controller') as typeof import('@shoal/controller');
  return controllerCommand(argv, out);
}
