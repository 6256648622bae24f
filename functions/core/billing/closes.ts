import type { Config } from '../config';
import { type Cycle, cycleContaining, localDate, nextCycle, previousCycle, startOfLocalDay } from '../cycles';
import type { RollupCloser, RollupReader } from '../metering/metering-ports';
import type { Clock, Subject } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import type { ReportStore } from '../reporting/reporting-ports';
import { buildCycleReport, cycleSummary } from '../reporting/reports';
import { type CycleSnapshot, spilloverGrantId, units } from './balance';
import type { AccountStore, Adjustment } from './billing-ports';
import { cycleSnapshot } from './snapshot';

/**
 * Close the days and cycles that ended at least the grace period ago, for every subject.
 * 1. Cycles, oldest first: mark the cycle's rollup items closed, freeze a snapshot (totals, balance, credits
 *    drawn and expired, spillover out), write the spillover grant into the next cycle and the cycle report,
 *    mark the cycle closed. Then each cycle start closed in the run gets a summary of all its reports.
 * 2. Days: freeze each ended day's totals; then record, as adjustments, any change to a closed cycle's
 *    total since its snapshot (late events, corrections).
 * Every step is idempotent and the snapshot, once written, is what every later step reads: running a
 * close twice, or again after a crash half-way, changes nothing more. Counters are never touched.
 */

export interface CloseDeps {
  config: Config;
  subjects: { list(): Promise<Subject[]> };
  rollups: RollupReader & RollupCloser;
  accounts: AccountStore;
  reports: ReportStore;
  clock: Clock;
}

export interface CloseSummary {
  now: string;
  cyclesClosed: { subject: string; cycleStart: string; report: string }[];
  summaries: string[];
  daysClosed: number;
  adjustments: Adjustment[];
}

const MINUTE = 60_000;
const DAY = 86_400_000;

export async function runDueCloses(deps: CloseDeps): Promise<CloseSummary> {
  const now = deps.clock.now();
  const dueBefore = new Date(now.getTime() - deps.config.closes.graceMinutes * MINUTE).toISOString();
  const summary: CloseSummary = { now: now.toISOString(), cyclesClosed: [], summaries: [], daysClosed: 0, adjustments: [] };
  for (const subject of await deps.subjects.list()) {
    for (const cycle of await dueCycles(subject, dueBefore, deps)) {
      const report = await closeCycle(subject, cycle, deps);
      summary.cyclesClosed.push({ subject: subject.id, cycleStart: cycle.start, report });
    }
    const days = await dueDays(subject, dueBefore, deps);
    for (const day of days) await closeDay(subject, day, deps);
    summary.daysClosed += days.length;
    if (days.length > 0) summary.adjustments.push(...(await recordAdjustments(subject, deps)));
  }
  // Rebuilt from the reports themselves, so a run that closed only some subjects of a cycle start still lists
  // all; a summary a crashed run left due is written by the next run.
  for (const cycleStart of await deps.accounts.summariesDue()) {
    summary.summaries.push(await deps.reports.putCycleSummary(await cycleSummary(cycleStart, deps.reports.listCycleReports(cycleStart), deps.clock.now().toISOString())));
    await deps.accounts.clearSummaryDue(cycleStart);
  }
  return summary;
}

/** Cycles of the subject that ended before `dueBefore` and are not closed, oldest first (one left `closing` included). */
async function dueCycles(subject: Subject, dueBefore: string, deps: CloseDeps): Promise<Cycle[]> {
  const snapshots = await deps.accounts.listCycleSnapshots(subject.id);
  const last = snapshots.at(-1);
  let cycle: Cycle;
  if (last) cycle = last.status === 'closing' ? { start: last.cycleStart, end: last.cycleEnd } : nextCycle({ start: last.cycleStart, end: last.cycleEnd }, subject);
  else if (subject.createdAt) cycle = cycleContaining(subject.createdAt, subject);
  else cycle = previousCycle(cycleContaining(dueBefore, subject), subject); // no history: the last cycle that ended
  const due: Cycle[] = [];
  while (cycle.end <= dueBefore) {
    due.push(cycle);
    cycle = nextCycle(cycle, subject);
  }
  return due;
}

/** Local days of the subject that ended before `dueBefore` and have no snapshot, oldest first. */
async function dueDays(subject: Subject, dueBefore: string, deps: CloseDeps): Promise<string[]> {
  const last = await deps.accounts.lastDaySnapshot(subject.id);
  let day = last ? addDays(last.day, 1) : subject.createdAt ? localDate(subject.createdAt, subject.timeZone) : addDays(localDate(dueBefore, subject.timeZone), -1);
  const due: string[] = [];
  while (startOfLocalDay(addDays(day, 1), subject.timeZone) <= dueBefore) {
    due.push(day);
    day = addDays(day, 1);
  }
  return due;
}

