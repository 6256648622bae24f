import { describe, expect, test } from '@jest/globals';
import type { CycleSnapshot, UsageSnapshot } from '../../../functions/core/billing/balance';
import { configSchema } from '../../../functions/core/config';
import type { RollupRow } from '../../../functions/core/metering/metering-ports';
import type { LedgerImage } from '../../../functions/core/metering/rollups';
import type { Subject } from '../../../functions/core/ports';
import { type AuditRow, reportTable, runAudit } from '../../../functions/core/reporting/audit';
import type { CycleReport, UsageReport } from '../../../functions/core/reporting/report-schema';
import type { LedgerScanner } from '../../../functions/core/reporting/reporting-ports';
import { caught } from '../../support/caught';
import { InMemoryAccounts, InMemoryReports, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * The audit recomputes each cycle from the ledger and compares it with the rollups, the snapshot plus its
 * late changes, and the written report. The ledger and every derived figure are written out by hand here:
 *
 * ws_a (anchor 1, UTC), cycle 1 → 30 Nov 2026:
 *   tokens   e1 10 + e2 20 on 3 Nov, e3 7 on 4 Nov   → 37 (3 Nov: 30, 4 Nov: 7)
 *   credits  e4 0.25 on 4 Nov                         → 0.25
 */

const config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'std', quotas: { tokens: { monthlyLimit: 1000 } } }],
});
const WS_A: Subject = { id: 'ws_a', plan: 'std', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] };
const OCT = '2026-10-01T00:00:00.000Z';
const NOV = '2026-11-01T00:00:00.000Z';
const DEC = '2026-12-01T00:00:00.000Z';

/** Every event, of one subject when asked, as the ledger table's scan yields them. */
class InMemoryLedgerScanner implements LedgerScanner {
  constructor(readonly events: LedgerImage[]) {}
  async *scan(subject?: string): AsyncIterable<LedgerImage> {
    yield* this.events.filter((e) => subject === undefined || e.subject === subject);
  }
}

const image = (subject: string, id: string, usageType: string, quantity: string, time: string, day: string, cycleStart: string): LedgerImage => ({
  eventKey: JSON.stringify(['test', id]),
  subject,
  usageType,
  quantity,
  hour: time.slice(0, 13),
  day,
  cycleStart,
});

/** e1, e2 and e3: 30 on 3 Nov, 7 on 4 Nov, all on the web channel. */
const NOV_TOKENS_CYCLE: RollupRow = { usageType: 'tokens', kind: 'cycle', period: NOV, total: '37', requests: '3', counters: { 'd#2026-11-03': '30', 'd#2026-11-04': '7', 'c#web': '37' } };
/** e1 and e2, at 08h and 09h. */
const NOV_3_TOKENS: RollupRow = { usageType: 'tokens', kind: 'day', period: '2026-11-03', total: '30', requests: '2', counters: { 'r#2026-11-03T08': '1', 'r#2026-11-03T09': '1' } };

const NOV_EVENTS = [
  image('ws_a', 'e1', 'tokens', '10', '2026-11-03T08:00:00.000Z', '2026-11-03', NOV),
  image('ws_a', 'e2', 'tokens', '20', '2026-11-03T09:00:00.000Z', '2026-11-03', NOV),
  image('ws_a', 'e3', 'tokens', '7', '2026-11-04T10:00:00.000Z', '2026-11-04', NOV),
  image('ws_a', 'e4', 'credits', '0.25', '2026-11-04T11:00:00.000Z', '2026-11-04', NOV),
];

/**
 * Rollups that match NOV_EVENTS: cycle items with their day counters (and a channel counter, which is no day) and
 * events (tokens e1–e3, credits e4), and day items with their events and one hour requests counter per event's hour.
 */
function matchingRollups(): InMemoryRollupReader {
  return new InMemoryRollupReader().add(
    'ws_a',
    NOV_TOKENS_CYCLE,
    { usageType: 'credits', kind: 'cycle', period: NOV, total: '0.25', requests: '1', counters: { 'd#2026-11-04': '0.25' } },
    NOV_3_TOKENS,
    { usageType: 'tokens', kind: 'day', period: '2026-11-04', total: '7', requests: '1', counters: { 'r#2026-11-04T10': '1' } },
    { usageType: 'credits', kind: 'day', period: '2026-11-04', total: '0.25', requests: '1', counters: { 'r#2026-11-04T11': '1' } },
  );
}

