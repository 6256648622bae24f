import { describe, expect, test } from '@jest/globals';
import { allowanceBar, bucketLabel, chartRows, creditFigures, cycleCards, formatAmount, formatMoney, runOutDate, runOutWarning } from '../../dashboard/src/cards';
import type { CreditUsage, SeriesBucket, SummaryEntry } from '../../dashboard/src/types';

/** The dashboard's card module: every expected value is worked out in the comments from the summary entry. */

/** Day 10 of a 30-day cycle (Nov 15 – Dec 15), 404,682 of 1,000,000 used, as the API would answer. */
const entry: SummaryEntry = {
  usageType: 'tokens',
  cycleStart: '2026-11-15T00:00:00.000Z',
  cycleEnd: '2026-12-15T00:00:00.000Z',
  usedAmount: 404_682,
  allowanceAmount: 1_000_000,
  limitAmount: 1_000_000,
  spilloverAmount: 0,
  bonusAmount: 0,
  availableAmount: 595_318,
  requests: 1_212,
  usedPercent: 40.47,
  daysElapsed: 10,
  daysRemaining: 20,
  avgPerDay: 40_468.2,
  runOutInDays: 14.71,
  projectedToRunOut: true,
};
const asOf = '2026-11-24T08:00:00.000Z';

describe('cards', () => {
  test("show the API's days, average and run-out as given", () => {
    const cards = cycleCards(entry, asOf, 'token', 'UTC');
    expect(cards.map((c) => [c.id, c.value, c.unit])).toEqual([
      ['days-remaining', '20', 'days'],
      ['days-elapsed', '10', 'of 30'], // 10 elapsed + 20 remaining
      ['avg-per-day', '40,468.2', '/ day'],
      ['run-out', '14.71', 'days'],
    ]);
    // 14.71 days after Nov 24 08:00 is Dec 8 08:00 + 17.04 h = Dec 9 ~01:02 UTC; the cycle resets on Dec 15.
    expect(cards.map((c) => c.detail)).toEqual(['Resets on Dec 15, 2026', 'Cycle began Nov 15, 2026', 'Tokens a day over the 10 days so far', 'Around Dec 9, 2026, before the cycle resets']);
  });

  test('run-out: no use yet, nothing left, and a pace that lasts the cycle', () => {
    const card = (e: Partial<SummaryEntry>) => cycleCards({ ...entry, ...e }, asOf, 'token', 'UTC').find((c) => c.id === 'run-out');
    expect(card({ usedAmount: 0, avgPerDay: 0, runOutInDays: null, projectedToRunOut: false })).toMatchObject({ value: '—', detail: 'No use yet this cycle' });
    expect(card({ availableAmount: 0, runOutInDays: 0 })).toMatchObject({ value: '0', unit: 'days', detail: 'Nothing left this cycle' });
    expect(card({ runOutInDays: 1, projectedToRunOut: true })).toMatchObject({ value: '1', unit: 'day' });
    expect(card({ runOutInDays: 45.5, projectedToRunOut: false })).toMatchObject({ value: '45.5', detail: 'Lasts past the end of the cycle at this rate' });
  });

  test('a single day reads in the singular', () => {
    const cards = cycleCards({ ...entry, daysElapsed: 1, daysRemaining: 1 }, asOf, 'image', 'UTC');
    expect(cards.map((c) => c.unit)).toEqual(['day', 'of 2', '/ day', 'days']);
    expect(cards[2]?.detail).toBe('Images a day over the 1 day so far');
  });

  test("runOutDate adds the API's days to the summary's instant", () => {
    // 14.71 days = 1,270,944,000 ms after asOf.
    expect(runOutDate(entry, asOf)?.toISOString()).toBe(new Date(Date.parse(asOf) + 1_270_944_000).toISOString());
    expect(runOutDate({ ...entry, runOutInDays: null }, asOf)).toBeNull();
  });
});

describe('warning', () => {
  test('only when the API projects running out before the cycle ends', () => {
    expect(runOutWarning({ ...entry, projectedToRunOut: false }, asOf, 'token', 'UTC')).toBeNull();
    expect(runOutWarning(entry, asOf, 'token', 'UTC')).toBe(
      "At 40,468.2 tokens a day, this cycle's tokens run out in about 14.71 days (around Dec 9, 2026), before your allowance resets on Dec 15, 2026.",
    );
    expect(runOutWarning({ ...entry, availableAmount: 0, runOutInDays: 0 }, asOf, 'image', 'UTC')).toBe("You have used all of this cycle's images. Your allowance resets on Dec 15, 2026.");
  });
});

