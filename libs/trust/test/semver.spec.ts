import fc from 'fast-check';
import { compareSemVer, parseSemVer } from '../src';

const parse = (text: string) => {
  const parsed = parseSemVer(text);
  if (!parsed) throw new Error(`${text} should parse`);
  return parsed;
};
const compare = (a: string, b: string) => compareSemVer(parse(a), parse(b));

describe('SemVer 2.0.0 precedence', () => {
  test('follows the example chain of the specification, section 11', () => {
    const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.1.0', '2.0.0', '10.0.0'];
    for (let i = 0; i < chain.length; i++) {
      for (let j = 0; j < chain.length; j++) {
        expect(Math.sign(compare(chain[i] as string, chain[j] as string))).toBe(Math.sign(i - j));
      }
    }
  });

  test('ignores build metadata and compares numbers beyond 2^53 exactly', () => {
    expect(compare('1.0.0+build.1', '1.0.0+build.2')).toBe(0);
    expect(compare('9007199254740993.0.0', '9007199254740992.0.0')).toBe(1);
    expect(compare('1.0.0-9007199254740993', '1.0.0-9007199254740992')).toBe(1);
  });

  test('parses only SemVer', () => {
    for (const text of ['1.0', '01.0.0', '1.0.0-01', '1.0.0-', '1.0.0+', 'v1.0.0', '1.0.0.0', '1..0']) expect(parseSemVer(text)).toBeUndefined();
    expect(parseSemVer('1.2.3-rc.1+linux.x64')).toEqual({ core: ['1', '2', '3'], prerelease: ['rc', '1'] });
  });

  const identifier = fc.oneof(fc.nat({ max: 30 }).map(String), fc.stringMatching(/^[a-z-][a-z0-9-]{0,3}$/));
  const version = fc
    .tuple(fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.nat({ max: 3 }), fc.array(identifier, { maxLength: 3 }))
    .map(([major, minor, patch, pre]) => `${major}.${minor}.${patch}${pre.length > 0 ? `-${pre.join('.')}` : ''}`);

  test('is a total order (antisymmetric and transitive)', () => {
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        expect(Math.sign(compare(a, b)) + Math.sign(compare(b, a))).toBe(0);
        if (compare(a, b) <= 0 && compare(b, c) <= 0) expect(compare(a, c)).toBeLessThanOrEqual(0);
        expect(compare(a, b) === 0).toBe(a === b);
      }),
    );
  });
});
