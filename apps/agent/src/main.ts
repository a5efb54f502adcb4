import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ShoalError } from '@shoal/torrent';
import { enrollAgent } from './identity/enroll';
import { identityLayout } from './identity/state';

export { enrollAgent } from './identity/enroll';
export { CertificateRenewer } from './identity/renewer';
export { ControlClient, type ControlClientOptions } from './control/control-client';
export { identityLayout, loadIdentity, halfLife } from './identity/state';
export { PeerServer, connectToPeer, type AdmittedConnection, type TlsIdentity } from './peer/tls';
export { AdmissionError, admitPeer, wireName, type WirePackage } from './peer/admission';

/** Version the agent reports at enrollment. */
export const AGENT_VERSION = '0.1.0';

export interface CommandOutput {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function agentCommand(argv: string[], out: CommandOutput): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'enroll') return enroll(rest, out);
  throw new ShoalError('CLI_USAGE', `unknown agent command ${JSON.stringify(sub ?? '')}: use enroll`);
}

async function enroll(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      token: { type: 'string' },
      controller: { type: 'string' },
      ca: { type: 'string' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const token = values.token ?? process.env.SHOAL_BOOTSTRAP_TOKEN;
  const dataDir = values['data-dir'] ?? process.env.SHOAL_AGENT_DATA_DIR;
  if (!token || !values.controller || !values.ca || !dataDir) {
    throw new ShoalError('CLI_USAGE', 'agent enroll needs --token (or SHOAL_BOOTSTRAP_TOKEN), --controller HOST:PORT, --ca FILE and --data-dir DIR');
  }
  const caPem = await readFile(values.ca, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ShoalError('CLI_BAD_INPUT', `${values.ca}: cannot read the fleet CA: ${err.code ?? err.message}`);
  });
  const record = await enrollAgent({ dataDir, controller: values.controller, caPem, token, softwareVersion: AGENT_VERSION, now: new Date() });
  out.stdout.write(
    values.json
      ? `${JSON.stringify(record)}\n`
      : `enrolled as ${record.agentId} in fleet ${record.fleet}; key and certificate in ${identityLayout(dataDir).key.replace(/\/[^/]+$/, '')}\n`,
  );
  return 0;
}
