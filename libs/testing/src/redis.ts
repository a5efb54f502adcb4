import { execFileSync, spawnSync } from 'node:child_process';
import { connect } from 'node:net';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** True when something answers PING at the Redis URL's host and port. */
export async function redisAnswers(url = process.env.REDIS_URL ?? DEFAULT_REDIS_URL): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 6379) });
    socket.setTimeout(1000);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      resolve(data.toString().startsWith('+PONG'));
      socket.destroy();
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      resolve(false);
      socket.destroy();
    });
  });
}

/**
 * Makes sure a Redis answers at `url`, starting a throw-away one (no persistence) when nothing
 * does and `redis-server` is installed. Tests need a real Redis; they do not mock it.
 */
export async function ensureRedis(url = process.env.REDIS_URL ?? DEFAULT_REDIS_URL): Promise<void> {
  if (await redisAnswers(url)) return;
  const { hostname, port } = new URL(url);
  if (spawnSync('which', ['redis-server']).status !== 0) {
    throw new Error(`no Redis answers at ${url} and redis-server is not installed (apt-get install redis-server)`);
  }
  execFileSync('redis-server', ['--daemonize', 'yes', '--bind', hostname, '--port', port || '6379', '--save', '', '--appendonly', 'no']);
  for (let i = 0; i < 50; i++) {
    if (await redisAnswers(url)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`started redis-server but nothing answers at ${url}`);
}

/** A Redis URL selecting database `db`, so suites running side by side do not share keys. */
export function redisDatabaseUrl(db: number, base = process.env.REDIS_URL ?? DEFAULT_REDIS_URL): string {
  const url = new URL(base);
  url.pathname = `/${db}`;
  return url.toString();
}
