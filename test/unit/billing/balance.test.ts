import { describe, expect, test } from '@jest/globals';
import {
  burnOrder,
  type CycleSnapshot,
  cycleBalance,
  defaultTopUpExpiry,
  type Grant,
  type HeldCredit,
  heldCredits,
  spilloverGrantId,
  spilloverInto,
  spilloverOut,
  units,
} from '../../../functions/core/billing/balance';
import { type QuotaConfig, quotaSchema } from '../../../functions/core/config';
import { LosslessNumber } from '../../../functions/core/exact-json';

/**
 * Grants and the balance arithmetic of billing/README.md: burn order, spillover, credits held and expiring.
 * Every expected figure is worked out by hand in the comment next to it, in nano-units (1 unit = 10^9).
 */

const N = 1_000_000_000n; // nano-units per unit
const TWO_POW_53 = 9_007_199_254_740_992n;

const quota = (raw: Record<string, unknown>): QuotaConfig => quotaSchema.parse(raw);
const grant = (id: string, fields: Partial<Grant> = {}): Grant => ({
  subject: 'ws_b',
  id,
  kind: 'bonus',
  usageType: 'tokens',
  amount: '100',
  grantedAt: '2028-01-01T00:00:00.000Z',
  ...fields,
});
const held = (g: Grant, remaining = units(g.amount)): HeldCredit => ({ grant: g, remaining });

describe('units', () => {
  test.each([
    ['0', 0n],
    ['1', N],
    ['0.000000001', 1n], // the 9th decimal place is the smallest unit
    ['2.5', 2n * N + N / 2n],
    ['-3.25', -(3n * N + N / 4n)],
    ['1.100000000000', N + N / 10n], // trailing zeros past the 9th place carry no precision
  ])('"%s" is %p nano-units', (text, expected) => {
    expect(units(text)).toBe(expected);
  });

  test('a value past 2^53 stays exact as bigint units, from text and from a lossless number', () => {
    // 2^53 + 1 is not a double; as text it keeps its last digit: (2^53 + 1) · 10^9 + 0.5 · 10^9
    expect(units('9007199254740993.5')).toBe((TWO_POW_53 + 1n) * N + N / 2n);
    expect(units(new LosslessNumber('9007199254740993'))).toBe((TWO_POW_53 + 1n) * N);
  });

  test.each([['0.0000000001'], ['abc'], [''], ['1e3'], ['1,5']])('"%s" is refused with a RangeError', (text) => {
    expect(() => units(text)).toThrow(RangeError);
  });
});

describe('burnOrder', () => {
  test('soonest expiry first, never-expiring last; same expiry: oldest grant; same instant: id', () => {
    // Arrange: listed deliberately out of order
    const grants = [
      grant('never-old', { grantedAt: '2027-01-01T00:00:00.000Z' }),
      grant('june-b', { kind: 'topup', grantedAt: '2028-02-01T00:00:00.000Z', expiresAt: '2028-06-01T00:00:00.000Z' }),
      grant('sept', { kind: 'topup', grantedAt: '2027-06-01T00:00:00.000Z', expiresAt: '2028-09-01T00:00:00.000Z' }),
      grant('june-a', { kind: 'topup', grantedAt: '2028-02-01T00:00:00.000Z', expiresAt: '2028-06-01T00:00:00.000Z' }),
      grant('june-oldest', { kind: 'topup', grantedAt: '2028-01-15T00:00:00.000Z', expiresAt: '2028-06-01T00:00:00.000Z' }),
    ];

    // Act
    const order = [...grants].sort(burnOrder).map((g) => g.id);

    // Assert
    expect(order).toEqual(['june-oldest', 'june-a', 'june-b', 'sept', 'never-old']);
  });
});

