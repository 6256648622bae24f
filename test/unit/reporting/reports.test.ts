import { readFileSync } from 'node:fs';
import { describe, expect, test } from '@jest/globals';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { CycleSnapshot, Grant } from '../../../functions/core/billing/balance';
import { type Config, configSchema } from '../../../functions/core/config';
import type { Cycle } from '../../../functions/core/cycles';
import type { RollupRow } from '../../../functions/core/metering/metering-ports';
import type { Subject } from '../../../functions/core/ports';
import { type CycleReport, reportJsonSchema, type UsageReport } from '../../../functions/core/reporting/report-schema';
import { buildCycleReport, cycleSummary } from '../../../functions/core/reporting/reports';
import { FixedClock, InMemoryAccounts, InMemoryRollupReader } from '../../support/fakes';
import { nano } from '../metering/rollup-model';

/**
 * Cycle reports and summaries from in-memory rollups, grants and snapshots. Every expected value is worked
 * out by hand in the comments; every report built is validated against schemas/usage-report.schema.json.
 */

const schemaDocument = JSON.parse(readFileSync(new URL('../../../schemas/usage-report.schema.json', import.meta.url), 'utf8')) as { $id: string };
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(schemaDocument);

function expectValid(definition: 'cycleReport' | 'cycleSummary', value: unknown): void {
  const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/${definition}`) as ValidateFunction;
  const valid = validate(value);
  expect(valid ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
}

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'images', unit: 'image' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1000, spillover: { policy: 'all' } } } }],
  rateCard: {
    currency: 'USD',
    prices: {
      tokens: { unitPrice: 2, per: 1000, features: { 'gpt-large': 6 } },
      images: { unitPrice: 4, features: { hd: 10 } },
    },
  },
});
const { rateCard: _rateCard, ...configWithoutRates } = config;

/**
 * ws_ny: anchor 8 in New York. Cycles start at local midnight: Jan 8 and Feb 8 at 05:00Z (EST), Mar 8 at
 * 05:00Z too (clocks go forward at 02:00 that day), Apr 8 at 04:00Z (EDT).
 */
const ny: Subject = { id: 'ws_ny', name: 'New York Co', plan: 'pro', billingAnchorDay: 8, timeZone: 'America/New_York', contacts: [] };
const JAN = '2026-01-08T05:00:00.000Z';
const FEB: Cycle = { start: '2026-02-08T05:00:00.000Z', end: '2026-03-08T05:00:00.000Z' };
const MAR: Cycle = { start: '2026-03-08T05:00:00.000Z', end: '2026-04-08T04:00:00.000Z' };

const cycleRow = (period: string, usageType: string, total: string, counters: Record<string, string>, extra: Partial<RollupRow> = {}): RollupRow => ({
  usageType,
  kind: 'cycle',
  period,
  total,
  counters,
  ...extra,
});
const memberRow = (kind: 'user' | 'group', period: string, usageType: string, member: string, total: string): RollupRow => ({ usageType, kind, period, member, total, counters: {} });

const grants: Grant[] = [
  { subject: 'ws_ny', id: 'T', kind: 'topup', usageType: 'tokens', amount: '500', grantedAt: '2026-02-01T00:00:00.000Z', expiresAt: '2026-12-01T00:00:00.000Z' },
  { subject: 'ws_ny', id: 'B', kind: 'bonus', usageType: 'tokens', amount: '300', grantedAt: '2026-02-02T00:00:00.000Z' },
];

/**
 * February (closed 06:00Z Mar 8): spillover 200 in, U 1500 frozen → overflow 300: T 250, B 50. Later 45 more
 * arrived (−5 + 30 + 20), so the rollup now holds 1545, 45 of it late.
 */
const febSnapshot: CycleSnapshot = {
  subject: 'ws_ny',
  cycleStart: FEB.start,
  cycleEnd: FEB.end,
  plan: 'pro',
  status: 'closed',
  frozenAt: '2026-03-08T06:00:00.000Z',
  usage: { tokens: { limit: '1000', spilloverIn: '200', used: '1500', overflow: '300', drawn: { T: '250', B: '50' }, uncovered: '0', spilloverOut: '0' } },
  expired: {},
};

async function nyWorld(now: string, reportConfig: Config = config) {
  const clock = new FixedClock(now);
  const accounts = new InMemoryAccounts();
  for (const grant of grants) await accounts.putGrant(grant);
  await accounts.freezeCycle(febSnapshot);
  const rollups = new InMemoryRollupReader().add(
    'ws_ny',
    cycleRow(
      FEB.start,
      'tokens',
      '1545',
      { 'd#2026-02-08': '100', 'd#2026-02-28': '1200', 'd#2026-03-07': '245', 'c#api': '900', 'c#ui': '345', 'f#gpt-large': '500' },
      { late: '45', closedAt: febSnapshot.frozenAt },
    ),
    cycleRow(MAR.start, 'tokens', '1600', { 'd#2026-03-08': '600', 'd#2026-03-09': '1000', 'c#api': '1000', 'c#ui': '300', 'c#mcp': '0', 'f#gpt-large': '250' }),
    cycleRow(MAR.start, 'images', '7', { 'd#2026-03-09': '7', 'c#ui': '7', 'f#hd': '3' }),
    // 13 users of March tokens (one with nothing), two groups, and members of other cycles or usage types
    ...(
      [
        ['u01', '100'],
        ['u02', '300'],
        ['u03', '300'],
        ['u04', '50'],
        ['u05', '0'],
        ['u06', '75'],
        ['u07', '200'],
        ['u08', '10'],
        ['u09', '300'],
        ['u10', '20'],
        ['u11', '5'],
        ['u12', '60'],
        ['u13', '1'],
      ] as const
    ).map(([id, total]) => memberRow('user', MAR.start, 'tokens', id, total)),
    memberRow('group', MAR.start, 'tokens', 'g-b', '700'),
    memberRow('group', MAR.start, 'tokens', 'g-a', '700'),
    memberRow('group', MAR.start, 'tokens', 'g-c', '0'),
    memberRow('user', MAR.start, 'images', 'u99', '7'),
    memberRow('user', FEB.start, 'tokens', 'u50', '1545'),
  );
  rollups.late.push(
    { subject: 'ws_ny', cycleStart: JAN, usageType: 'tokens', eventKey: '["sdk","j1"]', delta: '7', appliedAt: '2026-02-10T00:00:00.000Z' },
    { subject: 'ws_ny', cycleStart: JAN, usageType: 'tokens', eventKey: '["sdk","j2"]', delta: '3', appliedAt: '2026-02-08T04:59:59.999Z' },
    { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","e03"]', delta: '-5', appliedAt: '2026-03-08T05:00:00.000Z' },
    { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["https://api.example.com/v1","evt_09"]', delta: '30', appliedAt: '2026-03-09T10:00:00.000Z' },
    { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","e12"]', delta: '20', appliedAt: '2026-04-08T04:00:00.000Z' },
    { subject: 'ws_other', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","x1"]', delta: '1', appliedAt: '2026-03-09T00:00:00.000Z' },
  );
  return { clock, accounts, rollups, deps: { config: reportConfig, rollups, accounts, clock } };
}

/** Sums decimal strings with the independent parser of the rollup model. */
const sum = (amounts: readonly string[]) => amounts.reduce((total, amount) => total + nano(amount), 0n);

function usageOf(report: CycleReport, usageType: string): UsageReport {
  const usage = report.usage.find((u) => u.usageType === usageType);
  if (!usage) throw new Error(`no ${usageType} in the report`);
  return usage;
}

/** Every breakdown of a usage report sums to its total. */
function expectBreakdownsSum(usage: UsageReport): void {
  const total = nano(usage.total);
  expect(sum(usage.daily.map((d) => d.amount))).toBe(total);
  expect(sum(usage.byChannel.map((c) => String(c.amount)))).toBe(total);
  expect(sum(usage.byFeature.map((f) => String(f.amount)))).toBe(total);
}

/** 'YYYY-MM-DD' for each day from `first` to `last` of one month, written out by hand. */
const monthDays = (month: string, first: number, last: number) => Array.from({ length: last - first + 1 }, (_, i) => `${month}-${String(first + i).padStart(2, '0')}`);

describe('buildCycleReport of an open cycle', () => {
  // Now: 03:30Z on Mar 10, which is still Mar 9 (23:30 EDT) in New York.
  const NOW = '2026-03-10T03:30:00.000Z';

  test('is open, has no closed total, and lists the local days so far', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert
    expectValid('cycleReport', report);
    expect(report).toMatchObject({
      schemaVersion: 1,
      kind: 'cycle-report',
      generatedAt: NOW,
      subject: { id: 'ws_ny', name: 'New York Co', plan: 'pro', timeZone: 'America/New_York', billingAnchorDay: 8 },
      cycle: { start: MAR.start, end: MAR.end, status: 'open', closedAt: null },
      currency: 'USD',
    });
    // images (no plan quota, but used) and tokens (plan and use); credits neither
    expect(report.usage.map((u) => [u.usageType, u.unit, u.total, u.closedTotal])).toEqual([
      ['images', 'image', '7', null],
      ['tokens', 'token', '1600', null],
    ]);
    // Mar 8 and Mar 9 local; in UTC it would already be Mar 10
    expect(usageOf(report, 'tokens').daily).toEqual([
      { day: '2026-03-08', amount: '600' },
      { day: '2026-03-09', amount: '1000' },
    ]);
    expect(usageOf(report, 'images').daily).toEqual([
      { day: '2026-03-08', amount: '0' },
      { day: '2026-03-09', amount: '7' },
    ]);
    for (const usage of report.usage) {
      expect(usage.adjustments).toEqual({ total: '0', events: [] });
      expectBreakdownsSum(usage);
    }
  });

  test('covers the use so far live: plan first, then top-up T (sooner expiry), then bonus B, the rest uncovered', async () => {
    // Arrange: U 1600, L 1000, S 0 → overflow 600. T 500 − 250 drawn in February = 250; B 300 − 50 = 250;
    // 600 − 250 − 250 = 100 uncovered. Images: no quota, no credits → all 7 uncovered.
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert
    const tokens = usageOf(report, 'tokens');
    expect(tokens.allowance).toEqual({ limit: '1000', spilloverIn: '0' });
    expect(tokens.grantsUsed).toEqual({ plan: '1000', spillover: '0', bonus: '250', topup: '250', uncovered: '100' });
    expect(tokens.spilloverOut).toBe('0');
    expect(usageOf(report, 'images').grantsUsed).toEqual({ plan: '0', spillover: '0', bonus: '0', topup: '0', uncovered: '7' });
    for (const usage of report.usage) expect(sum(Object.values(usage.grantsUsed))).toBe(nano(usage.total));
  });

  test('breaks the total down by channel and feature, largest first, events naming none under null', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert: tokens 1600 = api 1000 + ui 300 + 300 unnamed (mcp 0 left out); features: gpt-large 250 + 1350 unnamed
    const tokens = usageOf(report, 'tokens');
    expect(tokens.byChannel).toEqual([
      { channel: 'api', amount: '1000' },
      { channel: 'ui', amount: '300' },
      { channel: null, amount: '300' },
    ]);
    expect(tokens.byFeature).toEqual([
      { feature: 'gpt-large', amount: '250' },
      { feature: null, amount: '1350' },
    ]);
    // images: all 7 by ui, so no null channel; hd 3 + 4 unnamed
    const images = usageOf(report, 'images');
    expect(images.byChannel).toEqual([{ channel: 'ui', amount: '7' }]);
    expect(images.byFeature).toEqual([
      { feature: 'hd', amount: '3' },
      { feature: null, amount: '4' },
    ]);
  });

  test('names the top 10 users by amount, ties by id, and the groups that used anything', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert: 12 users used something; u11 (5) and u13 (1) fall out; u05 used nothing
    const tokens = usageOf(report, 'tokens');
    expect(tokens.topUsers).toEqual([
      { id: 'u02', amount: '300' },
      { id: 'u03', amount: '300' },
      { id: 'u09', amount: '300' },
      { id: 'u07', amount: '200' },
      { id: 'u01', amount: '100' },
      { id: 'u06', amount: '75' },
      { id: 'u12', amount: '60' },
      { id: 'u04', amount: '50' },
      { id: 'u10', amount: '20' },
      { id: 'u08', amount: '10' },
    ]);
    expect(tokens.topGroups).toEqual([
      { id: 'g-a', amount: '700' },
      { id: 'g-b', amount: '700' },
    ]);
    expect(usageOf(report, 'images').topUsers).toEqual([{ id: 'u99', amount: '7' }]);
    expect(usageOf(report, 'images').topGroups).toEqual([]);
  });

  test('prices each usage type per the rate card; the report amount is the sum', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert: tokens base 1350 at 2/1000 = 2.7 → 3, gpt-large 250 at 6/1000 = 1.5 → 2: 5;
    // images base 4 × 4 = 16, hd 3 × 10 = 30: 46. Report: 51.
    expect(usageOf(report, 'tokens').money).toEqual({
      lines: [
        { feature: null, quantity: '1350', unitPrice: 2, per: 1000, amount: 3 },
        { feature: 'gpt-large', quantity: '250', unitPrice: 6, per: 1000, amount: 2 },
      ],
      amount: 5,
    });
    expect(usageOf(report, 'images').money).toEqual({
      lines: [
        { feature: null, quantity: '4', unitPrice: 4, per: 1, amount: 16 },
        { feature: 'hd', quantity: '3', unitPrice: 10, per: 1, amount: 30 },
      ],
      amount: 46,
    });
    expect(report.amount).toBe(51);
  });

  test('lists late changes to earlier cycles applied within [cycle start, cycle end)', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert: e03 at exactly the start is in, evt_09 is in, e12 at exactly the end is out, January's were applied in February;
    // ordered by cycle, usage type and identity (["https…","evt_09"] sorts before ["sdk","e03"])
    expect(report.earlierCycleAdjustments).toEqual([
      { cycleStart: FEB.start, usageType: 'tokens', source: 'https://api.example.com/v1', id: 'evt_09', delta: '30', appliedAt: '2026-03-09T10:00:00.000Z' },
      { cycleStart: FEB.start, usageType: 'tokens', source: 'sdk', id: 'e03', delta: '-5', appliedAt: '2026-03-08T05:00:00.000Z' },
    ]);
  });

  test('without a rate card there is no currency and no money', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW, configWithoutRates);

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert
    expectValid('cycleReport', report);
    expect(report.currency).toBeNull();
    expect(report.amount).toBeNull();
    expect(report.usage.map((u) => u.money)).toEqual([null, null]);
  });

  test('a subject without a name has name null', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);
    const { name: _name, ...unnamed } = ny;

    // Act
    const report = await buildCycleReport(unnamed, MAR, deps);

    // Assert
    expectValid('cycleReport', report);
    expect(report.subject.name).toBeNull();
  });
});

describe('late changes of one event applied in several minutes', () => {
  test('are one adjustment: the deltas summed, as of the last change; in earlier-cycle adjustments too', async () => {
    // Arrange: e03 changed again (+8) a day later, and e12 corrected twice within March (+1, −4)
    const { deps, rollups } = await nyWorld('2026-03-20T12:00:00.000Z');
    rollups.late.push(
      { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","e03"]', delta: '8', appliedAt: '2026-03-09T05:00:00.000Z' },
      { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","e12"]', delta: '1', appliedAt: '2026-03-11T00:00:00.000Z' },
      { subject: 'ws_ny', cycleStart: FEB.start, usageType: 'tokens', eventKey: '["sdk","e12"]', delta: '-4', appliedAt: '2026-03-10T00:00:00.000Z' },
    );

    // Act
    const feb = await buildCycleReport(ny, FEB, deps);
    const mar = await buildCycleReport(ny, MAR, deps);

    // Assert: February lists every change to it; e03 −5 + 8 = 3, e12 20 + 1 − 4 = 17 (last change Apr 8)
    expect(usageOf(feb, 'tokens').adjustments.events).toEqual([
      { source: 'https://api.example.com/v1', id: 'evt_09', delta: '30', appliedAt: '2026-03-09T10:00:00.000Z' },
      { source: 'sdk', id: 'e03', delta: '3', appliedAt: '2026-03-09T05:00:00.000Z' },
      { source: 'sdk', id: 'e12', delta: '17', appliedAt: '2026-04-08T04:00:00.000Z' },
    ]);
    // March lists what was applied during March: e03 3, e12 1 − 4 = −3 (its Apr 8 change belongs to April)
    expect(mar.earlierCycleAdjustments).toEqual([
      { cycleStart: FEB.start, usageType: 'tokens', source: 'https://api.example.com/v1', id: 'evt_09', delta: '30', appliedAt: '2026-03-09T10:00:00.000Z' },
      { cycleStart: FEB.start, usageType: 'tokens', source: 'sdk', id: 'e03', delta: '3', appliedAt: '2026-03-09T05:00:00.000Z' },
      { cycleStart: FEB.start, usageType: 'tokens', source: 'sdk', id: 'e12', delta: '-3', appliedAt: '2026-03-11T00:00:00.000Z' },
    ]);
  });
});

describe('the report schema', () => {
  test('the committed schemas/usage-report.schema.json is the one the code generates (npm run report-schema)', () => {
    expect(schemaDocument).toEqual(reportJsonSchema());
  });

  test('is not vacuous: a report with a float quantity, a missing field or an extra key is invalid', async () => {
    // Arrange
    const { deps } = await nyWorld('2026-03-10T03:30:00.000Z');
    const report = await buildCycleReport(ny, MAR, deps);
    const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/cycleReport`) as ValidateFunction;
    const [first, ...rest] = report.usage;
    if (!first) throw new Error('no usage');

    // Act / Assert
    expect(validate(report)).toBe(true);
    expect(validate({ ...report, usage: [{ ...first, total: 7.5 }, ...rest] })).toBe(false);
    expect(validate({ ...report, usage: [{ ...first, total: '1e3' }, ...rest] })).toBe(false);
    const { amount: _amount, ...withoutAmount } = report;
    expect(validate(withoutAmount)).toBe(false);
    expect(validate({ ...report, extra: true })).toBe(false);
    expect(validate({ ...report, cycle: { ...report.cycle, start: '2026-03-08T05:00:00+01:00' } })).toBe(false);
  });
});

