import { describe, expect, test } from '@jest/globals';
import type { Grant } from '../../../functions/core/billing/balance';
import { runDueCloses } from '../../../functions/core/billing/closes';
import { quotaView } from '../../../functions/core/billing/quotas';
import { type Config, configSchema } from '../../../functions/core/config';
import { NotFoundError } from '../../../functions/core/errors';
import { LosslessNumber } from '../../../functions/core/exact-json';
import type { Subject } from '../../../functions/core/ports';
import { caught } from '../../support/caught';
import { FixedClock, InMemoryAccounts, InMemoryReports, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * quotaView: what is left per usage type right now, from the rollups, grants and closed cycles (in-memory
 * fakes), at fixed instants. Each expected entry is worked out by hand from billing/README.md:
 *   overflow = max(0, U − (L + S)); available = max(0, L + S − U) + (credits held − drawn).
 */

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
    { id: 'images', unit: 'image' },
  ],
  plans: [
    {
      id: 'std',
      quotas: {
        tokens: { monthlyLimit: 1000, dailyLimit: 100, fairUseLimit: 900, spillover: { policy: 'capped', cap: 300 }, overage: 'block' },
        credits: { monthlyLimit: 10, overage: 'block' },
      },
    },
    { id: 'open', quotas: { tokens: { monthlyLimit: 1000, overage: 'allow' } } },
  ],
  closes: { graceMinutes: 60 },
});

const workspace = (id: string, fields: Partial<Subject>): Subject => ({ id, plan: 'std', billingAnchorDay: 1, timeZone: 'UTC', contacts: [], ...fields });
// Each is created inside its current cycle unless a test says otherwise, so no earlier cycle is waiting for its close.
const WORKSPACES = [
  workspace('ws_a', { createdAt: '2026-11-02T09:00:00.000Z' }),
  workspace('ws_open', { plan: 'open', createdAt: '2026-11-02T09:00:00.000Z' }),
  workspace('ws_tokyo', { timeZone: 'Asia/Tokyo', createdAt: '2026-11-02T09:00:00.000Z' }),
  workspace('ws_leap', { billingAnchorDay: 29, createdAt: '2028-02-01T00:00:00.000Z' }),
  workspace('ws_new', { billingAnchorDay: 29, createdAt: '2028-02-29T00:10:00.000Z' }),
];
const NOV = { start: '2026-11-01T00:00:00.000Z', end: '2026-12-01T00:00:00.000Z' };
const NOW = '2026-11-20T12:00:00.000Z';

function world(now = NOW) {
  const clock = new FixedClock(now);
  const accounts = new InMemoryAccounts();
  const rollups = new InMemoryRollupReader();
  const subjects = new InMemorySubjectStore(WORKSPACES);
  const deps = { config, subjects, rollups, accounts, clock, reports: new InMemoryReports() };
  const use = (subject: string, usageType: string, period: string, total: string, counters: Record<string, string> = {}) => rollups.set(subject, { usageType, kind: 'cycle', period, total, counters });
  const entry = async (subject: string, usageType = 'tokens') => (await quotaView(subject, deps)).quotas.find((q) => q.usageType === usageType);
  return { clock, accounts, deps, use, entry };
}

const credit = (subject: string, id: string, fields: Partial<Grant>): Grant => ({
  subject,
  id,
  kind: 'bonus',
  usageType: 'tokens',
  amount: '100',
  grantedAt: '2026-11-05T00:00:00.000Z',
  ...fields,
});

