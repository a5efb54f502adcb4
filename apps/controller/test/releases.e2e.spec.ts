import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { Agent as HttpsAgent } from 'node:https';
import { join } from 'node:path';
import { createCsr, generateRsaKeyPair } from '@shoal/pki';
import { type AnnounceResponse, type EnrollResponse, type PeerMessage, type ScrapeResponse, unary } from '@shoal/proto';
import { type ShoalRun, runShoal, scratchDir } from '@shoal/testing';
import { NodeFetcher, ReleaseVerifier, TrustError } from '@shoal/trust';
import { type EnrolledAgent, type TestFleet, startTestFleet } from '@shoal/testing';

/**
 * Publishing and verification end to end with real processes: the `shoal` CLI packs and
 * publishes, the controller signs, and an agent-side verifier checks the release through TUF
 * with the root it got at enrollment. Then the tracker, over mutual TLS, and the fleet commands.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
let caFile: string;

interface InspectReport {
  name: string;
  infoHash: string;
  wireInfoHash: string;
  ca: { subject: string } | null;
}

interface ReleaseView {
  name: string;
  version: string;
  channel: string;
  infoHash: string;
  length: number;
  sha256: string;
  created?: boolean;
}

beforeAll(async () => {
  fleet = await startTestFleet(13);
  scratch = await scratchDir('releases');
  caFile = join(fleet.dataDir, 'ca', 'ca.pem');
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await scratch?.remove();
});

/** `shoal ...` against this fleet's controller, with its data folder for the token and CA. */
function shoalAt(args: string[]): ShoalRun {
  return runShoal([...args, '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]);
}

/** A small generated folder: a few files of seeded bytes. */
async function makeFolder(name: string, seed: number): Promise<string> {
  const dir = join(scratch.path, name);
  await mkdir(join(dir, 'bin'), { recursive: true });
  const bytes = (length: number, salt: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed * 7 + salt) & 0xff));
  await writeFile(join(dir, 'bin', 'app'), bytes(70_000, 1), { mode: 0o755 });
  await writeFile(join(dir, 'data.bin'), bytes(20_000, 2));
  await writeFile(join(dir, 'VERSION'), `${name} ${seed}\n`);
  return dir;
}

function pack(dir: string, out: string, bound = true): string {
  const file = join(scratch.path, out);
  const run = runShoal(['pack', dir, '-o', file, ...(bound ? ['--ca', caFile] : [])]);
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  return file;
}

function inspect(file: string): InspectReport {
  const run = runShoal(['inspect', file, '--json']);
  expect(run.status).toBe(0);
  return JSON.parse(run.stdout) as InspectReport;
}

function publish(file: string, name: string, version: string): ShoalRun {
  return shoalAt(['publish', file, '--name', name, '--version', version]);
}

/** A failed command: exit 2 and one line on stderr, naming the command. */
function expectRefusal(run: ShoalRun, reason: RegExp): void {
  expect({ status: run.status, stdout: run.stdout }).toEqual({ status: 2, stdout: '' });
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^shoal publish: /);
  expect(lines[0]).toMatch(reason);
  expect(lines[0]).not.toMatch(/internal error|at .*\.js:\d+/);
}

