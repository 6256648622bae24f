import { describe, expect, test } from '@jest/globals';
import { putWorkspace } from '../../../functions/core/access/workspaces';
import { burnOrder, cycleBalance, defaultTopUpExpiry, type Grant } from '../../../functions/core/billing/balance';
import { runDueCloses } from '../../../functions/core/billing/closes';
import { quotaView } from '../../../functions/core/billing/quotas';
import { type Config, configSchema } from '../../../functions/core/config';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryAccounts, InMemoryReports, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * Cycle and grant arithmetic, closes and the quota view, against expectations worked out by hand in the
 * comments (not by calling the code under test). Amounts are whole units unless a test says otherwise.
 */

const N = 1_000_000_000n; // nano-units per unit
const u = (n: number) => BigInt(Math.round(n * 1e9)); // exact for the halves and quarters used here

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [
    { id: 'all', quotas: { tokens: { monthlyLimit: 1000, dailyLimit: 100, spillover: { policy: 'all' }, overage: 'block' } } },
    { id: 'capped', quotas: { tokens: { monthlyLimit: 1000, fairUseLimit: 1200, spillover: { policy: 'capped', cap: 300 }, overage: 'allow' } } },
    { id: 'none', quotas: { tokens: { monthlyLimit: 1000 }, credits: { monthlyLimit: 10, spillover: { policy: 'all' } } } },
  ],
  closes: { graceMinutes: 60 },
});
const quotaOf = (plan: string) => config.plans.find((p) => p.id === plan)?.quotas.tokens;

describe('cycleBalance', () => {
  // [label, plan, L is the plan's 1000, S, U, expected spillover out, overflow, allowance left]
  const cases: [string, string, number, number, number, number, number][] = [
    ['zero usage, all carries the whole allowance', 'all', 0, 0, 1000, 0, 1000],
    ['zero usage, capped carries the cap', 'capped', 0, 0, 300, 0, 1000],
    ['zero usage, none carries nothing', 'none', 0, 0, 0, 0, 1000],
    ['use within the spillover leaves the whole allowance to carry', 'all', 200, 150, 1000, 0, 1050],
    ['spillover burns first: 700 − 200 = 500 of L used, 500 left, capped to 300', 'capped', 200, 700, 300, 0, 500],
    ['use over L + S: nothing carries, 300 overflows', 'all', 200, 1500, 0, 300, 0],
    ['over the limit with overage allow: 2500 − 1000 overflows', 'capped', 0, 2500, 0, 1500, 0],
  ];
  test.each(cases)('%s', (_label, plan, spilloverIn, used, wantOut, wantOverflow, wantLeft) => {
    // Act
    const balance = cycleBalance({ quota: quotaOf(plan), used: u(used), spilloverIn: u(spilloverIn), credits: [] });

    // Assert
    expect(balance.spilloverOut).toBe(u(wantOut));
    expect(balance.overflow).toBe(u(wantOverflow));
    expect(balance.allowanceLeft).toBe(u(wantLeft));
    expect(balance.uncovered).toBe(u(wantOverflow)); // no credits held
  });

  test('fractional usage carries an exact remainder: 10 − 2.5 = 7.5', () => {
    const balance = cycleBalance({ quota: config.plans[2]?.quotas.credits, used: u(2.5), spilloverIn: 0n, credits: [] });

    expect(balance.spilloverOut).toBe(7n * N + N / 2n);
  });

  test('a usage type the plan does not include has no allowance: all use overflows', () => {
    const balance = cycleBalance({ quota: undefined, used: u(5), spilloverIn: 0n, credits: [] });

    expect([balance.limit, balance.overflow, balance.allowanceLeft, balance.spilloverOut]).toEqual([0n, u(5), 0n, 0n]);
  });

  test('overflow burns credits soonest expiry first, then oldest; bonus (no expiry) last', () => {
    // Arrange: four credits of 100 each; overflow 250 → C (June, older) 100, B (June, newer) 100, A (Sept) 50, bonus 0.
    const grant = (id: string, grantedAt: string, expiresAt?: string): Grant => ({
      subject: 's',
      id,
      kind: expiresAt ? 'topup' : 'bonus',
      usageType: 'tokens',
      amount: '100',
      grantedAt,
      ...(expiresAt ? { expiresAt } : {}),
    });
    const credits = [
      grant('bonus', '2028-01-01T00:00:00.000Z'),
      grant('A', '2028-02-01T00:00:00.000Z', '2028-09-01T00:00:00.000Z'),
      grant('B', '2028-03-01T00:00:00.000Z', '2028-06-01T00:00:00.000Z'),
      grant('C', '2028-01-15T00:00:00.000Z', '2028-06-01T00:00:00.000Z'),
    ].map((g) => ({ grant: g, remaining: u(100) }));

    // Act
    const balance = cycleBalance({ quota: quotaOf('all'), used: u(1250), spilloverIn: 0n, credits });

    // Assert
    expect(Object.fromEntries(balance.drawn)).toEqual({ C: u(100), B: u(100), A: u(50) });
    expect(Object.fromEntries(balance.creditsLeft)).toEqual({ C: 0n, B: 0n, A: u(50), bonus: u(100) });
    expect(balance.uncovered).toBe(0n);
    expect(
      credits
        .map((c) => c.grant)
        .sort(burnOrder)
        .map((g) => g.id),
    ).toEqual(['C', 'B', 'A', 'bonus']);
  });

  test('a top-up expires twelve months after purchase, clamped to the month end', () => {
    expect(defaultTopUpExpiry('2027-02-28T09:30:00.000Z')).toBe('2028-02-28T09:30:00.000Z');
    expect(defaultTopUpExpiry('2028-02-29T09:30:00.000Z')).toBe('2029-02-28T09:30:00.000Z');
  });
});

