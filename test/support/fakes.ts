/**
 * In-memory fakes of the ports that functions/core declares, for unit tests.
 * They keep the semantics that core relies on (DESIGN.md) and nothing more.
 */

import type { Alert, AlertDelivery, AlertStore, Email, EmailSender } from '../../functions/core/alerts/alerts-ports';
import type { CycleSnapshot, Grant } from '../../functions/core/billing/balance';
import type { AccountStore, Adjustment, BalanceRecords, DaySnapshot, SummaryDue } from '../../functions/core/billing/billing-ports';
import type { CloseClaims } from '../../functions/core/billing/closes';
import { eventKey } from '../../functions/core/metering/envelope';
import type { CommitResult, CycleItemKey, LateChange, Ledger, Quarantine, QuarantineRecord, RollupCloser, RollupReader, RollupRow, RollupWriter } from '../../functions/core/metering/metering-ports';
import {
  type Breakdown,
  type Chunk,
  CycleItemsChangedError,
  type CycleState,
  CyclesClosedError,
  cycleItemKey,
  type LaneRun,
  type LedgerChange,
  type LedgerEntry,
  type MemberKind,
  type ParkedRecord,
  type RollupKind,
  type RollupUpdate,
} from '../../functions/core/metering/rollups';
import type { Clock, Subject, SubjectDirectory, SubjectStore } from '../../functions/core/ports';
import type { CycleReport, CycleSummary } from '../../functions/core/reporting/report-schema';
import type { ReportStore } from '../../functions/core/reporting/reporting-ports';

/** Sequence numbers compared as zero-padded strings, written here independently of rollups.ts. */
export const pad40 = (sequenceNumber: string): string => sequenceNumber.padStart(40, '0');

/**
 * Flat counter key, shared with the independent rollup model in test/unit/rollup-model.ts:
 *   'subject|usageType|day|2026-11-22'                    the day item's total
 *   'subject|usageType|day|2026-11-22|h#2026-11-22T10'    one hour counter of that day item
 *   'subject|usageType|cycle|2026-11-15T00:00:00.000Z'    the cycle item's total
 *   'subject|usageType|cycle|…|d#2026-11-22'              one day counter of that cycle item
 *   'subject|usageType|user|2026-11-15T00:00:00.000Z#u1'  the total of user u1 in that cycle
 */
export const flatKey = (subject: string, usageType: string, kind: RollupKind, period: string, counter?: string): string =>
  [subject, usageType, kind, period, ...(counter === undefined ? [] : [counter])].join('|');

/** Adds `delta` to `key`, dropping the key when it returns to zero. */
export function addTo(totals: Map<string, bigint>, key: string, delta: bigint): void {
  const next = (totals.get(key) ?? 0n) + delta;
  if (next === 0n) totals.delete(key);
  else totals.set(key, next);
}

/** Names one lane's checkpoint on one shard in `InMemoryRollupWriter.checkpoints`. */
export const checkpointOf = (shardId: string, lane: string) => `${shardId}\u0000${lane}`;

export interface CommitAttempt {
  shardId: string;
  sequenceNumbers: readonly string[];
  result: CommitResult | 'threw';
}

/**
 * A rollup table with a checkpoint per shard and lane. `commitChunk` applies a chunk and moves each
 * lane's checkpoint to the last record of its run only if every stored checkpoint is below its run's
 * padded first record, exactly like the TransactWriteItems conditions; otherwise it changes nothing and says so.
 *
 * Cycle items in `closed` (`cycleItemKey` strings) were marked closed by a cycle close. As in the
 * DynamoDB conditions, a chunk that updates one of them as open fails as a whole with CyclesClosedError,
 * and one that updates a cycle item as closed when it is not fails with a plain error; neither writes.
 * A closed cycle update also adds its total to the item's `late` counter (flatKey(…, 'cycle', period, 'late')).
 */