describe('publishing with the CLI', () => {
  let v1File: string;
  let v1: InspectReport;

  beforeAll(async () => {
    v1File = pack(await makeFolder('app-1', 1), 'app-1.0.0.torrent');
    v1 = inspect(v1File);
    expect(v1.ca?.subject).toBeDefined();
  });

  test('a package bound to the fleet CA is published, and listed by the CLI and the REST API', async () => {
    const run = publish(v1File, 'app', '1.0.0');
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    expect(run.stdout).toBe(`published app@1.0.0 (stable) ${v1.infoHash}\n`);

    const listed = shoalAt(['releases', '--json']);
    expect(listed.status).toBe(0);
    const releases = JSON.parse(listed.stdout) as ReleaseView[];
    expect(releases).toEqual([expect.objectContaining({ name: 'app', version: '1.0.0', channel: 'stable', infoHash: v1.infoHash, length: (await readFile(v1File)).length })]);

    const rest = await fleet.rest<ReleaseView[]>('GET', '/v1/releases');
    expect(rest.status).toBe(200);
    expect(rest.body).toEqual(releases);
    expect((await fleet.rest<ReleaseView>('GET', '/v1/releases/app/1.0.0')).body).toMatchObject({ infoHash: v1.infoHash });
  });

  test('the same bytes again are "already published" (exit 0); other bytes as that version are a 409 conflict (exit 2)', async () => {
    const again = publish(v1File, 'app', '1.0.0');
    expect({ status: again.status, stderr: again.stderr, stdout: again.stdout }).toEqual({ status: 0, stderr: '', stdout: `already published app@1.0.0 (stable) ${v1.infoHash}\n` });

    const other = pack(await makeFolder('app-1-rebuilt', 2), 'app-1.0.0-rebuilt.torrent');
    expect(inspect(other).infoHash).not.toBe(v1.infoHash);
    expectRefusal(publish(other, 'app', '1.0.0'), /409.*app@1\.0\.0 is already published with other metainfo/);
    // Nothing changed: still the first bytes.
    expect((await fleet.rest<ReleaseView[]>('GET', '/v1/releases')).body.map((r) => [r.version, r.infoHash])).toEqual([['1.0.0', v1.infoHash]]);
  });

  test('a lower (or equal pre-release) version is refused: versions only go up', async () => {
    const lower = pack(await makeFolder('app-0', 0), 'app-0.9.0.torrent');
    expectRefusal(publish(lower, 'app', '0.9.0'), /409.*app@0\.9\.0 is not newer than the published app@1\.0\.0: versions only go up/);
    expectRefusal(publish(lower, 'app', '1.0.0-rc.1'), /409.*not newer than the published app@1\.0\.0/);
    expect((await fleet.rest<ReleaseView[]>('GET', '/v1/releases')).body).toHaveLength(1);
  });

  test('a package packed without --ca is refused with the RELEASE_WRONG_CA message', async () => {
    const unbound = pack(await makeFolder('app-2-unbound', 3), 'app-unbound.torrent', false);
    expect(inspect(unbound).ca).toBeNull();
    expectRefusal(publish(unbound, 'app', '2.0.0'), /400.*the package is not bound to this fleet: pack it with --ca/);
    const rest = await fleet.rest('POST', '/v1/releases?name=app&version=2.0.0', { body: await readFile(unbound), contentType: 'application/x-bittorrent' });
    expect(rest).toMatchObject({ status: 400, body: { statusCode: 400, error: 'RELEASE_WRONG_CA', message: expect.stringMatching(/not bound to this fleet/) } });
  });

  test('bad names and versions from the command line are refused with the reason, not a stack', async () => {
    expectRefusal(publish(v1File, 'App', '3.0.0'), /400.*name/);
    expectRefusal(publish(v1File, 'app', '3.0.0/x'), /400.*version/);
    expectRefusal(shoalAt(['publish', join(scratch.path, 'missing.torrent'), '--name', 'app', '--version', '3.0.0']), /missing\.torrent/);
  });

  test('a higher version with other bytes is published next to the first', async () => {
    const v11File = pack(await makeFolder('app-1.1', 11), 'app-1.1.0.torrent');
    const run = publish(v11File, 'app', '1.1.0');
    expect(run.status).toBe(0);
    const versions = (await fleet.rest<ReleaseView[]>('GET', '/v1/releases')).body.map((r) => r.version);
    expect(versions).toEqual(['1.0.0', '1.1.0']);
  });

  describe('verified as an agent verifies it (TUF, with the root from enrollment)', () => {
    let enrolled: EnrolledAgent;
    let verifierCount = 0;

    const verifier = (response: EnrollResponse) =>
      new ReleaseVerifier({
        metadataDir: join(scratch.path, `tuf-cache-${(verifierCount += 1)}`),
        trustedRootBytes: response.tufRoot,
        metadataBaseUrl: response.endpoints.tufMetadata,
        targetBaseUrl: response.endpoints.tufTargets,
        fetcher: new NodeFetcher({ agent: new HttpsAgent({ ca: fleet.caPem }) }),
      });

    beforeAll(async () => {
      enrolled = await fleet.enroll();
    });

    test('verifyRelease gives the info-hash `shoal inspect` shows and the exact package bytes', async () => {
      const release = await verifier(enrolled.response).verifyRelease('app', '1.0.0');
      expect(release).toMatchObject({ name: 'app', version: '1.0.0', channel: 'stable', infoHash: v1.infoHash });
      expect(release.metainfoBytes.equals(await readFile(v1File))).toBe(true);
    });

    test('one verifier verifies several releases against one metadata cache', async () => {
      const cached = verifier(enrolled.response);
      const [a, b] = [await cached.verifyRelease('app', '1.1.0'), await cached.verifyRelease('app', '1.0.0')];
      expect(a.infoHash).toBe(inspect(join(scratch.path, 'app-1.1.0.torrent')).infoHash);
      expect(b.infoHash).toBe(v1.infoHash);
    });

    test('an unknown version or name is TRUST_UNKNOWN_RELEASE', async () => {
      for (const [name, version] of [
        ['app', '9.9.9'],
        ['app', '0.9.0'],
        ['other', '1.0.0'],
      ] as const) {
        const failure = await verifier(enrolled.response)
          .verifyRelease(name, version)
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        expect(failure).toBeInstanceOf(TrustError);
        expect((failure as TrustError).code).toBe('TRUST_UNKNOWN_RELEASE');
        expect((failure as TrustError).message).toContain(`${name}@${version}`);
      }
    });
  });
});