describe('buildCycleReport of a closed cycle', () => {
  const NOW = '2026-03-20T12:00:00.000Z';

  test('reports what the close froze, and the late events since as adjustments', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, FEB, deps);

    // Assert
    expectValid('cycleReport', report);
    expect(report.cycle).toEqual({ start: FEB.start, end: FEB.end, status: 'closed', closedAt: '2026-03-08T06:00:00.000Z' });
    expect(report.usage.map((u) => u.usageType)).toEqual(['tokens']);
    const tokens = usageOf(report, 'tokens');
    expect([tokens.total, tokens.closedTotal]).toEqual(['1545', '1500']);
    // total − closedTotal = 45 = −5 + 30 + 20, each event with its source and id, ordered by identity
    expect(tokens.adjustments).toEqual({
      total: '45',
      events: [
        { source: 'https://api.example.com/v1', id: 'evt_09', delta: '30', appliedAt: '2026-03-09T10:00:00.000Z' },
        { source: 'sdk', id: 'e03', delta: '-5', appliedAt: '2026-03-08T05:00:00.000Z' },
        { source: 'sdk', id: 'e12', delta: '20', appliedAt: '2026-04-08T04:00:00.000Z' },
      ],
    });
    expect(sum(tokens.adjustments.events.map((e) => e.delta))).toBe(nano(tokens.total) - nano(tokens.closedTotal ?? '0'));
  });

  test('covers the frozen use: spillover first, then plan, then top-up and bonus by grant kind, summing to closedTotal', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, FEB, deps);

    // Assert: 1500 = spillover 200 + plan 1000 + T (top-up) 250 + B (bonus) 50
    const tokens = usageOf(report, 'tokens');
    expect(tokens.allowance).toEqual({ limit: '1000', spilloverIn: '200' });
    expect(tokens.grantsUsed).toEqual({ plan: '1000', spillover: '200', bonus: '50', topup: '250', uncovered: '0' });
    expect(sum(Object.values(tokens.grantsUsed))).toBe(nano(tokens.closedTotal ?? ''));
  });

  test('lists every local day of the cycle, zeros included, summing to the total', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, FEB, deps);

    // Assert: Feb 8 … Feb 28 and Mar 1 … Mar 7 (the cycle ends at local midnight of Mar 8): 21 + 7 days
    const tokens = usageOf(report, 'tokens');
    const days = [...monthDays('2026-02', 8, 28), ...monthDays('2026-03', 1, 7)];
    expect(tokens.daily.map((d) => d.day)).toEqual(days);
    expect(tokens.daily).toHaveLength(28);
    const used: Record<string, string> = { '2026-02-08': '100', '2026-02-28': '1200', '2026-03-07': '245' };
    expect(tokens.daily).toEqual(days.map((day) => ({ day, amount: used[day] ?? '0' })));
    expectBreakdownsSum(tokens);
    expect(tokens.byChannel).toEqual([
      { channel: 'api', amount: '900' },
      { channel: 'ui', amount: '345' },
      { channel: null, amount: '300' },
    ]);
    expect(tokens.byFeature).toEqual([
      { feature: 'gpt-large', amount: '500' },
      { feature: null, amount: '1045' },
    ]);
  });

  test('prices the total, and lists earlier cycles’ late events applied during it', async () => {
    // Arrange
    const { deps } = await nyWorld(NOW);

    // Act
    const report = await buildCycleReport(ny, FEB, deps);

    // Assert: base 1045 at 2/1000 = 2.09 → 2; gpt-large 500 at 6/1000 = 3 → 5
    expect(usageOf(report, 'tokens').money).toEqual({
      lines: [
        { feature: null, quantity: '1045', unitPrice: 2, per: 1000, amount: 2 },
        { feature: 'gpt-large', quantity: '500', unitPrice: 6, per: 1000, amount: 3 },
      ],
      amount: 5,
    });
    expect(report.amount).toBe(5);
    // j1 (Feb 10) is within February; j2 a millisecond before its start is not; February's own late events are not "earlier"
    expect(report.earlierCycleAdjustments).toEqual([{ cycleStart: JAN, usageType: 'tokens', source: 'sdk', id: 'j1', delta: '7', appliedAt: '2026-02-10T00:00:00.000Z' }]);
  });

  // [label, limit, spilloverIn, used, drawn, uncovered, expected grantsUsed]
  const coverage: [string, string, string, string, Record<string, string>, string, UsageReport['grantsUsed']][] = [
    ['use within the spillover takes nothing of the plan', '1000', '200', '150', {}, '0', { plan: '0', spillover: '150', bonus: '0', topup: '0', uncovered: '0' }],
    ['use within spillover and plan', '1000', '200', '900', {}, '0', { plan: '700', spillover: '200', bonus: '0', topup: '0', uncovered: '0' }],
    ['a drawn grant no longer listed counts as bonus', '1000', '0', '1100.5', { T: '40', gone: '60.5' }, '0', { plan: '1000', spillover: '0', bonus: '60.5', topup: '40', uncovered: '0' }],
    ['no credits: the overflow is uncovered', '10', '0', '12.25', {}, '2.25', { plan: '10', spillover: '0', bonus: '0', topup: '0', uncovered: '2.25' }],
  ];
  test.each(coverage)('grantsUsed: %s', async (_label, limit, spilloverIn, used, drawn, uncovered, expected) => {
    // Arrange: March closed with this snapshot; its rollup holds exactly what was frozen
    const { accounts, rollups, deps } = await nyWorld(NOW);
    await accounts.freezeCycle({
      ...febSnapshot,
      cycleStart: MAR.start,
      cycleEnd: MAR.end,
      usage: { tokens: { limit, spilloverIn, used, overflow: '0', drawn, uncovered, spilloverOut: '0' } },
    });
    rollups.set('ws_ny', cycleRow(MAR.start, 'tokens', used, {}));

    // Act
    const report = await buildCycleReport(ny, MAR, deps);

    // Assert
    expectValid('cycleReport', report);
    const tokens = usageOf(report, 'tokens');
    expect(tokens.grantsUsed).toEqual(expected);
    expect(sum(Object.values(tokens.grantsUsed))).toBe(nano(used));
    expect(tokens.closedTotal).toBe(used);
    expect(tokens.adjustments.total).toBe('0');
  });
});