export class InMemoryRollupWriter implements RollupWriter {
  /** A use case that loops forever on awaited fakes starves jest's timers; fail loudly instead. */
  static readonly MAX_CALLS = 10_000;
  private calls = 0;
  readonly totals = new Map<string, bigint>();
  /** Keyed by `checkpointOf(shardId, lane)`. */
  readonly checkpoints = new Map<string, string>();
  readonly attempts: CommitAttempt[] = [];
  /** Cycle items marked closed (`cycleItemKey(subject, cycleStart, usageType)`). */
  readonly closed = new Set<string>();
  /** Records parked by `park`, in order. */
  readonly parkedRecords: ParkedRecord[] = [];
  /** Breakdown values each cycle item admitted; a chunk planned on an older count fails, as the DynamoDB condition does. */
  private readonly admitted = new Map<string, Record<Breakdown, { values: Set<string>; count: number }>>();
  /** Called before each commit is evaluated (e.g. to let another invocation run, or to throw). */
  beforeCommit?: (shardId: string, chunk: Chunk, attempt: number) => void | Promise<void>;

  async readCheckpoints(shardId: string, lanes: readonly string[]): Promise<Map<string, string>> {
    this.guard();
    const found = new Map<string, string>();
    for (const lane of lanes) {
      const checkpoint = this.checkpoints.get(checkpointOf(shardId, lane));
      if (checkpoint !== undefined) found.set(lane, checkpoint);
    }
    return found;
  }

  async commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult> {
    this.guard();
    const attempt = this.attempts.length;
    const record: CommitAttempt = { shardId, sequenceNumbers: chunk.sequenceNumbers, result: 'threw' };
    this.attempts.push(record);
    await this.beforeCommit?.(shardId, chunk, attempt);
    const passed = chunk.runs.some((run) => {
      const stored = this.checkpoints.get(checkpointOf(shardId, run.lane));
      return stored !== undefined && !(stored < pad40(run.firstSequenceNumber));
    });
    if (passed) {
      record.result = 'already-applied';
      return 'already-applied';
    }
    const cycles = chunk.updates.filter((u) => u.kind === 'cycle');
    const closedSince = cycles.filter((u) => u.closed !== true && this.closed.has(cycleItemKey(u.subject, u.period, u.usageType)));
    if (closedSince.length > 0) throw new CyclesClosedError(closedSince.map((u) => cycleItemKey(u.subject, u.period, u.usageType)));
    const notClosed = cycles.find((u) => u.closed === true && !this.closed.has(cycleItemKey(u.subject, u.period, u.usageType)));
    if (notClosed) throw new Error(`condition failed: cycle item ${notClosed.subject} ${notClosed.period} ${notClosed.usageType} is not closed`);
    const moved = cycles.filter((u) => Object.entries(u.admit ?? {}).some(([dimension, admit]) => this.admittedOf(u)[dimension as Breakdown].count !== admit.expected));
    if (moved.length > 0) throw new CycleItemsChangedError(moved.map((u) => cycleItemKey(u.subject, u.period, u.usageType)));
    for (const update of cycles) {
      const admitted = this.admittedOf(update);
      for (const [dimension, admit] of Object.entries(update.admit ?? {}) as [Breakdown, { values: string[] }][]) {
        for (const value of admit.values) admitted[dimension].values.add(value);
        admitted[dimension].count += admit.values.length;
      }
    }
    for (const update of chunk.updates) {
      const period = update.member === undefined ? update.period : `${update.period}#${update.member}`;
      addTo(this.totals, flatKey(update.subject, update.usageType, update.kind, period), update.total);
      if (update.kind === 'cycle' && update.closed === true) addTo(this.totals, flatKey(update.subject, update.usageType, 'cycle', period, 'late'), update.total);
      for (const [counter, delta] of update.counters) addTo(this.totals, flatKey(update.subject, update.usageType, update.kind, period, counter), delta);
    }
    for (const run of chunk.runs) this.checkpoints.set(checkpointOf(shardId, run.lane), pad40(run.lastSequenceNumber));
    record.result = 'committed';
    return 'committed';
  }