describe('the tracker over mutual TLS', () => {
  const hash = Buffer.from('5b'.repeat(20), 'hex');
  let siteA1: EnrolledAgent;
  let siteA2: EnrolledAgent;
  let siteB: EnrolledAgent;

  const labels = (site: string) => ({ region: 'eu', zone: 'eu-west-1', site });
  const announce = (agent: EnrolledAgent, request: object = {}) =>
    unary<object, AnnounceResponse>(fleet.mtlsClient('Tracker', agent), 'Announce', { infoHash: hash, port: 6881, left: 1000, ...request });
  const scrape = (agent: EnrolledAgent, infoHashes: Buffer[]) => unary<object, ScrapeResponse>(fleet.mtlsClient('Tracker', agent), 'Scrape', { infoHashes });
  const ids = (peers: PeerMessage[]) => peers.map((p) => p.agentId);
  // A new peer reaches other agents' lists within the tracker's snapshot time (1 s).
  const settle = () => new Promise((resolve) => setTimeout(resolve, 1100));

  beforeAll(async () => {
    [siteA1, siteA2, siteB] = await Promise.all([
      fleet.enroll({ tokenBody: { labels: labels('a') } }),
      fleet.enroll({ tokenBody: { labels: labels('a') } }),
      fleet.enroll({ tokenBody: { labels: labels('b') } }),
    ]);
  });

  test('each agent sees the others, never itself, same site first, at the addresses announced or observed', async () => {
    await announce(siteA1, { addresses: ['10.0.0.1', '::ffff:10.0.0.1', 'fd00::1'], port: 7001, left: 0 });
    await announce(siteA2, { port: 7002, left: 500 });
    await announce(siteB, { addresses: ['10.0.1.9'], port: 7003, left: 500, event: 'ANNOUNCE_EVENT_STARTED' });
    await settle();

    const a1 = await announce(siteA1, { addresses: ['10.0.0.1', 'fd00::1'], port: 7001, left: 0 });
    expect(ids(a1.peers)).toEqual([siteA2.agentId, siteB.agentId]);
    expect(a1).toMatchObject({ intervalSeconds: 30, seeders: 1, leechers: 2 });

    const a2 = await announce(siteA2, { port: 7002, left: 500 });
    expect(ids(a2.peers)).toEqual([siteA1.agentId, siteB.agentId]);
    const b = await announce(siteB, { addresses: ['10.0.1.9'], port: 7003, left: 500 });
    expect(ids(b.peers).sort()).toEqual([siteA1.agentId, siteA2.agentId].sort());
    expect(ids(b.peers)).not.toContain(siteB.agentId);

    const byId = new Map([...a1.peers, ...a2.peers, ...b.peers].map((p) => [p.agentId, p]));
    expect(byId.get(siteA1.agentId)).toEqual({ agentId: siteA1.agentId, addresses: ['10.0.0.1', 'fd00::1'], port: 7001, region: 'eu', zone: 'eu-west-1', site: 'a', seed: true });
    // No addresses in the request: the address the controller saw (loopback here).
    expect(byId.get(siteA2.agentId)).toEqual({ agentId: siteA2.agentId, addresses: ['127.0.0.1'], port: 7002, region: 'eu', zone: 'eu-west-1', site: 'a', seed: false });
    expect(byId.get(siteB.agentId)).toMatchObject({ addresses: ['10.0.1.9'], port: 7003, site: 'b', seed: false });
  });

  test('Scrape counts seeders (left = 0) and leechers; unknown swarms count zero', async () => {
    const other = Buffer.alloc(20, 0x11);
    const scraped = await scrape(siteB, [hash, other]);
    expect(scraped.swarms).toEqual([
      { infoHash: hash, seeders: 1, leechers: 2 },
      { infoHash: other, seeders: 0, leechers: 0 },
    ]);
    // A leecher that completes becomes a seeder.
    await announce(siteB, { addresses: ['10.0.1.9'], port: 7003, left: 0, event: 'ANNOUNCE_EVENT_COMPLETED' });
    expect((await scrape(siteA1, [hash])).swarms).toEqual([{ infoHash: hash, seeders: 2, leechers: 1 }]);
  });

  test('a STOPPED announce removes the agent at once', async () => {
    const stopped = await announce(siteA2, { port: 7002, left: 500, event: 'ANNOUNCE_EVENT_STOPPED' });
    expect(stopped.peers).toEqual([]);
    const a1 = await announce(siteA1, { addresses: ['10.0.0.1'], port: 7001, left: 0 });
    expect(ids(a1.peers)).toEqual([siteB.agentId]);
    expect((await scrape(siteA1, [hash])).swarms).toEqual([{ infoHash: hash, seeders: 2, leechers: 0 }]);
    await settle();
    expect(ids((await announce(siteB, { addresses: ['10.0.1.9'], port: 7003, left: 0 })).peers)).toEqual([siteA1.agentId]);
  });

  test('the swarm of a published release: agents find each other by its 20-byte wire hash', async () => {
    const report = inspect(join(scratch.path, 'app-1.0.0.torrent'));
    const wire = Buffer.from(report.wireInfoHash, 'hex');
    expect(wire).toHaveLength(20);
    expect(report.infoHash.startsWith(report.wireInfoHash)).toBe(true);
    await announce(siteA1, { infoHash: wire, left: 0 });
    await settle();
    expect(ids((await announce(siteB, { infoHash: wire, left: 100 })).peers)).toEqual([siteA1.agentId]);
  });
});