/**
 * Workspace ws_31: anchor 31 in UTC, plan `all` (L 1000, daily 100, spillover all, overage block), created
 * 2028-01-31. Through February of a leap year its cycles are:
 *   1: 2028-01-31 → 2028-02-29   U 400                 → spillover out 1000 − 400 = 600
 *   2: 2028-02-29 → 2028-03-31   S 600, U 1700; top-up T 300 (expires June), bonus B 500
 *      overflow 1700 − 1600 = 100 drawn from T (sooner expiry); spillover out max(0, 1000 − (1700 − 600)) = 0
 *   3: 2028-03-31 → 2028-04-30   U 1900; X = T 200 + B 500; overflow 900: T 200, B 500, 200 uncovered
 */
const C1 = '2028-01-31T00:00:00.000Z';
const C2 = '2028-02-29T00:00:00.000Z';
const C3 = '2028-03-31T00:00:00.000Z';
const C4 = '2028-04-30T00:00:00.000Z';
const ws31: Subject = { id: 'ws_31', plan: 'all', billingAnchorDay: 31, timeZone: 'UTC', contacts: [], createdAt: '2028-01-31T10:00:00.000Z' };
const cycleRow = (period: string, total: number, counters: Record<string, string> = {}) => ({ usageType: 'tokens', kind: 'cycle' as const, period, total: String(total), counters });

function world() {
  const clock = new FixedClock('2028-02-10T12:00:00.000Z');
  const accounts = new InMemoryAccounts();
  const rollups = new InMemoryRollupReader();
  const subjects = new InMemorySubjectStore([ws31]);
  const reports = new InMemoryReports();
  const deps = { config, subjects, rollups, accounts, reports, clock };
  return { clock, accounts, rollups, reports, deps };
}

async function quota(deps: ReturnType<typeof world>['deps']) {
  const view = await quotaView('ws_31', deps);
  return view.quotas.find((q) => q.usageType === 'tokens');
}