  async park(shardId: string, run: LaneRun, change: LedgerChange, reason: string): Promise<CommitResult> {
    this.guard();
    const stored = this.checkpoints.get(checkpointOf(shardId, run.lane));
    if (stored !== undefined && !(stored < pad40(run.firstSequenceNumber))) return 'already-applied';
    this.parkedRecords.push({ shardId, sequenceNumber: run.firstSequenceNumber, reason, change, parkedAt: new Date(0).toISOString() });
    this.checkpoints.set(checkpointOf(shardId, run.lane), pad40(run.lastSequenceNumber));
    return 'committed';
  }

  async readCycleStates(keys: readonly CycleItemKey[]): Promise<Map<string, CycleState>> {
    this.guard();
    const states = new Map<string, CycleState>();
    for (const { subject, cycleStart, usageType } of keys) {
      const key = cycleItemKey(subject, cycleStart, usageType);
      const admitted = this.admitted.get(key);
      if (admitted || this.closed.has(key)) states.set(key, { closed: this.closed.has(key), ...(admitted ?? { channel: { values: new Set(), count: 0 }, feature: { values: new Set(), count: 0 } }) });
    }
    return states;
  }

  private admittedOf(update: RollupUpdate): Record<Breakdown, { values: Set<string>; count: number }> {
    const key = cycleItemKey(update.subject, update.period, update.usageType);
    let admitted = this.admitted.get(key);
    if (!admitted) {
      admitted = { channel: { values: new Set(), count: 0 }, feature: { values: new Set(), count: 0 } };
      this.admitted.set(key, admitted);
    }
    return admitted;
  }

  private guard(): void {
    if (++this.calls > InMemoryRollupWriter.MAX_CALLS) throw new Error(`runaway loop: more than ${InMemoryRollupWriter.MAX_CALLS} calls to the rollup writer`);
  }
}

export class InMemorySubjectDirectory implements SubjectDirectory {
  readonly requests: string[][] = [];
  private readonly subjects: Map<string, Subject>;

  constructor(subjects: readonly Subject[]) {
    this.subjects = new Map(subjects.map((s) => [s.id, s]));
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Subject>> {
    this.requests.push([...ids]);
    const found = new Map<string, Subject>();
    for (const id of ids) {
      const subject = this.subjects.get(id);
      if (subject) found.set(id, subject);
    }
    return found;
  }
}

/** The events ledger: one entry per event identity. `failWhen` makes chosen puts fail (after retries). */
export class InMemoryLedger implements Ledger {
  readonly items = new Map<string, LedgerEntry>();
  readonly calls: LedgerEntry[][] = [];

  constructor(private readonly failWhen: (entry: LedgerEntry) => boolean = () => false) {}

  /** Remembers nothing between calls, so it reports no known duplicates. */
  async putAll(entries: readonly LedgerEntry[]): Promise<{ failed: LedgerEntry[]; knownDuplicates: number }> {
    this.calls.push([...entries]);
    const failed: LedgerEntry[] = [];
    for (const entry of entries) {
      if (this.failWhen(entry)) failed.push(entry);
      else this.items.set(eventKey(entry), entry);
    }
    return { failed, knownDuplicates: 0 };
  }
}

export class InMemoryQuarantine implements Quarantine {
  readonly records: QuarantineRecord[] = [];

  constructor(private readonly failWhen: (record: QuarantineRecord) => boolean = () => false) {}

  async putAll(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }> {
    const failed: QuarantineRecord[] = [];
    for (const record of records) {
      if (this.failWhen(record)) failed.push(record);
      else this.records.push(record);
    }
    return { failed };
  }

  async list(filter: { subject?: string; limit: number }): Promise<QuarantineRecord[]> {
    return this.records.filter((r) => filter.subject === undefined || r.subject === filter.subject).slice(0, filter.limit);
  }
}

export class FixedClock implements Clock {
  constructor(private instant: string) {}

  now(): Date {
    return new Date(this.instant);
  }

  set(instant: string): void {
    this.instant = instant;
  }
}

/**
 * Grants, snapshots and adjustments with the store's guarantees: grants, snapshots and day snapshots are
 * written only if absent. `beforeWrite` runs before each write (tests throw there to crash a close).
 */
export class InMemoryAccounts implements AccountStore {
  readonly items = new Map<string, unknown>();
  beforeWrite?: (key: string) => void;