describe('a signed install command', () => {
  test('`shoal publish --install-command` signs it into the release; another command for the same version is a 409; bad ones are 400', async () => {
    const file = pack(await makeFolder('hooked-1', 21), 'hooked-1.0.0.torrent');
    const published = shoalAt(['publish', file, '--name', 'hooked', '--version', '1.0.0', '--install-command', './install.sh "$SHOAL_PACKAGE_PATH"', '--json']);
    expect({ status: published.status, stderr: published.stderr }).toEqual({ status: 0, stderr: '' });
    expect(JSON.parse(published.stdout)).toMatchObject({ name: 'hooked', install: './install.sh "$SHOAL_PACKAGE_PATH"', created: true });
    expect((await fleet.rest<{ install?: string }>('GET', '/v1/releases/hooked/1.0.0')).body.install).toBe('./install.sh "$SHOAL_PACKAGE_PATH"');
    const other = shoalAt(['publish', file, '--name', 'hooked', '--version', '1.0.0', '--install-command', 'reboot']);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/409.*hooked@1\.0\.0 is already published with other metainfo, channel \(stable\) or install command/);
    const bytes = await readFile(file);
    for (const install of ['', '%20', '%00', 'x'.repeat(4097)]) {
      const refused = await fleet.rest<{ message: string | string[] }>('POST', `/v1/releases?name=hooked&version=2.0.0&install=${install}`, { body: bytes, contentType: 'application/x-bittorrent' });
      expect(refused.status).toBe(400);
    }
    expect((await fleet.rest<{ version: string }[]>('GET', '/v1/releases')).body.filter((r) => r.version === '2.0.0')).toEqual([]);
  });
});

