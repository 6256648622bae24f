import { Settings } from 'luxon';
import { type BillingAnchor, bucketsOf, type Cycle, cycleContaining, isValidTimeZone, localDate, nextCycle, previousCycle, startOfLocalDay, utcHour } from '../../functions/core/cycles';

const anchor = (billingAnchorDay: number, timeZone = 'UTC'): BillingAnchor => ({ billingAnchorDay, timeZone });
const utcCycle = (startDate: string, endDate: string): Cycle => ({ start: `${startDate}T00:00:00.000Z`, end: `${endDate}T00:00:00.000Z` });

describe('cycleContaining in UTC', () => {
  test.each([
    // [anchor day, instant, cycle start date, cycle end date]
    [1, '2026-03-15T12:00:00.000Z', '2026-03-01', '2026-04-01'],
    [1, '2026-02-28T23:59:59.999Z', '2026-02-01', '2026-03-01'],
    [15, '2026-03-10T08:00:00.000Z', '2026-02-15', '2026-03-15'],
    [15, '2026-03-15T00:00:00.000Z', '2026-03-15', '2026-04-15'],
    [28, '2026-02-27T23:59:59.999Z', '2026-01-28', '2026-02-28'],
    [28, '2026-02-28T00:00:00.000Z', '2026-02-28', '2026-03-28'],
    [29, '2026-01-29T00:00:00.000Z', '2026-01-29', '2026-02-28'],
    [29, '2027-02-28T10:00:00.000Z', '2027-02-28', '2027-03-29'],
    [29, '2028-02-28T23:59:59.999Z', '2028-01-29', '2028-02-29'],
    [29, '2028-02-29T00:00:00.000Z', '2028-02-29', '2028-03-29'],
    [30, '2027-02-15T00:00:00.000Z', '2027-01-30', '2027-02-28'],
    [30, '2027-03-01T00:00:00.000Z', '2027-02-28', '2027-03-30'],
    [30, '2028-03-01T00:00:00.000Z', '2028-02-29', '2028-03-30'],
    [30, '2026-04-30T00:00:00.000Z', '2026-04-30', '2026-05-30'],
    [31, '2026-04-30T00:00:00.000Z', '2026-04-30', '2026-05-31'],
    [31, '2026-05-30T23:59:59.999Z', '2026-04-30', '2026-05-31'],
    [31, '2026-05-31T00:00:00.000Z', '2026-05-31', '2026-06-30'],
  ])('anchor %i: %s is in %s → %s', (day, instant, startDate, endDate) => {
    // Act
    const cycle = cycleContaining(instant, anchor(day));

    // Assert
    expect(cycle).toEqual(utcCycle(startDate, endDate));
  });

  test.each([
    // Anchor 31 clamps to Feb 28 in 2027 and returns to the 31st in March.
    ['2027-01-31T00:00:00.000Z', '2027-01-31', '2027-02-28'],
    ['2027-02-27T23:59:59.999Z', '2027-01-31', '2027-02-28'],
    ['2027-02-28T00:00:00.000Z', '2027-02-28', '2027-03-31'],
    ['2027-03-30T23:59:59.999Z', '2027-02-28', '2027-03-31'],
    ['2027-03-31T00:00:00.000Z', '2027-03-31', '2027-04-30'],
    // ...and to Feb 29 in the leap year 2028.
    ['2028-01-31T00:00:00.000Z', '2028-01-31', '2028-02-29'],
    ['2028-02-28T23:59:59.999Z', '2028-01-31', '2028-02-29'],
    ['2028-02-29T00:00:00.000Z', '2028-02-29', '2028-03-31'],
    ['2028-03-30T23:59:59.999Z', '2028-02-29', '2028-03-31'],
    ['2028-03-31T00:00:00.000Z', '2028-03-31', '2028-04-30'],
  ])('anchor 31 from January to March: %s is in %s → %s', (instant, startDate, endDate) => {
    // Act
    const cycle = cycleContaining(instant, anchor(31));

    // Assert
    expect(cycle).toEqual(utcCycle(startDate, endDate));
  });

  test('the instant of a cycle start belongs to that cycle, the millisecond before to the previous one', () => {
    // Arrange
    const monthly15 = anchor(15);

    // Act
    const atStart = cycleContaining('2026-06-15T00:00:00.000Z', monthly15);
    const justBefore = cycleContaining('2026-06-14T23:59:59.999Z', monthly15);
    const atStartAsDate = cycleContaining(new Date('2026-06-15T00:00:00.000Z'), monthly15);

    // Assert
    expect(atStart).toEqual(utcCycle('2026-06-15', '2026-07-15'));
    expect(justBefore).toEqual(utcCycle('2026-05-15', '2026-06-15'));
    expect(atStartAsDate).toEqual(utcCycle('2026-06-15', '2026-07-15'));
  });

  test.each([
    [1, '2026-12-31T23:59:59.999Z', '2026-12-01', '2027-01-01'],
    [1, '2027-01-01T00:00:00.000Z', '2027-01-01', '2027-02-01'],
    [15, '2027-01-10T00:00:00.000Z', '2026-12-15', '2027-01-15'],
    [31, '2027-01-15T00:00:00.000Z', '2026-12-31', '2027-01-31'],
  ])('rolls over the year: anchor %i, %s is in %s → %s', (day, instant, startDate, endDate) => {
    // Act
    const cycle = cycleContaining(instant, anchor(day));

    // Assert
    expect(cycle).toEqual(utcCycle(startDate, endDate));
  });

  test('reads an offset in the instant, and an instant without one as UTC', () => {
    // Act
    const withOffset = cycleContaining('2026-03-01T01:00:00.000+02:00', anchor(1)); // 2026-02-28T23:00Z
    const withoutOffset = cycleContaining('2026-03-01T00:00:00', anchor(1));

    // Assert
    expect(withOffset).toEqual(utcCycle('2026-02-01', '2026-03-01'));
    expect(withoutOffset).toEqual(utcCycle('2026-03-01', '2026-04-01'));
  });
});

