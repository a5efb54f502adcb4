import { statSync } from 'node:fs';
import { join } from 'node:path';
import { runShoal, scratchDir } from '@shoal/testing';
import { layout } from '../src/data-dir';

test('controller init writes private keys 0600, refuses to overwrite a fleet, and needs its flags', async () => {
  const scratch = await scratchDir('init');
  try {
    const dataDir = join(scratch.path, 'data');
    const first = runShoal(['controller', 'init', '--data-dir', dataDir, '--fleet', 'prod', '--json']);
    expect(first.status).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ fleet: 'prod', adminTokenFile: join(dataDir, 'admin.token') });
    const paths = layout(dataDir);
    for (const secret of [paths.caKey, paths.tlsKey, paths.tufRootKey, paths.tufOnlineKey('timestamp'), paths.apiTokens, join(dataDir, 'admin.token')]) {
      expect((statSync(secret).mode & 0o777).toString(8)).toBe('600');
    }
    const again = runShoal(['controller', 'init', '--data-dir', dataDir, '--fleet', 'prod']);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already holds a controller \(fleet.json\); refusing to overwrite its keys/);
    const bare = runShoal(['controller', 'init']);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toMatch(/controller init needs --data-dir and --fleet/);
    const badFleet = runShoal(['controller', 'init', '--data-dir', join(scratch.path, 'other'), '--fleet', 'Not A Label']);
    expect(badFleet.status).toBe(2);
    expect(badFleet.stderr).not.toMatch(/^\s+at /m);
  } finally {
    await scratch.remove();
  }
});
