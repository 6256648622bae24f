import { describe, expect, test } from '@jest/globals';
import { parseQuery } from '../../../functions/core/access/workspaces';
import { units } from '../../../functions/core/billing/balance';
import type { Cycle } from '../../../functions/core/cycles';
import { InvalidRequestError, NotFoundError } from '../../../functions/core/errors';
import type { RollupRow } from '../../../functions/core/metering/metering-ports';
import type { Subject } from '../../../functions/core/ports';
import {
  memberTopQuerySchema,
  projection,
  rankPage,
  reportQuerySchema,
  seriesQuerySchema,
  summaryQuerySchema,
  topMembers,
  topWorkspaces,
  usageSeries,
  workspaceTopQuerySchema,
} from '../../../functions/core/reporting/analytics';
import { caught } from '../../support/caught';
import { FixedClock, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';
import { dayRow } from '../../support/rollup-rows';

/**
 * The dashboard reads (projection, series, rankings) against expectations worked out by hand in the comments.
 * Calendar facts used below: 2026-10-25 (Sunday) ends summer time in Berlin (UTC+2 → UTC+1);
 * 2026-11-01 (Sunday) ends it in New York (UTC−4 → UTC−5).
 */

const subject = (id: string, timeZone: string, billingAnchorDay: number, name?: string): Subject => ({ id, plan: 'pro', billingAnchorDay, timeZone, contacts: [], ...(name ? { name } : {}) });
const cycleRow = (period: string, usageType: string, total: string): RollupRow => ({ kind: 'cycle', period, usageType, total, counters: {} });
const memberRow = (kind: 'user' | 'group', period: string, usageType: string, member: string, total: string): RollupRow => ({ kind, period, usageType, member, total, counters: {} });
const USAGE_TYPES = ['tokens', 'credits'] as const;

// ---------------------------------------------------------------------------------------------

describe('projection', () => {
  // A UTC cycle anchored on the 15th: 2026-11-15 → 2026-12-15, 30 local days (Nov 15..30 = 16, Dec 1..14 = 14).
  const utcCycle: Cycle = { start: '2026-11-15T00:00:00.000Z', end: '2026-12-15T00:00:00.000Z' };
  const at = (now: string, used: bigint, available: bigint, cycle = utcCycle, timeZone = 'UTC') => projection({ used, available, cycle, now: new Date(now), timeZone });

  test('zero usage: no rate, no run-out date, not projected to run out', () => {
    // Act: Nov 20 is day 6 (15..20); Nov 21..30 (10) + Dec 1..14 (14) = 24 days after it.
    const result = at('2026-11-20T12:00:00.000Z', 0n, units(1000));

    // Assert
    expect(result).toEqual({ daysElapsed: 6, daysRemaining: 24, avgPerDay: 0, runOutInDays: null, projectedToRunOut: false });
  });

  test('first day of the cycle counts as one day elapsed', () => {
    // Act: 10 used on day 1 → 10/day; 990 left ÷ 10 = 99 days, far beyond the 29 days after today.
    const result = at('2026-11-15T08:00:00.000Z', units(10), units(990));

    // Assert
    expect(result).toEqual({ daysElapsed: 1, daysRemaining: 29, avgPerDay: 10, runOutInDays: 99, projectedToRunOut: false });
  });

  test('mid-cycle at a rate that runs out before the end', () => {
    // Act: Nov 25 00:00 is day 11 (15..25); 550 ÷ 11 = 50/day; 450 ÷ 50 = 9 days < the 20 days to Dec 15 00:00.
    const result = at('2026-11-25T00:00:00.000Z', units(550), units(450));

    // Assert
    expect(result).toEqual({ daysElapsed: 11, daysRemaining: 19, avgPerDay: 50, runOutInDays: 9, projectedToRunOut: true });
  });

  test('mid-cycle at a rate that lasts to the end', () => {
    // Act: 110 ÷ 11 = 10/day; 890 ÷ 10 = 89 days > 20 days left.
    const result = at('2026-11-25T00:00:00.000Z', units(110), units(890));

    // Assert
    expect(result).toEqual({ daysElapsed: 11, daysRemaining: 19, avgPerDay: 10, runOutInDays: 89, projectedToRunOut: false });
  });

  test('the comparison is exact: running out exactly at the end is not "before", one nano-unit less is', () => {
    // Arrange: 50/day with exactly 20 days (Nov 25 00:00 → Dec 15 00:00) left.
    const exact = at('2026-11-25T00:00:00.000Z', units(550), units(1000)); // 1000 ÷ 50 = 20 days, not < 20
    const short = at('2026-11-25T00:00:00.000Z', units(550), units(1000) - 1n); // 19.99999999998 days < 20

    // Assert: both round to 20.00 days, only the exact comparison tells them apart.
    expect([exact.runOutInDays, exact.projectedToRunOut]).toEqual([20, false]);
    expect([short.runOutInDays, short.projectedToRunOut]).toEqual([20, true]);
  });

  test('compares with the time left to the cycle end, not the whole days remaining', () => {
    // Act: Nov 25 12:00 → 19.5 days to Dec 15 00:00; 960 ÷ 50 = 19.2 days: more than daysRemaining (19), yet before the end.
    const result = at('2026-11-25T12:00:00.000Z', units(550), units(960));

    // Assert
    expect(result).toEqual({ daysElapsed: 11, daysRemaining: 19, avgPerDay: 50, runOutInDays: 19.2, projectedToRunOut: true });
  });

  test.each([
    ['nothing available', 0n],
    ['a negative available (clamped to 0)', -units(5)],
  ])('already over the limit (%s): runs out in 0 days, projected to run out', (_label, available) => {
    // Act: 1200 ÷ 11 days = 109.0909… → 109.09.
    const result = at('2026-11-25T00:00:00.000Z', units(1200), available);

    // Assert
    expect(result).toEqual({ daysElapsed: 11, daysRemaining: 19, avgPerDay: 109.09, runOutInDays: 0, projectedToRunOut: true });
  });

  test.each([
    // [label, used, available, expected avgPerDay, expected runOutInDays]; Nov 17 is day 3 (15, 16, 17).
    ['1000 over 3 days = 333.333… rounds down to 333.33', units(1000), units(700), 333.33, 2.1], // 700 × 3 ÷ 1000 = 2.1
    ['2000 over 3 days = 666.666… rounds up to 666.67', units(2000), units(1000), 666.67, 1.5], // 1000 × 3 ÷ 2000 = 1.5
    ['7 over 3 days = 2.333… → 2.33; 10 ÷ (7/3) = 4.2857… → 4.29', units(7), units(10), 2.33, 4.29],
    ['0.015 over 3 days = 0.005 exactly, half rounds up to 0.01', units('0.015'), units(1), 0.01, 200], // 1 × 3 ÷ 0.015 = 200
  ])('rounds to 2 decimals: %s', (_label, used, available, avgPerDay, runOutInDays) => {
    // Act
    const result = at('2026-11-17T10:00:00.000Z', used, available);

    // Assert
    expect(result.daysElapsed).toBe(3);
    expect(result.avgPerDay).toBe(avgPerDay);
    expect(result.runOutInDays).toBe(runOutInDays);
  });

  test('last day of the cycle: nothing remains after today', () => {
    // Act: Dec 14 is day 30; 600 ÷ 30 = 20/day; 400 ÷ 20 = 20 days, but only 1 hour is left.
    const result = at('2026-12-14T23:00:00.000Z', units(600), units(400));

    // Assert
    expect(result).toEqual({ daysElapsed: 30, daysRemaining: 0, avgPerDay: 20, runOutInDays: 20, projectedToRunOut: false });
  });

  describe('in America/New_York (EST, UTC−5 in this cycle)', () => {
    // Anchor 15: local Nov 15 00:00 EST = 05:00Z → local Dec 15 00:00 EST = 05:00Z.
    const nyCycle: Cycle = { start: '2026-11-15T05:00:00.000Z', end: '2026-12-15T05:00:00.000Z' };

    test('days elapsed count local dates, not UTC dates', () => {
      // Act: 2026-11-17T03:00Z is Nov 16 22:00 local → day 2 (the UTC date Nov 17 would say day 3);
      // 28 local days after it (Nov 17..30 = 14, Dec 1..14 = 14). 100 ÷ 2 = 50/day; 900 ÷ 50 = 18 days < 28 d 2 h left.
      const result = at('2026-11-17T03:00:00.000Z', units(100), units(900), nyCycle, 'America/New_York');

      // Assert
      expect(result).toEqual({ daysElapsed: 2, daysRemaining: 28, avgPerDay: 50, runOutInDays: 18, projectedToRunOut: true });
    });

    test('the last local day has daysRemaining 0 although it is already the next day in UTC', () => {
      // Act: 2026-12-15T03:00Z is Dec 14 22:00 local, the 30th and last day; 300 ÷ 30 = 10/day.
      const result = at('2026-12-15T03:00:00.000Z', units(300), units(100), nyCycle, 'America/New_York');

      // Assert: 100 ÷ 10 = 10 days, but only 2 hours are left.
      expect(result).toEqual({ daysElapsed: 30, daysRemaining: 0, avgPerDay: 10, runOutInDays: 10, projectedToRunOut: false });
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('rankPage', () => {
  const CONTEXT = 'ws_a|user|tokens|2026-11-15T00:00:00.000Z';
  const entry = (id: string, amount: number | string) => ({ id, amount: units(amount) });

  test('orders by amount descending then id, drops zero and negative amounts, ranks contiguously across pages', () => {
    // Arrange: total 30; b and c tie at 5 (b first by id); d (0) and e (−2) are not ranked.
    const all = [entry('c', 5), entry('a', 10), entry('d', 0), entry('b', 5), entry('e', -2), entry('f', 3)];

    // Act
    const first = rankPage(all, units(30), 2, undefined, CONTEXT);
    const second = rankPage(all, units(30), 2, first.nextCursor ?? undefined, CONTEXT);

    // Assert: shares 10/30 = 0.33333 → 0.3333, 5/30 = 0.16667 → 0.1667, 3/30 = 0.1.
    expect(first.entries).toEqual([
      { rank: 1, id: 'a', amount: 10, share: 0.3333, requests: 0 },
      { rank: 2, id: 'b', amount: 5, share: 0.1667, requests: 0 },
    ]);
    expect(typeof first.nextCursor).toBe('string');
    expect(second).toEqual({
      entries: [
        { rank: 3, id: 'c', amount: 5, share: 0.1667, requests: 0 },
        { rank: 4, id: 'f', amount: 3, share: 0.1, requests: 0 },
      ],
      nextCursor: null, // 4 ranked entries, all returned
    });
  });

  test('a page that ends exactly at the last entry has no next cursor; one that stops short has', () => {
    // Arrange: three ranked entries.
    const all = [entry('a', 3), entry('b', 2), entry('c', 1)];

    // Act / Assert
    expect(rankPage(all, units(6), 3, undefined, CONTEXT).nextCursor).toBeNull();
    expect(rankPage(all, units(6), 2, undefined, CONTEXT).nextCursor).not.toBeNull();
  });

  test('share is rounded half up to 4 decimals, and 0 when the total is 0', () => {
    // Arrange: 1/32 = 0.03125 → 0.0313 (half up); 2/3 = 0.66666… → 0.6667.
    const halves = rankPage([entry('x', 1)], units(32), 10, undefined, CONTEXT);
    const thirds = rankPage([entry('y', 2)], units(3), 10, undefined, CONTEXT);
    const noTotal = rankPage([entry('z', 4)], 0n, 10, undefined, CONTEXT);

    // Assert
    expect(halves.entries[0]?.share).toBe(0.0313);
    expect(thirds.entries[0]?.share).toBe(0.6667);
    expect(noTotal.entries).toEqual([{ rank: 1, id: 'z', amount: 4, share: 0, requests: 0 }]);
  });

  test('fractional amounts are returned exactly', () => {
    // Act: 0.1 + 0.2 would drift as floats; the amounts are nano-units.
    const page = rankPage([entry('a', '0.3'), entry('b', '0.1')], units('0.4'), 10, undefined, CONTEXT);

    // Assert: 0.3/0.4 = 0.75, 0.1/0.4 = 0.25.
    expect(page.entries).toEqual([
      { rank: 1, id: 'a', amount: 0.3, share: 0.75, requests: 0 },
      { rank: 2, id: 'b', amount: 0.1, share: 0.25, requests: 0 },
    ]);
  });

  test.each([
    ['a cursor of another ranking', () => rankPage([entry('a', 2), entry('b', 1)], units(3), 1, undefined, 'ws_b|user|tokens|2026-11-15T00:00:00.000Z').nextCursor ?? ''],
    ['garbage', () => 'not a cursor at all!'],
    ['a truncated cursor', () => (rankPage([entry('a', 2), entry('b', 1)], units(3), 1, undefined, CONTEXT).nextCursor ?? '').slice(0, 10)],
    ['an empty cursor', () => ''],
    ['a 5,000-character cursor', () => 'A'.repeat(5000)],
    ['a valid cursor padded past 4,096 characters', () => `${rankPage([entry('a', 2), entry('b', 1)], units(3), 1, undefined, CONTEXT).nextCursor ?? ''}${'='.repeat(4096)}`],
  ])('%s → InvalidRequestError invalid_cursor', async (_label, makeCursor) => {
    // Arrange
    const cursor = makeCursor();

    // Act
    const error = await caught(() => rankPage([entry('a', 2), entry('b', 1)], units(3), 1, cursor, CONTEXT));

    // Assert
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'invalid_cursor' });
  });

  test('entries that grow between pages are never returned twice; unchanged ones exactly once', () => {
    // Arrange: a 10, b 5, c 5, f 3, g 1, pages of 2.
    const amounts = new Map([
      ['a', 10],
      ['b', 5],
      ['c', 5],
      ['f', 3],
      ['g', 1],
    ]);
    const current = () => [...amounts].map(([id, amount]) => entry(id, amount));

    // Act: page 1 is a, b (cursor after b at 5).
    const page1 = rankPage(current(), units(100), 2, undefined, CONTEXT);
    // Seen a and b grow (b, the cursor entry, to 6); unseen f grows past the cursor to 20.
    amounts.set('a', 12).set('b', 6).set('f', 20);
    const page2 = rankPage(current(), units(100), 2, page1.nextCursor ?? undefined, CONTEXT);

    // Assert: ranking now f 20, a 12, b 6, c 5, g 1. After (5, b): c and g, ranked 4th and 5th.
    // Paging by offset would have returned b (now 3rd) a second time and lost g.
    expect(page1.entries.map((e) => e.id)).toEqual(['a', 'b']);
    expect(page2.entries.map((e) => [e.rank, e.id])).toEqual([
      [4, 'c'],
      [5, 'g'],
    ]);
    expect(page2.nextCursor).toBeNull();
  });

  test.each([1, 2, 3, 4, 5])('random growth between pages (seed %i): no id twice, every never-changed id exactly once', (seed) => {
    // Arrange: 40 members with many ties; a seeded generator (Park–Miller) picks growth between pages of 3.
    let state = seed;
    const random = (n: number) => {
      state = (state * 48271) % 2147483647;
      return state % n;
    };
    const amounts = new Map<string, number>(Array.from({ length: 40 }, (_, i) => [`m${String(i).padStart(2, '0')}`, 1 + random(8)]));
    const changed = new Set<string>();
    const returned: string[] = [];

    // Act
    let cursor: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const page = rankPage(
        [...amounts].map(([id, amount]) => entry(id, amount)),
        units(10_000),
        3,
        cursor,
        CONTEXT,
      );
      returned.push(...page.entries.map((e) => e.id));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
      for (let k = random(4); k > 0; k--) {
        const id = `m${String(random(40)).padStart(2, '0')}`;
        amounts.set(id, (amounts.get(id) ?? 0) + 1 + random(10));
        changed.add(id);
      }
    }

    // Assert
    expect(returned.length).toBe(new Set(returned).size);
    const unchanged = [...amounts.keys()].filter((id) => !changed.has(id));
    expect(unchanged.length).toBeGreaterThan(0);
    for (const id of unchanged) expect(returned.filter((r) => r === id)).toEqual([id]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('usageSeries', () => {
  const subjects = new InMemorySubjectStore([subject('ws_utc', 'UTC', 15), subject('ws_berlin', 'Europe/Berlin', 1), subject('ws_ny', 'America/New_York', 1)]);
  const deps = (rollups: InMemoryRollupReader, now: string) => ({ subjects, rollups, clock: new FixedClock(now), usageTypes: USAGE_TYPES });

  test('24h: the 24 UTC hours ending with the current one, totals from h# and channels from ch#', async () => {
    // Arrange: now 2026-11-24T10:30Z → buckets 2026-11-23T11:00Z … 2026-11-24T10:00Z (the current hour).
    // Requests from r#: tokens 10h 2, 00h 7 (item 9); 11h on the 23rd 1, 10h 50 (item 51); credits 10h 4.
    const rollups = new InMemoryRollupReader().add(
      'ws_utc',
      dayRow(
        '2026-11-24',
        'tokens',
        '8',
        {
          'h#2026-11-24T10': '3',
          'r#2026-11-24T10': '2',
          'ch#2026-11-24T10#web': '1',
          'ch#2026-11-24T10#api': '2',
          'h#2026-11-24T00': '5',
          'r#2026-11-24T00': '7',
          'ch#2026-11-24T00#api': '5',
        },
        '9',
      ),
      // 11:00 on the 23rd is the oldest bucket; 10:00 is one hour too old.
      dayRow('2026-11-23', 'tokens', '104', { 'h#2026-11-23T11': '4', 'r#2026-11-23T11': '1', 'h#2026-11-23T10': '100', 'r#2026-11-23T10': '50', 'ch#2026-11-23T10#api': '100' }, '51'),
      dayRow('2026-11-24', 'credits', '0.5', { 'h#2026-11-24T10': '0.5', 'r#2026-11-24T10': '4' }, '4'),
    );

    // Act
    const response = await usageSeries('ws_utc', { window: '24h' }, deps(rollups, '2026-11-24T10:30:00.000Z'));

    // Assert
    expect(response).toMatchObject({ subject: 'ws_utc', asOf: '2026-11-24T10:30:00.000Z', window: '24h', granularity: 'hour' });
    expect(response.series.map((s) => s.usageType)).toEqual(['tokens', 'credits']);
    const tokens = response.series[0]?.buckets ?? [];
    expect(tokens).toHaveLength(24);
    expect(tokens[0]).toEqual({ start: '2026-11-23T11:00:00.000Z', end: '2026-11-23T12:00:00.000Z', total: 4, requests: 1, byChannel: {} });
    // 2026-11-24T00 is 13 hours after 2026-11-23T11.
    expect(tokens[13]).toEqual({ start: '2026-11-24T00:00:00.000Z', end: '2026-11-24T01:00:00.000Z', total: 5, requests: 7, byChannel: { api: 5 } });
    expect(tokens[23]).toEqual({ start: '2026-11-24T10:00:00.000Z', end: '2026-11-24T11:00:00.000Z', total: 3, requests: 2, byChannel: { api: 2, web: 1 } });
    expect(Object.keys(tokens[23]?.byChannel ?? {})).toEqual(['api', 'web']); // channels sorted
    expect(tokens.map((b) => b.total)).toEqual([4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    for (let i = 1; i < 24; i++) expect(tokens[i]?.start).toBe(tokens[i - 1]?.end); // contiguous hours
    expect(response.series[1]?.buckets.map((b) => b.total)).toEqual([...Array<number>(23).fill(0), 0.5]);
    // Requests per hour from the r# counters, not from the items' `requests` nor their use.
    expect(tokens.map((b) => b.requests)).toEqual([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    expect(response.series[1]?.buckets.map((b) => b.requests)).toEqual([...Array<number>(23).fill(0), 4]);
  });

  test('24h in a zone behind UTC reads the UTC hours stored under the neighbouring local date', async () => {
    // Arrange: New York (UTC−5). UTC hour 2026-11-24T03 is Nov 23 22:00 local: it is in the day item 2026-11-23.
    const rollups = new InMemoryRollupReader().add('ws_ny', dayRow('2026-11-23', 'tokens', '2', { 'h#2026-11-24T03': '2', 'r#2026-11-24T03': '1', 'ch#2026-11-24T03#api': '2' }, '1'));

    // Act
    const response = await usageSeries('ws_ny', { window: '24h', usageType: 'tokens' }, deps(rollups, '2026-11-24T10:30:00.000Z'));

    // Assert: 03:00 on the 24th is 16 hours after the oldest bucket (11:00 on the 23rd).
    const buckets = response.series[0]?.buckets ?? [];
    expect(response.series.map((s) => s.usageType)).toEqual(['tokens']);
    expect(buckets[16]).toEqual({ start: '2026-11-24T03:00:00.000Z', end: '2026-11-24T04:00:00.000Z', total: 2, requests: 1, byChannel: { api: 2 } });
    expect(buckets.reduce((sum, b) => sum + Number(b.total), 0)).toBe(2);
    expect(buckets.reduce((sum, b) => sum + b.requests, 0)).toBe(1);
  });

  test('7d in Europe/Berlin: 7 local days ending today, bounded by local midnights (23:00Z in winter)', async () => {
    // Arrange: 2026-11-24T10:30Z is Nov 24 11:30 in Berlin (UTC+1) → days Nov 18..24.
    const rollups = new InMemoryRollupReader().add(
      'ws_berlin',
      // UTC hour 2026-11-23T23 is local Nov 24 00:00–01:00, so it is part of the Nov 24 item.
      // Events: 1 at 23h and 3 at 09h, so the item counts 4; Nov 18 counts 5.
      dayRow(
        '2026-11-24',
        'tokens',
        '10',
        { 'h#2026-11-23T23': '1', 'r#2026-11-23T23': '1', 'h#2026-11-24T09': '9', 'r#2026-11-24T09': '3', 'ch#2026-11-23T23#web': '1', 'ch#2026-11-24T09#api': '6' },
        '4',
      ),
      dayRow('2026-11-18', 'tokens', '2', {}, '5'),
      dayRow('2026-11-17', 'tokens', '50', {}, '20'), // the day before the window
    );

    // Act
    const response = await usageSeries('ws_berlin', { window: '7d', usageType: 'tokens' }, deps(rollups, '2026-11-24T10:30:00.000Z'));

    // Assert: total from the day item's total (10: 3 of it had no channel), channels from its ch# counters.
    const buckets = response.series[0]?.buckets ?? [];
    expect(response.granularity).toBe('day');
    expect(buckets.map((b) => b.start)).toEqual([
      '2026-11-17T23:00:00.000Z',
      '2026-11-18T23:00:00.000Z',
      '2026-11-19T23:00:00.000Z',
      '2026-11-20T23:00:00.000Z',
      '2026-11-21T23:00:00.000Z',
      '2026-11-22T23:00:00.000Z',
      '2026-11-23T23:00:00.000Z',
    ]);
    expect(buckets.at(-1)?.end).toBe('2026-11-24T23:00:00.000Z');
    expect(buckets.map((b) => b.total)).toEqual([2, 0, 0, 0, 0, 0, 10]);
    expect(buckets.at(-1)?.byChannel).toEqual({ api: 6, web: 1 });
    // Requests from the day items' `requests`: Nov 18 5, Nov 24 4.
    expect(buckets.map((b) => b.requests)).toEqual([5, 0, 0, 0, 0, 0, 4]);
  });

  test('7d in America/New_York across the end of summer time: the Nov 1 bucket is 25 hours long', async () => {
    // Arrange: 2026-11-04T12:00Z is Nov 4 07:00 EST → days Oct 29..Nov 4. Midnights: EDT (04:00Z) up to Nov 1, EST (05:00Z) after.
    const rollups = new InMemoryRollupReader().add('ws_ny', dayRow('2026-11-01', 'tokens', '25', {}, '6'), dayRow('2026-11-04', 'tokens', '4', {}, '1'));

    // Act
    const response = await usageSeries('ws_ny', { window: '7d', usageType: 'tokens' }, deps(rollups, '2026-11-04T12:00:00.000Z'));

    // Assert
    expect(response.series[0]?.buckets).toEqual([
      { start: '2026-10-29T04:00:00.000Z', end: '2026-10-30T04:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-10-30T04:00:00.000Z', end: '2026-10-31T04:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-10-31T04:00:00.000Z', end: '2026-11-01T04:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-11-01T04:00:00.000Z', end: '2026-11-02T05:00:00.000Z', total: 25, requests: 6, byChannel: {} },
      { start: '2026-11-02T05:00:00.000Z', end: '2026-11-03T05:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-11-03T05:00:00.000Z', end: '2026-11-04T05:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-11-04T05:00:00.000Z', end: '2026-11-05T05:00:00.000Z', total: 4, requests: 1, byChannel: {} },
    ]);
  });

  test('30d: 5 buckets, weeks counted back from today, the oldest holding the 2 days left over', async () => {
    // Arrange: 2026-11-22T12:00Z is Nov 22 in Berlin; the 30 days are Oct 24..Nov 22:
    // [Oct 24–25] [Oct 26–Nov 1] [Nov 2–8] [Nov 9–15] [Nov 16–22]. Oct 24 midnight is CEST (22:00Z), the rest CET (23:00Z).
    const rollups = new InMemoryRollupReader().add(
      'ws_berlin',
      // Requests: Oct 25 was written before items kept them (0); credits are another series.
      dayRow('2026-10-23', 'tokens', '100', {}, '40'), // the day before the window: queried, but in no bucket
      dayRow('2026-10-24', 'tokens', '1', {}, '4'),
      dayRow('2026-10-25', 'tokens', '2'),
      dayRow('2026-10-26', 'tokens', '4', { 'ch#2026-10-26T08#api': '4' }, '2'),
      dayRow('2026-11-01', 'tokens', '8', { 'ch#2026-11-01T08#api': '1' }, '5'),
      dayRow('2026-11-02', 'tokens', '16', {}, '9'),
      dayRow('2026-11-22', 'tokens', '32', { 'ch#2026-11-22T09#web': '30' }, '11'),
      dayRow('2026-11-22', 'credits', '64', {}, '13'),
    );

    // Act
    const response = await usageSeries('ws_berlin', { window: '30d', usageType: 'tokens' }, deps(rollups, '2026-11-22T12:00:00.000Z'));

    // Assert: [1 + 2, 4 + 8, 16, 0, 32]; api 4 + 1 in the second bucket; requests [4 + 0, 2 + 5, 9, 0, 11].
    expect(response.granularity).toBe('week');
    expect(response.series[0]?.buckets).toEqual([
      { start: '2026-10-23T22:00:00.000Z', end: '2026-10-25T23:00:00.000Z', total: 3, requests: 4, byChannel: {} },
      { start: '2026-10-25T23:00:00.000Z', end: '2026-11-01T23:00:00.000Z', total: 12, requests: 7, byChannel: { api: 5 } },
      { start: '2026-11-01T23:00:00.000Z', end: '2026-11-08T23:00:00.000Z', total: 16, requests: 9, byChannel: {} },
      { start: '2026-11-08T23:00:00.000Z', end: '2026-11-15T23:00:00.000Z', total: 0, requests: 0, byChannel: {} },
      { start: '2026-11-15T23:00:00.000Z', end: '2026-11-22T23:00:00.000Z', total: 32, requests: 11, byChannel: { web: 30 } },
    ]);
  });

  test('an unknown usage type → InvalidRequestError unknown_usage_type', async () => {
    // Act
    const error = await caught(() => usageSeries('ws_utc', { window: '7d', usageType: 'gigawatts' }, deps(new InMemoryRollupReader(), '2026-11-24T10:30:00.000Z')));

    // Assert
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'unknown_usage_type' });
  });

  test('an unknown subject → NotFoundError, and no rollups are read', async () => {
    // Arrange
    const rollups = new InMemoryRollupReader();

    // Act
    const error = await caught(() => usageSeries('ws_ghost', { window: '24h' }, deps(rollups, '2026-11-24T10:30:00.000Z')));

    // Assert
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: 'unknown_workspace' });
    expect(rollups.queries).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('topMembers', () => {
  // Berlin, anchor 31. Now 2026-11-24T10:30Z = Nov 24 local. November clamps 31 → 30, and 24 < 30, so the
  // current cycle began on Oct 31 00:00 CET (after Oct 25) = 2026-10-30T23:00Z and ends Nov 30 00:00 CET = 2026-11-29T23:00Z.
  // Previous: Sep 30 (September clamps to 30) 00:00 CEST = 2026-09-29T22:00Z. Next: Nov 30 → Dec 31 00:00 CET = 2026-12-30T23:00Z.
  const CURRENT = { start: '2026-10-30T23:00:00.000Z', end: '2026-11-29T23:00:00.000Z' };
  const PREVIOUS = { start: '2026-09-29T22:00:00.000Z', end: '2026-10-30T23:00:00.000Z' };
  const NEXT = { start: '2026-11-29T23:00:00.000Z', end: '2026-12-30T23:00:00.000Z' };
  const subjects = new InMemorySubjectStore([subject('ws_b', 'Europe/Berlin', 31)]);
  const rollups = new InMemoryRollupReader().add(
    'ws_b',
    cycleRow(CURRENT.start, 'tokens', '200'),
    cycleRow(CURRENT.start, 'credits', '5'),
    memberRow('user', CURRENT.start, 'tokens', 'u1', '30'),
    memberRow('user', CURRENT.start, 'tokens', 'u2', '50'),
    memberRow('user', CURRENT.start, 'tokens', 'u3', '20'),
    memberRow('user', CURRENT.start, 'tokens', 'u4', '0'),
    memberRow('user', CURRENT.start, 'credits', 'u1', '5'),
    memberRow('group', CURRENT.start, 'tokens', 'g1', '80'),
    cycleRow(PREVIOUS.start, 'tokens', '1000'),
    memberRow('user', PREVIOUS.start, 'tokens', 'u9', '999'),
    cycleRow(NEXT.start, 'tokens', '8'),
    memberRow('user', NEXT.start, 'tokens', 'u7', '4'),
  );
  const deps = { subjects, rollups, clock: new FixedClock('2026-11-24T10:30:00.000Z'), usageTypes: USAGE_TYPES };
  const q = (params: Record<string, string>) => parseQuery(memberTopQuerySchema, params);

  test('ranks the users of the current cycle of the first configured usage type, shares of the cycle total', async () => {
    // Act
    const response = await topMembers('ws_b', q({ by: 'user' }), deps);

    // Assert: tokens total 200 → 50/200 = 0.25, 30/200 = 0.15, 20/200 = 0.1; u4 (0) is not ranked.
    expect(response).toEqual({
      subject: 'ws_b',
      by: 'user',
      usageType: 'tokens',
      cycleStart: CURRENT.start,
      cycleEnd: CURRENT.end,
      totalAmount: 200,
      entries: [
        { rank: 1, id: 'u2', amount: 50, share: 0.25, requests: 0 },
        { rank: 2, id: 'u1', amount: 30, share: 0.15, requests: 0 },
        { rank: 3, id: 'u3', amount: 20, share: 0.1, requests: 0 },
      ],
      nextCursor: null,
    });
  });

  test('groups and another usage type read their own rows', async () => {
    // Act
    const groups = await topMembers('ws_b', q({ by: 'group' }), deps);
    const credits = await topMembers('ws_b', q({ by: 'user', usageType: 'credits' }), deps);

    // Assert: g1 80/200 = 0.4; credits u1 5/5 = 1.
    expect(groups.entries).toEqual([{ rank: 1, id: 'g1', amount: 80, share: 0.4, requests: 0 }]);
    expect([credits.usageType, credits.totalAmount, credits.entries]).toEqual(['credits', 5, [{ rank: 1, id: 'u1', amount: 5, share: 1, requests: 0 }]]);
  });

  test.each([
    ['previous', PREVIOUS, 1000, [{ rank: 1, id: 'u9', amount: 999, share: 0.999, requests: 0 }]],
    ['2026-12-05', NEXT, 8, [{ rank: 1, id: 'u7', amount: 4, share: 0.5, requests: 0 }]], // Dec 5 local is in the Nov 30 cycle
    ['2026-11-30', NEXT, 8, [{ rank: 1, id: 'u7', amount: 4, share: 0.5, requests: 0 }]], // the anchor day itself starts that cycle
    ['2026-11-29', CURRENT, 200, [{ rank: 1, id: 'u2', amount: 50, share: 0.25, requests: 0 }]], // the last local day of the current one
    ['2026-10-31', CURRENT, 200, [{ rank: 1, id: 'u2', amount: 50, share: 0.25, requests: 0 }]],
  ])('cycle=%s resolves to the right cycle', async (cycle, expected, totalAmount, entries) => {
    // Act
    const response = await topMembers('ws_b', q({ by: 'user', cycle, limit: '1' }), deps);

    // Assert
    expect([response.cycleStart, response.cycleEnd]).toEqual([expected.start, expected.end]);
    expect(response.totalAmount).toBe(totalAmount);
    expect(response.entries).toEqual(entries);
  });

  test('pages with the cursor; a user ranking cursor is refused by the group ranking', async () => {
    // Act
    const page1 = await topMembers('ws_b', q({ by: 'user', limit: '2' }), deps);
    const page2 = await topMembers('ws_b', q({ by: 'user', limit: '2', cursor: page1.nextCursor ?? '' }), deps);
    const error = await caught(() => topMembers('ws_b', q({ by: 'group', limit: '2', cursor: page1.nextCursor ?? '' }), deps));

    // Assert
    expect(page1.entries.map((e) => e.id)).toEqual(['u2', 'u1']);
    expect(page2.entries).toEqual([{ rank: 3, id: 'u3', amount: 20, share: 0.1, requests: 0 }]);
    expect(page2.nextCursor).toBeNull();
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'invalid_cursor' });
  });

  test('a cycle without a cycle item has total 0 and shares 0', async () => {
    // Arrange: member rows but no cycle row for the current cycle of this subject.
    const lonely = new InMemoryRollupReader().add('ws_b', memberRow('user', CURRENT.start, 'tokens', 'u1', '3'));

    // Act
    const response = await topMembers('ws_b', q({ by: 'user' }), { ...deps, rollups: lonely });

    // Assert
    expect(response.totalAmount).toBe(0);
    expect(response.entries).toEqual([{ rank: 1, id: 'u1', amount: 3, share: 0, requests: 0 }]);
  });

  test('an unknown usage type → unknown_usage_type; an unknown workspace → NotFoundError', async () => {
    // Act
    const badType = await caught(() => topMembers('ws_b', q({ by: 'user', usageType: 'gigawatts' }), deps));
    const badSubject = await caught(() => topMembers('ws_ghost', q({ by: 'user' }), deps));

    // Assert
    expect(badType).toBeInstanceOf(InvalidRequestError);
    expect(badType).toMatchObject({ code: 'unknown_usage_type' });
    expect(badSubject).toBeInstanceOf(NotFoundError);
  });
});

describe('topWorkspaces', () => {
  // Now 2026-11-24T10:30Z. Current cycles, each in its own zone:
  //   ws_a UTC, anchor 15:      2026-11-15T00:00Z → 2026-12-15T00:00Z (previous from 2026-10-15T00:00Z)
  //   ws_b Berlin, anchor 31:   Oct 31 00:00 CET = 2026-10-30T23:00Z → 2026-11-29T23:00Z
  //   ws_c New York, anchor 1:  Nov 1 00:00 EDT (summer time ends at 02:00 that day) = 2026-11-01T04:00Z → Dec 1 00:00 EST = 2026-12-01T05:00Z
  const subjects = new InMemorySubjectStore([subject('ws_a', 'UTC', 15, 'Acme'), subject('ws_b', 'Europe/Berlin', 31), subject('ws_c', 'America/New_York', 1), subject('ws_d', 'UTC', 1)]);
  const rollups = new InMemoryRollupReader()
    .add('ws_a', cycleRow('2026-11-15T00:00:00.000Z', 'tokens', '30'), cycleRow('2026-10-15T00:00:00.000Z', 'tokens', '500'))
    .add('ws_b', cycleRow('2026-10-30T23:00:00.000Z', 'tokens', '60'))
    .add('ws_c', cycleRow('2026-11-01T04:00:00.000Z', 'tokens', '10'), cycleRow('2026-11-01T04:00:00.000Z', 'credits', '999'));
  // ws_d has no rows at all.
  const deps = { subjects, rollups, clock: new FixedClock('2026-11-24T10:30:00.000Z'), usageTypes: USAGE_TYPES };
  const q = (params: Record<string, string>) => parseQuery(workspaceTopQuerySchema, params);

  test('ranks workspaces by the use in their own current cycle; total is the sum; names when known', async () => {
    // Act
    const response = await topWorkspaces(q({ by: 'workspace' }), deps);

    // Assert: 60 + 30 + 10 = 100 tokens; ws_d (0) is not ranked; credits are another usage type.
    expect(response).toEqual({
      by: 'workspace',
      usageType: 'tokens',
      cycle: 'current',
      totalAmount: 100,
      entries: [
        { rank: 1, id: 'ws_b', amount: 60, share: 0.6, requests: 0, cycleStart: '2026-10-30T23:00:00.000Z', cycleEnd: '2026-11-29T23:00:00.000Z' },
        { rank: 2, id: 'ws_a', amount: 30, share: 0.3, requests: 0, name: 'Acme', cycleStart: '2026-11-15T00:00:00.000Z', cycleEnd: '2026-12-15T00:00:00.000Z' },
        { rank: 3, id: 'ws_c', amount: 10, share: 0.1, requests: 0, cycleStart: '2026-11-01T04:00:00.000Z', cycleEnd: '2026-12-01T05:00:00.000Z' },
      ],
      nextCursor: null,
    });
  });

  test('a cursor read before a cycle rolls over is refused after it, not applied to the new ranking', async () => {
    // Arrange: page 1 at 2026-11-24; then ws_b's cycle rolls over (2026-11-29T23:00Z), so "current" names another cycle.
    const clock = new FixedClock('2026-11-24T10:30:00.000Z');
    const page1 = await topWorkspaces(q({ by: 'workspace', limit: '1' }), { ...deps, clock });
    clock.set('2026-11-30T10:30:00.000Z');

    // Act + Assert
    await expect(topWorkspaces(q({ by: 'workspace', limit: '1', cursor: page1.nextCursor as string }), { ...deps, clock })).rejects.toMatchObject({ code: 'invalid_cursor' });
  });

  test('cycle=previous reads each workspace’s previous cycle', async () => {
    // Act
    const response = await topWorkspaces(q({ by: 'workspace', cycle: 'previous' }), deps);

    // Assert: only ws_a has use in its previous cycle (2026-10-15 → 2026-11-15).
    expect(response.totalAmount).toBe(500);
    expect(response.entries).toEqual([{ rank: 1, id: 'ws_a', amount: 500, share: 1, requests: 0, name: 'Acme', cycleStart: '2026-10-15T00:00:00.000Z', cycleEnd: '2026-11-15T00:00:00.000Z' }]);
  });

  test('pages of one, the cursor carrying on where the last page stopped', async () => {
    // Act
    const page1 = await topWorkspaces(q({ by: 'workspace', limit: '1' }), deps);
    const page2 = await topWorkspaces(q({ by: 'workspace', limit: '1', cursor: page1.nextCursor ?? '' }), deps);
    const page3 = await topWorkspaces(q({ by: 'workspace', limit: '1', cursor: page2.nextCursor ?? '' }), deps);

    // Assert
    expect([page1, page2, page3].map((p) => p.entries.map((e) => [e.rank, e.id]))).toEqual([[[1, 'ws_b']], [[2, 'ws_a']], [[3, 'ws_c']]]);
    expect(page3.nextCursor).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------

describe('query schemas (through parseQuery)', () => {
  test('defaults: cycle current and limit 10; limit is coerced from the query string', () => {
    // Act / Assert
    expect(parseQuery(memberTopQuerySchema, { by: 'group' })).toEqual({ by: 'group', cycle: 'current', limit: 10 });
    expect(parseQuery(memberTopQuerySchema, { by: 'user', cycle: '2026-11-30', limit: '100' })).toEqual({ by: 'user', cycle: '2026-11-30', limit: 100 });
    expect(parseQuery(seriesQuerySchema, { window: '30d' })).toEqual({ window: '30d' });
    expect(parseQuery(summaryQuerySchema, undefined)).toEqual({});
  });

  test('a cursor of any length passes the schema: whether it is a cursor is for the ranking to say (invalid_cursor)', () => {
    // Act / Assert
    expect(parseQuery(memberTopQuerySchema, { by: 'user', cursor: 'A'.repeat(5000) })).toMatchObject({ cursor: 'A'.repeat(5000) });
    expect(parseQuery(workspaceTopQuerySchema, { by: 'workspace', cursor: '' })).toMatchObject({ cursor: '' });
  });

  test.each(
    (
      [
        ['summary: unknown parameter', summaryQuerySchema, { window: '7d' }, 'window'],
        ['summary: empty usageType', summaryQuerySchema, { usageType: '' }, 'usageType'],
        ['series: window missing', seriesQuerySchema, {}, 'window'],
        ['series: window 1h', seriesQuerySchema, { window: '1h' }, 'window'],
        ['series: unknown parameter', seriesQuerySchema, { window: '24h', granularity: 'hour' }, 'granularity'],
        ['top: limit 0', memberTopQuerySchema, { by: 'user', limit: '0' }, 'limit'],
        ['top: limit 101', memberTopQuerySchema, { by: 'user', limit: '101' }, 'limit'],
        ['top: limit 2.5', memberTopQuerySchema, { by: 'user', limit: '2.5' }, 'limit'],
        ['top: limit abc', memberTopQuerySchema, { by: 'user', limit: 'abc' }, 'limit'],
        ['top: by account', memberTopQuerySchema, { by: 'account' }, 'by'],
        ['top: cycle last', memberTopQuerySchema, { by: 'user', cycle: 'last' }, 'cycle'],
        ['top: cycle Feb 29 of a common year', memberTopQuerySchema, { by: 'user', cycle: '2026-02-29' }, 'cycle'],
        ['top: unknown parameter', memberTopQuerySchema, { by: 'user', page: '2' }, 'page'],
        ['top: cycle in December 9999 (its cycle would end in 10000)', memberTopQuerySchema, { by: 'user', cycle: '9999-12-31' }, 'cycle'],
        ['top: cycle in year 0000', workspaceTopQuerySchema, { by: 'workspace', cycle: '0000-01-01' }, 'cycle'],
        ['report: cycle in December 9999', reportQuerySchema, { cycle: '9999-12-31' }, 'cycle'],
      ] as const
    ).map(([label, schema, params, field]) => ({ label, schema, params, field })),
  )('$label → invalid_parameter whose message starts with "$field: "', async ({ schema, params, field }) => {
    // Act
    const error = await caught(() => parseQuery(schema, params));

    // Assert
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'invalid_parameter' });
    expect((error as Error).message.startsWith(`${field}: `)).toBe(true);
  });
});