describe('nextCycle and previousCycle', () => {
  const expectedStarts = [
    '2027-12-31',
    '2028-01-31',
    '2028-02-29',
    '2028-03-31',
    '2028-04-30',
    '2028-05-31',
    '2028-06-30',
    '2028-07-31',
    '2028-08-31',
    '2028-09-30',
    '2028-10-31',
    '2028-11-30',
    '2028-12-31',
  ].map((date) => `${date}T00:00:00.000Z`);

  test('13 consecutive cycles for anchor 31 from 2027-12-31', () => {
    // Arrange
    const monthly31 = anchor(31);
    const cycles = [cycleContaining('2027-12-31T00:00:00.000Z', monthly31)];

    // Act
    while (cycles.length < 13) cycles.push(nextCycle(cycles[cycles.length - 1]!, monthly31));

    // Assert
    expect(cycles.map((c) => c.start)).toEqual(expectedStarts);
    expect(cycles.map((c) => c.end)).toEqual([...expectedStarts.slice(1), '2029-01-31T00:00:00.000Z']);
  });

  test('walks the same 13 cycles backwards from 2028-12-31', () => {
    // Arrange
    const monthly31 = anchor(31);
    const cycles = [cycleContaining('2028-12-31T00:00:00.000Z', monthly31)];

    // Act
    while (cycles.length < 13) cycles.push(previousCycle(cycles[cycles.length - 1]!, monthly31));

    // Assert
    expect(cycles.map((c) => c.start)).toEqual([...expectedStarts].reverse());
  });

  test('crosses the year in both directions', () => {
    // Arrange
    const january = utcCycle('2027-01-01', '2027-02-01');

    // Act
    const before = previousCycle(january, anchor(1));
    const after = nextCycle(utcCycle('2026-12-01', '2027-01-01'), anchor(1));

    // Assert
    expect(before).toEqual(utcCycle('2026-12-01', '2027-01-01'));
    expect(after).toEqual(january);
  });
});