describe('cycleBalance', () => {
  const plan = quota({ monthlyLimit: 1000, spillover: { policy: 'all' } });

  test('spillover burns before the plan allowance: use within S leaves all of L to carry', () => {
    // L 1000, S 300, U 200: overflow max(0, 200 − 1300) = 0; left 1300 − 200 = 1100;
    // spillover out max(0, 1000 − max(0, 200 − 300)) = 1000 (the 100 of S left never carries again)
    const balance = cycleBalance({ quota: plan, used: 200n * N, spilloverIn: 300n * N, credits: [] });

    expect([balance.overflow, balance.allowanceLeft, balance.spilloverOut]).toEqual([0n, 1100n * N, 1000n * N]);
  });

  test('the plan allowance burns before any credit: no draw while U ≤ L + S', () => {
    // L 1000, S 0, U 1000 exactly: overflow 0, so the credit is untouched
    const bonus = grant('B');
    const balance = cycleBalance({ quota: plan, used: 1000n * N, spilloverIn: 0n, credits: [held(bonus)] });

    expect(balance.overflow).toBe(0n);
    expect(balance.drawn.size).toBe(0);
    expect(balance.creditsLeft.get('B')).toBe(100n * N);
    expect(balance.allowanceLeft).toBe(0n);
  });

  test('overflow draws the credit expiring soonest, then the next, and what nothing covers is uncovered', () => {
    // L 1000, S 200, U 1500: overflow 1500 − 1200 = 300.
    // Held: T1 80 (expires May), T2 150 (expires July), B 50 (never). Draw T1 80, T2 150, B 50 → 280; uncovered 20.
    const credits = [
      held(grant('B', { amount: '50' })),
      held(grant('T2', { kind: 'topup', amount: '150', expiresAt: '2028-07-01T00:00:00.000Z' })),
      held(grant('T1', { kind: 'topup', amount: '80', expiresAt: '2028-05-01T00:00:00.000Z' })),
    ];

    const balance = cycleBalance({ quota: plan, used: 1500n * N, spilloverIn: 200n * N, credits });

    expect(balance.overflow).toBe(300n * N);
    expect(Object.fromEntries(balance.drawn)).toEqual({ T1: 80n * N, T2: 150n * N, B: 50n * N });
    expect(Object.fromEntries(balance.creditsLeft)).toEqual({ T1: 0n, T2: 0n, B: 0n });
    expect(balance.uncovered).toBe(20n * N);
    expect(balance.spilloverOut).toBe(0n); // 1000 − (1500 − 200) < 0
  });

  test('a partly drawn credit keeps the rest; only non-zero draws are listed', () => {
    // L 1000, U 1030: overflow 30 from T (soonest), B untouched
    const credits = [held(grant('B')), held(grant('T', { kind: 'topup', expiresAt: '2028-03-01T00:00:00.000Z' }))];

    const balance = cycleBalance({ quota: plan, used: 1030n * N, spilloverIn: 0n, credits });

    expect(Object.fromEntries(balance.drawn)).toEqual({ T: 30n * N });
    expect(Object.fromEntries(balance.creditsLeft)).toEqual({ T: 70n * N, B: 100n * N });
    expect(balance.uncovered).toBe(0n);
  });

  test('a credit held at a negative remainder counts as empty', () => {
    // A damaged remainder must neither absorb nor add: E holds nothing, so the overflow of 10 comes from B.
    const credits = [held(grant('E', { kind: 'topup', expiresAt: '2028-02-01T00:00:00.000Z' }), -5n * N), held(grant('B'))];

    const balance = cycleBalance({ quota: plan, used: 1010n * N, spilloverIn: 0n, credits });

    expect(Object.fromEntries(balance.drawn)).toEqual({ B: 10n * N });
    expect(Object.fromEntries(balance.creditsLeft)).toEqual({ E: 0n, B: 90n * N });
  });

  test('exact to the 9th decimal: 0.1 + 0.2 of credits cover an overflow of exactly 0.3', () => {
    // L 1000, U 1000.3: overflow 0.3 = 300000000 nano; A 0.1 then B 0.2 (A expires first); nothing uncovered.
    const credits = [held(grant('B', { amount: '0.2' })), held(grant('A', { kind: 'topup', amount: '0.1', expiresAt: '2028-02-01T00:00:00.000Z' }))];

    const balance = cycleBalance({ quota: plan, used: units('1000.3'), spilloverIn: 0n, credits });

    expect(balance.overflow).toBe(300_000_000n);
    expect(Object.fromEntries(balance.drawn)).toEqual({ A: 100_000_000n, B: 200_000_000n });
    expect(balance.uncovered).toBe(0n);
  });

  test('one nano-unit short of the allowance leaves exactly one nano-unit', () => {
    // L 1000, U 999.999999999: left 1000·10^9 − 999999999999 = 1
    const balance = cycleBalance({ quota: plan, used: units('999.999999999'), spilloverIn: 0n, credits: [] });

    expect([balance.allowanceLeft, balance.overflow, balance.spilloverOut]).toEqual([1n, 0n, 1n]);
  });

  test('amounts past 2^53 units stay exact', () => {
    // No plan (L 0), U = (2^53 + 1) units, one bonus of 2^53 units: overflow 2^53 + 1, drawn 2^53, uncovered 1 unit.
    const big = grant('big', { amount: '9007199254740992' });

    const balance = cycleBalance({ quota: undefined, used: (TWO_POW_53 + 1n) * N, spilloverIn: 0n, credits: [held(big)] });

    expect(balance.overflow).toBe((TWO_POW_53 + 1n) * N);
    expect(balance.drawn.get('big')).toBe(TWO_POW_53 * N);
    expect(balance.uncovered).toBe(N);
  });

  test('a usage type outside the plan has L = 0 and carries nothing', () => {
    const balance = cycleBalance({ quota: undefined, used: 0n, spilloverIn: 0n, credits: [] });

    expect([balance.limit, balance.allowanceLeft, balance.spilloverOut]).toEqual([0n, 0n, 0n]);
  });
});

