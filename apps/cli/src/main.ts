import { ShoalError } from '@shoal/torrent';
import { INSPECT_USAGE, inspect } from './commands/inspect';
import { PACK_USAGE, pack } from './commands/pack';
import { VERIFY_USAGE, verify } from './commands/verify';
import { AGENTS_USAGE, PUBLISH_USAGE, RELEASES_USAGE, TOKEN_USAGE, agents, publish, releases, token } from './commands/fleet';
import { CONTROLLER_USAGE, controller } from './commands/controller';
import { AGENT_USAGE, STATUS_USAGE, agent, status } from './commands/agent';
import { ROLLOUT_USAGE, rollout } from './commands/rollout';
import { EXIT_OK, EXIT_USAGE } from './errors';
import type { Output } from './io';
import { VERSION } from './version';

interface Command {
  usage: string;
  run(argv: string[], out: Output): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  pack: { usage: PACK_USAGE, run: pack },
  inspect: { usage: INSPECT_USAGE, run: inspect },
  verify: { usage: VERIFY_USAGE, run: verify },
  controller: { usage: CONTROLLER_USAGE, run: controller },
  agent: { usage: AGENT_USAGE, run: agent },
  status: { usage: STATUS_USAGE, run: status },
  token: { usage: TOKEN_USAGE, run: token },
  agents: { usage: AGENTS_USAGE, run: agents },
  releases: { usage: RELEASES_USAGE, run: releases },
  publish: { usage: PUBLISH_USAGE, run: publish },
  rollout: { usage: ROLLOUT_USAGE, run: rollout },
};

const USAGE = `usage: shoal <command> [options]

commands:
  pack <path> -o <pkg.torrent>     hash a file or folder into a BitTorrent v2 package
  inspect <pkg.torrent>            show a package's name, info-hash, size and files
  verify <pkg.torrent> <path>      check data on disk against a package
  controller init|start            create a fleet's controller data folder; run the controller
  agent enroll|start|import        enroll this host; run the agent; seed it from local data
  status                           what the local agent holds and fetches
  token create                     create a bootstrap token agents enroll with
  agents                           list the fleet's agents
  releases                         list published releases
  publish <pkg.torrent>            publish a package as a signed release NAME@VERSION
  rollout create|status|list|...   push a release to the fleet in gated waves

Run "shoal <command> --help" for a command's options.
Exit codes: 0 ok, 1 verification or rollout failed, 2 usage or bad input.`;

/** Runs one command line; returns the exit code. Never throws for user errors. */
export async function run(argv: string[], out: Output): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    out.stdout.write(`${USAGE}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    out.stdout.write(`shoal ${VERSION}\n`);
    return EXIT_OK;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    out.stderr.write(`shoal: unknown command "${name}"\n${USAGE}\n`);
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out.stdout.write(`${command.usage}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, out);
  } catch (err) {
    out.stderr.write(`shoal ${name}: ${describeError(err)}\n`);
    return EXIT_USAGE;
  }
}

function describeError(err: unknown): string {
  if (err instanceof ShoalError) return err.message;
  // node:util parseArgs reports unknown or malformed options with these codes.
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) return (err as Error).message;
  return `internal error: ${(err as Error).stack ?? String(err)}`;
}