/** Closes one cycle; resolves with the key of its report. */
async function closeCycle(subject: Subject, cycle: Cycle, deps: CloseDeps): Promise<string> {
  const candidate = await computeCycleSnapshot(subject, cycle, deps);
  // The first snapshot written is the one every later step (and every re-run) works from.
  const snapshot = await deps.accounts.freezeCycle(candidate);

  const next = nextCycle(cycle, subject);
  for (const [usageType, usage] of Object.entries(snapshot.usage)) {
    if (units(usage.spilloverOut) === 0n) continue;
    await deps.accounts.putGrant({
      subject: subject.id,
      id: spilloverGrantId(usageType, next.start),
      kind: 'spillover',
      usageType,
      amount: usage.spilloverOut,
      grantedAt: snapshot.frozenAt,
      cycleStart: next.start,
      expiresAt: next.end,
    });
  }
  // Written before the cycle is marked closed, so a crash here is repaired by the next run.
  await deps.accounts.markSummaryDue(cycle.start);
  const report = await deps.reports.putCycleReport(await buildCycleReport(subject, cycle, deps));
  await deps.accounts.markCycleClosed(subject.id, cycle.start);
  return report;
}

/**
 * The snapshot a close of `cycle` would freeze now, from the rollups, the grants and earlier snapshots.
 * The cycle's items are marked closed first: whatever changes them afterwards counts in their `late` total
 * (and is left out of `used`), so the snapshot is the same whenever it is computed, and every later change
 * is an adjustment with its events named.
 */
async function computeCycleSnapshot(subject: Subject, cycle: Cycle, deps: CloseDeps): Promise<CycleSnapshot> {
  const seen = await deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start);
  const usageTypes = new Set([...deps.config.usageTypes.map((u) => u.id), ...seen.map((r) => r.usageType)]);
  await deps.rollups.closeCycle(subject.id, cycle.start, [...usageTypes], deps.clock.now().toISOString());
  const [rows, grants, snapshots] = await Promise.all([
    deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start),
    deps.accounts.listGrants(subject.id),
    deps.accounts.listCycleSnapshots(subject.id),
  ]);
  return cycleSnapshot({ subject, cycle, plan: deps.config.plans.find((p) => p.id === subject.plan), rows, grants, snapshots, frozenAt: deps.clock.now().toISOString() });
}

async function closeDay(subject: Subject, day: string, deps: CloseDeps): Promise<void> {
  const rows = await deps.rollups.query(subject.id, 'day', day, day);
  const totals = Object.fromEntries(rows.filter((r) => units(r.total) !== 0n).map((r) => [r.usageType, r.total]));
  await deps.accounts.freezeDay({ subject: subject.id, day, totals, frozenAt: deps.clock.now().toISOString() });
}

/**
 * Compares every closed cycle's rollup total with its snapshot plus the adjustments already recorded, and
 * records the difference. A re-run finds the difference already recorded and adds nothing.
 */
async function recordAdjustments(subject: Subject, deps: CloseDeps): Promise<Adjustment[]> {
  const closed = (await deps.accounts.listCycleSnapshots(subject.id)).filter((s) => s.status === 'closed');
  const first = closed[0];
  const last = closed.at(-1);
  if (!first || !last) return [];
  const [rows, adjustments] = await Promise.all([deps.rollups.query(subject.id, 'cycle', first.cycleStart, last.cycleStart), deps.accounts.listAdjustments(subject.id)]);
  const totals = new Map(rows.map((r) => [`${r.period}|${r.usageType}`, units(r.total)]));
  const recorded = new Map<string, NanoUnits>();
  for (const a of adjustments) recorded.set(`${a.cycleStart}|${a.usageType}`, (recorded.get(`${a.cycleStart}|${a.usageType}`) ?? 0n) + units(a.delta));

  const made: Adjustment[] = [];
  const detectedAt = deps.clock.now().toISOString();
  for (const snapshot of closed) {
    const usageTypes = new Set([...Object.keys(snapshot.usage), ...rows.filter((r) => r.period === snapshot.cycleStart).map((r) => r.usageType)]);
    for (const usageType of usageTypes) {
      const key = `${snapshot.cycleStart}|${usageType}`;
      const frozen = units(snapshot.usage[usageType]?.used ?? '0') + (recorded.get(key) ?? 0n);
      const total = totals.get(key) ?? 0n;
      if (total === frozen) continue;
      const adjustment: Adjustment = { subject: subject.id, cycleStart: snapshot.cycleStart, usageType, delta: toDecimalString(total - frozen), totalAfter: toDecimalString(total), detectedAt };
      await deps.accounts.putAdjustment(adjustment);
      made.push(adjustment);
    }
  }
  return made;
}

function addDays(day: string, days: number): string {
  return new Date(Date.parse(`${day}T00:00:00.000Z`) + days * DAY).toISOString().slice(0, 10);
}