describe('allowance bar', () => {
  test('within the monthly allowance, no bonus: the fill is the used share', () => {
    // capacity = used + available = 1,000,000; 404,682 / 1,000,000 = 40.4682% → 40.47
    expect(allowanceBar(entry)).toEqual({ capacity: 1_000_000, monthly: 1_000_000, bonus: 0, used: 404_682, monthlyPercent: 100, usedMonthlyPercent: 40.47, usedBonusPercent: 0 });
  });

  test('spillover counts as monthly, bonus as its own zone', () => {
    // L 1,000,000 + S 250,000 = allowance 1,250,000; bonus 20,000; used 300,000 → available 950,000 + 20,000
    const bar = allowanceBar({ ...entry, allowanceAmount: 1_250_000, spilloverAmount: 250_000, bonusAmount: 20_000, usedAmount: 300_000, availableAmount: 970_000 });
    // capacity 1,270,000: monthly 1,250,000 / 1,270,000 = 98.4252% → 98.43; used 300,000 / 1,270,000 = 23.622% → 23.62
    expect(bar).toEqual({ capacity: 1_270_000, monthly: 1_250_000, bonus: 20_000, used: 300_000, monthlyPercent: 98.43, usedMonthlyPercent: 23.62, usedBonusPercent: 0 });
  });

  test('past the allowance the fill runs into the bonus zone', () => {
    // allowance 1,000; bonus left 150 after drawing 50 (used 1,050) → capacity 1,200
    const bar = allowanceBar({ ...entry, allowanceAmount: 1000, limitAmount: 1000, usedAmount: 1050, bonusAmount: 150, availableAmount: 150 });
    // monthly 1,000 / 1,200 = 83.33%; bonus 200; used in bonus 50 / 1,200 = 4.17%
    expect(bar).toEqual({ capacity: 1200, monthly: 1000, bonus: 200, used: 1050, monthlyPercent: 83.33, usedMonthlyPercent: 83.33, usedBonusPercent: 4.17 });
  });

  test('over every credit (overage allowed): full, the excess beyond the allowance in the second zone', () => {
    const bar = allowanceBar({ ...entry, allowanceAmount: 1000, usedAmount: 1500, bonusAmount: 0, availableAmount: 0 });
    expect(bar).toMatchObject({ capacity: 1500, monthly: 1000, bonus: 500, usedMonthlyPercent: 66.67, usedBonusPercent: 33.33 });
  });

  test('nothing allowed and nothing used: an empty bar, no division by zero', () => {
    expect(allowanceBar({ ...entry, allowanceAmount: 0, usedAmount: 0, availableAmount: 0, bonusAmount: 0 })).toMatchObject({
      capacity: 0,
      monthlyPercent: 0,
      usedMonthlyPercent: 0,
      usedBonusPercent: 0,
    });
  });
});

describe('chart rows', () => {
  const buckets: SeriesBucket[] = [
    { start: '2026-11-23T00:00:00.000Z', end: '2026-11-24T00:00:00.000Z', total: 100, requests: 12, byChannel: { api: 60, ui: 30 } },
    { start: '2026-11-24T00:00:00.000Z', end: '2026-11-25T00:00:00.000Z', total: 7, requests: 3, byChannel: { zapier: 2, mcp: 5 } },
  ];

  test('one row per channel in a fixed order (unknown channels after, sorted), the rest of each total as "other"', () => {
    expect(chartRows(buckets, '7d', 'UTC')).toEqual({
      labels: ['Mon, Nov 23', 'Tue, Nov 24'],
      channels: [
        { channel: 'ui', values: [30, 0] },
        { channel: 'api', values: [60, 0] },
        { channel: 'mcp', values: [0, 5] },
        { channel: 'zapier', values: [0, 2] },
        { channel: 'other', values: [10, 0] }, // 100 − 60 − 30
      ],
      totals: [100, 7],
    });
  });

  test('fractional amounts leave no float dust in "other"', () => {
    const rows = chartRows([{ start: buckets[0]?.start ?? '', end: buckets[0]?.end ?? '', total: 0.3, requests: 2, byChannel: { api: 0.1, ui: 0.2 } }], '7d', 'UTC');
    expect(rows.channels.map((c) => c.channel)).toEqual(['ui', 'api']);
  });

  test('labels: hours, days, and weeks named by their first and last day', () => {
    expect(bucketLabel({ start: '2026-11-24T07:00:00.000Z', end: '2026-11-24T08:00:00.000Z', total: 0, requests: 0, byChannel: {} }, '24h', 'UTC')).toBe('07:00');
    expect(bucketLabel({ start: '2026-11-18T00:00:00.000Z', end: '2026-11-25T00:00:00.000Z', total: 0, requests: 0, byChannel: {} }, '30d', 'UTC')).toBe('Nov 18 – Nov 24');
    // The oldest bucket of 30 days holds the two days left over.
    expect(bucketLabel({ start: '2026-10-26T00:00:00.000Z', end: '2026-10-28T00:00:00.000Z', total: 0, requests: 0, byChannel: {} }, '30d', 'UTC')).toBe('Oct 26 – Oct 27');
    expect(bucketLabel({ start: '2026-11-24T00:00:00.000Z', end: '2026-11-25T00:00:00.000Z', total: 0, requests: 0, byChannel: {} }, '30d', 'UTC')).toBe('Nov 24');
  });

  test('amounts are grouped and keep their decimals', () => {
    expect([formatAmount(1234567), formatAmount(0.000000001), formatAmount(40468.2)]).toEqual(['1,234,567', '0.000000001', '40,468.2']);
  });
});