  async listGrants(subject: string): Promise<Grant[]> {
    return this.byPrefix<Grant>(`${subject}|G|`);
  }

  async putGrant(grant: Grant): Promise<'created' | 'exists'> {
    return this.putIfAbsent(`${grant.subject}|G|${grant.id}`, grant) ? 'created' : 'exists';
  }

  async listCycleSnapshots(subject: string): Promise<CycleSnapshot[]> {
    return this.byPrefix<CycleSnapshot>(`${subject}|C|`);
  }

  async balanceRecords(subject: string): Promise<BalanceRecords> {
    return { grants: await this.listGrants(subject), snapshots: await this.listCycleSnapshots(subject) };
  }

  async freezeCycle(snapshot: CycleSnapshot): Promise<CycleSnapshot> {
    const key = `${snapshot.subject}|C|${snapshot.cycleStart}`;
    this.putIfAbsent(key, snapshot);
    return structuredClone(this.items.get(key) as CycleSnapshot);
  }

  async markCycleClosed(subject: string, cycleStart: string): Promise<void> {
    const key = `${subject}|C|${cycleStart}`;
    this.beforeWrite?.(key);
    const stored = this.items.get(key) as CycleSnapshot | undefined;
    if (!stored) throw new Error(`no snapshot ${key}`);
    this.items.set(key, { ...stored, status: 'closed' });
  }

  async lastDaySnapshot(subject: string): Promise<DaySnapshot | undefined> {
    return this.byPrefix<DaySnapshot>(`${subject}|D|`).at(-1);
  }

  async freezeDay(snapshot: DaySnapshot): Promise<void> {
    this.putIfAbsent(`${snapshot.subject}|D|${snapshot.day}`, snapshot);
  }

  async listAdjustments(subject: string): Promise<Adjustment[]> {
    return this.byPrefix<Adjustment>(`${subject}|A|`);
  }

  async putAdjustment(adjustment: Adjustment): Promise<void> {
    this.putIfAbsent(`${adjustment.subject}|A|${adjustment.cycleStart}#${adjustment.usageType}#${adjustment.detectedAt}`, adjustment);
  }

  async markSummaryDue(cycleStart: string, _subject: string): Promise<void> {
    const key = `_summaries|S|${cycleStart}`;
    this.beforeWrite?.(key);
    const marks = (this.items.get(key) as SummaryDue | undefined)?.marks.all ?? 0;
    this.items.set(key, { cycleStart, marks: { all: marks + 1 } } satisfies SummaryDue);
  }

  async summariesDue(): Promise<SummaryDue[]> {
    return this.byPrefix<SummaryDue>('_summaries|S|');
  }

  /** Deleted unless noted again since `due` was read. */
  async clearSummaryDue(due: SummaryDue): Promise<void> {
    const key = `_summaries|S|${due.cycleStart}`;
    this.beforeWrite?.(key);
    if ((this.items.get(key) as SummaryDue | undefined)?.marks.all === due.marks.all) this.items.delete(key);
  }

  /** Everything stored, sorted by key, for comparing two runs. */
  dump(): [string, unknown][] {
    return [...this.items].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  private putIfAbsent(key: string, value: unknown): boolean {
    this.beforeWrite?.(key);
    if (this.items.has(key)) return false;
    this.items.set(key, structuredClone(value));
    return true;
  }

  private byPrefix<T>(prefix: string): T[] {
    return this.dump()
      .filter(([key]) => key.startsWith(prefix))
      .map(([, value]) => structuredClone(value) as T);
  }
}

export class InMemorySubjectStore implements SubjectStore {
  readonly all: Map<string, Subject>;

