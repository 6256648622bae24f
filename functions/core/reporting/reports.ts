import { type Grant, type UsageSnapshot, units } from '../billing/balance';
import type { AccountStore } from '../billing/billing-ports';
import { priceUsage } from '../billing/rates';
import { cycleSnapshot } from '../billing/snapshot';
import type { Config } from '../config';
import { type Cycle, localDate } from '../cycles';
import { identityOfKey } from '../metering/envelope';
import type { LateChange, RollupCloser, RollupReader, RollupRow } from '../metering/metering-ports';
import { requestCount } from '../metering/rollups';
import type { Clock, Subject } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import { type CycleReport, type CycleSummary, REPORT_SCHEMA_VERSION, type UsageReport } from './report-schema';

/**
 * Finance's view of one subject's cycle, from the rollups (the truth), the close's snapshot (what was
 * frozen) and the late items (what changed after). Every breakdown sums to its total, the grants used
 * sum to what was frozen, and the adjustments' events sum to the difference between the two.
 */

export interface ReportDeps {
  config: Config;
  rollups: RollupReader & RollupCloser;
  accounts: AccountStore;
  clock: Clock;
}

/** How many users and groups a report names, by use. */
export const TOP_MEMBERS = 10;
const DAY_MS = 86_400_000;

export async function buildCycleReport(subject: Subject, cycle: Cycle, deps: ReportDeps): Promise<CycleReport> {
  const now = deps.clock.now();
  const [rows, grants, snapshots, late] = await Promise.all([
    deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start),
    deps.accounts.listGrants(subject.id),
    deps.accounts.listCycleSnapshots(subject.id),
    // Events older than the retention window are refused, so a change applied during this cycle is to a cycle
    // that starts at most the window (and one cycle's length) before it.
    deps.rollups.lateChanges(subject.id, new Date(Date.parse(cycle.start) - (deps.config.ingest.retentionDays + 32) * DAY_MS).toISOString(), cycle.start),
  ]);
  const plan = deps.config.plans.find((p) => p.id === subject.plan);
  const stored = snapshots.find((s) => s.cycleStart === cycle.start);
  // An open cycle is covered as it stands now, by the same arithmetic a close would freeze.
  const coverage = stored ?? cycleSnapshot({ subject, cycle, plan, rows, grants, snapshots: snapshots.filter((s) => s.cycleStart < cycle.start), frozenAt: now.toISOString() });
  const usageTypes = [...new Set([...Object.keys(plan?.quotas ?? {}), ...rows.map((r) => r.usageType), ...Object.keys(stored?.usage ?? {})])].sort();
  const members = await Promise.all(
    usageTypes.map(async (usageType) => {
      const [users, groups] = await Promise.all([deps.rollups.members(subject.id, 'user', cycle.start, usageType), deps.rollups.members(subject.id, 'group', cycle.start, usageType)]);
      return { users, groups };
    }),
  );
  const lastDay = localDate(new Date(Math.min(now.getTime(), Date.parse(cycle.end) - 1)), subject.timeZone);
  const days = daysBetween(localDate(cycle.start, subject.timeZone), lastDay);

  const usage = usageTypes.map((usageType, i): UsageReport => {
    const row = rows.find((r) => r.usageType === usageType);
    const total = units(row?.total ?? '0');
    const frozen = stored ? units(stored.usage[usageType]?.used ?? '0') : undefined;
    const events = byEvent(late.filter((l) => l.cycleStart === cycle.start && l.usageType === usageType));
    const byFeature = counters(row, 'f#');
    const price = deps.config.rateCard?.prices[usageType];
    const lines = price ? priceUsage(price, total, byFeature, toDecimalString) : undefined;
    return {
      usageType,
      unit: deps.config.usageTypes.find((u) => u.id === usageType)?.unit ?? usageType,
      total: toDecimalString(total),
      closedTotal: frozen === undefined ? null : toDecimalString(frozen),
      requests: requestCount(row?.requests),
      daily: dailyAmounts(row, days),
      byChannel: breakdown(counters(row, 'c#'), total).map(([channel, amount]) => ({ channel, amount })),
      byFeature: breakdown(byFeature, total).map(([feature, amount]) => ({ feature, amount })),
      topUsers: top(members[i]?.users ?? []),
      topGroups: top(members[i]?.groups ?? []),
      ...coverageOf(coverage.usage[usageType], grants),
      adjustments: { total: toDecimalString(frozen === undefined ? 0n : total - frozen), events: events.map(lateEvent) },
      money: lines ? { lines, amount: lines.reduce((sum, l) => sum + l.amount, 0) } : null,
    };
  });

  const moneyOf = usage.flatMap((u) => (u.money ? [u.money.amount] : []));
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    kind: 'cycle-report',
    generatedAt: now.toISOString(),
    subject: { id: subject.id, name: subject.name ?? null, plan: subject.plan, timeZone: subject.timeZone, billingAnchorDay: subject.billingAnchorDay },
    cycle: { start: cycle.start, end: cycle.end, status: stored ? 'closed' : 'open', closedAt: stored?.frozenAt ?? null },
    currency: deps.config.rateCard?.currency ?? null,
    usage,
    earlierCycleAdjustments: byEvent(late.filter((l) => l.cycleStart < cycle.start && l.appliedAt >= cycle.start && l.appliedAt < cycle.end)).map((l) => ({
      cycleStart: l.cycleStart,
      usageType: l.usageType,
      ...lateEvent(l),
    })),
    amount: deps.config.rateCard ? moneyOf.reduce((a, b) => a + b, 0) : null,
  };
}

