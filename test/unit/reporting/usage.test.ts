import { InvalidRequestError, NotFoundError } from '../../../functions/core/errors';
import type { RollupRow } from '../../../functions/core/metering/metering-ports';
import type { Subject } from '../../../functions/core/ports';
import { parseUsageQuery, queryUsage, type UsageQuery } from '../../../functions/core/reporting/usage';
import { InMemoryRollupReader, InMemorySubjectDirectory } from '../../support/fakes';
import { dayRow } from '../../support/rollup-rows';

const subject = (id: string, timeZone = 'UTC', billingAnchorDay = 15): Subject => ({ id, plan: 'pro', billingAnchorDay, timeZone, contacts: [] });
const directory = new InMemorySubjectDirectory([subject('ws_utc'), subject('ws_berlin', 'Europe/Berlin'), subject('ws_kolkata', 'Asia/Kolkata')]);

/** Request counts in these rows are chosen unlike the quantities, so that use reported as requests would show. */
const cycleRow = (period: string, usageType: string, total: string, requests?: string): RollupRow => ({
  kind: 'cycle',
  period,
  usageType,
  total,
  ...(requests === undefined ? {} : { requests }),
  counters: {},
});
const query = (granularity: UsageQuery['granularity'], from: string, to: string, usageType?: string): UsageQuery => ({
  granularity,
  from: new Date(from),
  to: new Date(to),
  ...(usageType ? { usageType } : {}),
});

/** Runs parseUsageQuery and returns the InvalidRequestError it throws. */
function invalid(params: Record<string, string | undefined>): InvalidRequestError {
  try {
    parseUsageQuery(params);
  } catch (error) {
    if (error instanceof InvalidRequestError) return error;
    throw error;
  }
  throw new Error('expected an InvalidRequestError');
}

