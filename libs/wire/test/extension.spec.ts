import { decode, encode, type BDict } from '@shoal/torrent';
import { buildExtendedHandshake, parseExtendedHandshake, WireError, WireUsageError } from '../src';

const parseBytes = (text: string) => parseExtendedHandshake(decode(Buffer.from(text, 'latin1')) as BDict);

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return e.code;
  }
}

describe('BEP 10 extended handshake', () => {
  it('builds m, p, v, reqq and yourip', () => {
    const dict = buildExtendedHandshake({
      m: { ut_pex: 1, ut_metadata: 0 },
      listenPort: 6881,
      clientVersion: 'Shoal 0.1.0',
      reqq: 250,
      yourIp: Buffer.from([10, 0, 0, 7]),
    });
    expect(encode(dict).toString('latin1')).toBe(
      'd1:md11:ut_metadatai0e6:ut_pexi1ee1:pi6881e4:reqqi250e1:v11:Shoal 0.1.06:yourip4:\n\0\0\x07e',
    );
    expect(parseExtendedHandshake(dict)).toEqual({
      m: new Map([['ut_pex', 1]]),
      listenPort: 6881,
      clientVersion: 'Shoal 0.1.0',
      reqq: 250,
      yourIp: Buffer.from([10, 0, 0, 7]),
    });
  });

  it("reads libtorrent's handshake, ignoring keys it does not know (negative complete_ago included)", () => {
    const hs = parseBytes(
      'd12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e6:ut_pexi1ee' +
        '4:reqqi500e1:v18:libtorrent/2.0.8.06:yourip4:\x7f\0\0\x01e',
    );
    expect(hs.m).toEqual(
      new Map([
        ['lt_donthave', 7],
        ['share_mode', 8],
        ['upload_only', 3],
        ['ut_holepunch', 4],
        ['ut_pex', 1],
      ]),
    );
    expect(hs.reqq).toBe(500);
    expect(hs.clientVersion).toBe('libtorrent/2.0.8.0');
    expect(hs.listenPort).toBeUndefined();
  });

  it('accepts an empty dictionary', () => {
    expect(parseBytes('de')).toEqual({ m: new Map() });
  });

  it.each([
    ['m not a dict', 'd1:mi1ee'],
    ['an id above 255', 'd1:md6:ut_pexi256eee'],
    ['a negative id', 'd1:md6:ut_pexi-1eee'],
    ['a string id', 'd1:md6:ut_pex1:1ee'],
    ['one id for two extensions', 'd1:md1:ai1e1:bi1eee'],
    ['an empty extension name', 'd1:md0:i1eee'],
    ['a name with a control byte', 'd1:md2:a\x01i1eee'],
    ['a name of 65 bytes', `d1:md65:${'a'.repeat(65)}i1eee`],
    ['port 0', 'd1:pi0ee'],
    ['port 65536', 'd1:pi65536ee'],
    ['port as a string', 'd1:p4:6881e'],
    ['reqq 0', 'd4:reqqi0ee'],
    ['v as an integer', 'd1:vi1ee'],
    ['v of 129 bytes', `d1:v129:${'x'.repeat(129)}e`],
    ['yourip of 5 bytes', 'd6:yourip5:abcdee'],
  ])('refuses %s', (_name, text) => {
    expect(code(() => parseBytes(text))).toBe('WIRE_BAD_EXTENDED_HANDSHAKE');
  });

  it('refuses more than 64 extensions', () => {
    const m = new Map(Array.from({ length: 65 }, (_, i) => [`x${String(i).padStart(2, '0')}`, (i % 255) + 1] as [string, number]));
    expect(code(() => parseExtendedHandshake(new Map([['m', m]])))).toBe('WIRE_BAD_EXTENDED_HANDSHAKE');
  });

  it('clamps a huge reqq', () => {
    expect(parseBytes('d4:reqqi99999999ee').reqq).toBe(65535);
  });

  it('refuses bad local input when building', () => {
    expect(() => buildExtendedHandshake({ m: { ut_pex: 256 } })).toThrow(WireUsageError);
    expect(() => buildExtendedHandshake({ m: { a: 1, b: 1 } })).toThrow(WireUsageError);
    expect(() => buildExtendedHandshake({ m: {}, listenPort: 0 })).toThrow(WireUsageError);
    expect(() => buildExtendedHandshake({ m: {}, reqq: 0 })).toThrow(WireUsageError);
    expect(() => buildExtendedHandshake({ m: {}, clientVersion: 'x'.repeat(129) })).toThrow(WireUsageError);
    expect(() => buildExtendedHandshake({ m: {}, yourIp: Buffer.alloc(5) })).toThrow(WireUsageError);
  });
});