function world(events: LedgerImage[] = NOV_EVENTS, rollups = matchingRollups(), subjects: Subject[] = [WS_A]) {
  const accounts = new InMemoryAccounts();
  const reports = new InMemoryReports();
  const deps = { config, subjects: new InMemorySubjectStore(subjects), ledger: new InMemoryLedgerScanner(events), rollups, accounts, reports };
  return { deps, rollups, accounts, reports };
}

const differences = (rows: AuditRow[]) => rows.filter((r) => !r.ok).map(({ subject, cycleStart, usageType, check, expected, actual }) => ({ subject, cycleStart, usageType, check, expected, actual }));

const usageSnapshot = (used: string): UsageSnapshot => ({ limit: '0', spilloverIn: '0', used, overflow: '0', drawn: {}, uncovered: '0', spilloverOut: '0' });
const snapshot = (status: CycleSnapshot['status'], used: Record<string, string>): CycleSnapshot => ({
  subject: 'ws_a',
  cycleStart: NOV,
  cycleEnd: DEC,
  plan: 'std',
  status,
  frozenAt: '2026-12-01T01:00:00.000Z',
  usage: Object.fromEntries(Object.entries(used).map(([usageType, u]) => [usageType, usageSnapshot(u)])),
  expired: {},
});

/** A written cycle report; only closedTotal, total and the adjustments are compared by the audit. */
function cycleReport(usage: { usageType: string; closedTotal: string; total: string; lateTotal: string; late: string[] }[]): CycleReport {
  const line = ({ usageType, closedTotal, total, lateTotal, late }: (typeof usage)[number]): UsageReport => ({
    usageType,
    unit: usageType,
    total,
    closedTotal,
    requests: 0,
    daily: [],
    byChannel: [],
    byFeature: [],
    topUsers: [],
    topGroups: [],
    allowance: { limit: '0', spilloverIn: '0' },
    grantsUsed: { plan: '0', spillover: '0', bonus: '0', topup: '0', uncovered: '0' },
    spilloverOut: '0',
    adjustments: { total: lateTotal, events: late.map((delta, i) => ({ source: 'test', id: `late${i}`, delta, appliedAt: '2026-12-02T00:00:00.000Z' })) },
    money: null,
  });
  return {
    schemaVersion: 1,
    kind: 'cycle-report',
    generatedAt: '2026-12-01T01:00:00.000Z',
    subject: { id: 'ws_a', name: null, plan: 'std', timeZone: 'UTC', billingAnchorDay: 1 },
    cycle: { start: NOV, end: DEC, status: 'closed', closedAt: '2026-12-01T01:00:00.000Z' },
    currency: null,
    usage: usage.map(line),
    earlierCycleAdjustments: [],
    amount: null,
  };
}

