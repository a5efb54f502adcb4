import { isIP } from 'node:net';
import fc from 'fast-check';
import { canonicalIp, DhtError, formatIp, ipBytes, ipPrefixGroup, unusableAddressReason } from '../src';
import { expectDhtError } from './support';

describe('addresses', () => {
  test.each([
    ['10.0.0.1', '10.0.0.1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['::FFFF:a00:1', '10.0.0.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['fe80::', 'fe80::'],
    ['::', '::'],
    ['::1', '::1'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ])('%s is spelled %s', (text, canonical) => {
    expect(canonicalIp(text)).toBe(canonical);
  });

  test.each(['', 'localhost', '10.0.0', '10.0.0.256', '010.0.0.1', '1.2.3.4.5', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::1', 'fe80::1%eth0', ' 10.0.0.1', '::1.2.3', 'x'.repeat(100)])(
    '%j is refused',
    (text) => {
      expectDhtError(() => ipBytes(text), 'DHT_BAD_ADDRESS');
    },
  );

  test("agrees with Node's parser on what is an address, and every spelling round-trips", () => {
    const candidate = fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4Extended(),
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'), maxLength: 45 }),
    );
    fc.assert(
      fc.property(candidate, (text) => {
        let bytes: Buffer;
        try {
          bytes = ipBytes(text);
        } catch (error) {
          expect(error).toBeInstanceOf(DhtError);
          // Node accepts leading zeros in IPv4 parts; we do not (octal or decimal is ambiguous).
          if (isIP(text) !== 0) expect(/(^|[.:])0\d/.test(text)).toBe(true);
          return;
        }
        expect(isIP(text)).not.toBe(0);
        expect(ipBytes(formatIp(bytes))).toEqual(bytes);
      }),
      { numRuns: 3000 },
    );
  });

  test('unusable addresses: unspecified, multicast, broadcast, mapped in v6 form', () => {
    expect(unusableAddressReason(ipBytes('0.0.0.0'))).toBeDefined();
    expect(unusableAddressReason(ipBytes('239.1.1.1'))).toBeDefined();
    expect(unusableAddressReason(ipBytes('255.255.255.255'))).toBeDefined();
    expect(unusableAddressReason(ipBytes('ff02::1'))).toBeDefined();
    expect(unusableAddressReason(Buffer.from('00000000000000000000ffff0a000001', 'hex'))).toBeDefined();
    expect(unusableAddressReason(ipBytes('127.0.0.1'))).toBeUndefined();
    expect(unusableAddressReason(ipBytes('10.1.2.3'))).toBeUndefined();
    expect(unusableAddressReason(ipBytes('fd00::1'))).toBeUndefined();
  });

  test('diversity groups are the /24 and the /64', () => {
    expect(ipPrefixGroup('10.1.2.3')).toBe(ipPrefixGroup('10.1.2.200'));
    expect(ipPrefixGroup('10.1.2.3')).not.toBe(ipPrefixGroup('10.1.3.3'));
    expect(ipPrefixGroup('2001:db8:1:2::1')).toBe(ipPrefixGroup('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    expect(ipPrefixGroup('2001:db8:1:2::1')).not.toBe(ipPrefixGroup('2001:db8:1:3::1'));
  });
});
