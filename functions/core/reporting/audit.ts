import { type CycleSnapshot, units } from '../billing/balance';
import type { Config } from '../config';
import { type Cycle, cycleContaining, localDate } from '../cycles';
import type { LateChange, RollupCloser, RollupReader, RollupRow } from '../metering/metering-ports';
import { meteredImages, ONE_REQUEST } from '../metering/rollups';
import type { Subject } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import type { LedgerScanner, ReportStore } from './reporting-ports';

/**
 * Recomputes every cycle's totals from the ledger (the events themselves) and compares them with what
 * was derived from it: the cycle and day rollups and their request counts, the closed cycle's snapshot
 * plus its late changes, and the cycle report written at the close. Any difference is a finding; none means the numbers
 * finance reads are the events' own.
 *
 * The ledger keeps events for the retention window (config `ingest.retentionDays`); cycles older than
 * that cannot be audited, because their events have aged out while their counts stay.
 */

export interface AuditDeps {
  config: Config;
  subjects: { list(): Promise<Subject[]>; get(id: string): Promise<Subject | undefined> };
  ledger: LedgerScanner;
  rollups: RollupReader & RollupCloser;
  accounts: { listCycleSnapshots(subject: string): Promise<CycleSnapshot[]> };
  reports: Pick<ReportStore, 'getCycleReport'>;
}

export interface AuditFilter {
  subject?: string;
  /** Resolves the cycle to audit for a subject (e.g. the cycle containing a date); all cycles when absent. */
  cycle?: (subject: Subject) => Cycle;
}

export interface AuditRow {
  subject: string;
  cycleStart: string;
  usageType: string;
  check: string;
  /** What the ledger says (or what the check expects). */
  expected: string;
  actual: string;
  ok: boolean;
}

export interface AuditResult {
  rows: AuditRow[];
  events: number;
  differences: number;
}

export async function runAudit(filter: AuditFilter, deps: AuditDeps): Promise<AuditResult> {
  const subjects = filter.subject ? [await deps.subjects.get(filter.subject)].filter((s): s is Subject => s !== undefined) : await deps.subjects.list();
  if (filter.subject && subjects.length === 0) throw new Error(`unknown workspace "${filter.subject}"`);
  const known = new Map(subjects.map((s) => [s.id, s]));

  // Ledger totals and events per subject, cycle and usage type, and per local day.
  const ledger = new Map<string, LedgerCycle>();
  let events = 0;
  for await (const stored of deps.ledger.scan(filter.subject)) {
    // A priced event counts its credits under their usage type too, and a pooled workspace's under its account.
    const images = meteredImages(stored).filter((image) => known.has(image.subject));
    if (images.length > 0) events += 1;
    for (const event of images) {
      const key = cycleKey(event.subject, event.cycleStart, event.usageType);
      const entry = ledger.get(key) ?? emptyLedgerCycle();
      const quantity = units(event.quantity);
      entry.total += quantity;
      entry.days.set(event.day, (entry.days.get(event.day) ?? 0n) + quantity);
      entry.requests += 1;
      entry.dayRequests.set(event.day, (entry.dayRequests.get(event.day) ?? 0) + 1);
      ledger.set(key, entry);
    }
  }

  const rows: AuditRow[] = [];
  for (const subject of subjects) {
    const only = filter.cycle?.(subject);
    const snapshots = await deps.accounts.listCycleSnapshots(subject.id);
    const cycleRows = only ? await deps.rollups.query(subject.id, 'cycle', only.start, only.start) : await deps.rollups.query(subject.id, 'cycle', '', '\uffff');
    const starts = new Set<string>([
      ...[...ledger.keys()].filter((k) => k.startsWith(`${subject.id}|`)).map((k) => k.split('|')[1] ?? ''),
      ...cycleRows.map((r) => r.period),
      ...snapshots.map((s) => s.cycleStart),
    ]);
    for (const cycleStart of [...starts].filter((s) => !only || s === only.start).sort()) {
      rows.push(
        ...(await auditCycle(subject, cycleStart, { ledger, cycleRows: cycleRows.filter((r) => r.period === cycleStart), snapshot: snapshots.find((s) => s.cycleStart === cycleStart) }, deps)),
      );
    }
  }
  return { rows, events, differences: rows.filter((r) => !r.ok).length };
}