describe('runAudit on an open cycle', () => {
  test('rollups that match the ledger: four checks per usage type, no difference', async () => {
    const { deps } = world();

    const result = await runAudit({}, deps);

    expect(result.events).toBe(4);
    expect(result.differences).toBe(0);
    expect(result.rows.map((r) => [r.usageType, r.check, r.expected, r.actual, r.ok])).toEqual([
      ['credits', 'cycle rollup total', '0.25', '0.25', true],
      ['credits', 'cycle rollup day counters', '0.25', '0.25', true],
      ['credits', 'day rollups', 'every day equal', 'every day equal', true],
      ['credits', 'requests', '1, every day and hour equal', '1, every day and hour equal', true],
      ['tokens', 'cycle rollup total', '37', '37', true],
      ['tokens', 'cycle rollup day counters', '37', '37', true],
      ['tokens', 'day rollups', 'every day equal', 'every day equal', true],
      ['tokens', 'requests', '3, every day and hour equal', '3, every day and hour equal', true],
    ]);
  });

  test('a damaged day counter of the cycle item is exactly that difference', async () => {
    // 4 Nov's counter lost one token: the counters sum to 30 + 6 = 36; the total and the day items are intact
    const rollups = matchingRollups().set('ws_a', {
      ...NOV_TOKENS_CYCLE,
      counters: { 'd#2026-11-03': '30', 'd#2026-11-04': '6', 'c#web': '37' },
    });
    const { deps } = world(NOV_EVENTS, rollups);

    const result = await runAudit({}, deps);

    expect(result.differences).toBe(1);
    expect(differences(result.rows)).toEqual([{ subject: 'ws_a', cycleStart: NOV, usageType: 'tokens', check: 'cycle rollup day counters', expected: '37', actual: '36' }]);
  });

  test('a cycle total that missed an event is exactly that difference', async () => {
    // e1 (10) never reached the total: 37 − 10 = 27
    const rollups = matchingRollups().set('ws_a', { ...NOV_TOKENS_CYCLE, total: '27', counters: { 'd#2026-11-03': '30', 'd#2026-11-04': '7' } });
    const { deps } = world(NOV_EVENTS, rollups);

    expect(differences((await runAudit({}, deps)).rows)).toEqual([{ subject: 'ws_a', cycleStart: NOV, usageType: 'tokens', check: 'cycle rollup total', expected: '37', actual: '27' }]);
  });

  test('day items that differ, or exist without events, are named by day', async () => {
    // 3 Nov holds 31 instead of 30; 5 Nov has an item of 2 and no event
    const rollups = matchingRollups()
      .set('ws_a', { ...NOV_3_TOKENS, total: '31' })
      .add('ws_a', { usageType: 'tokens', kind: 'day', period: '2026-11-05', total: '2', counters: {} });
    const { deps } = world(NOV_EVENTS, rollups);

    const [difference, ...others] = differences((await runAudit({}, deps)).rows);

    expect(others).toEqual([]);
    expect(difference).toMatchObject({ usageType: 'tokens', check: 'day rollups', actual: 'differ on 2026-11-03, 2026-11-05' });
  });

  test('an event the rollups never counted shows in every check of its usage type', async () => {
    // e5: 0.000000001 credits on 4 Nov, in the ledger only: 0.25 + 0.000000001 = 0.250000001
    const { deps } = world([...NOV_EVENTS, image('ws_a', 'e5', 'credits', '0.000000001', '2026-11-04T12:00:00.000Z', '2026-11-04', NOV)]);

    const result = await runAudit({}, deps);

    expect(result.events).toBe(5);
    expect(differences(result.rows).map((d) => [d.usageType, d.check, d.expected, d.actual])).toEqual([
      ['credits', 'cycle rollup total', '0.250000001', '0.25'],
      ['credits', 'cycle rollup day counters', '0.250000001', '0.25'],
      ['credits', 'day rollups', 'every day equal', 'differ on 2026-11-04'],
      ['credits', 'requests', '2, every day and hour equal', '1, differ on 2026-11-04'],
    ]);
  });

  test('request counts that differ from the ledger: the cycle item, a day item or its hour counters, each named', async () => {
    // The tokens cycle item counts 4 events, not 3; the credits day item of 4 Nov holds 1 but its hour counter 2
    const rollups = matchingRollups()
      .set('ws_a', { ...NOV_TOKENS_CYCLE, requests: '4' })
      .set('ws_a', { usageType: 'credits', kind: 'day', period: '2026-11-04', total: '0.25', requests: '1', counters: { 'r#2026-11-04T11': '2' } })
      .set('ws_a', { ...NOV_3_TOKENS, requests: '1' });
    const { deps } = world(NOV_EVENTS, rollups);

    expect(differences((await runAudit({}, deps)).rows).map((d) => [d.usageType, d.check, d.expected, d.actual])).toEqual([
      ['credits', 'requests', '1, every day and hour equal', '1, differ on 2026-11-04'],
      ['tokens', 'requests', '3, every day and hour equal', '4, differ on 2026-11-03'],
    ]);
  });
});

