import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ShoalError } from '@shoal/torrent';
import { startController } from './app';
import { ConfigError, loadConfig } from './config';
import { initDataDir } from './data-dir';

export { startController, type RunningController } from './app';
export { loadConfig, SCHEMA as CONTROLLER_CONFIG_SCHEMA, type ControllerConfig } from './config';
export { initDataDir, layout as dataDirLayout } from './data-dir';

export interface CommandOutput {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Name of the file `init` writes the first admin API token to. */
export const ADMIN_TOKEN_FILE = 'admin.token';

export async function controllerCommand(argv: string[], out: CommandOutput): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'init') return init(rest, out);
  if (sub === 'start') return start(rest, out);
  throw new ShoalError('CLI_USAGE', `unknown controller command ${JSON.stringify(sub ?? '')}: use init or start`);
}

async function init(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'data-dir': { type: 'string' }, fleet: { type: 'string' }, host: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  });
  const dataDir = values['data-dir'] ?? process.env.SHOAL_DATA_DIR;
  if (!dataDir || !values.fleet) throw new ShoalError('CLI_USAGE', 'controller init needs --data-dir and --fleet');
  const result = await initDataDir({ dataDir, fleet: values.fleet, hosts: values.host ?? [], now: new Date() });
  const tokenFile = join(dataDir, ADMIN_TOKEN_FILE);
  await writeFile(tokenFile, `${result.adminToken}\n`, { mode: 0o600 });
  const summary = { fleet: result.fleet, dataDir, caCertificate: join(dataDir, 'ca', 'ca.pem'), caFingerprintSha256: result.caFingerprintSha256, adminTokenFile: tokenFile };
  out.stdout.write(
    values.json
      ? `${JSON.stringify(summary)}\n`
      : `fleet ${summary.fleet} initialised in ${dataDir}\n  CA certificate: ${summary.caCertificate} (sha256 ${summary.caFingerprintSha256})\n  admin API token: ${tokenFile}\n  root TUF key: ${join(dataDir, 'tuf', 'root-keys')} (may be moved offline)\n`,
  );
  return 0;
}

async function start(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' }, config: { type: 'string' } } });
  let config;
  try {
    config = loadConfig({ ...(values.config ? { file: values.config } : {}), overrides: values['data-dir'] ? { dataDir: values['data-dir'] } : {} });
  } catch (err) {
    if (err instanceof ConfigError) {
      out.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const controller = await startController(config);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await controller.close();
  return 0;
}
