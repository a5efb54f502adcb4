import { type Location, UNKNOWN_LOCATION, proximity } from '../src';

const loc = (region: string, zone: string, site: string): Location => ({ region, zone, site });

describe('proximity', () => {
  test.each<[string, Location, Location, number]>([
    ['same site', loc('eu', 'eu-1', 'ams'), loc('eu', 'eu-1', 'ams'), 3],
    ['same zone, other site', loc('eu', 'eu-1', 'ams'), loc('eu', 'eu-1', 'rtm'), 2],
    ['same region, other zone', loc('eu', 'eu-1', 'ams'), loc('eu', 'eu-2', 'ams'), 1],
    ['other region', loc('eu', 'eu-1', 'ams'), loc('us', 'eu-1', 'ams'), 0],
    ['same zone name in another region is not the same zone', loc('eu', 'z', 's'), loc('us', 'z', 's'), 0],
    ['same site name in another zone is not the same site', loc('eu', 'z1', 's'), loc('eu', 'z2', 's'), 1],
    ['unknown region never matches, even another unknown region', loc('', 'z', 's'), loc('', 'z', 's'), 0],
    ['unknown region on one side', loc('eu', 'z', 's'), loc('', 'z', 's'), 0],
    ['unknown zone: region only', loc('eu', '', 's'), loc('eu', '', 's'), 1],
    ['unknown zone on one side', loc('eu', 'z', 's'), loc('eu', '', 's'), 1],
    ['unknown site: zone only', loc('eu', 'z', ''), loc('eu', 'z', ''), 2],
    ['unknown site on one side', loc('eu', 'z', ''), loc('eu', 'z', 's'), 2],
    ['everything unknown', UNKNOWN_LOCATION, UNKNOWN_LOCATION, 0],
    ['labels are case-sensitive', loc('EU', 'z', 's'), loc('eu', 'z', 's'), 0],
  ])('%s', (_name, a, b, expected) => {
    expect(proximity(a, b)).toBe(expected);
    expect(proximity(b, a)).toBe(expected);
  });

  test('non-string labels (hostile input at runtime) count as unknown', () => {
    const weird = { region: undefined, zone: 3, site: null } as unknown as Location;
    expect(proximity(weird, weird)).toBe(0);
    expect(proximity(loc('eu', 'z', 's'), { ...loc('eu', 'z', 's'), site: undefined as unknown as string })).toBe(2);
  });
});
