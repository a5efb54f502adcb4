import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { EXIT_OK, UsageError } from '../errors';
import { type Output, describeFsError, InputError } from '../io';
import { CONNECTION_HELP, CONNECTION_OPTIONS, call, connectionFrom } from '../rest';
import { ROLLOUT_CREATE_OPTIONS, ROLLOUT_OPTIONS_HELP, type RolloutView, rolloutBody, watch } from './rollout';

/** Commands that talk to a running controller's REST API. */

export const TOKEN_USAGE = `usage: shoal token create [--uses N] [--ttl SECONDS] [--agent-name ID] [--label KEY=VALUE]... [--description TEXT] [--json]

Creates a bootstrap token agents enroll with (admin role). The token is printed once.
${CONNECTION_HELP}`;

export const AGENTS_USAGE = `usage: shoal agents [--json]

Lists the fleet's agents (viewer role).
${CONNECTION_HELP}`;

export const RELEASES_USAGE = `usage: shoal releases [--json]

Lists published releases (viewer role).
${CONNECTION_HELP}`;

export const PUBLISH_USAGE = `usage: shoal publish <pkg.torrent> --name NAME --version VERSION [--channel CHANNEL] [--install-command CMD]
                     [--rollout WAVES [rollout options]] [--json]

Publishes a package as the signed release NAME@VERSION (publisher role). The package must be
bound to the fleet CA (shoal pack --ca). Versions of a name only go up. --install-command signs a
shell command into the release; agents run it after the fetch only where their configuration
allows release install commands for NAME (SHOAL_ALLOW_RELEASE_INSTALL).

--rollout WAVES (e.g. 10%,100%) then rolls the release out; with --wait the command is one CI
deployment step: it exits 0 once every wave passed and 1 if the rollout fails or is aborted.
rollout options:
${ROLLOUT_OPTIONS_HELP}
${CONNECTION_HELP}`;

interface AgentView {
  id: string;
  state: string;
  labels: Record<string, string>;
  hostname: string;
  lastSeen: string | null;
  certificateExpiresAt: string;
}

interface ReleaseView {
  name: string;
  version: string;
  channel: string;
  infoHash: string;
  length: number;
}

export async function token(argv: string[], out: Output): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'create') throw new UsageError(`unknown token command ${JSON.stringify(sub ?? '')}\n${TOKEN_USAGE}`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      uses: { type: 'string' },
      ttl: { type: 'string' },
      'agent-name': { type: 'string' },
      label: { type: 'string', multiple: true },
      description: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (positionals.length > 0) throw new UsageError(`token create takes no positional arguments\n${TOKEN_USAGE}`);
  const labels: Record<string, string> = {};
  for (const pair of values.label ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--label: "${pair}" is not KEY=VALUE`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const body = {
    ...(values.uses !== undefined ? { uses: integerFlag(values.uses, '--uses') } : {}),
    ...(values.ttl !== undefined ? { ttlSeconds: integerFlag(values.ttl, '--ttl') } : {}),
    ...(values['agent-name'] ? { agentName: values['agent-name'] } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
    ...(values.description ? { description: values.description } : {}),
  };
  const created = await call<{ token: string; record: { id: string; expiresAt: string; usesLeft: number } }>(connectionFrom(values), 'POST', '/v1/bootstrap-tokens', { json: body });
  out.stdout.write(
    values.json
      ? `${JSON.stringify(created)}\n`
      : `${created.token}\n(id ${created.record.id}, ${created.record.usesLeft} use${created.record.usesLeft === 1 ? '' : 's'}, expires ${created.record.expiresAt})\n`,
  );
  return EXIT_OK;
}

export async function agents(argv: string[], out: Output): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
  const list = await call<AgentView[]>(connectionFrom(values), 'GET', '/v1/agents');
  if (values.json) {
    out.stdout.write(`${JSON.stringify(list)}\n`);
    return EXIT_OK;
  }
  table(
    out,
    ['AGENT', 'STATE', 'LABELS', 'HOST', 'LAST SEEN', 'CERT EXPIRES'],
    list.map((a) => [a.id, a.state, Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-', a.hostname || '-', a.lastSeen ?? '-', a.certificateExpiresAt]),
  );
  return EXIT_OK;
}

export async function releases(argv: string[], out: Output): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
  const list = await call<ReleaseView[]>(connectionFrom(values), 'GET', '/v1/releases');
  if (values.json) {
    out.stdout.write(`${JSON.stringify(list)}\n`);
    return EXIT_OK;
  }
  table(out, ['RELEASE', 'CHANNEL', 'INFO-HASH', 'BYTES'], list.map((r) => [`${r.name}@${r.version}`, r.channel, r.infoHash, String(r.length)]));
  return EXIT_OK;
}

export async function publish(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      name: { type: 'string' },
      version: { type: 'string' },
      channel: { type: 'string' },
      'install-command': { type: 'string' },
      rollout: { type: 'string' },
      ...ROLLOUT_CREATE_OPTIONS,
    },
  });
  if (positionals.length !== 1 || !values.name || !values.version) throw new UsageError(`publish needs a package file, --name and --version\n${PUBLISH_USAGE}`);
  const rolloutFlags = ['selector', 'gate', 'window', 'background', 'no-install', 'wait'] as const;
  const stray = rolloutFlags.find((flag) => values[flag] !== undefined);
  if (values.rollout === undefined && stray) throw new UsageError(`--${stray} needs --rollout WAVES\n${PUBLISH_USAGE}`);
  const file = positionals[0] as string;
  const bytes = await readFile(file).catch((err: unknown) => {
    throw new InputError(file, describeFsError(err), { cause: err });
  });
  const query = new URLSearchParams({
    name: values.name,
    version: values.version,
    ...(values.channel ? { channel: values.channel } : {}),
    ...(values['install-command'] !== undefined ? { install: values['install-command'] } : {}),
  });
  const connection = connectionFrom(values);
  const release = await call<ReleaseView & { created: boolean }>(connection, 'POST', `/v1/releases?${query}`, { bytes, type: 'application/x-bittorrent' });
  out.stdout.write(
    values.json
      ? `${JSON.stringify(release)}\n`
      : `${release.created ? 'published' : 'already published'} ${release.name}@${release.version} (${release.channel}) ${release.infoHash}\n`,
  );
  if (values.rollout === undefined) return EXIT_OK;
  const created = await call<RolloutView>(connection, 'POST', '/v1/rollouts', { json: rolloutBody(`${release.name}@${release.version}`, values.rollout, values) });
  if (values.wait) return watch(connection, created.id, out, values.json === true);
  out.stdout.write(values.json ? `${JSON.stringify(created)}\n` : `rollout ${created.id}\n`);
  return EXIT_OK;
}

function integerFlag(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new UsageError(`${flag}: "${text}" is not a whole number`);
  return value;
}

function table(out: Output, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const row of [header, ...rows]) out.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd()}\n`);
}