describe('closes and the quota view over three cycles (anchor 31, leap February)', () => {
  test('each close freezes the hand-computed snapshot and the quota view follows', async () => {
    // Arrange: cycle 1
    const { clock, accounts, rollups, deps } = world();
    rollups.set('ws_31', cycleRow(C1, 400, { 'd#2028-02-10': '40' }));
    expect(await quota(deps)).toEqual({
      usageType: 'tokens',
      limitAmount: 1000,
      dailyLimitAmount: 100,
      usedAmount: 400,
      usedAmountDaily: 40,
      availableAmount: 600,
      bonusAmount: 0,
      topupAmount: 0,
      spilloverAmount: 0,
      requests: 0,
      fairUseLimitReached: false,
      canUse: true,
      cycleStart: C1,
      cycleEnd: C2,
    });

    // Act: the close of cycle 1 is due at 01:00 on Feb 29 (grace 60 min), not at 00:59
    clock.set('2028-02-29T00:59:00.000Z');
    const early = await runDueCloses(deps);
    clock.set('2028-02-29T01:00:00.000Z');
    const first = await runDueCloses(deps);

    // Assert
    expect(early.cyclesClosed).toEqual([]);
    expect(early.daysClosed).toBe(28); // Jan 31 … Feb 27; Feb 28 is still in its grace hour
    expect(first.cyclesClosed).toEqual([{ subject: 'ws_31', cycleStart: C1, report: `reports/${C1}/ws_31.json` }]);
    expect(first.daysClosed).toBe(1);
    const [snapshot1] = await accounts.listCycleSnapshots('ws_31');
    expect(snapshot1).toMatchObject({
      cycleStart: C1,
      cycleEnd: C2,
      status: 'closed',
      usage: { tokens: { limit: '1000', spilloverIn: '0', used: '400', overflow: '0', spilloverOut: '600', drawn: {} } },
    });
    expect(await accounts.listGrants('ws_31')).toEqual([
      { subject: 'ws_31', id: `spillover:tokens:${C2}`, kind: 'spillover', usageType: 'tokens', amount: '600', grantedAt: '2028-02-29T01:00:00.000Z', cycleStart: C2, expiresAt: C3 },
    ]);

    // Arrange: cycle 2 with a top-up and a bonus
    await accounts.putGrant({ subject: 'ws_31', id: 'T', kind: 'topup', usageType: 'tokens', amount: '300', grantedAt: '2028-03-01T00:00:00.000Z', expiresAt: '2028-06-01T00:00:00.000Z' });
    await accounts.putGrant({ subject: 'ws_31', id: 'B', kind: 'bonus', usageType: 'tokens', amount: '500', grantedAt: '2028-03-05T00:00:00.000Z' });
    rollups.set('ws_31', cycleRow(C2, 1700, { 'd#2028-03-10': '80' }));
    clock.set('2028-03-10T12:00:00.000Z');
    // L + S = 1600 < U = 1700: overflow 100 from X = 800 → bonus 700, available 0 + 700
    expect(await quota(deps)).toMatchObject({ usedAmount: 1700, usedAmountDaily: 80, spilloverAmount: 600, bonusAmount: 700, availableAmount: 700, canUse: true, cycleStart: C2, cycleEnd: C3 });

    clock.set('2028-03-31T01:00:00.000Z');
    await runDueCloses(deps);
    const snapshot2 = (await accounts.listCycleSnapshots('ws_31'))[1];
    expect(snapshot2?.usage.tokens).toEqual({ limit: '1000', spilloverIn: '600', used: '1700', overflow: '100', drawn: { T: '100' }, uncovered: '0', spilloverOut: '0' });
    expect((await accounts.listGrants('ws_31')).filter((g) => g.kind === 'spillover')).toHaveLength(1); // nothing carried into cycle 3

    // Cycle 3: X = T 200 + B 500 = 700, U 1900 → overflow 900, nothing left; plan blocks
    rollups.set('ws_31', cycleRow(C3, 1900, { 'd#2028-04-05': '100' }));
    clock.set('2028-04-05T08:00:00.000Z');
    expect(await quota(deps)).toMatchObject({ usedAmount: 1900, usedAmountDaily: 100, spilloverAmount: 0, bonusAmount: 0, availableAmount: 0, canUse: false, cycleStart: C3, cycleEnd: C4 });
    clock.set('2028-04-30T01:00:00.000Z');
    await runDueCloses(deps);
    expect((await accounts.listCycleSnapshots('ws_31'))[2]?.usage.tokens).toEqual({
      limit: '1000',
      spilloverIn: '0',
      used: '1900',
      overflow: '900',
      drawn: { T: '200', B: '500' },
      uncovered: '200',
      spilloverOut: '0',
    });
  });

  test('in the grace hour before a close, the quota view already counts what the close will carry and draw', async () => {
    // Arrange: cycle 1 used 1150 of 1000 with a 300 top-up T (overflow 150 from T); cycle 2 starts, not closed yet
    const { clock, accounts, rollups, deps } = world();
    await accounts.putGrant({ subject: 'ws_31', id: 'T', kind: 'topup', usageType: 'tokens', amount: '300', grantedAt: '2028-02-01T00:00:00.000Z', expiresAt: '2028-12-01T00:00:00.000Z' });
    rollups.set('ws_31', cycleRow(C1, 1150)).set('ws_31', cycleRow(C2, 20, { 'd#2028-02-29': '20' }));
    clock.set('2028-02-29T00:30:00.000Z');

    // Act
    const inGrace = await quota(deps);
    clock.set('2028-02-29T01:00:00.000Z');
    await runDueCloses(deps);
    const closed = await quota(deps);

    // Assert: nothing carried (1150 > 1000); T holds 300 − 150 = 150; available 1000 − 20 + 150
    expect(inGrace).toMatchObject({ cycleStart: C2, usedAmount: 20, spilloverAmount: 0, bonusAmount: 150, availableAmount: 1130 });
    expect(closed).toEqual(inGrace);
  });

  test('in the grace hour, spillover not yet granted already shows', async () => {
    const { clock, rollups, deps } = world();
    rollups.set('ws_31', cycleRow(C1, 400));
    clock.set('2028-02-29T00:30:00.000Z');

    const inGrace = await quota(deps);
    clock.set('2028-02-29T01:00:00.000Z');
    await runDueCloses(deps);
    const closed = await quota(deps);

    expect(inGrace).toMatchObject({ cycleStart: C2, spilloverAmount: 600, availableAmount: 1600 });
    expect(closed).toEqual(inGrace);
  });

  test('a plan change applies at once to the current cycle', async () => {
    // Arrange: 1100 used; plan `all` blocks at 1000, plan `capped` allows overage and has fair use 1200
    const { rollups, deps } = world();
    rollups.set('ws_31', cycleRow(C1, 1100, { 'd#2028-02-10': '50' }));
    const before = await quota(deps);

    // Act
    await putWorkspace('ws_31', { plan: 'capped', billingAnchorDay: 31, timeZone: 'UTC', contacts: [] }, deps);
    const after = await quota(deps);

    // Assert
    expect(before).toMatchObject({ limitAmount: 1000, dailyLimitAmount: 100, availableAmount: 0, canUse: false, fairUseLimitReached: false });
    expect(after).toMatchObject({ limitAmount: 1000, dailyLimitAmount: null, availableAmount: 0, canUse: true, fairUseLimitReached: false, cycleStart: C1 });
    await expect(putWorkspace('ws_31', { plan: 'capped', billingAnchorDay: 15, timeZone: 'UTC', contacts: [] }, deps)).rejects.toMatchObject({ code: 'billing_anchor_fixed' });
  });

  test('the daily limit blocks use for the rest of the day only', async () => {
    const { clock, rollups, deps } = world();
    rollups.set('ws_31', cycleRow(C1, 300, { 'd#2028-02-10': '100', 'd#2028-02-09': '200' }));

    clock.set('2028-02-10T23:59:59.999Z');
    const today = await quota(deps);
    clock.set('2028-02-11T00:00:00.000Z');
    const tomorrow = await quota(deps);

    expect([today?.usedAmountDaily, today?.canUse]).toEqual([100, false]);
    expect([tomorrow?.usedAmountDaily, tomorrow?.canUse]).toEqual([0, true]);
  });
});