describe('cycles in time zones with daylight saving', () => {
  test.each([
    // [zone, anchor day, instant, start, end]
    // New York leaves DST on 2026-11-01: the cycle starts at EDT midnight (-04) and ends at EST midnight (-05).
    ['America/New_York', 1, '2026-11-15T12:00:00.000Z', '2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z'],
    ['America/New_York', 1, '2026-11-01T04:00:00.000Z', '2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z'],
    ['America/New_York', 1, '2026-11-01T03:59:59.999Z', '2026-10-01T04:00:00.000Z', '2026-11-01T04:00:00.000Z'],
    // Already December 1 in UTC, still November 30 in New York.
    ['America/New_York', 1, '2026-12-01T04:59:59.999Z', '2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z'],
    // New York enters DST on 2026-03-08.
    ['America/New_York', 15, '2026-03-10T12:00:00.000Z', '2026-02-15T05:00:00.000Z', '2026-03-15T04:00:00.000Z'],
    // Berlin enters DST on 2026-03-29 (CET +01 → CEST +02).
    ['Europe/Berlin', 28, '2026-04-01T00:00:00.000Z', '2026-03-27T23:00:00.000Z', '2026-04-27T22:00:00.000Z'],
    ['Europe/Berlin', 29, '2026-03-29T12:00:00.000Z', '2026-03-28T23:00:00.000Z', '2026-04-28T22:00:00.000Z'],
    ['Europe/Berlin', 31, '2026-03-30T22:00:00.000Z', '2026-03-30T22:00:00.000Z', '2026-04-29T22:00:00.000Z'],
    ['Europe/Berlin', 31, '2026-03-30T21:59:59.999Z', '2026-02-27T23:00:00.000Z', '2026-03-30T22:00:00.000Z'],
    // Santiago skips 2026-09-06 00:00-00:59 (-04 → -03): the day starts at 01:00 -03.
    ['America/Santiago', 6, '2026-09-06T04:00:00.000Z', '2026-09-06T04:00:00.000Z', '2026-10-06T03:00:00.000Z'],
    ['America/Santiago', 6, '2026-09-06T03:59:59.999Z', '2026-08-06T04:00:00.000Z', '2026-09-06T04:00:00.000Z'],
    // Beirut skips 2026-03-29 00:00-00:59 (+02 → +03); anchor 29 clamps to Feb 28 the month before.
    ['Asia/Beirut', 29, '2026-04-10T00:00:00.000Z', '2026-03-28T22:00:00.000Z', '2026-04-28T21:00:00.000Z'],
    ['Asia/Beirut', 29, '2026-03-28T21:59:59.999Z', '2026-02-27T22:00:00.000Z', '2026-03-28T22:00:00.000Z'],
    // Havana repeats 2026-11-01 00:00-00:59 (-04 → -05): the day starts at the first midnight.
    ['America/Havana', 1, '2026-11-01T04:30:00.000Z', '2026-11-01T04:00:00.000Z', '2026-12-01T05:00:00.000Z'],
    ['America/Havana', 1, '2026-11-01T03:59:59.999Z', '2026-10-01T04:00:00.000Z', '2026-11-01T04:00:00.000Z'],
    // A half-hour offset (+05:30).
    ['Asia/Kolkata', 1, '2026-01-31T18:30:00.000Z', '2026-01-31T18:30:00.000Z', '2026-02-28T18:30:00.000Z'],
  ])('%s anchor %i: %s is in %s → %s', (timeZone, day, instant, start, end) => {
    // Act
    const cycle = cycleContaining(instant, anchor(day, timeZone));

    // Assert
    expect(cycle).toEqual({ start, end });
  });

  test('next and previous cycles across the New York DST change', () => {
    // Arrange
    const newYork1 = anchor(1, 'America/New_York');
    const november: Cycle = { start: '2026-11-01T04:00:00.000Z', end: '2026-12-01T05:00:00.000Z' };

    // Act
    const october = previousCycle(november, newYork1);
    const december = nextCycle(november, newYork1);

    // Assert
    expect(october).toEqual({ start: '2026-10-01T04:00:00.000Z', end: '2026-11-01T04:00:00.000Z' });
    expect(december).toEqual({ start: '2026-12-01T05:00:00.000Z', end: '2027-01-01T05:00:00.000Z' });
  });
});

