import fc from 'fast-check';
import { type PiecePicker, policiesOf, RandomPicker, RarestFirstPicker, type SwarmConfig, swarmConfig } from '../src';
import { arbPickCase, describePiecePickerCompliance, type PickCase, pickContext } from './compliance/picker';

/** Every picker a configuration can name (the Record makes a new name fail to compile until listed). */
const PICKERS: Record<SwarmConfig['picker'], () => PiecePicker> = {
  'rarest-first': () => policiesOf(swarmConfig({ picker: 'rarest-first' })).picker,
  random: () => policiesOf(swarmConfig({ picker: 'random' })).picker,
};

for (const [name, make] of Object.entries(PICKERS)) describePiecePickerCompliance(name, make);
describePiecePickerCompliance('rarest-first without a random phase', () => new RarestFirstPicker(0));

/** A draw whose random start lands on `index` exactly. */
const startAt = (index: number, n: number) => (index + 0.5) / n;

describe('RandomPicker', () => {
  test('any candidate can come out: the draw picks the start, the next candidate wins', () => {
    fc.assert(
      fc.property(arbPickCase, (c: PickCase) => {
        const n = c.candidate.length;
        c.candidate.forEach((isCandidate, index) => {
          if (isCandidate) expect(new RandomPicker().pick(pickContext(c, () => startAt(index, n)))).toBe(index);
        });
      }),
    );
  });

  test('wraps around past the last piece', () => {
    const c: PickCase = { candidate: [true, false, false, false], availability: [1, 0, 0, 0], verifiedPieces: 0, draws: [] };
    expect(new RandomPicker().pick(pickContext(c, () => startAt(2, 4)))).toBe(0);
  });

  test('ignores availability', () => {
    const c: PickCase = { candidate: [true, true], availability: [9, 1], verifiedPieces: 100, draws: [] };
    expect(new RandomPicker().pick(pickContext(c, () => 0))).toBe(0);
  });
});

describe('RarestFirstPicker', () => {
  test('after the random-first phase, returns a candidate of minimum availability', () => {
    fc.assert(
      fc.property(arbPickCase, fc.integer({ min: 0, max: 8 }), (c, randomFirst) => {
        const ctx = pickContext({ ...c, verifiedPieces: Math.max(c.verifiedPieces, randomFirst) });
        const got = new RarestFirstPicker(randomFirst).pick(ctx);
        const candidates = c.candidate.flatMap((isCandidate, i) => (isCandidate ? [i] : []));
        if (candidates.length === 0) return expect(got).toBeUndefined();
        const rarest = Math.min(...candidates.map((i) => c.availability[i] as number));
        expect(c.availability[got as number]).toBe(rarest);
      }),
    );
  });

  test('every rarest candidate can come out (ties broken by the draw, so peers spread out)', () => {
    fc.assert(
      fc.property(arbPickCase, (c) => {
        const n = c.candidate.length;
        const candidates = c.candidate.flatMap((isCandidate, i) => (isCandidate ? [i] : []));
        if (candidates.length === 0) return;
        const rarest = Math.min(...candidates.map((i) => c.availability[i] as number));
        const seen = new Set<number | undefined>();
        for (let start = 0; start < n; start++) seen.add(new RarestFirstPicker(0).pick(pickContext(c, () => startAt(start, n))));
        expect([...seen].sort()).toEqual(candidates.filter((i) => c.availability[i] === rarest).sort());
      }),
    );
  });

  test('during the random-first phase, picks regardless of rarity', () => {
    const c: PickCase = { candidate: [true, true, true], availability: [5, 1, 5], verifiedPieces: 3, draws: [] };
    const picker = new RarestFirstPicker(4);
    expect(picker.pick(pickContext(c, () => startAt(0, 3)))).toBe(0);
    expect(picker.pick(pickContext(c, () => startAt(2, 3)))).toBe(2);
    // One more verified piece ends the phase.
    expect(picker.pick(pickContext({ ...c, verifiedPieces: 4 }, () => startAt(2, 3)))).toBe(1);
  });

  test('the configured random-first count is the one used', () => {
    const picker = policiesOf(swarmConfig({ randomFirstPieces: 1 })).picker;
    const c: PickCase = { candidate: [true, true], availability: [3, 2], verifiedPieces: 1, draws: [] };
    expect(picker.pick(pickContext(c, () => 0))).toBe(1);
    expect(picker.pick(pickContext({ ...c, verifiedPieces: 0 }, () => 0))).toBe(0);
  });
});