/**
 * All subjects' reports of one cycle start, in one file: totals per subject and overall. Reports are read
 * one at a time and only their totals kept, so a summary of many workspaces needs little memory.
 */
export async function cycleSummary(
  cycleStart: string,
  reports: AsyncIterable<{ key: string; report: CycleReport }> | Iterable<{ key: string; report: CycleReport }>,
  generatedAt: string,
): Promise<CycleSummary> {
  const totals = new Map<string, NanoUnits>();
  const currencies = new Set<string | null>();
  const subjects: CycleSummary['subjects'] = [];
  for await (const { key, report } of reports) {
    for (const u of report.usage) totals.set(u.usageType, (totals.get(u.usageType) ?? 0n) + units(u.total));
    currencies.add(report.currency);
    subjects.push({ subject: report.subject.id, cycleEnd: report.cycle.end, totals: Object.fromEntries(report.usage.map((u) => [u.usageType, u.total])), amount: report.amount, report: key });
  }
  subjects.sort((a, b) => (a.subject < b.subject ? -1 : 1));
  const currency = currencies.size === 1 ? ([...currencies][0] ?? null) : null;
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    kind: 'cycle-summary',
    generatedAt,
    cycleStart,
    currency,
    subjects,
    totals: Object.fromEntries([...totals].sort(([a], [b]) => (a < b ? -1 : 1)).map(([usageType, total]) => [usageType, toDecimalString(total)])),
    amount: currency === null ? null : subjects.reduce((sum, s) => sum + (s.amount ?? 0), 0),
  };
}

function coverageOf(frozen: UsageSnapshot | undefined, grants: readonly Grant[]): Pick<UsageReport, 'allowance' | 'grantsUsed' | 'spilloverOut'> {
  const limit = units(frozen?.limit ?? '0');
  const spilloverIn = units(frozen?.spilloverIn ?? '0');
  const used = units(frozen?.used ?? '0');
  const fromSpillover = used < spilloverIn ? used : spilloverIn;
  const beyondSpillover = used - fromSpillover;
  const fromPlan = beyondSpillover < limit ? beyondSpillover : limit;
  const drawn = { bonus: 0n, topup: 0n };
  for (const [grantId, amount] of Object.entries(frozen?.drawn ?? {})) {
    // Only bonus and top-up credits are drawn; a grant no longer listed counts as bonus.
    const kind = grants.find((g) => g.id === grantId)?.kind === 'topup' ? 'topup' : 'bonus';
    drawn[kind] += units(amount);
  }
  return {
    allowance: { limit: toDecimalString(limit), spilloverIn: toDecimalString(spilloverIn) },
    grantsUsed: {
      plan: toDecimalString(fromPlan),
      spillover: toDecimalString(fromSpillover),
      bonus: toDecimalString(drawn.bonus),
      topup: toDecimalString(drawn.topup),
      uncovered: frozen?.uncovered ?? '0',
    },
    spilloverOut: frozen?.spilloverOut ?? '0',
  };
}

