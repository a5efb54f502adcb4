import fc from 'fast-check';
import {
  DEFAULT_GATE,
  RolloutError,
  cumulativeTarget,
  formatSelector,
  formatWindow,
  judgeWave,
  msUntilWindowOpens,
  parseGate,
  parseSelector,
  parseWaves,
  parseWindow,
  rolloutOrder,
  selects,
  waveMembers,
} from '../src/rollouts/plan';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof RolloutError) return err.code;
    throw err;
  }
  throw new Error('no RolloutError');
};

describe('rollout plan: waves', () => {
  test('shares and counts, as text or list, growing', () => {
    expect(parseWaves('5%,25%,100%')).toEqual([{ percent: 5 }, { percent: 25 }, { percent: 100 }]);
    expect(parseWaves(['10', '50%', '100%'])).toEqual([{ count: 10 }, { percent: 50 }, { percent: 100 }]);
    expect(parseWaves('0.5%,100%')).toEqual([{ percent: 0.5 }, { percent: 100 }]);
  });

  test.each([
    ['', 'empty'],
    ['0%,100%', 'zero share'],
    ['50%,20%', 'shrinking'],
    ['50%,50%', 'not growing'],
    ['101%', 'over 100'],
    ['-1', 'negative'],
    ['5%,abc', 'garbage'],
    ['100%,5', 'count after 100%'],
    [Array(21).fill('100%'), 'too many'],
    [{ a: 1 }, 'object'],
    [null, 'null'],
  ] as [unknown, string][])('%j is refused (%s)', (raw) => {
    expect(codeOf(() => parseWaves(raw))).toBe('ROLLOUT_BAD_WAVES');
  });

  test('arbitrary input gives waves or ROLLOUT_BAD_WAVES, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.array(fc.oneof(fc.string(), fc.integer(), fc.double()))), (raw) => {
        try {
          parseWaves(raw);
        } catch (err) {
          expect(err).toBeInstanceOf(RolloutError);
        }
      }),
    );
  });

  test('wave members: cumulative targets, each agent once, rounding up', () => {
    const agents = Array.from({ length: 10 }, (_, i) => `a${i}`);
    const earlier = new Set<string>();
    const sizes = [];
    for (const wave of parseWaves('20%,50%,100%')) {
      const members = waveMembers(wave, agents, earlier);
      sizes.push(members.length);
      for (const m of members) {
        expect(earlier.has(m)).toBe(false);
        earlier.add(m);
      }
    }
    expect(sizes).toEqual([2, 3, 5]);
    expect(cumulativeTarget({ percent: 5 }, 10)).toBe(1);
    expect(cumulativeTarget({ count: 50 }, 10)).toBe(10);
  });

  test('rollout order is stable per rollout and differs between rollouts', () => {
    const agents = Array.from({ length: 50 }, (_, i) => `agent-${i}`);
    expect(rolloutOrder('ro-1', agents)).toEqual(rolloutOrder('ro-1', [...agents].reverse()));
    expect(rolloutOrder('ro-1', agents)).not.toEqual(rolloutOrder('ro-2', agents));
    expect(new Set(rolloutOrder('ro-1', agents)).size).toBe(50);
  });
});

describe('rollout plan: selector', () => {
  test('every term must hold; != excludes', () => {
    const terms = parseSelector('region=eu-west, role=edge,site!=lab');
    expect(formatSelector(terms)).toBe('region=eu-west,role=edge,site!=lab');
    expect(selects(terms, { region: 'eu-west', role: 'edge', site: 'par1' })).toBe(true);
    expect(selects(terms, { region: 'eu-west', role: 'edge' })).toBe(true);
    expect(selects(terms, { region: 'eu-west', role: 'edge', site: 'lab' })).toBe(false);
    expect(selects(terms, { region: 'us-east', role: 'edge' })).toBe(false);
    expect(parseSelector('')).toEqual([]);
  });

  test.each(['region', '=x', 'region==x', 'Region=x', 'a=b c', 'a=', 'a=b,', 5, 'x'.repeat(2000)])('%j is refused', (raw) => {
    expect(codeOf(() => parseSelector(raw))).toBe('ROLLOUT_BAD_SELECTOR');
  });
});

