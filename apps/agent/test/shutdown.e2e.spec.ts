import { join } from 'node:path';
import { type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';

let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };

beforeAll(async () => {
  fleet = await startTestFleet(5, 'stop');
  scratch = await scratchDir('shutdown');
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await scratch?.remove();
});

test('SIGTERM stops the agent cleanly: exit code 0', async () => {
  const token = (await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: {} })).body.token;
  const dataDir = join(scratch.path, 'a');
  expect(runShoal(['agent', 'enroll', '--token', token, '--controller', fleet.controller.enrollAddress, '--ca', join(fleet.dataDir, 'ca', 'ca.pem'), '--data-dir', dataDir]).status).toBe(0);
  const agent = await startAgentProcess({ dataDir });
  expect(await agent.stop()).toBe(0);
});
