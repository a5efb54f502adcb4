import { ShoalError } from '@shoal/torrent';

/** Exit codes of every `shoal` command. */
export const EXIT_OK = 0;
export const EXIT_VERIFY_FAILED = 1;
export const EXIT_USAGE = 2;

/** The command line itself is wrong (unknown flag, missing argument, bad value). */
export class UsageError extends ShoalError {
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}
