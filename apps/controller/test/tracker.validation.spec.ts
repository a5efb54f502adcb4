import { BlockList, isIP } from 'node:net';
import fc from 'fast-check';
import { checkAddress } from '../src/tracker/tracker.validation';

/** node:net's own answer, the oracle for the tracker's cheaper unspecified-address test. */
const unspecified = new BlockList();
unspecified.addAddress('0.0.0.0', 'ipv4');
unspecified.addAddress('::', 'ipv6');
const isUnspecifiedByBlockList = (address: string): boolean => {
  const version = isIP(address);
  return version !== 0 && unspecified.check(address, version === 4 ? 'ipv4' : 'ipv6');
};

/** IPv6 literals heavy in zero groups, in every spelling (compressed, long, mixed with IPv4). */
const zeroHeavyIPv6 = fc
  .tuple(fc.array(fc.constantFrom('0', '00', '0000', '1', 'f'), { minLength: 8, maxLength: 8 }), fc.nat(8), fc.nat(8), fc.boolean())
  .map(([groups, from, length, dotted]) => {
    const all = dotted ? [...groups.slice(0, 6), groups.slice(6).includes('1') || groups.slice(6).includes('f') ? '0.0.0.1' : '0.0.0.0'] : groups;
    const start = Math.min(from, all.length);
    const end = Math.min(all.length, start + length);
    return length === 0 ? all.join(':') : `${all.slice(0, start).join(':')}::${all.slice(end).join(':')}`;
  });

describe('checkAddress: the unspecified address', () => {
  test('is refused exactly when a node:net BlockList holding 0.0.0.0 and :: says so', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), zeroHeavyIPv6, fc.constantFrom('0.0.0.0', '::', '::0.0.0.0', '::ffff:0.0.0.0', '0::', '::0')), (literal) => {
        const mapped = /^::ffff:(.*)$/i.exec(literal)?.[1];
        const address = mapped && isIP(mapped) === 4 ? mapped : literal;
        if (isIP(address) === 0) return;
        const checked = checkAddress(literal);
        const refusedAsUnspecified = 'problem' in checked && checked.problem.includes('unspecified');
        expect(refusedAsUnspecified).toBe(isUnspecifiedByBlockList(address));
      }),
      { numRuns: 3000 },
    );
  });
});
