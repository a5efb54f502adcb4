import { AGENT_MALLOC_TUNABLES, agentMallocTuningAdvice, missingAgentMallocTunables, withAgentMallocTuning } from '../src';

test('adds the agent tunables to an environment without any', () => {
  const env = withAgentMallocTuning({ PATH: '/bin' });
  expect(env.PATH).toBe('/bin');
  expect(env.GLIBC_TUNABLES).toBe('glibc.malloc.trim_threshold=134217728:glibc.malloc.mmap_threshold=33554432');
  expect(missingAgentMallocTunables(env)).toEqual([]);
});

test("keeps the operator's tunables, these included, and is idempotent", () => {
  const env = withAgentMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1048576' });
  expect(env.GLIBC_TUNABLES).toBe('glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1048576:glibc.malloc.mmap_threshold=33554432');
  expect(withAgentMallocTuning(env)).toEqual(env);
});

test('names what an environment leaves unset', () => {
  expect(missingAgentMallocTunables({})).toEqual(Object.keys(AGENT_MALLOC_TUNABLES));
  expect(missingAgentMallocTunables({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1' })).toEqual(['glibc.malloc.trim_threshold']);
  // Garbage in the variable is not ours to judge (glibc ignores what it cannot parse): only what is missing counts.
  expect(missingAgentMallocTunables({ GLIBC_TUNABLES: '::=x:glibc.malloc.trim_threshold' })).toEqual(Object.keys(AGENT_MALLOC_TUNABLES));
});

test('advice only on glibc and only when something is missing', () => {
  expect(agentMallocTuningAdvice({}, false)).toBeUndefined();
  expect(agentMallocTuningAdvice(withAgentMallocTuning({}), true)).toBeUndefined();
  const advice = agentMallocTuningAdvice({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, true);
  expect(advice).toContain('glibc.malloc.trim_threshold, glibc.malloc.mmap_threshold');
  expect(advice).toContain(`GLIBC_TUNABLES=glibc.malloc.arena_max=2:${withAgentMallocTuning({}).GLIBC_TUNABLES}`);
});
