import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { ShoalError } from '@shoal/torrent';

/** How the CLI reaches a controller's REST API, from flags, then environment, then the data folder. */
export interface Connection {
  url: URL;
  token?: string;
  ca?: string;
}

export const CONNECTION_OPTIONS = {
  controller: { type: 'string' },
  'api-token': { type: 'string' },
  ca: { type: 'string' },
  'data-dir': { type: 'string' },
} as const;

export const CONNECTION_HELP = `connection (flags, else environment, else the data folder):
  --controller URL    REST API of the controller (SHOAL_CONTROLLER; default https://127.0.0.1:7443)
  --api-token TOKEN   API token (SHOAL_API_TOKEN; default <data-dir>/admin.token)
  --ca FILE           fleet CA certificate to trust (SHOAL_CA; default <data-dir>/ca/ca.pem)
  --data-dir DIR      the controller's data folder (SHOAL_DATA_DIR)`;

export class ApiError extends ShoalError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super('CLI_API_ERROR', message);
  }
}

export function connectionFrom(values: { controller?: string; 'api-token'?: string; ca?: string; 'data-dir'?: string }, env = process.env): Connection {
  const dataDir = values['data-dir'] ?? env.SHOAL_DATA_DIR;
  const readIf = (path: string | undefined, what: string): string | undefined => {
    if (!path) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ShoalError('CLI_BAD_INPUT', `${path}: cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const fromDataDir = (file: string) => (dataDir ? join(dataDir, file) : undefined);
  const token = values['api-token'] ?? env.SHOAL_API_TOKEN ?? readIf(fromDataDir('admin.token'), 'API token')?.trim();
  const ca = readIf(values.ca ?? env.SHOAL_CA ?? fromDataDir(join('ca', 'ca.pem')), 'CA certificate');
  let url: URL;
  try {
    url = new URL(values.controller ?? env.SHOAL_CONTROLLER ?? 'https://127.0.0.1:7443');
  } catch {
    throw new ShoalError('CLI_USAGE', `--controller: ${JSON.stringify(values.controller)} is not a URL`);
  }
  return { url, ...(token ? { token } : {}), ...(ca ? { ca } : {}) };
}

/** One REST call; answers other than 2xx become ApiError with the controller's message. */
export function call<T>(connection: Connection, method: string, path: string, body?: { json: unknown } | { bytes: Buffer; type: string }): Promise<T> {
  const payload = body === undefined ? undefined : 'json' in body ? Buffer.from(JSON.stringify(body.json)) : body.bytes;
  const target = new URL(path, connection.url);
  return new Promise<T>((resolve, reject) => {
    const req = httpsRequest(
      target,
      {
        method,
        ...(connection.ca ? { ca: connection.ca } : {}),
        headers: {
          accept: 'application/json',
          ...(connection.token ? { authorization: `Bearer ${connection.token}` } : {}),
          ...(payload ? { 'content-type': body && 'type' in body ? body.type : 'application/json', 'content-length': payload.length } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = undefined;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = text;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve(parsed as T);
          else {
            const message = (parsed as { message?: unknown })?.message;
            reject(new ApiError(status, `controller answered ${status}: ${Array.isArray(message) ? message.join('; ') : String(message ?? text)}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new ShoalError('CLI_UNREACHABLE', `cannot reach the controller at ${connection.url.origin}: ${err.code ?? err.message}`)),
    );
    req.end(payload);
  });
}