describe('rollout plan: gate', () => {
  test('object, text and defaults', () => {
    expect(parseGate(undefined)).toEqual(DEFAULT_GATE);
    expect(parseGate('success=90%,failures=2,soak=5m,timeout=1h')).toEqual({ minSuccessRatio: 0.9, maxFailures: 2, soakSeconds: 300, waveTimeoutSeconds: 3600 });
    expect(parseGate({ minSuccessRatio: 1, maxFailures: null })).toEqual({ ...DEFAULT_GATE, minSuccessRatio: 1 });
  });

  test.each([
    [{ minSuccessRatio: 1.5 }],
    [{ minSuccessRatio: -0.1 }],
    [{ minSuccessRatio: 'high' }],
    [{ maxFailures: 1.5 }],
    [{ waveTimeoutSeconds: 0 }],
    [{ soakSeconds: Number.NaN }],
    [{ other: 1 }],
    ['success=150%'],
    ['success=abc'],
    ['soak=forever'],
    ['speed=1'],
    [[1, 2]],
    [42],
  ])('%j is refused', (raw) => {
    expect(codeOf(() => parseGate(raw))).toBe('ROLLOUT_BAD_GATE');
  });

  const gate = { ...DEFAULT_GATE, minSuccessRatio: 0.9 };
  test('fails as soon as the ratio is out of reach, not when the last agent reports', () => {
    expect(judgeWave({ members: 10, succeeded: 0, failed: 1 }, gate, false)).toEqual({ verdict: 'pending' });
    expect(judgeWave({ members: 10, succeeded: 0, failed: 2 }, gate, false).verdict).toBe('failed');
    expect(judgeWave({ members: 2, succeeded: 0, failed: 1 }, gate, false).verdict).toBe('failed');
    expect(judgeWave({ members: 10, succeeded: 9, failed: 1 }, gate, false)).toEqual({ verdict: 'passed' });
    expect(judgeWave({ members: 0, succeeded: 0, failed: 0 }, gate, false)).toEqual({ verdict: 'passed' });
  });

  test('a failure cap fails the wave beyond it; a timeout counts the silent as failed', () => {
    const capped = { ...DEFAULT_GATE, minSuccessRatio: 0, maxFailures: 1 };
    expect(judgeWave({ members: 10, succeeded: 0, failed: 1 }, capped, false).verdict).toBe('pending');
    expect(judgeWave({ members: 10, succeeded: 0, failed: 2 }, capped, false).verdict).toBe('failed');
    const timedOut = judgeWave({ members: 10, succeeded: 8, failed: 0 }, gate, true);
    expect(timedOut).toEqual({ verdict: 'failed', reason: expect.stringContaining('2 timed out') });
    expect(judgeWave({ members: 10, succeeded: 9, failed: 0 }, gate, true)).toEqual({ verdict: 'passed' });
  });
});

describe('rollout plan: maintenance window', () => {
  const at = (hhmm: string) => Date.parse(`2026-12-01T${hhmm}:00Z`);
  test('a window over midnight is open late and early, shut by day', () => {
    const window = parseWindow('22:00-04:00');
    expect(formatWindow(window)).toBe('22:00-04:00');
    expect(msUntilWindowOpens(window, at('23:30'))).toBe(0);
    expect(msUntilWindowOpens(window, at('03:59'))).toBe(0);
    expect(msUntilWindowOpens(window, at('04:00'))).toBe(18 * 3_600_000);
    expect(msUntilWindowOpens(window, at('21:00'))).toBe(3_600_000);
  });

  test('a daytime window', () => {
    const window = parseWindow('09:30-17:00');
    expect(msUntilWindowOpens(window, at('10:00'))).toBe(0);
    expect(msUntilWindowOpens(window, at('08:30'))).toBe(3_600_000);
    expect(msUntilWindowOpens(window, at('18:00'))).toBe(15.5 * 3_600_000);
  });

  test.each(['24:00-01:00', '9:00-10:00', '10:00-10:00', '10:00', '', 7])('%j is refused', (raw) => {
    expect(codeOf(() => parseWindow(raw))).toBe('ROLLOUT_BAD_WINDOW');
  });
});