describe('runAudit on a closed cycle', () => {
  /**
   * Closed with tokens 30 and credits 0.25 frozen; then e3 (7 tokens) arrived late: the cycle item holds 37,
   * 7 of it late, one late change of 7, and the report says closed 30 + adjustments 7 = 37.
   */
  async function closedWorld() {
    const rollups = matchingRollups().set('ws_a', {
      ...NOV_TOKENS_CYCLE,
      late: '7',
      closedAt: '2026-12-01T01:00:00.000Z',
      counters: { 'd#2026-11-03': '30', 'd#2026-11-04': '7' },
    });
    rollups.late.push({ subject: 'ws_a', cycleStart: NOV, usageType: 'tokens', eventKey: JSON.stringify(['test', 'e3']), delta: '7', appliedAt: '2026-12-02T00:00:00.000Z' });
    const w = world(NOV_EVENTS, rollups);
    await w.accounts.freezeCycle(snapshot('closed', { tokens: '30', credits: '0.25' }));
    await w.reports.putCycleReport(
      cycleReport([
        { usageType: 'credits', closedTotal: '0.25', total: '0.25', lateTotal: '0', late: [] },
        { usageType: 'tokens', closedTotal: '30', total: '37', lateTotal: '7', late: ['7'] },
      ]),
    );
    return w;
  }

  test('snapshot, late changes and written report that agree: nine checks per usage type, no difference', async () => {
    const { deps } = await closedWorld();

    const result = await runAudit({}, deps);

    expect(result.differences).toBe(0);
    expect(result.rows.filter((r) => r.usageType === 'tokens').map((r) => [r.check, r.expected, r.actual])).toEqual([
      ['cycle rollup total', '37', '37'],
      ['cycle rollup day counters', '37', '37'],
      ['day rollups', 'every day equal', 'every day equal'],
      ['requests', '3, every day and hour equal', '3, every day and hour equal'],
      ['snapshot + late changes', '37', '37'], // 30 frozen + 7 late
      ['late items', '7', '7'],
      ['written report closed total', '30', '30'],
      ['written report total', '37', '37'],
      ['written report adjustment events', '7', '7'],
    ]);
    expect(result.rows).toHaveLength(18);
  });

  test('a late change that was counted but not itemized is exactly that difference', async () => {
    const { deps, rollups } = await closedWorld();
    rollups.late.length = 0;

    expect(differences((await runAudit({}, deps)).rows)).toEqual([{ subject: 'ws_a', cycleStart: NOV, usageType: 'tokens', check: 'late items', expected: '7', actual: '0' }]);
  });

  test('a written report whose total is not its closed total plus adjustments is exactly that difference', async () => {
    const { deps, reports } = await closedWorld();
    await reports.putCycleReport(
      cycleReport([
        { usageType: 'credits', closedTotal: '0.25', total: '0.25', lateTotal: '0', late: [] },
        { usageType: 'tokens', closedTotal: '30', total: '36', lateTotal: '7', late: ['7'] }, // 30 + 7 is 37
      ]),
    );

    expect(differences((await runAudit({}, deps)).rows)).toEqual([{ subject: 'ws_a', cycleStart: NOV, usageType: 'tokens', check: 'written report total', expected: '37', actual: '36' }]);
  });

  test('a missing written report is one difference per usage type', async () => {
    const { deps, reports } = await closedWorld();
    reports.objects.clear();

    const result = await runAudit({}, deps);

    expect(differences(result.rows).map((d) => [d.usageType, d.check, d.expected, d.actual])).toEqual([
      ['credits', 'written report', 'present', 'missing'],
      ['tokens', 'written report', 'present', 'missing'],
    ]);
  });

  test('a cycle still closing is checked against its snapshot, not yet against a report', async () => {
    const { deps, accounts, reports } = await closedWorld();
    accounts.items.clear();
    reports.objects.clear();
    await accounts.freezeCycle(snapshot('closing', { tokens: '30', credits: '0.25' }));

    const result = await runAudit({}, deps);

    expect(result.differences).toBe(0);
    expect(result.rows.map((r) => r.check).filter((c) => c.startsWith('written report'))).toEqual([]);
    expect(result.rows).toHaveLength(12); // six checks per usage type
  });
});