describe('quotaView', () => {
  test('an unknown workspace is a NotFoundError with the code unknown_workspace', async () => {
    const { deps } = world();

    const error = await caught(() => quotaView('ws_missing', deps));

    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: 'unknown_workspace' });
  });

  test('every usage type of the plan, sorted, with the cycle it belongs to', async () => {
    // Arrange: 250 tokens this cycle, 40 of them today (20 Nov); no credits used
    const { deps, use } = world();
    use('ws_a', 'tokens', NOV.start, '250', { 'd#2026-11-20': '40', 'd#2026-11-19': '210' });

    // Act
    const view = await quotaView('ws_a', deps);

    // Assert: tokens 1000 − 250 = 750 left; credits untouched
    expect(view).toEqual({
      subject: 'ws_a',
      plan: 'std',
      quotas: [
        {
          usageType: 'credits',
          limitAmount: 10,
          dailyLimitAmount: null,
          usedAmount: 0,
          usedAmountDaily: 0,
          availableAmount: 10,
          bonusAmount: 0,
          topupAmount: 0,
          spilloverAmount: 0,
          requests: 0,
          fairUseLimitReached: false,
          canUse: true,
          cycleStart: NOV.start,
          cycleEnd: NOV.end,
        },
        {
          usageType: 'tokens',
          limitAmount: 1000,
          dailyLimitAmount: 100,
          usedAmount: 250,
          usedAmountDaily: 40,
          availableAmount: 750,
          bonusAmount: 0,
          topupAmount: 0,
          spilloverAmount: 0,
          requests: 0,
          fairUseLimitReached: false,
          canUse: true,
          cycleStart: NOV.start,
          cycleEnd: NOV.end,
        },
      ],
    });
  });

  test('the daily limit counts the local day: reached at exactly the limit, and lifted at local midnight', async () => {
    // Arrange: Tokyo is UTC+9, so its cycle starts 1 Nov 00:00 local = 31 Oct 15:00Z and 21 Nov starts at 20 Nov 15:00Z
    const { clock, use, entry } = world();
    use('ws_tokyo', 'tokens', '2026-10-31T15:00:00.000Z', '199', { 'd#2026-11-20': '100', 'd#2026-11-21': '99' });

    // Act
    clock.set('2026-11-20T14:59:59.999Z');
    const lastMillisecondOf20th = await entry('ws_tokyo');
    clock.set('2026-11-20T15:00:00.000Z');
    const first21st = await entry('ws_tokyo');

    // Assert: 100 ≥ 100 blocks although 801 of the month is left; 99 < 100 does not
    expect(lastMillisecondOf20th).toMatchObject({ usedAmountDaily: 100, availableAmount: 801, canUse: false, cycleStart: '2026-10-31T15:00:00.000Z' });
    expect(first21st).toMatchObject({ usedAmountDaily: 99, availableAmount: 801, canUse: true });
  });

  test('nothing available blocks under overage "block" and not under "allow"; available never goes below 0', async () => {
    const { use, entry } = world();
    use('ws_a', 'tokens', NOV.start, '1000');
    use('ws_open', 'tokens', NOV.start, '1500');

    // 1000 of 1000: 0 left, blocked; 1500 of 1000 under allow: 0 left (not −500), still usable
    expect(await entry('ws_a')).toMatchObject({ usedAmount: 1000, availableAmount: 0, canUse: false });
    expect(await entry('ws_open')).toMatchObject({ usedAmount: 1500, availableAmount: 0, canUse: true });
  });

  test('exact to the 9th decimal: one nano-unit left still allows use, none blocks', async () => {
    const { use, entry } = world();

    // 10 − 9.999999999 = 0.000000001, not representable as a plain JSON number text, so a lossless number
    use('ws_a', 'credits', NOV.start, '9.999999999');
    const oneLeft = await entry('ws_a', 'credits');
    use('ws_a', 'credits', NOV.start, '10');
    const noneLeft = await entry('ws_a', 'credits');

    expect(String(oneLeft?.availableAmount)).toBe('0.000000001');
    expect(oneLeft?.canUse).toBe(true);
    expect([noneLeft?.availableAmount, noneLeft?.canUse]).toEqual([0, false]);
  });

  test('a total past 2^53 is answered exactly', async () => {
    const { use, entry } = world();
    use('ws_open', 'tokens', NOV.start, '9007199254740993'); // 2^53 + 1: a double would print …992

    const quota = await entry('ws_open');

    expect(quota?.usedAmount).toBeInstanceOf(LosslessNumber);
    expect(String(quota?.usedAmount)).toBe('9007199254740993');
    expect([quota?.availableAmount, quota?.canUse]).toEqual([0, true]);
  });

  test('the fair-use limit is reached at exactly its value, and only informs', async () => {
    const { use, entry } = world();

    use('ws_a', 'tokens', NOV.start, '899');
    const below = await entry('ws_a');
    use('ws_a', 'tokens', NOV.start, '900');
    const at = await entry('ws_a');

    expect(below?.fairUseLimitReached).toBe(false);
    expect(at).toMatchObject({ fairUseLimitReached: true, availableAmount: 100, canUse: true });
  });

  test('a credit granted at this very millisecond counts; one a millisecond later does not', async () => {
    const { accounts, entry } = world();
    await accounts.putGrant(credit('ws_a', 'now', { amount: '50', grantedAt: NOW }));
    await accounts.putGrant(credit('ws_a', 'next-ms', { amount: '70', grantedAt: '2026-11-20T12:00:00.001Z' }));

    // 1000 + 50
    expect(await entry('ws_a')).toMatchObject({ bonusAmount: 50, availableAmount: 1050 });
  });

  test('a credit expiring at this very millisecond is gone; one expiring a millisecond later is held', async () => {
    const { accounts, entry } = world();
    await accounts.putGrant(credit('ws_a', 'expires-now', { kind: 'topup', amount: '30', expiresAt: NOW }));
    await accounts.putGrant(credit('ws_a', 'expires-next-ms', { kind: 'topup', amount: '20', expiresAt: '2026-11-20T12:00:00.001Z' }));

    // 1000 + 20
    expect(await entry('ws_a')).toMatchObject({ bonusAmount: 20, availableAmount: 1020 });
  });

  test('a credit that expired mid-cycle absorbed overflow first; what was left of it is gone', async () => {
    // Arrange: U 1100 of L 1000 → overflow 100. T 300 expired on 15 Nov (sooner than B, which never expires),
    // so T took the 100 and its remaining 200 lapsed; B 500 is whole.
    const { accounts, use, entry } = world();
    use('ws_a', 'tokens', NOV.start, '1100');
    await accounts.putGrant(credit('ws_a', 'T', { kind: 'topup', amount: '300', grantedAt: '2026-11-02T00:00:00.000Z', expiresAt: '2026-11-15T00:00:00.000Z' }));
    await accounts.putGrant(credit('ws_a', 'B', { amount: '500', grantedAt: '2026-11-03T00:00:00.000Z' }));

    expect(await entry('ws_a')).toMatchObject({ usedAmount: 1100, bonusAmount: 500, availableAmount: 500, canUse: true });
  });

  test('a credit that expired when the cycle began covers nothing in it', async () => {
    // T expired at the cycle start, so the overflow of 100 is drawn from B: 500 − 100 = 400
    const { accounts, use, entry } = world();
    use('ws_a', 'tokens', NOV.start, '1100');
    await accounts.putGrant(credit('ws_a', 'T', { kind: 'topup', amount: '300', grantedAt: '2026-10-20T00:00:00.000Z', expiresAt: NOV.start }));
    await accounts.putGrant(credit('ws_a', 'B', { amount: '500', grantedAt: '2026-11-03T00:00:00.000Z' }));

    expect(await entry('ws_a')).toMatchObject({ bonusAmount: 400, availableAmount: 400, canUse: true });
  });

  test('a credit for a usage type outside the plan adds that type, with no allowance of its own', async () => {
    // images: L 0, U 20 → overflow 20 from the bonus of 50 → 30 left
    const { accounts, use, deps } = world();
    await accounts.putGrant(credit('ws_a', 'img', { usageType: 'images', amount: '50' }));
    use('ws_a', 'images', NOV.start, '20');

    const view = await quotaView('ws_a', deps);

    expect(view.quotas.map((q) => q.usageType)).toEqual(['credits', 'images', 'tokens']);
    expect(view.quotas[1]).toMatchObject({ limitAmount: 0, dailyLimitAmount: null, usedAmount: 20, bonusAmount: 30, availableAmount: 30, canUse: true });
  });
});

