import { BLOCK_SIZE, encode, type BValue } from '@shoal/torrent';
import {
  decodeFrames,
  encodeHandshake,
  encodeMessage,
  expectedHashCount,
  hasReservedBit,
  parseHandshake,
  RESERVED_DHT,
  RESERVED_EXTENSION_PROTOCOL,
  RESERVED_FAST,
  RESERVED_V2,
  reservedBits,
  WireError,
  WireUsageError,
  type WireMessage,
} from '../src';
import { GEOMETRY, INFO_HASH, REMOTE_ID } from './support';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const root = Buffer.alloc(32, 0x11);

/** One of every message type. */
const EVERY_MESSAGE: WireMessage[] = [
  { type: 'keep-alive' },
  { type: 'choke' },
  { type: 'unchoke' },
  { type: 'interested' },
  { type: 'not-interested' },
  { type: 'have', index: 9 },
  { type: 'bitfield', bitfield: Buffer.from([0xa5, 0x40]) },
  { type: 'request', index: 3, begin: 16384, length: 16384 },
  { type: 'piece', index: 3, begin: 16384, block: Buffer.alloc(BLOCK_SIZE, 7) },
  { type: 'cancel', index: 3, begin: 16384, length: 16384 },
  { type: 'port', port: 6881 },
  { type: 'suggest', index: 4 },
  { type: 'have-all' },
  { type: 'have-none' },
  { type: 'reject', index: 3, begin: 0, length: 100 },
  { type: 'allowed-fast', index: 0 },
  { type: 'extended', id: 0, payload: new Map<string, BValue>([['m', new Map([['ut_pex', 1]])], ['reqq', 250]]) },
  { type: 'extended', id: 1, payload: new Map([['added', Buffer.from([127, 0, 0, 1, 0x1a, 0xe1])]]) },
  { type: 'hash-request', piecesRoot: root, baseLayer: 0, index: 512, length: 512, proofLayers: 10 },
  {
    type: 'hashes',
    piecesRoot: root,
    baseLayer: 0,
    index: 4,
    length: 4,
    proofLayers: 3,
    hashes: Array.from({ length: expectedHashCount({ length: 4, proofLayers: 3 }) }, (_, i) => Buffer.alloc(32, i)),
  },
  { type: 'hash-reject', piecesRoot: root, baseLayer: 2, index: 0, length: 2, proofLayers: 0 },
];