describe('closes are idempotent', () => {
  type World = ReturnType<typeof world>;

  /** Two closes: cycle 1 (U 400 → 600 carried) and cycle 2 (U 1800, top-up T 300 expiring mid-cycle). */
  async function arrange({ rollups, accounts }: World) {
    rollups.set('ws_31', cycleRow(C1, 400)).set('ws_31', cycleRow(C2, 1800));
    await accounts.putGrant({ subject: 'ws_31', id: 'T', kind: 'topup', usageType: 'tokens', amount: '300', grantedAt: '2028-02-01T00:00:00.000Z', expiresAt: '2028-03-15T00:00:00.000Z' });
  }

  /** Each scheduled run; a run that crashes is followed by the next one, as the hourly schedule would. */
  async function closeBoth({ clock, deps }: World, runsEach = 1) {
    for (const at of ['2028-02-29T01:00:00.000Z', '2028-03-31T01:00:00.000Z']) {
      clock.set(at);
      for (let i = 0; i < runsEach; i++) await runDueCloses(deps).catch(() => runDueCloses(deps));
    }
  }

  test('running every close twice stores exactly what one run stores', async () => {
    const once = world();
    await arrange(once);
    await closeBoth(once);
    const twice = world();
    await arrange(twice);
    await closeBoth(twice, 2);

    expect(twice.accounts.dump()).toEqual(once.accounts.dump());
    // Cycle 2 drew 200 from T (1800 − 1000 − 600); T's remaining 100 expired with the cycle.
    expect((await once.accounts.listCycleSnapshots('ws_31'))[1]).toMatchObject({ usage: { tokens: { drawn: { T: '200' } } }, expired: { T: '100' } });
  });

  test('a crash before any one write of a close, then the next run, gives the state of an uninterrupted close', async () => {
    const reference = world();
    await arrange(reference);
    let writes = 0;
    reference.accounts.beforeWrite = () => void writes++;
    await closeBoth(reference);
    expect(writes).toBeGreaterThan(60); // 2 cycle snapshots, spillover, 2 marks, 60 day snapshots

    for (let crashAt = 1; crashAt <= writes; crashAt++) {
      // Arrange: the crashAt-th write throws, once
      const crashing = world();
      await arrange(crashing);
      let seen = 0;
      let crashed = false;
      crashing.accounts.beforeWrite = (key) => {
        if (++seen === crashAt) {
          crashed = true;
          throw new Error(`injected crash before writing ${key}`);
        }
      };

      // Act
      await closeBoth(crashing);

      // Assert: the same accounts, and every report and summary written as in the uninterrupted run
      expect(crashed).toBe(true);
      expect(crashing.accounts.dump()).toEqual(reference.accounts.dump());
      expect(reportsOf(crashing)).toEqual(reportsOf(reference));
    }
  });

  test('a summary whose write failed is written by the next run, which closes nothing', async () => {
    // Arrange: the first summary write fails once
    const crashing = world();
    await arrange(crashing);
    const put = crashing.reports.putCycleSummary.bind(crashing.reports);
    let failures = 0;
    crashing.reports.putCycleSummary = async (summary) => {
      if (failures++ === 0) throw new Error('injected S3 failure');
      return put(summary);
    };
    crashing.clock.set('2028-02-29T01:00:00.000Z');

    // Act
    const failed = await runDueCloses(crashing.deps).catch((error: unknown) => error);
    const next = await runDueCloses(crashing.deps);

    // Assert: the failed run closed the cycle; the next closes nothing more and writes the summary
    expect(failed).toEqual(new Error('injected S3 failure'));
    expect(next.cyclesClosed).toEqual([]);
    expect(next.summaries).toEqual([`reports/${C1}/_summary.json`]);
    expect(await crashing.accounts.summariesDue()).toEqual([]);
    expect(crashing.reports.objects.get(`reports/${C1}/_summary.json`)).toMatchObject({ kind: 'cycle-summary', subjects: [{ subject: 'ws_31', report: `reports/${C1}/ws_31.json` }] });
  });

  /** Report and summary keys with what each lists (times left out: a re-run writes them later). */
  function reportsOf({ reports }: World) {
    return [...reports.objects]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, value]) => [key, value.kind === 'cycle-summary' ? value.subjects.map((s) => [s.subject, s.totals]) : value.usage.map((u) => [u.usageType, u.total, u.closedTotal])]);
  }
});