describe('runAudit: which workspaces and cycles', () => {
  test('events of workspaces that no longer exist are neither counted nor audited', async () => {
    const { deps } = world([...NOV_EVENTS, image('ws_gone', 'x1', 'tokens', '99', '2026-11-03T08:00:00.000Z', '2026-11-03', NOV)]);

    const result = await runAudit({}, deps);

    expect(result.events).toBe(4);
    expect(new Set(result.rows.map((r) => r.subject))).toEqual(new Set(['ws_a']));
  });

  test('an unknown workspace asked for by name is an error', async () => {
    const { deps } = world();

    expect(await caught(() => runAudit({ subject: 'ws_nope' }, deps))).toEqual(new Error('unknown workspace "ws_nope"'));
  });

  test('a cycle filter audits that cycle only, whatever is wrong in another', async () => {
    // October has an event of 5 that its cycle item never counted
    const events = [...NOV_EVENTS, image('ws_a', 'o1', 'tokens', '5', '2026-10-10T08:00:00.000Z', '2026-10-10', OCT)];
    const rollups = matchingRollups().add('ws_a', { usageType: 'tokens', kind: 'cycle', period: OCT, total: '0', counters: {} });
    const { deps } = world(events, rollups);

    const all = await runAudit({}, deps);
    const november = await runAudit({ subject: 'ws_a', cycle: () => ({ start: NOV, end: DEC }) }, deps);

    expect(differences(all.rows).map((d) => [d.cycleStart, d.check])).toEqual([
      [OCT, 'cycle rollup total'],
      [OCT, 'cycle rollup day counters'],
      [OCT, 'day rollups'],
      [OCT, 'requests'],
    ]);
    expect(november.differences).toBe(0);
    expect(new Set(november.rows.map((r) => r.cycleStart))).toEqual(new Set([NOV]));
  });

  test('in New York across the end of daylight time, a cycle owns its local days and no others', async () => {
    // Anchor 1: November's cycle runs from 1 Nov 00:00 EDT (04:00Z) to 1 Dec 00:00 EST (05:00Z); clocks went back on
    // 1 Nov at 06:00Z. 1 Dec 04:30Z is still 30 Nov 23:30 locally (November's cycle); 1 Dec 05:30Z is December's.
    const ny: Subject = { id: 'ws_ny', plan: 'std', billingAnchorDay: 1, timeZone: 'America/New_York', contacts: [] };
    const NY_NOV = '2026-11-01T04:00:00.000Z';
    const NY_DEC = '2026-12-01T05:00:00.000Z';
    const events = [
      image('ws_ny', 'n1', 'tokens', '3', '2026-11-01T04:30:00.000Z', '2026-11-01', NY_NOV),
      image('ws_ny', 'n2', 'tokens', '4', '2026-12-01T04:30:00.000Z', '2026-11-30', NY_NOV),
      image('ws_ny', 'd1', 'tokens', '50', '2026-12-01T05:30:00.000Z', '2026-12-01', NY_DEC),
    ];
    const rollups = () =>
      new InMemoryRollupReader().add(
        'ws_ny',
        { usageType: 'tokens', kind: 'cycle', period: NY_NOV, total: '7', requests: '2', counters: { 'd#2026-11-01': '3', 'd#2026-11-30': '4' } },
        { usageType: 'tokens', kind: 'cycle', period: NY_DEC, total: '50', requests: '1', counters: { 'd#2026-12-01': '50' } },
        { usageType: 'tokens', kind: 'day', period: '2026-11-01', total: '3', requests: '1', counters: { 'r#2026-11-01T04': '1' } },
        { usageType: 'tokens', kind: 'day', period: '2026-11-30', total: '4', requests: '1', counters: { 'r#2026-12-01T04': '1' } },
        { usageType: 'tokens', kind: 'day', period: '2026-12-01', total: '50', requests: '1', counters: { 'r#2026-12-01T05': '1' } },
      );

    const intact = await runAudit({}, world(events, rollups(), [ny]).deps);
    const damaged = await runAudit(
      {},
      world(events, rollups().set('ws_ny', { usageType: 'tokens', kind: 'day', period: '2026-11-30', total: '5', requests: '1', counters: { 'r#2026-12-01T04': '1' } }), [ny]).deps,
    );

    expect([intact.events, intact.differences]).toEqual([3, 0]);
    expect(differences(damaged.rows)).toEqual([{ subject: 'ws_ny', cycleStart: NY_NOV, usageType: 'tokens', check: 'day rollups', expected: 'every day equal', actual: 'differ on 2026-11-30' }]);
  });
});

describe('reportTable', () => {
  test('marks each difference and sums up', async () => {
    const rollups = matchingRollups().set('ws_a', { usageType: 'credits', kind: 'cycle', period: NOV, total: '0.5', requests: '1', counters: { 'd#2026-11-04': '0.25' } });
    const result = await runAudit({}, world(NOV_EVENTS, rollups).deps);

    const lines = reportTable(result).split('\n');

    expect(lines.filter((l) => l.endsWith('DIFFERENT'))).toHaveLength(1);
    expect(lines.find((l) => l.endsWith('DIFFERENT'))).toMatch(/^ws_a +2026-11-01T00:00:00\.000Z +credits +cycle rollup total +0\.25 +0\.5 +DIFFERENT$/);
    expect(lines.at(-1)).toBe('4 events in the ledger, 8 checks, 1 difference(s)');
  });

  test('says "no difference" when there is none', async () => {
    const result = await runAudit({}, world().deps);

    expect(reportTable(result).split('\n').at(-1)).toBe('4 events in the ledger, 8 checks, no difference');
  });
});