describe('quotaView around a cycle close on 29 February (anchor 29, UTC, grace 60 minutes)', () => {
  // Cycles: 29 Jan → 29 Feb 2028 (the leap day ends it) and 29 Feb → 29 Mar.
  const JAN = '2028-01-29T00:00:00.000Z';
  const FEB = '2028-02-29T00:00:00.000Z';
  const MAR = '2028-03-29T00:00:00.000Z';

  test('the last millisecond of 28 February is still in the January cycle', async () => {
    const { entry } = world('2028-02-28T23:59:59.999Z');

    expect(await entry('ws_leap')).toMatchObject({ cycleStart: JAN, cycleEnd: FEB });
  });

  test('in the grace period the answer already counts the close to come, and equals the answer after it', async () => {
    // Arrange, the cycle that ended on the leap day:
    //   tokens  U 400 of L 1000 → unused 600, spillover capped at 300 into the new cycle
    //   credits U 12 of L 10 → overflow 2 drawn from bonus C (5) → 3 left
    // and the new cycle so far: tokens 20 (all today), credits 1.5
    const { clock, accounts, use, deps, entry } = world('2028-02-29T00:30:00.000Z');
    use('ws_leap', 'tokens', JAN, '400');
    use('ws_leap', 'credits', JAN, '12');
    await accounts.putGrant(credit('ws_leap', 'C', { usageType: 'credits', amount: '5', grantedAt: '2028-02-05T00:00:00.000Z' }));
    use('ws_leap', 'tokens', FEB, '20', { 'd#2028-02-29': '20' });
    use('ws_leap', 'credits', FEB, '1.5');

    // Act
    const inGrace = { tokens: await entry('ws_leap'), credits: await entry('ws_leap', 'credits') };
    clock.set('2028-02-29T01:00:00.000Z');
    const closes = await runDueCloses(deps);
    const afterClose = { tokens: await entry('ws_leap'), credits: await entry('ws_leap', 'credits') };

    // Assert: tokens 1000 + 300 − 20 = 1280; credits 10 − 1.5 + 3 = 11.5
    expect(inGrace.tokens).toEqual({
      usageType: 'tokens',
      limitAmount: 1000,
      dailyLimitAmount: 100,
      usedAmount: 20,
      usedAmountDaily: 20,
      availableAmount: 1280,
      bonusAmount: 0,
      topupAmount: 0,
      spilloverAmount: 300,
      requests: 0,
      fairUseLimitReached: false,
      canUse: true,
      cycleStart: FEB,
      cycleEnd: MAR,
    });
    expect(inGrace.credits).toMatchObject({ usedAmount: 1.5, bonusAmount: 3, availableAmount: 11.5, spilloverAmount: 0, cycleStart: FEB });
    expect(closes.cyclesClosed.filter((c) => c.subject === 'ws_leap').map((c) => c.cycleStart)).toEqual([JAN]); // the close really ran in between
    expect(afterClose).toEqual(inGrace);
  });

  test('a workspace created after the last cycle ended carries nothing in from it', async () => {
    // ws_new was created at 00:10 on the leap day; ws_leap existed all January and used nothing, so its whole
    // unused 1000 would carry, capped at 300
    const { entry } = world('2028-02-29T00:30:00.000Z');

    expect(await entry('ws_new')).toMatchObject({ spilloverAmount: 0, availableAmount: 1000, cycleStart: FEB });
    expect(await entry('ws_leap')).toMatchObject({ spilloverAmount: 300, availableAmount: 1300, cycleStart: FEB });
  });
});