describe('late events after a close', () => {
  test('land in their closed cycle, leave its snapshot frozen and are recorded once as an adjustment', async () => {
    // Arrange: cycle 1 closed with U 400 and 600 carried over
    const { clock, accounts, rollups, deps } = world();
    rollups.set('ws_31', cycleRow(C1, 400));
    clock.set('2028-02-29T01:00:00.000Z');
    await runDueCloses(deps);

    // Act: a late event of 50 for cycle 1; the next daily close (Feb 29 ends, +1 h) notices it, twice
    rollups.set('ws_31', cycleRow(C1, 450));
    clock.set('2028-03-01T01:00:00.000Z');
    const noticed = await runDueCloses(deps);
    clock.set('2028-03-01T02:00:00.000Z');
    const again = await runDueCloses(deps);
    // a correction lowers it by 20 the day after
    rollups.set('ws_31', cycleRow(C1, 430));
    clock.set('2028-03-02T01:00:00.000Z');
    await runDueCloses(deps);

    // Assert
    expect(noticed.adjustments.map((a) => a.delta)).toEqual(['50']);
    expect(again.adjustments).toEqual([]);
    expect((await accounts.listAdjustments('ws_31')).map((a) => [a.cycleStart, a.delta, a.totalAfter])).toEqual([
      [C1, '50', '450'],
      [C1, '-20', '430'],
    ]);
    const [snapshot] = await accounts.listCycleSnapshots('ws_31');
    expect(snapshot?.usage.tokens?.used).toBe('400');
    expect((await accounts.listGrants('ws_31'))[0]?.amount).toBe('600');
    expect(await quota(deps)).toMatchObject({ spilloverAmount: 600, usedAmount: 0, availableAmount: 1600 });
  });
});