function counters(row: RollupRow | undefined, prefix: string): Map<string, NanoUnits> {
  const found = new Map<string, NanoUnits>();
  for (const [name, value] of Object.entries(row?.counters ?? {})) if (name.startsWith(prefix)) found.set(name.slice(prefix.length), units(value));
  return found;
}

/** Named parts, largest first, and the rest (events that named none) under null; zeros left out. */
function breakdown(parts: ReadonlyMap<string, NanoUnits>, total: NanoUnits): [string | null, string][] {
  const named = [...parts].filter(([, amount]) => amount !== 0n).sort(([a, x], [b, y]) => (x === y ? (a < b ? -1 : 1) : x > y ? -1 : 1));
  const rest = total - named.reduce((sum, [, amount]) => sum + amount, 0n);
  return [...named.map(([name, amount]): [string | null, string] => [name, toDecimalString(amount)]), ...(rest === 0n ? [] : [[null, toDecimalString(rest)] as [null, string]])];
}

/** Every listed day, zeros included, and any other day that holds use (an event a little in the future). */
function dailyAmounts(row: RollupRow | undefined, days: readonly string[]): UsageReport['daily'] {
  const byDay = counters(row, 'd#');
  const all = [...new Set([...days, ...byDay.keys()])].sort();
  return all.map((day) => ({ day, amount: toDecimalString(byDay.get(day) ?? 0n) }));
}

function top(rows: readonly RollupRow[]): UsageReport['topUsers'] {
  return rows
    .map((r) => ({ id: r.member ?? '', amount: units(r.total) }))
    .filter((r) => r.amount !== 0n)
    .sort((a, b) => (a.amount === b.amount ? (a.id < b.id ? -1 : 1) : a.amount > b.amount ? -1 : 1))
    .slice(0, TOP_MEMBERS)
    .map((r) => ({ id: r.id, amount: toDecimalString(r.amount) }));
}

/** One entry per event (cycle, usage type and identity): its changes summed, as of the last one; ordered by cycle, usage type, identity. */
function byEvent(changes: readonly LateChange[]): LateChange[] {
  const merged = new Map<string, LateChange>();
  for (const change of changes) {
    const key = `${change.cycleStart}|${change.usageType}|${change.eventKey}`;
    const earlier = merged.get(key);
    merged.set(
      key,
      earlier ? { ...change, delta: toDecimalString(units(earlier.delta) + units(change.delta)), appliedAt: earlier.appliedAt > change.appliedAt ? earlier.appliedAt : change.appliedAt } : change,
    );
  }
  const order = (c: LateChange) => [c.cycleStart, c.usageType, c.eventKey];
  return [...merged.values()].sort((a, b) => {
    const [x, y] = [order(a), order(b)];
    const i = x.findIndex((part, j) => part !== y[j]);
    return i < 0 ? 0 : (x[i] ?? '') < (y[i] ?? '') ? -1 : 1;
  });
}

function lateEvent(change: LateChange) {
  // Every late item's key is an event's identity (or a repair's, core/metering/repair.ts).
  const { source, id } = identityOfKey(change.eventKey) ?? { source: '', id: change.eventKey };
  return { source, id, delta: change.delta, appliedAt: change.appliedAt };
}

function daysBetween(first: string, last: string): string[] {
  const days: string[] = [];
  for (let t = Date.parse(`${first}T00:00:00Z`); t <= Date.parse(`${last}T00:00:00Z`); t += DAY_MS) days.push(new Date(t).toISOString().slice(0, 10));
  return days;
}