async function auditCycle(
  subject: Subject,
  cycleStart: string,
  found: { ledger: Map<string, LedgerCycle>; cycleRows: RollupRow[]; snapshot: CycleSnapshot | undefined },
  deps: AuditDeps,
): Promise<AuditRow[]> {
  const cycle = cycleContaining(cycleStart, subject);
  const { snapshot } = found;
  const closed = snapshot?.status === 'closed';
  const [late, report] = await Promise.all([deps.rollups.lateChanges(subject.id, cycleStart, cycleStart), closed ? deps.reports.getCycleReport(cycleStart, subject.id) : Promise.resolve(undefined)]);
  const usageTypes = new Set([
    ...[...found.ledger.keys()].filter((k) => k.startsWith(`${subject.id}|${cycleStart}|`)).map((k) => k.split('|')[2] ?? ''),
    ...found.cycleRows.map((r) => r.usageType),
    ...Object.keys(snapshot?.usage ?? {}),
  ]);
  // Cycles start at local midnight, so the cycle's local days hold exactly its day items.
  const dayRows = await deps.rollups.query(subject.id, 'day', localDate(cycle.start, subject.timeZone), localDate(new Date(Date.parse(cycle.end) - 1), subject.timeZone));
  const rows: AuditRow[] = [];
  for (const usageType of [...usageTypes].sort()) {
    const truth = found.ledger.get(cycleKey(subject.id, cycleStart, usageType)) ?? emptyLedgerCycle();
    const row = found.cycleRows.find((r) => r.usageType === usageType);
    const check = (name: string, expected: NanoUnits, actual: NanoUnits) =>
      rows.push({ subject: subject.id, cycleStart, usageType, check: name, expected: toDecimalString(expected), actual: toDecimalString(actual), ok: expected === actual });
    const total = units(row?.total ?? '0');
    check('cycle rollup total', truth.total, total);
    check('cycle rollup day counters', truth.total, sumCounters(row, 'd#'));
    const days = dayRows.filter((d) => d.usageType === usageType);
    const mismatchedDays = [...new Set([...truth.days.keys(), ...days.map((d) => d.period)])].filter((day) => (truth.days.get(day) ?? 0n) !== units(days.find((d) => d.period === day)?.total ?? '0'));
    rows.push({
      subject: subject.id,
      cycleStart,
      usageType,
      check: 'day rollups',
      expected: 'every day equal',
      actual: mismatchedDays.length === 0 ? 'every day equal' : `differ on ${mismatchedDays.join(', ')}`,
      ok: mismatchedDays.length === 0,
    });
    // Events: the cycle item's count, each day item's count and the sum of its hour counts (r#), all the ledger's.
    const counted = Number(row?.requests ?? 0);
    const miscountedDays = [...new Set([...truth.dayRequests.keys(), ...days.map((d) => d.period)])].filter((day) => {
      const want = truth.dayRequests.get(day) ?? 0;
      const item = days.find((d) => d.period === day);
      return Number(item?.requests ?? 0) !== want || Number(sumCounters(item, 'r#') / ONE_REQUEST) !== want;
    });
    const requestsOk = counted === truth.requests && miscountedDays.length === 0;
    rows.push({
      subject: subject.id,
      cycleStart,
      usageType,
      check: 'requests',
      expected: `${truth.requests}, every day and hour equal`,
      actual: `${counted}, ${miscountedDays.length === 0 ? 'every day and hour equal' : `differ on ${miscountedDays.join(', ')}`}`,
      ok: requestsOk,
    });
    if (!snapshot) continue;
    const frozen = units(snapshot.usage[usageType]?.used ?? '0');
    const lateTotal = units(row?.late ?? '0');
    const lateItems = late.filter((l) => l.usageType === usageType);
    check('snapshot + late changes', truth.total, frozen + lateTotal);
    check('late items', lateTotal, sumLate(lateItems));
    if (!closed) continue;
    const written = report?.usage.find((u) => u.usageType === usageType);
    if (!report) {
      rows.push({ subject: subject.id, cycleStart, usageType, check: 'written report', expected: 'present', actual: 'missing', ok: false });
      continue;
    }
    check('written report closed total', frozen, units(written?.closedTotal ?? '0'));
    check('written report total', units(written?.closedTotal ?? '0') + units(written?.adjustments.total ?? '0'), units(written?.total ?? '0'));
    check(
      'written report adjustment events',
      units(written?.adjustments.total ?? '0'),
      (written?.adjustments.events ?? []).reduce((sum, e) => sum + units(e.delta), 0n),
    );
  }
  return rows;
}

export function reportTable(result: AuditResult): string {
  const header = ['subject', 'cycle start', 'usage type', 'check', 'ledger / expected', 'found', ''];
  const body = result.rows.map((r) => [r.subject, r.cycleStart, r.usageType, r.check, r.expected, r.actual, r.ok ? 'ok' : 'DIFFERENT']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const summary = `${result.events} events in the ledger, ${result.rows.length} checks, ${result.differences === 0 ? 'no difference' : `${result.differences} difference(s)`}`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line), '', summary].join('\n');
}

const cycleKey = (subject: string, cycleStart: string, usageType: string) => `${subject}|${cycleStart}|${usageType}`;

/** What the ledger holds of one subject's cycle and usage type: use and events, in all and per local day. */
interface LedgerCycle {
  total: NanoUnits;
  days: Map<string, NanoUnits>;
  requests: number;
  dayRequests: Map<string, number>;
}
const emptyLedgerCycle = (): LedgerCycle => ({ total: 0n, days: new Map(), requests: 0, dayRequests: new Map() });

function sumCounters(row: RollupRow | undefined, prefix: string): NanoUnits {
  return Object.entries(row?.counters ?? {}).reduce((sum, [name, value]) => (name.startsWith(prefix) ? sum + units(value) : sum), 0n);
}

function sumLate(changes: readonly LateChange[]): NanoUnits {
  return changes.reduce((sum, c) => sum + units(c.delta), 0n);
}