describe('message codec', () => {
  it.each(EVERY_MESSAGE.map((m) => [m.type, m] as const))('round-trips %s', (_type, msg) => {
    const bytes = encodeMessage(msg);
    expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
    expect(decodeFrames(bytes, GEOMETRY)).toEqual([msg]);
  });

  it('round-trips all message types as one stream', () => {
    const stream = Buffer.concat(EVERY_MESSAGE.map(encodeMessage));
    expect(decodeFrames(stream, GEOMETRY)).toEqual(EVERY_MESSAGE);
  });

  describe('exact bytes from the BEP texts', () => {
    it.each<[string, WireMessage, string]>([
      // BEP 3
      ['keep-alive', { type: 'keep-alive' }, '00000000'],
      ['choke', { type: 'choke' }, '00000001 00'],
      ['unchoke', { type: 'unchoke' }, '00000001 01'],
      ['interested', { type: 'interested' }, '00000001 02'],
      ['not interested', { type: 'not-interested' }, '00000001 03'],
      ['have', { type: 'have', index: 5 }, '00000005 04 00000005'],
      ['bitfield', { type: 'bitfield', bitfield: Buffer.from([0xff, 0xc0]) }, '00000003 05 ffc0'],
      ['request', { type: 'request', index: 1, begin: 0x4000, length: 0x4000 }, '0000000d 06 00000001 00004000 00004000'],
      ['piece', { type: 'piece', index: 1, begin: 2, block: Buffer.from('abc') }, '0000000c 07 00000001 00000002 616263'],
      ['cancel', { type: 'cancel', index: 1, begin: 0x4000, length: 0x4000 }, '0000000d 08 00000001 00004000 00004000'],
      // BEP 5
      ['port', { type: 'port', port: 6881 }, '00000003 09 1ae1'],
      // BEP 6
      ['suggest', { type: 'suggest', index: 7 }, '00000005 0d 00000007'],
      ['have all', { type: 'have-all' }, '00000001 0e'],
      ['have none', { type: 'have-none' }, '00000001 0f'],
      ['reject', { type: 'reject', index: 1, begin: 0, length: 0x4000 }, '0000000d 10 00000001 00000000 00004000'],
      ['allowed fast', { type: 'allowed-fast', index: 3 }, '00000005 11 00000003'],
    ])('%s', (_name, msg, bytes) => {
      expect(encodeMessage(msg).toString('hex')).toBe(hex(bytes).toString('hex'));
      expect(decodeFrames(hex(bytes), GEOMETRY)).toEqual([msg]);
    });

    it('BEP 10 extended handshake: <len> 20 0 <bencoded dict>', () => {
      // The BEP 10 example dictionary (with 'v' as ASCII).
      const payload = new Map<string, BValue>([
        ['m', new Map([['LT_metadata', 1], ['ut_pex', 2]])],
        ['p', 6881],
        ['v', Buffer.from('uTorrent 1.2')],
      ]);
      const dict = 'd1:md11:LT_metadatai1e6:ut_pexi2ee1:pi6881e1:v12:uTorrent 1.2e';
      const bytes = encodeMessage({ type: 'extended', id: 0, payload });
      expect(bytes.readUInt32BE(0)).toBe(2 + dict.length);
      expect(bytes.subarray(4, 6)).toEqual(Buffer.from([20, 0]));
      expect(bytes.subarray(6).toString('latin1')).toBe(dict);
    });

    it('BEP 52 hash request: 32-byte root, then base layer, index, length, proof layers (u32 each)', () => {
      const bytes = encodeMessage({ type: 'hash-request', piecesRoot: root, baseLayer: 1, index: 2, length: 4, proofLayers: 5 });
      expect(bytes.toString('hex')).toBe(
        hex(`00000031 15 ${root.toString('hex')} 00000001 00000002 00000004 00000005`).toString('hex'),
      );
      const reject = encodeMessage({ type: 'hash-reject', piecesRoot: root, baseLayer: 1, index: 2, length: 4, proofLayers: 5 });
      expect(reject[4]).toBe(23);
      expect(reject.subarray(5)).toEqual(bytes.subarray(5));
    });

    it('BEP 52 hashes: the hash request header then N x 32 bytes', () => {
      const hashes = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
      const bytes = encodeMessage({ type: 'hashes', piecesRoot: root, baseLayer: 0, index: 0, length: 2, proofLayers: 0, hashes });
      expect(bytes.readUInt32BE(0)).toBe(1 + 48 + 64);
      expect(bytes[4]).toBe(22);
      expect(bytes.subarray(5, 37)).toEqual(root);
      expect(bytes.subarray(53)).toEqual(Buffer.concat(hashes));
    });
  });

  it('counts hashes as libtorrent does: base hashes plus the proof layers they do not imply', () => {
    expect(expectedHashCount({ length: 2, proofLayers: 0 })).toBe(2);
    expect(expectedHashCount({ length: 2, proofLayers: 3 })).toBe(5);
    expect(expectedHashCount({ length: 512, proofLayers: 8 })).toBe(512);
    expect(expectedHashCount({ length: 512, proofLayers: 10 })).toBe(514);
    expect(expectedHashCount({ length: 4, proofLayers: 1 })).toBe(4);
  });

  it('copies a piece block exactly once, into the frame', () => {
    const block = Buffer.alloc(100, 9);
    const bytes = encodeMessage({ type: 'piece', index: 0, begin: 0, block });
    block.fill(0);
    expect(bytes.subarray(13)).toEqual(Buffer.alloc(100, 9));
  });

  it('refuses to encode out-of-range fields (a local error)', () => {
    expect(() => encodeMessage({ type: 'have', index: -1 })).toThrow(WireUsageError);
    expect(() => encodeMessage({ type: 'have', index: 2 ** 32 })).toThrow(WireUsageError);
    expect(() => encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(BLOCK_SIZE + 1) })).toThrow(WireUsageError);
    expect(() => encodeMessage({ type: 'port', port: 70000 })).toThrow(WireUsageError);
    expect(() => encodeMessage({ type: 'extended', id: 256, payload: new Map() })).toThrow(WireUsageError);
    expect(() =>
      encodeMessage({ type: 'hash-request', piecesRoot: Buffer.alloc(31), baseLayer: 0, index: 0, length: 2, proofLayers: 0 }),
    ).toThrow(WireUsageError);
  });
});

