import { ConfigError, type Schema, fraction, integer, loadSettings, oneOf, parseHostPort, text } from '../src';

interface Sample {
  name: string;
  count: number;
  share: number;
  mode: 'a' | 'b';
}

const SCHEMA: Schema<Sample> = {
  name: { env: 'T_NAME', doc: 'a required name', parse: text },
  count: { env: 'T_COUNT', doc: 'a count', default: 3, parse: integer(1, 10) },
  share: { env: 'T_SHARE', doc: 'a share', default: 0.5, parse: fraction },
  mode: { env: 'T_MODE', doc: 'a mode', default: 'a', parse: oneOf(['a', 'b'] as const) },
};

const problems = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

test('defaults, environment and overrides, in that order of weakness', () => {
  expect(loadSettings(SCHEMA, { env: { T_NAME: 'x' } })).toEqual({ name: 'x', count: 3, share: 0.5, mode: 'a' });
  expect(loadSettings(SCHEMA, { env: { T_NAME: 'x', T_COUNT: '7' }, overrides: { count: 9 } }).count).toBe(9);
});

test('every bad field is one line; cross-field checks run only when fields parse', () => {
  expect(problems(() => loadSettings(SCHEMA, { env: { T_COUNT: '0', T_SHARE: 'x', T_MODE: 'c' } }))).toEqual([
    'name (T_NAME): required: a required name',
    'count (T_COUNT): must be an integer from 1 to 10, got "0"',
    'share (T_SHARE): must be a number from 0 to 1, got "x"',
    'mode (T_MODE): must be one of a, b, got "c"',
  ]);
  expect(problems(() => loadSettings(SCHEMA, { env: { T_NAME: 'x' }, check: (s) => (s.count < 5 ? ['count: too small here'] : []) }))).toEqual(['count: too small here']);
});

test('host:port', () => {
  expect(parseHostPort('[::1]:0')).toEqual({ host: '::1', port: 0 });
  expect(() => parseHostPort('nope')).toThrow(/host:port/);
});
