import { TOKEN_BYTES, TokenIssuer } from '../src';
import { idNumbered, randomSource } from './support';

const MIN = 60_000;
const A = idNumbered('1', 1);
const B = idNumbered('1', 2);

describe('tokens (BEP 5: 5-minute secrets, tokens up to 10 minutes old)', () => {
  test('a token is valid for the node id and address it was issued to, and only for them', () => {
    const tokens = new TokenIssuer(randomSource(), 5 * MIN, 0);
    const token = tokens.issue(0, A, '10.0.0.1');
    expect(token).toHaveLength(TOKEN_BYTES);
    expect(tokens.valid(1, token, A, '10.0.0.1')).toBe(true);
    expect(tokens.valid(1, token, B, '10.0.0.1')).toBe(false);
    expect(tokens.valid(1, token, A, '10.0.0.2')).toBe(false);
    expect(tokens.valid(1, token.subarray(1), A, '10.0.0.1')).toBe(false);
    expect(tokens.valid(1, Buffer.alloc(TOKEN_BYTES), A, '10.0.0.1')).toBe(false);
  });

  test('issued right after a rotation: valid for 10 minutes, not after', () => {
    const tokens = new TokenIssuer(randomSource(), 5 * MIN, 0);
    const token = tokens.issue(0, A, '10.0.0.1');
    expect(tokens.valid(5 * MIN, token, A, '10.0.0.1')).toBe(true);
    expect(tokens.valid(10 * MIN - 1, token, A, '10.0.0.1')).toBe(true);
    expect(tokens.valid(10 * MIN, token, A, '10.0.0.1')).toBe(false);
  });

  test('issued just before a rotation: still valid 5 minutes later', () => {
    const tokens = new TokenIssuer(randomSource(), 5 * MIN, 0);
    const token = tokens.issue(5 * MIN - 1, A, '10.0.0.1');
    expect(tokens.valid(10 * MIN - 2, token, A, '10.0.0.1')).toBe(true);
    expect(tokens.valid(10 * MIN, token, A, '10.0.0.1')).toBe(false);
  });

  test('after a long silence no old token is accepted', () => {
    const tokens = new TokenIssuer(randomSource(), 5 * MIN, 0);
    const token = tokens.issue(0, A, '10.0.0.1');
    expect(tokens.valid(60 * MIN, token, A, '10.0.0.1')).toBe(false);
    const fresh = tokens.issue(60 * MIN, A, '10.0.0.1');
    expect(tokens.valid(60 * MIN + 1, fresh, A, '10.0.0.1')).toBe(true);
  });

  test('secrets come from the injected random source: two nodes issue different tokens', () => {
    const one = new TokenIssuer(randomSource(1), 5 * MIN, 0).issue(0, A, '10.0.0.1');
    const two = new TokenIssuer(randomSource(2), 5 * MIN, 0).issue(0, A, '10.0.0.1');
    expect(one.equals(two)).toBe(false);
  });
});
