import * as http from 'node:http';
import * as https from 'node:https';
import { BaseFetcher } from 'tuf-js';
// tuf-js 4 stops walking the root chain only on this class with status 403/404, yet its index
// does not export it: a custom fetcher has to take it from the module the Updater uses.
import { DownloadHTTPError } from 'tuf-js/dist/error';

export interface NodeFetcherOptions {
  /** An https.Agent with `ca`, `cert` and `key` makes every request mutual TLS. */
  agent?: http.Agent;
  /** Longest silence on the socket before the request fails (default 30 s). */
  timeoutMs?: number;
}

/** A tuf-js fetcher over node:http and node:https, so callers choose TLS settings per agent. */
export class NodeFetcher extends BaseFetcher {
  constructor(private readonly options: NodeFetcherOptions = {}) {
    super();
  }

  override fetch(url: string): Promise<NodeJS.ReadableStream> {
    const target = new URL(url);
    const transport = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined;
    if (!transport) return Promise.reject(new DownloadHTTPError(`GET ${url}: only http and https URLs are fetched`, 0));
    const timeout = this.options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const request = transport.get(target, { agent: this.options.agent, timeout }, (response) => {
        const status = response.statusCode ?? 0;
        if (status !== 200) {
          response.resume();
          reject(new DownloadHTTPError(`GET ${url}: HTTP ${status}`, status));
          return;
        }
        resolve(response);
      });
      request.on('timeout', () => request.destroy(new Error(`GET ${url}: no data for ${timeout} ms`)));
      request.on('error', reject);
    });
  }
}