describe('cycleSummary', () => {
  const APR: Cycle = { start: '2026-04-01T00:00:00.000Z', end: '2026-05-01T00:00:00.000Z' };
  const subject = (id: string): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] });

  /** ws_a: tokens 1000, credits 0.25; ws_b: tokens 250, images 2, credits 0.5. */
  async function reports(reportConfig: Config = config) {
    const clock = new FixedClock('2026-05-01T02:00:00.000Z');
    const accounts = new InMemoryAccounts();
    const rollups = new InMemoryRollupReader()
      .add('ws_a', cycleRow(APR.start, 'tokens', '1000', { 'd#2026-04-02': '1000' }), cycleRow(APR.start, 'credits', '0.25', { 'd#2026-04-03': '0.25' }))
      .add(
        'ws_b',
        cycleRow(APR.start, 'tokens', '250', { 'd#2026-04-02': '250' }),
        cycleRow(APR.start, 'images', '2', { 'd#2026-04-30': '2' }),
        cycleRow(APR.start, 'credits', '0.5', { 'd#2026-04-30': '0.5' }),
      );
    const deps = { config: reportConfig, rollups, accounts, clock };
    const a = await buildCycleReport(subject('ws_a'), APR, deps);
    const b = await buildCycleReport(subject('ws_b'), APR, deps);
    for (const report of [a, b]) expectValid('cycleReport', report);
    // listed in store order, not subject order
    return [
      { key: `reports/${APR.start}/ws_b.json`, report: b },
      { key: `reports/${APR.start}/ws_a.json`, report: a },
    ];
  }

  test('totals each usage type across subjects and sums their amounts', async () => {
    // Arrange: ws_a: 1000 tokens at 2/1000 = 2 (credits unpriced); ws_b: 250 tokens → 0.5 → 1, 2 images × 4 = 8: 9
    const listed = await reports();

    // Act
    const summary = await cycleSummary(APR.start, listed, '2026-05-01T03:00:00.000Z');

    // Assert
    expectValid('cycleSummary', summary);
    expect(summary).toEqual({
      schemaVersion: 1,
      kind: 'cycle-summary',
      generatedAt: '2026-05-01T03:00:00.000Z',
      cycleStart: APR.start,
      currency: 'USD',
      subjects: [
        { subject: 'ws_a', cycleEnd: APR.end, totals: { credits: '0.25', tokens: '1000' }, amount: 2, report: `reports/${APR.start}/ws_a.json` },
        { subject: 'ws_b', cycleEnd: APR.end, totals: { credits: '0.5', images: '2', tokens: '250' }, amount: 9, report: `reports/${APR.start}/ws_b.json` },
      ],
      totals: { credits: '0.75', images: '2', tokens: '1250' },
      amount: 11,
    });
    expect(Object.keys(summary.totals)).toEqual(['credits', 'images', 'tokens']);
  });

  test('reports in different currencies have no common currency and no amount', async () => {
    // Arrange
    const [first, second] = await reports();
    if (!first || !second) throw new Error('two reports expected');
    const euro = { ...second, report: { ...second.report, currency: 'EUR' } };

    // Act
    const summary = await cycleSummary(APR.start, [first, euro], '2026-05-01T03:00:00.000Z');

    // Assert: the quantities still add up
    expectValid('cycleSummary', summary);
    expect(summary.currency).toBeNull();
    expect(summary.amount).toBeNull();
    expect(summary.totals).toEqual({ credits: '0.75', images: '2', tokens: '1250' });
    expect(summary.subjects.map((s) => s.amount)).toEqual([2, 9]);
  });

  test('without a rate card there is no currency and no amount', async () => {
    // Arrange
    const listed = await reports(configWithoutRates);

    // Act
    const summary = await cycleSummary(APR.start, listed, '2026-05-01T03:00:00.000Z');

    // Assert
    expectValid('cycleSummary', summary);
    expect([summary.currency, summary.amount]).toEqual([null, null]);
    expect(summary.subjects.map((s) => s.amount)).toEqual([null, null]);
  });

  test('no reports give an empty summary', async () => {
    // Act
    const summary = await cycleSummary(APR.start, [], '2026-05-01T03:00:00.000Z');

    // Assert
    expectValid('cycleSummary', summary);
    expect(summary).toMatchObject({ subjects: [], totals: {}, currency: null, amount: null });
  });
});