  constructor(subjects: readonly Subject[]) {
    this.all = new Map(subjects.map((s) => [s.id, s]));
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Subject>> {
    return new Map(ids.flatMap((id) => (this.all.has(id) ? [[id, this.all.get(id) as Subject]] : [])));
  }

  async get(id: string): Promise<Subject | undefined> {
    return this.all.get(id);
  }

  async put(subject: Subject): Promise<void> {
    this.all.set(subject.id, subject);
  }

  async list(): Promise<Subject[]> {
    return [...this.all.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  async pooledIn(account: string): Promise<Subject[]> {
    return (await this.list()).filter((s) => s.account === account);
  }
}

/** Rollup items by subject and kind; `query` returns those whose period is in [from, to] in string order, like a key range. */
export class InMemoryRollupReader implements RollupReader, RollupCloser {
  readonly queries: { subject: string; kind: RollupKind; fromPeriod: string; toPeriod: string }[] = [];
  /** `subject|cycleStart|usageType` → when the cycle close marked it. */
  readonly closed = new Map<string, string>();
  readonly late: (LateChange & { subject: string })[] = [];
  private readonly rows: { subject: string; row: RollupRow }[] = [];

  async closeCycle(subject: string, cycleStart: string, usageTypes: readonly string[], closedAt: string): Promise<void> {
    for (const usageType of usageTypes) {
      const key = `${subject}|${cycleStart}|${usageType}`;
      if (!this.closed.has(key)) this.closed.set(key, closedAt);
    }
  }

  async lateChanges(subject: string, fromCycle: string, toCycle: string): Promise<LateChange[]> {
    return this.late.filter((l) => l.subject === subject && l.cycleStart >= fromCycle && l.cycleStart <= toCycle);
  }

  add(subject: string, ...rows: RollupRow[]): this {
    for (const row of rows) this.rows.push({ subject, row });
    return this;
  }

  /** Replaces the row with the same subject, kind, period, usage type and member (or adds it): a late event or correction landed. */
  set(subject: string, row: RollupRow): this {
    const index = this.rows.findIndex((r) => r.subject === subject && r.row.kind === row.kind && r.row.period === row.period && r.row.usageType === row.usageType && r.row.member === row.member);
    if (index >= 0) this.rows.splice(index, 1);
    return this.add(subject, row);
  }

  async query(subject: string, kind: 'day' | 'cycle', fromPeriod: string, toPeriod: string): Promise<RollupRow[]> {
    this.queries.push({ subject, kind, fromPeriod, toPeriod });
    return this.rows.filter((r) => r.subject === subject && r.row.kind === kind && r.row.period >= fromPeriod && r.row.period <= toPeriod).map((r) => r.row);
  }

  async members(subject: string, kind: MemberKind, cycleStart: string, usageType: string): Promise<RollupRow[]> {
    return this.rows.filter((r) => r.subject === subject && r.row.kind === kind && r.row.period === cycleStart && r.row.usageType === usageType).map((r) => r.row);
  }

  async cycleItems(keys: readonly CycleItemKey[]): Promise<Map<string, RollupRow>> {
    const found = new Map<string, RollupRow>();
    for (const { subject, cycleStart, usageType } of keys) {
      const row = this.rows.find((r) => r.subject === subject && r.row.kind === 'cycle' && r.row.period === cycleStart && r.row.usageType === usageType)?.row;
      if (row) found.set(cycleItemKey(subject, cycleStart, usageType), row);
    }
    return found;
  }
}

/** Alert records with the store's guarantee: one per subject, usage type, cycle and threshold. */
export class InMemoryAlerts implements AlertStore {
  readonly items = new Map<string, AlertDelivery & { notify: boolean }>();
  /** Runs before each mark of a delivery (tests throw there to crash the notify function). */
  beforeMark?: (what: 'attempted' | 'sent' | 'done', contact?: string) => void;

  async recorded(subject: string, usageType: string, cycleStart: string): Promise<Set<number>> {
    return new Set([...this.items.values()].filter(({ alert: a }) => a.subject === subject && a.usageType === usageType && a.cycleStart === cycleStart).map(({ alert }) => alert.threshold));
  }

  async record(alert: Alert): Promise<boolean> {
    const key = alertKey(alert);
    if (this.items.has(key)) return false;
    this.items.set(key, { alert: structuredClone(alert), notify: alert.notify, sentTo: [], attempted: [], status: 'pending' });
    return true;
  }

  async delivery(alert: Pick<Alert, 'subject' | 'usageType' | 'cycleStart' | 'threshold'>): Promise<AlertDelivery | undefined> {
    const item = this.items.get(alertKey(alert));
    return item && structuredClone(item);
  }

  async markAttempted(alert: Alert, contact: string): Promise<void> {
    this.beforeMark?.('attempted', contact);
    this.item(alert).attempted.push(contact);
  }

  async markSent(alert: Alert, contact: string): Promise<void> {
    this.beforeMark?.('sent', contact);
    this.item(alert).sentTo.push(contact);
  }

  async markDone(alert: Alert, status: 'sent' | 'no_contacts'): Promise<void> {
    this.beforeMark?.('done');
    this.item(alert).status = status;
  }

  private item(alert: Alert) {
    const item = this.items.get(alertKey(alert));
    if (!item) throw new Error('no such alert');
    return item;
  }
}

const alertKey = (a: Pick<Alert, 'subject' | 'usageType' | 'cycleStart' | 'threshold'>) => [a.subject, a.usageType, a.cycleStart, a.threshold].join('|');

/** An outbox; `failWith` makes the next sends throw (e.g. SES throttling). */
export class InMemoryEmailSender implements EmailSender {
  readonly sent: Email[] = [];
  failures: Error[] = [];

  async send(email: Email): Promise<string> {
    const failure = this.failures.shift();
    if (failure) throw failure;
    this.sent.push(email);
    return `msg-${this.sent.length}`;
  }
}

/** Reports by key, as the S3 report store lays them out. */
export class InMemoryReports implements ReportStore {
  readonly objects = new Map<string, CycleReport | CycleSummary>();

  async putCycleReport(report: CycleReport): Promise<string> {
    const key = `reports/${report.cycle.start}/${report.subject.id}.json`;
    this.objects.set(key, report);
    return key;
  }

  async getCycleReport(cycleStart: string, subject: string): Promise<CycleReport | undefined> {
    return this.objects.get(`reports/${cycleStart}/${subject}.json`) as CycleReport | undefined;
  }

  async *listCycleReports(cycleStart: string): AsyncIterable<{ key: string; report: CycleReport }> {
    yield* [...this.objects].filter(([key, value]) => key.startsWith(`reports/${cycleStart}/`) && value.kind === 'cycle-report').map(([key, report]) => ({ key, report: report as CycleReport }));
  }

  async putCycleSummary(summary: CycleSummary): Promise<string> {
    const key = `reports/${summary.cycleStart}/_summary.json`;
    this.objects.set(key, summary);
    return key;
  }
}

/** The due index and claims of the closes, as DynamoSubjects keeps them on the workspace items. */
export class InMemoryCloseClaims implements CloseClaims {
  readonly nextDueAt = new Map<string, string>();
  readonly claims = new Map<string, { holder: string; until: string }>();

  constructor(private readonly subjects: InMemorySubjectStore) {
    for (const id of subjects.all.keys()) this.nextDueAt.set(id, '1970-01-01T00:00:00.000Z');
  }

  async *due(dueBefore: string): AsyncIterable<string[]> {
    const ids = [...this.nextDueAt].filter(([, at]) => at <= dueBefore).map(([id]) => id);
    if (ids.length > 0) yield ids.sort();
  }

  async claim(id: string, holder: string, now: Date, until: Date): Promise<{ subject: Subject; nextDueAt: string } | undefined> {
    const subject = this.subjects.all.get(id);
    const held = this.claims.get(id);
    if (!subject || (held && held.holder !== holder && held.until > now.toISOString())) return undefined;
    this.claims.set(id, { holder, until: until.toISOString() });
    return { subject, nextDueAt: this.nextDueAt.get(id) ?? '1970-01-01T00:00:00.000Z' };
  }

  async release(id: string, holder: string, nextDueAt?: string): Promise<void> {
    if (this.claims.get(id)?.holder !== holder) return;
    this.claims.delete(id);
    if (nextDueAt) this.nextDueAt.set(id, nextDueAt);
  }
}