describe('parseUsageQuery', () => {
  test('parses granularity, instants with offsets and an optional usage type', () => {
    // Act
    const parsed = parseUsageQuery({ granularity: 'hour', from: '2026-11-22T07:00:00+02:00', to: '2026-11-22T08:00:00Z', usageType: 'tokens' });

    // Assert
    expect(parsed).toEqual({ granularity: 'hour', from: new Date('2026-11-22T05:00:00.000Z'), to: new Date('2026-11-22T08:00:00.000Z'), usageType: 'tokens' });
  });

  const invalidCases: [string, Record<string, string | undefined>, string][] = [
    ['granularity missing', { from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z' }, 'granularity'],
    ['granularity "week"', { granularity: 'week', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z' }, 'granularity'],
    ['from missing', { granularity: 'day', to: '2026-11-02T00:00:00Z' }, 'from'],
    ['from a date only', { granularity: 'day', from: '2026-11-01', to: '2026-11-02T00:00:00Z' }, 'from'],
    ['from not a date', { granularity: 'day', from: 'yesterday', to: '2026-11-02T00:00:00Z' }, 'from'],
    ['to without an offset', { granularity: 'day', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00' }, 'to'],
    ['to on February 30th', { granularity: 'day', from: '2026-02-01T00:00:00Z', to: '2026-02-30T00:00:00Z' }, 'to'],
    ['from equal to to', { granularity: 'day', from: '2026-11-01T00:00:00Z', to: '2026-11-01T02:00:00+02:00' }, 'to'],
    ['from after to', { granularity: 'day', from: '2026-11-02T00:00:00Z', to: '2026-11-01T00:00:00Z' }, 'to'],
    ['usageType empty', { granularity: 'day', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z', usageType: '' }, 'usageType'],
    ['an unknown parameter', { granularity: 'day', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z', bogus: '1' }, 'bogus'],
    ['to in December 9999 (its day keys would pass year 9999)', { granularity: 'day', from: '9998-12-01T00:00:00Z', to: '9999-12-31T23:59:59Z' }, 'to'],
    ['from in December 9999', { granularity: 'day', from: '9999-12-01T00:00:00Z', to: '9999-12-31T23:59:59Z' }, 'from'],
    ['to whose offset carries it past 9999-01-01', { granularity: 'hour', from: '9998-12-31T20:00:00Z', to: '9998-12-31T23:00:00-05:00' }, 'to'],
    ['from in year 0000', { granularity: 'cycle', from: '0000-06-01T00:00:00Z', to: '0001-06-01T00:00:00Z' }, 'from'],
  ];

  test.each(invalidCases.map(([label, params, field]) => ({ label, params, field })))('$label → invalid_parameter naming $field', ({ params, field }) => {
    // Act
    const error = invalid(params);

    // Assert
    expect(error.code).toBe('invalid_parameter');
    expect(error.message.startsWith(`${field}: `)).toBe(true);
  });

  test('an unknown parameter is named in the message', () => {
    // Act
    const error = invalid({ granularity: 'day', from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z', bogus: '1' });

    // Assert
    expect(error.message).toBe('bogus: unknown parameter');
  });

  test('from and to may be the first and last instants of the key range', () => {
    // Act
    const first = parseUsageQuery({ granularity: 'day', from: '0001-01-01T00:00:00Z', to: '0001-01-02T00:00:00Z' });
    const last = parseUsageQuery({ granularity: 'day', from: '9998-12-31T00:00:00Z', to: '9999-01-01T00:00:00Z' });

    // Assert
    expect([first.from.toISOString(), last.to.toISOString()]).toEqual(['0001-01-01T00:00:00.000Z', '9999-01-01T00:00:00.000Z']);
  });

  test.each([
    ['hour', '2026-01-01T00:00:00Z', '2026-04-04T00:00:00Z'], // 93 days
    ['day', '2020-01-01T00:00:00Z', '2030-01-08T00:00:00Z'], // 3660 days
    ['cycle', '2020-01-01T00:00:00Z', '2030-01-08T00:00:00Z'],
  ])('granularity=%s allows exactly the maximum range %s → %s', (granularity, from, to) => {
    expect(parseUsageQuery({ granularity, from, to }).granularity).toBe(granularity);
  });

  test.each([
    ['hour', '2026-01-01T00:00:00Z', '2026-04-04T00:00:01Z'],
    ['day', '2020-01-01T00:00:00Z', '2030-01-08T00:00:01Z'],
    ['cycle', '2020-01-01T00:00:00Z', '2030-01-09T00:00:00Z'],
  ])('granularity=%s over the maximum range → range_too_large', (granularity, from, to) => {
    // Act
    const error = invalid({ granularity, from, to });

    // Assert
    expect(error.code).toBe('range_too_large');
  });
});

describe('queryUsage', () => {
  test('an unknown subject is a NotFoundError unknown_workspace', async () => {
    // Arrange
    const rollups = new InMemoryRollupReader();

    // Act
    const result = queryUsage('ws_ghost', query('day', '2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    await expect(result).rejects.toBeInstanceOf(NotFoundError);
    await expect(result).rejects.toMatchObject({ code: 'unknown_workspace' });
    expect(rollups.queries).toEqual([]);
  });

  test('hour buckets come from the h# counters, within [from, to), sorted, without zeros', async () => {
    // Arrange: requests from the r# counters of the same hour (tokens 05h 3, 07h 2; credits 05h 1, 07h 3); 06h holds 0 of both.
    const rollups = new InMemoryRollupReader().add(
      'ws_utc',
      dayRow(
        '2026-11-22',
        'tokens',
        '12',
        {
          'h#2026-11-22T04': '1',
          'h#2026-11-22T07': '4',
          'h#2026-11-22T05': '2',
          'h#2026-11-22T06': '0',
          'h#2026-11-22T08': '5',
          'r#2026-11-22T04': '5',
          'r#2026-11-22T07': '2',
          'r#2026-11-22T05': '3',
          'r#2026-11-22T06': '0',
          'r#2026-11-22T08': '1',
        },
        '11',
      ),
      dayRow('2026-11-22', 'credits', '1.75', { 'h#2026-11-22T07': '1.5', 'h#2026-11-22T05': '0.25', 'r#2026-11-22T07': '3', 'r#2026-11-22T05': '1' }, '4'),
      dayRow('2026-11-21', 'tokens', '9', { 'h#2026-11-21T05': '9', 'r#2026-11-21T05': '2' }, '2'),
    );

    // Act
    const response = await queryUsage('ws_utc', query('hour', '2026-11-22T05:00:00Z', '2026-11-22T08:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(response).toEqual({
      subject: 'ws_utc',
      granularity: 'hour',
      buckets: [
        { start: '2026-11-22T05:00:00.000Z', usageType: 'credits', quantity: 0.25, requests: 1 },
        { start: '2026-11-22T05:00:00.000Z', usageType: 'tokens', quantity: 2, requests: 3 },
        { start: '2026-11-22T07:00:00.000Z', usageType: 'credits', quantity: 1.5, requests: 3 },
        { start: '2026-11-22T07:00:00.000Z', usageType: 'tokens', quantity: 4, requests: 2 },
      ],
    });
  });

  test('hour buckets of a day item keyed by local date are found for a zone ahead of UTC', async () => {
    // Arrange: in Berlin (UTC+1) the local day 2026-11-23 holds the UTC hour 2026-11-22T23.
    const rollups = new InMemoryRollupReader().add('ws_berlin', dayRow('2026-11-23', 'tokens', '3', { 'h#2026-11-22T23': '3', 'r#2026-11-22T23': '1' }, '1'));

    // Act
    const response = await queryUsage('ws_berlin', query('hour', '2026-11-22T22:00:00Z', '2026-11-23T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(response.buckets).toEqual([{ start: '2026-11-22T23:00:00.000Z', usageType: 'tokens', quantity: 3, requests: 1 }]);
  });

  test('the usage type filter keeps only that type', async () => {
    // Arrange
    const rollups = new InMemoryRollupReader().add(
      'ws_utc',
      dayRow('2026-11-22', 'tokens', '4', { 'h#2026-11-22T05': '4', 'r#2026-11-22T05': '2' }, '2'),
      dayRow('2026-11-22', 'credits', '1', { 'h#2026-11-22T05': '1', 'r#2026-11-22T05': '3' }, '3'),
    );

    // Act
    const response = await queryUsage('ws_utc', query('hour', '2026-11-22T00:00:00Z', '2026-11-23T00:00:00Z', 'credits'), { subjects: directory, rollups });

    // Assert
    expect(response.buckets).toEqual([{ start: '2026-11-22T05:00:00.000Z', usageType: 'credits', quantity: 1, requests: 3 }]);
  });

  test('day buckets start at local midnight of the subject’s zone and are kept within [from, to)', async () => {
    // Arrange: Berlin is UTC+1 in November. Requests from the day items' `requests`.
    const rollups = new InMemoryRollupReader().add(
      'ws_berlin',
      dayRow('2026-11-23', 'tokens', '7', {}, '3'),
      dayRow('2026-11-21', 'tokens', '3', {}, '1'),
      dayRow('2026-11-22', 'tokens', '4', {}, '6'),
      dayRow('2026-11-22', 'credits', '0', {}, '0'),
      dayRow('2026-11-24', 'tokens', '6', {}, '2'),
    );

    // Act
    const response = await queryUsage('ws_berlin', query('day', '2026-11-21T23:00:00Z', '2026-11-23T23:00:00Z'), { subjects: directory, rollups });

    // Assert: the 21st starts before `from`, the 24th exactly at `to`; the zero credits bucket is omitted.
    expect(response.buckets).toEqual([
      { start: '2026-11-21T23:00:00.000Z', usageType: 'tokens', quantity: 4, requests: 6 },
      { start: '2026-11-22T23:00:00.000Z', usageType: 'tokens', quantity: 7, requests: 3 },
    ]);
  });

  test('day buckets follow daylight-saving changes', async () => {
    // Arrange: Berlin moves to UTC+2 on 2026-03-29 and back to UTC+1 on 2026-10-25. The Oct 26 item was written
    // before items kept `requests`: it counts 0.
    const rollups = new InMemoryRollupReader().add(
      'ws_berlin',
      dayRow('2026-03-29', 'tokens', '1', {}, '2'),
      dayRow('2026-03-30', 'tokens', '2', {}, '5'),
      dayRow('2026-10-25', 'tokens', '3', {}, '1'),
      dayRow('2026-10-26', 'tokens', '4'),
    );

    // Act
    const response = await queryUsage('ws_berlin', query('day', '2026-03-01T00:00:00Z', '2026-11-01T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(response.buckets).toEqual([
      { start: '2026-03-28T23:00:00.000Z', usageType: 'tokens', quantity: 1, requests: 2 },
      { start: '2026-03-29T22:00:00.000Z', usageType: 'tokens', quantity: 2, requests: 5 },
      { start: '2026-10-24T22:00:00.000Z', usageType: 'tokens', quantity: 3, requests: 1 },
      { start: '2026-10-25T23:00:00.000Z', usageType: 'tokens', quantity: 4, requests: 0 },
    ]);
  });

  test('cycle buckets start at the cycle start and are kept within [from, to)', async () => {
    // Arrange
    const rollups = new InMemoryRollupReader().add(
      'ws_utc',
      cycleRow('2026-11-15T00:00:00.000Z', 'tokens', '7', '2'),
      cycleRow('2026-10-15T00:00:00.000Z', 'tokens', '200', '37'),
      cycleRow('2026-10-15T00:00:00.000Z', 'credits', '0.5', '4'),
      cycleRow('2026-10-15T00:00:00.000Z', 'images', '0', '0'),
      cycleRow('2026-09-15T00:00:00.000Z', 'tokens', '100', '20'),
    );

    // Act
    const response = await queryUsage('ws_utc', query('cycle', '2026-10-01T00:00:00Z', '2026-11-15T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(response).toEqual({
      subject: 'ws_utc',
      granularity: 'cycle',
      buckets: [
        { start: '2026-10-15T00:00:00.000Z', usageType: 'credits', quantity: 0.5, requests: 4 },
        { start: '2026-10-15T00:00:00.000Z', usageType: 'tokens', quantity: 200, requests: 37 },
      ],
    });
  });

  test('a UTC hour that straddles local midnight in a half-hour zone is one bucket', async () => {
    // In Asia/Kolkata (UTC+05:30) the UTC hour 2026-11-22T18 runs from 23:30 on the 22nd to 00:30 on the
    // 23rd local time, so both local day items carry an 'h#2026-11-22T18' counter (and an 'r#' one); the API sums them.
    // Arrange: 1 event of 2 on the 22nd, 2 events of 3 in all on the 23rd → quantity 5, requests 3.
    const rollups = new InMemoryRollupReader().add(
      'ws_kolkata',
      dayRow('2026-11-22', 'tokens', '2', { 'h#2026-11-22T18': '2', 'r#2026-11-22T18': '1' }, '1'),
      dayRow('2026-11-23', 'tokens', '3', { 'h#2026-11-22T18': '3', 'r#2026-11-22T18': '2' }, '2'),
    );

    // Act
    const response = await queryUsage('ws_kolkata', query('hour', '2026-11-22T00:00:00Z', '2026-11-23T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(response.buckets).toEqual([{ start: '2026-11-22T18:00:00.000Z', usageType: 'tokens', quantity: 5, requests: 3 }]);
  });

  test('a bucket of events that add up to no use is kept: its requests are not zero', async () => {
    // Arrange: two events of 0 tokens at 05h on Nov 22 (h# 0, r# 2); the cycle item counts them too.
    const rollups = new InMemoryRollupReader().add(
      'ws_utc',
      dayRow('2026-11-22', 'tokens', '0', { 'h#2026-11-22T05': '0', 'r#2026-11-22T05': '2' }, '2'),
      cycleRow('2026-11-15T00:00:00.000Z', 'tokens', '0', '2'),
    );

    // Act
    const hours = await queryUsage('ws_utc', query('hour', '2026-11-22T00:00:00Z', '2026-11-23T00:00:00Z'), { subjects: directory, rollups });
    const days = await queryUsage('ws_utc', query('day', '2026-11-22T00:00:00Z', '2026-11-23T00:00:00Z'), { subjects: directory, rollups });
    const cycles = await queryUsage('ws_utc', query('cycle', '2026-11-15T00:00:00Z', '2026-11-16T00:00:00Z'), { subjects: directory, rollups });

    // Assert
    expect(hours.buckets).toEqual([{ start: '2026-11-22T05:00:00.000Z', usageType: 'tokens', quantity: 0, requests: 2 }]);
    expect(days.buckets).toEqual([{ start: '2026-11-22T00:00:00.000Z', usageType: 'tokens', quantity: 0, requests: 2 }]);
    expect(cycles.buckets).toEqual([{ start: '2026-11-15T00:00:00.000Z', usageType: 'tokens', quantity: 0, requests: 2 }]);
  });
});