describe('spilloverOut', () => {
  // [label, policy, L, U, S, expected] in whole units
  const cases: [string, QuotaConfig['spillover'], number, number, number, number][] = [
    ['none carries nothing, whatever is unused', { policy: 'none' }, 1000, 0, 0, 0],
    ['all carries L − U when no spillover came in: 1000 − 400', { policy: 'all' }, 1000, 400, 0, 600],
    ['all: S is used first, so L − (U − S) = 1000 − (700 − 200)', { policy: 'all' }, 1000, 700, 200, 500],
    ['all: use within S leaves the whole L', { policy: 'all' }, 1000, 150, 200, 1000],
    ['all: use past L + S carries nothing', { policy: 'all' }, 1000, 1300, 200, 0],
    ['capped below the unused part: min(600, 250)', { policy: 'capped', cap: 250 }, 1000, 400, 0, 250],
    ['capped above the unused part: min(600, 900)', { policy: 'capped', cap: 900 }, 1000, 400, 0, 600],
    ['capped exactly at the unused part: min(600, 600)', { policy: 'capped', cap: 600 }, 1000, 400, 0, 600],
    ['capped at 0 carries nothing', { policy: 'capped', cap: 0 }, 1000, 0, 0, 0],
  ];
  test.each(cases)('%s', (_label, policy, limit, used, spilloverIn, expected) => {
    expect(spilloverOut(policy, BigInt(limit) * N, BigInt(used) * N, BigInt(spilloverIn) * N)).toBe(BigInt(expected) * N);
  });
});