describe('handshake', () => {
  it('is 19 + "BitTorrent protocol" + 8 reserved + 20 info-hash + 20 peer id', () => {
    const reserved = reservedBits(RESERVED_EXTENSION_PROTOCOL, RESERVED_FAST);
    const bytes = encodeHandshake({ infoHash20: INFO_HASH, peerId20: REMOTE_ID, reserved });
    expect(bytes.length).toBe(68);
    expect(bytes[0]).toBe(19);
    expect(bytes.subarray(1, 20).toString('latin1')).toBe('BitTorrent protocol');
    expect(bytes.subarray(20, 28)).toEqual(hex('0000000000100004'));
    expect(bytes.subarray(28, 48)).toEqual(INFO_HASH);
    expect(bytes.subarray(48, 68)).toEqual(REMOTE_ID);
    expect(parseHandshake(bytes)).toEqual({ reserved, infoHash20: INFO_HASH, peerId20: REMOTE_ID });
  });

  it('puts the reserved bits where BEP 6, BEP 10, BEP 52 and BEP 5 say', () => {
    expect(reservedBits(RESERVED_EXTENSION_PROTOCOL)).toEqual(hex('0000000000100000'));
    expect(reservedBits(RESERVED_FAST)).toEqual(hex('0000000000000004'));
    expect(reservedBits(RESERVED_V2)).toEqual(hex('0000000000000010'));
    expect(reservedBits(RESERVED_DHT)).toEqual(hex('0000000000000001'));
    const all = reservedBits(RESERVED_FAST, RESERVED_V2, RESERVED_EXTENSION_PROTOCOL);
    expect([RESERVED_FAST, RESERVED_V2, RESERVED_EXTENSION_PROTOCOL, RESERVED_DHT].map((b) => hasReservedBit(all, b))).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });

  it('refuses a wrong length byte, protocol string or size', () => {
    const good = encodeHandshake({ infoHash20: INFO_HASH, peerId20: REMOTE_ID });
    const badLength = Buffer.from(good);
    badLength[0] = 18;
    const badString = Buffer.from(good);
    badString[5] = 0x74;
    for (const bytes of [badLength, badString, good.subarray(0, 67)]) {
      expect(() => parseHandshake(bytes)).toThrow(WireError);
      try {
        parseHandshake(bytes);
      } catch (e) {
        expect((e as WireError).code).toBe('WIRE_BAD_HANDSHAKE');
      }
    }
  });

  it('refuses bad local arguments', () => {
    expect(() => encodeHandshake({ infoHash20: Buffer.alloc(32), peerId20: REMOTE_ID })).toThrow(WireUsageError);
    expect(() => encodeHandshake({ infoHash20: INFO_HASH, peerId20: Buffer.alloc(19) })).toThrow(WireUsageError);
    expect(() => encodeHandshake({ infoHash20: INFO_HASH, peerId20: REMOTE_ID, reserved: Buffer.alloc(7) })).toThrow(WireUsageError);
  });
});

describe('bencode interop', () => {
  it('extended payloads use the torrent bencoder byte for byte', () => {
    const payload = new Map([['m', new Map([['ut_pex', 1]])]]);
    expect(encodeMessage({ type: 'extended', id: 0, payload }).subarray(6)).toEqual(encode(payload));
  });
});