describe('credits', () => {
  /** The balance docs/api.md shows: 31 purchased and 30 bonus credits left, none of the allowance, at 5 cents a credit. */
  const usage: CreditUsage = {
    period_start: '2026-12-01T00:00:00.000Z',
    requests: 3,
    billable_units: 29,
    credits: {
      balance: 61,
      balance_cents: 305,
      currency: 'USD',
      included: 0,
      included_cents: 0,
      purchased: 31,
      purchased_cents: 155,
      bonus: 30,
      bonus_cents: 150,
      estimated_requests_remaining: 6,
      auto_reload_enabled: false,
    },
  };

  test("money is minor units in the currency's own places", () => {
    // USD and EUR have 2 places (305 cents = 3.05), JPY none (12,345 yen).
    expect([formatMoney(305, 'USD'), formatMoney(0, 'USD'), formatMoney(123_456_789, 'USD'), formatMoney(305, 'EUR'), formatMoney(12_345, 'JPY')]).toEqual([
      '$3.05',
      '$0.00',
      '$1,234,567.89',
      '€3.05',
      '¥12,345',
    ]);
  });

  test('the card shows the balance and its three parts in credits and money, requests, credits billed and the estimate', () => {
    expect(creditFigures(usage)).toEqual({
      balance: '61',
      balanceMoney: '$3.05',
      parts: [
        { id: 'included', label: 'Included', detail: "Left of this period's monthly allowance", credits: '0', money: '$0.00' },
        { id: 'purchased', label: 'Purchased', detail: 'Left of top-ups you bought', credits: '31', money: '$1.55' },
        { id: 'bonus', label: 'Bonus', detail: 'Bonus credits, which never expire', credits: '30', money: '$1.50' },
      ],
      requests: '3',
      billed: '29',
      estimate: '6',
      periodStart: '2026-12-01T00:00:00.000Z',
    });
  });

  test('no estimate before a request bills credits; no money without a price of a credit; no card without a rate card', () => {
    const empty = { ...usage, requests: 0, billable_units: 0, credits: { ...(usage.credits as NonNullable<CreditUsage['credits']>), estimated_requests_remaining: null } };
    expect(creditFigures(empty)).toMatchObject({ requests: '0', billed: '0', estimate: '—' });
    const unpriced = {
      ...usage,
      credits: { ...(usage.credits as NonNullable<CreditUsage['credits']>), currency: null, balance_cents: null, included_cents: null, purchased_cents: null, bonus_cents: null },
    };
    expect(creditFigures(unpriced)?.balanceMoney).toBeNull();
    expect(creditFigures(unpriced)?.parts.map((p) => p.money)).toEqual([null, null, null]);
    expect(creditFigures({ period_start: usage.period_start, requests: 12, billable_units: null, credits: null })).toBeNull();
  });

  test('fractional credits keep their decimals', () => {
    const fractional = { ...usage, billable_units: 0.0375, credits: { ...(usage.credits as NonNullable<CreditUsage['credits']>), balance: 60.9625, bonus: 29.9625 } };
    expect(creditFigures(fractional)).toMatchObject({ balance: '60.9625', billed: '0.0375', parts: [{ credits: '0' }, { credits: '31' }, { credits: '29.9625' }] });
  });
});