describe('fleet commands of the CLI', () => {
  test('`shoal token create --json` makes a token that enrolls an agent with its labels; `shoal agents --json` lists it', async () => {
    const created = shoalAt(['token', 'create', '--json', '--uses', '2', '--label', 'site=lab', '--label', 'zone=z1', '--description', 'e2e']);
    expect({ status: created.status, stderr: created.stderr }).toEqual({ status: 0, stderr: '' });
    const { token, record } = JSON.parse(created.stdout) as { token: string; record: { id: string; usesLeft: number; labels: Record<string, string>; description: string } };
    expect(token).toMatch(/^sbt_[0-9a-f]{16}_/);
    expect(record).toMatchObject({ usesLeft: 2, labels: { site: 'lab', zone: 'z1' }, description: 'e2e' });
    expect(token.split('_')[1]).toBe(record.id);

    const key = generateRsaKeyPair(2048);
    const enrolled = await unary<object, EnrollResponse>(fleet.enrollClient(), 'Enroll', {
      bootstrapToken: token,
      csrPem: createCsr({ keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, commonName: 'lab-host' }),
      hostname: 'lab-host',
      softwareVersion: '0.1.0',
    });
    expect(enrolled.labels).toEqual({ site: 'lab', zone: 'z1' });

    const listed = shoalAt(['agents', '--json']);
    expect({ status: listed.status, stderr: listed.stderr }).toEqual({ status: 0, stderr: '' });
    const agents = JSON.parse(listed.stdout) as { id: string; state: string; labels: Record<string, string>; hostname: string }[];
    expect(agents.find((a) => a.id === enrolled.agentId)).toMatchObject({ state: 'active', labels: { site: 'lab', zone: 'z1' }, hostname: 'lab-host' });
    // Every agent this suite enrolled is there, with the labels its token gave it.
    expect(agents.filter((a) => a.labels.site === 'a')).toHaveLength(2);
    expect(agents.filter((a) => a.labels.site === 'b')).toHaveLength(1);
    expect(agents.every((a) => a.state === 'active')).toBe(true);

    const table = shoalAt(['agents']);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${enrolled.agentId}\\s+active\\s+site=lab,zone=z1\\s+lab-host`, 'm'));
  });

  test('a bad flag value is refused by the controller with its reason (exit 2)', () => {
    const run = shoalAt(['token', 'create', '--label', 'Bad Key=x']);
    expect(run.status).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^shoal token: controller answered 400: labels: key "Bad Key" must match/)]);
  });

  test('no error was logged by the controller', () => {
    expect(fleet.controller.process.exitCode).toBeNull();
    expect(fleet.controller.logs.filter((line) => /"level":(5\d|60)/.test(line))).toEqual([]);
  });
});
