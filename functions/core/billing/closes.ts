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
 * Close the days and cycles that ended at least the grace period ago, one workspace at a time.
 * 1. Cycles, oldest first: mark the cycle's rollup items closed, freeze a snapshot (totals, balance, credits
 *    drawn and expired, spillover out), write the spillover grant into the next cycle and the cycle report,
 *    mark the cycle closed (and its cycle start as needing a summary of all its reports).
 * 2. Days: freeze each ended day's totals; then record, as adjustments, any change to a closed cycle's
 *    total since its snapshot (late events, corrections).
 * Every step is idempotent and the snapshot, once written, is what every later step reads: running a
 * close twice, or again after a crash half-way, changes nothing more. Counters are never touched.
 *
 * In AWS the hourly scheduler finds the workspaces due in an index (`dispatchDueCloses`) and the close
 * function closes each under a claim, so that no two workers close one workspace at once (`closeClaimed`).
 * `runDueCloses` closes every workspace in turn, in one process: the same steps, without the fan-out.
 */

export interface CloseDeps {
  config: Config;
  rollups: RollupReader & RollupCloser;
  accounts: AccountStore;
  reports: ReportStore;
  clock: Clock;
}

/** What one workspace's close did, and when its next day ends (what the due index is set to). */
export interface SubjectClose {
  subject: string;
  cyclesClosed: { subject: string; cycleStart: string; report: string }[];
  daysClosed: number;
  adjustments: Adjustment[];
  nextDueAt: string;
}

export interface CloseSummary {
  now: string;
  cyclesClosed: { subject: string; cycleStart: string; report: string }[];
  summaries: string[];
  daysClosed: number;
  adjustments: Adjustment[];
}

/** Workspaces by when their next local day ends, and the claim a worker holds on one while closing it. */
export interface CloseClaims {
  /** Ids of the workspaces whose next day ended at or before `dueBefore`, a page at a time. */
  due(dueBefore: string): AsyncIterable<string[]>;
  /**
   * Claims the workspace for `holder` until `until` unless another holder's claim is still valid at `now`; the
   * workspace and its next-due instant, or undefined if held (or gone).
   */
  claim(id: string, holder: string, now: Date, until: Date): Promise<{ subject: Subject; nextDueAt: string } | undefined>;
  /** Gives the claim back if `holder` still holds it, setting when the next day ends if the close finished. */
  release(id: string, holder: string, nextDueAt?: string): Promise<void>;
}

