import { join } from 'node:path';
import { ensureRedis, redisAnswers, redisDatabaseUrl, runShoal, scratchDir, startControllerProcess } from '../src';

test('redisDatabaseUrl selects a database on the same server', () => {
  expect(redisDatabaseUrl(7, 'redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379/7');
  expect(redisDatabaseUrl(3, 'redis://u:p@host:1234/0')).toBe('redis://u:p@host:1234/3');
});

test('ensureRedis leaves a real Redis answering, and nothing answers on a closed port', async () => {
  await ensureRedis();
  expect(await redisAnswers()).toBe(true);
  expect(await redisAnswers('redis://127.0.0.1:1')).toBe(false);
});

test('runShoal runs the built command', () => {
  const run = runShoal(['--version']);
  expect(run.status).toBe(0);
  expect(run.stdout).toMatch(/^shoal \d+\.\d+\.\d+/);
});

test('a controller that cannot start is reported with its output, not awaited forever', async () => {
  const scratch = await scratchDir('harness');
  try {
    await expect(startControllerProcess({ dataDir: join(scratch.path, 'absent'), redisUrl: redisDatabaseUrl(15) })).rejects.toThrow(
      /exited with 2 before starting:[\s\S]*not a controller data folder/,
    );
  } finally {
    await scratch.remove();
  }
});