describe('heldCredits', () => {
  // A UTC anchor-1 cycle: March 2028
  const march = { start: '2028-03-01T00:00:00.000Z', end: '2028-04-01T00:00:00.000Z' };
  const snapshot = (cycleStart: string, drawn: Record<string, string>): CycleSnapshot => ({
    subject: 'ws_b',
    cycleStart,
    cycleEnd: march.start,
    plan: 'p',
    status: 'closed',
    frozenAt: cycleStart,
    usage: { tokens: { limit: '0', spilloverIn: '0', used: '0', overflow: '0', drawn, uncovered: '0', spilloverOut: '0' } },
    expired: {},
  });

  test('keeps bonus and top-up credits of the usage type granted before the cut-off and not expired by the cycle start', () => {
    const grants = [
      grant('kept-bonus'),
      grant('kept-expiring-mid-cycle', { kind: 'topup', expiresAt: '2028-03-15T00:00:00.000Z' }), // still held at the start
      grant('kept-1ms-after-start', { kind: 'topup', expiresAt: '2028-03-01T00:00:00.001Z' }),
      grant('expired-at-start', { kind: 'topup', expiresAt: march.start }), // forfeited at the instant the cycle began
      grant('other-usage-type', { usageType: 'images' }),
      grant('spillover', { kind: 'spillover', cycleStart: march.start }),
      grant('granted-at-cut-off', { grantedAt: '2028-03-20T00:00:00.000Z' }), // the cut-off is exclusive
    ];

    const ids = heldCredits(grants, [], 'tokens', march, '2028-03-20T00:00:00.000Z').map((c) => c.grant.id);

    expect(ids).toEqual(['kept-bonus', 'kept-expiring-mid-cycle', 'kept-1ms-after-start']);
  });

  test('subtracts what earlier closes drew, ignores this and later cycles, and never goes below zero', () => {
    // A 100: February drew 30, January drew 25 → 45 left; March's own (and April's) draws are not "earlier".
    // B 10: February drew 12 (a damaged record) → floored at 0.
    const grants = [grant('A'), grant('B', { amount: '10' })];
    const closes = [
      snapshot('2028-01-01T00:00:00.000Z', { A: '25' }),
      snapshot('2028-02-01T00:00:00.000Z', { A: '30', B: '12' }),
      snapshot(march.start, { A: '40' }),
      snapshot('2028-04-01T00:00:00.000Z', { A: '5' }),
    ];

    const credits = heldCredits(grants, closes, 'tokens', march, march.end);

    expect(credits.map((c) => [c.grant.id, c.remaining])).toEqual([
      ['A', 45n * N],
      ['B', 0n],
    ]);
  });
});

describe('spillover grants', () => {
  test('spilloverInto sums the spillover of that usage type carried into that cycle only', () => {
    const into = (cycleStart: string, amount: string, usageType = 'tokens') => grant(spilloverGrantId(usageType, cycleStart), { kind: 'spillover', amount, usageType, cycleStart });
    const grants = [
      into('2028-03-01T00:00:00.000Z', '120.5'),
      into('2028-03-01T00:00:00.000Z', '0.000000001'),
      into('2028-02-01T00:00:00.000Z', '999'), // another cycle
      into('2028-03-01T00:00:00.000Z', '7', 'images'), // another usage type
      grant('bonus-with-cycle', { cycleStart: '2028-03-01T00:00:00.000Z' }), // not spillover
    ];

    // 120.5 + 0.000000001 = 120.500000001
    expect(spilloverInto(grants, 'tokens', { start: '2028-03-01T00:00:00.000Z', end: '2028-04-01T00:00:00.000Z' })).toBe(120_500_000_001n);
  });

  test('the spillover grant id names the usage type and the receiving cycle', () => {
    expect(spilloverGrantId('tokens', '2028-03-01T00:00:00.000Z')).toBe('spillover:tokens:2028-03-01T00:00:00.000Z');
  });
});

describe('defaultTopUpExpiry', () => {
  test.each([
    ['same day next year, to the millisecond', '2026-11-24T10:15:30.250Z', '2027-11-24T10:15:30.250Z'],
    ['31 January stays 31 January', '2027-01-31T23:59:59.999Z', '2028-01-31T23:59:59.999Z'],
    ['leap day clamps to 28 February', '2028-02-29T09:30:00.000Z', '2029-02-28T09:30:00.000Z'],
    ['28 February into a leap year stays the 28th', '2027-02-28T00:00:00.000Z', '2028-02-28T00:00:00.000Z'],
    ['31 December, an hour before the year ends', '2026-12-31T23:00:00.000Z', '2027-12-31T23:00:00.000Z'],
  ])('%s', (_label, grantedAt, expected) => {
    expect(defaultTopUpExpiry(grantedAt)).toBe(expected);
  });
});