/** Where the scheduler hands the workspaces due to the close workers. */
export interface CloseQueue {
  send(subjectIds: readonly string[]): Promise<void>;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

/** Before this instant a day or cycle has ended and its grace period passed. */
export function dueBefore(now: Date, config: Config): string {
  return new Date(now.getTime() - config.closes.graceMinutes * MINUTE).toISOString();
}

/** Closes every workspace in turn, then writes the summaries due: what the fan-out does, in one process. */
export async function runDueCloses(deps: CloseDeps & { subjects: { list(): Promise<Subject[]> } }): Promise<CloseSummary> {
  const summary: CloseSummary = { now: deps.clock.now().toISOString(), cyclesClosed: [], summaries: [], daysClosed: 0, adjustments: [] };
  for (const subject of await deps.subjects.list()) addClose(summary, await closeSubject(subject, deps));
  summary.summaries = await writeDueSummaries(deps);
  return summary;
}

export function addClose(summary: CloseSummary, close: SubjectClose): void {
  summary.cyclesClosed.push(...close.cyclesClosed);
  summary.daysClosed += close.daysClosed;
  summary.adjustments.push(...close.adjustments);
}

/**
 * The scheduler's run: the summaries of cycle starts closed since the last run, then every workspace due to the
 * queue. It reads only the index entries that are due, never the whole table.
 */
export async function dispatchDueCloses(deps: Pick<CloseDeps, 'config' | 'accounts' | 'reports' | 'clock'> & { claims: Pick<CloseClaims, 'due'>; queue: CloseQueue }) {
  const now = deps.clock.now();
  const summaries = await writeDueSummaries(deps);
  let dispatched = 0;
  for await (const ids of deps.claims.due(dueBefore(now, deps.config))) {
    await deps.queue.send(ids);
    dispatched += ids.length;
  }
  return { now: now.toISOString(), dispatched, summaries };
}

/**
 * A close worker's part: the workspace is closed under a claim held for `claimMs`, so that two workers given
 * the same workspace (a redelivery, an overlapping hourly run) never close it at once; one that another
 * worker holds is answered 'held', for a later retry. A close that fails gives its claim back at once, with
 * the next-due instant unchanged, so that a retry or the next hourly run closes it.
 */
export async function closeClaimed(id: string, holder: string, claimMs: number, deps: CloseDeps & { claims: CloseClaims }): Promise<SubjectClose | 'held'> {
  const now = deps.clock.now();
  const claimed = await deps.claims.claim(id, holder, now, new Date(now.getTime() + claimMs));
  if (!claimed) return 'held';
  let close: SubjectClose | undefined;
  try {
    // Still due: no close of it finished since it fell due, so one may have stopped between its days and its adjustments.
    close = await closeSubject(claimed.subject, deps, claimed.nextDueAt <= dueBefore(now, deps.config));
  } finally {
    await deps.claims.release(id, holder, close?.nextDueAt);
  }
  return close;
}

/**
 * Closes whatever of one workspace is due now: its ended cycles, then its ended days and their adjustments.
 * Adjustments are recorded when days closed, or when `unfinished` says a close may have stopped before recording them.
 */
export async function closeSubject(subject: Subject, deps: CloseDeps, unfinished = false): Promise<SubjectClose> {
  const before = dueBefore(deps.clock.now(), deps.config);
  const close: SubjectClose = { subject: subject.id, cyclesClosed: [], daysClosed: 0, adjustments: [], nextDueAt: '' };
  for (const cycle of await dueCycles(subject, before, deps)) {
    const report = await closeCycle(subject, cycle, deps);
    close.cyclesClosed.push({ subject: subject.id, cycleStart: cycle.start, report });
  }
  const { due, next } = await dueDays(subject, before, deps);
  for (const day of due) await closeDay(subject, day, deps);
  close.daysClosed = due.length;
  if (due.length > 0 || unfinished) close.adjustments = await recordAdjustments(subject, deps);
  // Cycles end where a local day does, so the end of the first day still open is the next instant anything is due.
  close.nextDueAt = startOfLocalDay(addDays(next, 1), subject.timeZone);
  return close;
}

/**
 * The summary of every cycle start marked due, rebuilt from the reports themselves, so that one written while
 * some of its workspaces were still closing is written again, whole, by a later run.
 */
export async function writeDueSummaries(deps: Pick<CloseDeps, 'accounts' | 'reports' | 'clock'>): Promise<string[]> {
  const written: string[] = [];
  for (const due of await deps.accounts.summariesDue()) {
    written.push(await deps.reports.putCycleSummary(await cycleSummary(due.cycleStart, deps.reports.listCycleReports(due.cycleStart), deps.clock.now().toISOString())));
    // A close that noted it again since it was read (its report perhaps missed here) keeps it due.
    await deps.accounts.clearSummaryDue(due);
  }
  return written;
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

/** Local days of the subject that ended before `dueBefore` and have no snapshot, oldest first, and the first day still open. */
async function dueDays(subject: Subject, dueBefore: string, deps: CloseDeps): Promise<{ due: string[]; next: string }> {
  const last = await deps.accounts.lastDaySnapshot(subject.id);
  let day = last ? addDays(last.day, 1) : subject.createdAt ? localDate(subject.createdAt, subject.timeZone) : addDays(localDate(dueBefore, subject.timeZone), -1);
  const due: string[] = [];
  while (startOfLocalDay(addDays(day, 1), subject.timeZone) <= dueBefore) {
    due.push(day);
    day = addDays(day, 1);
  }
  return { due, next: day };
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
  const report = await deps.reports.putCycleReport(await buildCycleReport(subject, cycle, deps));
  // Noted after the report, so that a summary that read the reports before it was written stays due
  // (clearSummaryDue compares the counts); and before the cycle is marked closed, so that a crash in between
  // closes the cycle again, report and note included.
  await deps.accounts.markSummaryDue(cycle.start, subject.id);
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