describe('closes in a time zone across a daylight-saving change', () => {
  // New York, anchor 8: cycle Feb 8 → Mar 8 starts and ends at local midnight, 05:00Z (EST); the next one
  // ends Apr 8 at local midnight, 04:00Z (EDT, clocks went forward at 02:00 on Mar 8). Mar 8 has 23 hours.
  const ny: Subject = { id: 'ws_ny', plan: 'all', billingAnchorDay: 8, timeZone: 'America/New_York', contacts: [], createdAt: '2026-02-20T15:00:00.000Z' };

  function nyWorld() {
    const clock = new FixedClock('2026-03-08T05:59:59.999Z');
    const accounts = new InMemoryAccounts();
    const rollups = new InMemoryRollupReader().add('ws_ny', { usageType: 'tokens', kind: 'cycle', period: '2026-02-08T05:00:00.000Z', total: '250', counters: {} });
    return { clock, accounts, rollups, deps: { config, subjects: new InMemorySubjectStore([ny]), rollups, accounts, reports: new InMemoryReports(), clock } };
  }

  test('each cycle closes an hour after its local midnight, whatever the UTC offset', async () => {
    const { clock, accounts, deps } = nyWorld();

    const early = await runDueCloses(deps);
    clock.set('2026-03-08T06:00:00.000Z');
    const due = await runDueCloses(deps);
    clock.set('2026-04-08T04:59:59.999Z');
    const earlyApril = await runDueCloses(deps);
    clock.set('2026-04-08T05:00:00.000Z');
    const dueApril = await runDueCloses(deps);

    expect(early.cyclesClosed).toEqual([]);
    expect(due.cyclesClosed).toEqual([{ subject: 'ws_ny', cycleStart: '2026-02-08T05:00:00.000Z', report: 'reports/2026-02-08T05:00:00.000Z/ws_ny.json' }]);
    expect(earlyApril.cyclesClosed).toEqual([]);
    expect(dueApril.cyclesClosed).toEqual([{ subject: 'ws_ny', cycleStart: '2026-03-08T05:00:00.000Z', report: 'reports/2026-03-08T05:00:00.000Z/ws_ny.json' }]);
    const snapshots = await accounts.listCycleSnapshots('ws_ny');
    expect(snapshots.map((s) => [s.cycleStart, s.cycleEnd])).toEqual([
      ['2026-02-08T05:00:00.000Z', '2026-03-08T05:00:00.000Z'],
      ['2026-03-08T05:00:00.000Z', '2026-04-08T04:00:00.000Z'],
    ]);
    // 1000 − 250 carried into the cycle that spans the change, expiring with it; that cycle used nothing, so
    // its whole allowance carries on (the 750 carried in is used first and never carries twice)
    expect((await accounts.listGrants('ws_ny')).map((g) => [g.amount, g.cycleStart, g.expiresAt])).toEqual([
      ['750', '2026-03-08T05:00:00.000Z', '2026-04-08T04:00:00.000Z'],
      ['1000', '2026-04-08T04:00:00.000Z', '2026-05-08T04:00:00.000Z'],
    ]);
  });

  test('the 23-hour day closes an hour after its local end, and the quota view counts local days', async () => {
    const { clock, accounts, rollups, deps } = nyWorld();
    rollups.add('ws_ny', { usageType: 'tokens', kind: 'cycle', period: '2026-03-08T05:00:00.000Z', total: '90', counters: { 'd#2026-03-08': '60', 'd#2026-03-09': '30' } });

    clock.set('2026-03-09T04:59:59.999Z'); // Mar 8 ended at 04:00Z (local midnight, EDT)
    await runDueCloses(deps);
    const beforeDue = (await accounts.lastDaySnapshot('ws_ny'))?.day;
    clock.set('2026-03-09T05:00:00.000Z');
    await runDueCloses(deps);
    const afterDue = (await accounts.lastDaySnapshot('ws_ny'))?.day;
    clock.set('2026-03-09T03:59:59.999Z'); // still Mar 8 in New York
    const lateOnTheEighth = (await quotaView('ws_ny', deps)).quotas[0];
    clock.set('2026-03-09T04:00:00.000Z'); // Mar 9 in New York
    const earlyOnTheNinth = (await quotaView('ws_ny', deps)).quotas[0];

    expect([beforeDue, afterDue]).toEqual(['2026-03-07', '2026-03-08']);
    expect([lateOnTheEighth?.usedAmountDaily, earlyOnTheNinth?.usedAmountDaily]).toEqual([60, 30]);
    expect(earlyOnTheNinth).toMatchObject({ usedAmount: 90, spilloverAmount: 750, cycleStart: '2026-03-08T05:00:00.000Z', cycleEnd: '2026-04-08T04:00:00.000Z' });
  });
});