describe('localDate', () => {
  test.each([
    ['2026-11-01T03:59:59.999Z', 'America/New_York', '2026-10-31'],
    ['2026-11-01T04:00:00.000Z', 'America/New_York', '2026-11-01'],
    // 2026-11-01 lasts 25 hours in New York.
    ['2026-11-02T04:59:59.999Z', 'America/New_York', '2026-11-01'],
    ['2026-11-02T05:00:00.000Z', 'America/New_York', '2026-11-02'],
    ['2026-03-28T22:59:59.999Z', 'Europe/Berlin', '2026-03-28'],
    ['2026-03-28T23:00:00.000Z', 'Europe/Berlin', '2026-03-29'],
    // 2026-03-29 lasts 23 hours in Berlin.
    ['2026-03-29T21:59:59.999Z', 'Europe/Berlin', '2026-03-29'],
    ['2026-03-29T22:00:00.000Z', 'Europe/Berlin', '2026-03-30'],
    ['2026-01-01T18:29:59.999Z', 'Asia/Kolkata', '2026-01-01'],
    ['2026-01-01T18:30:00.000Z', 'Asia/Kolkata', '2026-01-02'],
    ['2026-12-31T23:59:59.999Z', 'UTC', '2026-12-31'],
  ])('%s in %s is %s', (instant, timeZone, expected) => {
    // Act
    const date = localDate(instant, timeZone);

    // Assert
    expect(date).toBe(expected);
  });

  test('accepts a Date', () => {
    // Act
    const date = localDate(new Date('2026-06-30T23:00:00.000Z'), 'Europe/Berlin');

    // Assert
    expect(date).toBe('2026-07-01');
  });
});

describe('startOfLocalDay', () => {
  afterEach(() => {
    Settings.now = () => Date.now();
  });

  test.each([
    ['2026-03-29', 'Europe/Berlin', '2026-03-28T23:00:00.000Z'],
    ['2026-03-30', 'Europe/Berlin', '2026-03-29T22:00:00.000Z'],
    ['2026-11-01', 'America/New_York', '2026-11-01T04:00:00.000Z'],
    ['2026-11-02', 'America/New_York', '2026-11-02T05:00:00.000Z'],
    // Midnight does not exist: the day starts at 01:00 after the gap.
    ['2026-09-06', 'America/Santiago', '2026-09-06T04:00:00.000Z'],
    ['2026-03-29', 'Asia/Beirut', '2026-03-28T22:00:00.000Z'],
    // Midnight happens twice: the day starts at the first.
    ['2026-11-01', 'America/Havana', '2026-11-01T04:00:00.000Z'],
    ['2028-02-29', 'UTC', '2028-02-29T00:00:00.000Z'],
  ])('%s in %s starts at %s', (date, timeZone, expected) => {
    // Act
    const start = startOfLocalDay(date, timeZone);

    // Assert
    expect(start).toBe(expected);
  });

  test.each([
    ['summer', '2026-07-01T00:00:00.000Z'],
    ['winter', '2026-01-15T00:00:00.000Z'],
  ])('picks the first of two midnights whatever the current date (%s)', (_season, now) => {
    // Arrange: luxon's first guess at an offset is the zone's offset now.
    Settings.now = () => Date.parse(now);

    // Act
    const start = startOfLocalDay('2026-11-01', 'America/Havana');

    // Assert
    expect(start).toBe('2026-11-01T04:00:00.000Z');
  });

  test.each([['2027-02-29'], ['2026-13-01'], ['26-1-1'], ['2026-11-01T00:00']])('rejects the date %s', (date) => {
    // Act + Assert
    expect(() => startOfLocalDay(date, 'UTC')).toThrow(RangeError);
  });

  test('rejects an unknown time zone', () => {
    // Act + Assert
    expect(() => startOfLocalDay('2026-11-01', 'Not/AZone')).toThrow(RangeError);
  });
});

describe('utcHour', () => {
  test.each([
    ['2026-11-15T13:45:12.345Z', '2026-11-15T13'],
    ['2026-11-15T13:00:00.000Z', '2026-11-15T13'],
    ['2026-11-15T00:30:00+01:00', '2026-11-14T23'],
  ])('%s is in hour %s', (instant, expected) => {
    // Act
    const hour = utcHour(instant);

    // Assert
    expect(hour).toBe(expected);
  });

  test('accepts a Date', () => {
    // Act
    const hour = utcHour(new Date('2026-12-31T23:59:59.999Z'));

    // Assert
    expect(hour).toBe('2026-12-31T23');
  });

  test.each([['not a time'], ['2026-02-30T00:00:00.000Z']])('rejects %s', (instant) => {
    // Act + Assert
    expect(() => utcHour(instant)).toThrow(RangeError);
  });
});

describe('isValidTimeZone', () => {
  test.each([
    ['UTC', true],
    ['Europe/Berlin', true],
    ['America/New_York', true],
    ['Not/AZone', false],
    ['', false],
  ])('%j is %s', (timeZone, expected) => {
    // Act
    const valid = isValidTimeZone(timeZone);

    // Assert
    expect(valid).toBe(expected);
  });
});

describe('invalid input', () => {
  test.each([[0], [32], [1.5], [Number.NaN]])('rejects anchor day %s', (day) => {
    // Act + Assert
    expect(() => cycleContaining('2026-03-15T00:00:00.000Z', anchor(day))).toThrow(RangeError);
  });

  test('rejects an unknown time zone', () => {
    // Act + Assert
    expect(() => cycleContaining('2026-03-15T00:00:00.000Z', anchor(1, 'Not/AZone'))).toThrow(RangeError);
  });

  test('rejects an instant that is not ISO 8601', () => {
    // Act + Assert
    expect(() => cycleContaining('yesterday', anchor(1))).toThrow(RangeError);
    expect(() => cycleContaining(new Date(Number.NaN), anchor(1))).toThrow(RangeError);
  });
});

describe('memoization', () => {
  test('a caller mutating a returned cycle does not change later results', () => {
    // Arrange
    const first = cycleContaining('2026-08-20T00:00:00.000Z', anchor(10));

    // Act
    first.start = 'mutated';
    const second = cycleContaining('2026-08-21T00:00:00.000Z', anchor(10));

    // Assert
    expect(second).toEqual(utcCycle('2026-08-10', '2026-09-10'));
  });

  test('every hour of a cycle, cached or not, maps to that cycle', () => {
    // Arrange: each UTC hour of Berlin's anchor-28 cycle that spans the DST change.
    const berlin28 = anchor(28, 'Europe/Berlin');
    const hours: Date[] = [];
    for (let t = Date.parse('2026-03-27T23:00:00.000Z'); t < Date.parse('2026-04-27T22:00:00.000Z'); t += 3_600_000) hours.push(new Date(t));

    // Act
    const distinct = new Set(hours.map((hour) => JSON.stringify(cycleContaining(hour, berlin28))));

    // Assert
    expect(hours).toHaveLength(743); // 31 days less the hour skipped on 2026-03-29
    expect([...distinct]).toEqual([JSON.stringify({ start: '2026-03-27T23:00:00.000Z', end: '2026-04-27T22:00:00.000Z' })]);
  });
});

describe('bucketsOf', () => {
  test('agrees with utcHour, localDate and cycleContaining, memoized or not, across zones, DST and half-hour offsets', () => {
    // Arrange: every 7 minutes and 13 seconds over 40 days, in zones with whole, half and quarter-hour offsets
    const zones = ['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata', 'Asia/Kathmandu', 'Australia/Lord_Howe'];
    const start = Date.parse('2026-03-01T00:00:00.000Z');
    for (const timeZone of zones) {
      const anchor = { billingAnchorDay: 31, timeZone };
      for (let t = start; t < start + 40 * 86_400_000; t += 433_000) {
        const instant = new Date(t).toISOString();
        // Act (twice: the second answer comes from the memo)
        const first = bucketsOf(instant, anchor);
        const again = bucketsOf(instant, anchor);
        // Assert
        const expected = { hour: utcHour(instant), day: localDate(instant, timeZone), cycleStart: cycleContaining(instant, anchor).start };
        expect({ instant, timeZone, ...first }).toEqual({ instant, timeZone, ...expected });
        expect(again).toEqual(expected);
      }
    }
  });

  test('the last millisecond before local midnight and midnight itself, in a half-hour zone, are different days', () => {
    // Kolkata is UTC+05:30: local midnight of Mar 2 is 18:30Z on Mar 1
    const anchor = { billingAnchorDay: 2, timeZone: 'Asia/Kolkata' };
    expect(bucketsOf('2026-03-01T18:29:59.999Z', anchor)).toEqual({ hour: '2026-03-01T18', day: '2026-03-01', cycleStart: '2026-02-01T18:30:00.000Z' });
    expect(bucketsOf('2026-03-01T18:30:00.000Z', anchor)).toEqual({ hour: '2026-03-01T18', day: '2026-03-02', cycleStart: '2026-03-01T18:30:00.000Z' });
  });
});
