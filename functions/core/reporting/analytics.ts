import { createHash } from 'node:crypto';
import { z } from 'zod';
import { units } from '../billing/balance';
import { type QuotaDeps, quotaView } from '../billing/quotas';
import { type Cycle, cycleContaining, localDate, previousCycle, startOfLocalDay } from '../cycles';
import { InvalidRequestError, NotFoundError } from '../errors';
import { EARLIEST_INSTANT, KEY_RANGE_MESSAGE, LATEST_INSTANT, withinKeyRange } from '../instants';
import type { RollupReader, RollupRow } from '../metering/metering-ports';
import { requestCount } from '../metering/rollups';
import type { Subject, SubjectDirectory, SubjectStore } from '../ports';
import { type Amount, type NanoUnits, toAmount } from '../quantity';

/**
 * What a usage dashboard shows, read from rollups only (never from events):
 * - summary: the cycle's progress and, at the current rate, when the allowance runs out;
 * - series: usage over the last 24 hours (hourly), 7 days (daily) or 30 days (weekly), split by channel;
 * - top: users or groups of a workspace, or workspaces, ranked by use in a cycle, in pages.
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const usageTypeParam = z.string().min(1).max(128).optional();

// ---------------------------------------------------------------------------------------------
// Summary and projection

export const summaryQuerySchema = z.strictObject({ usageType: usageTypeParam });

export interface Projection {
  /** Local days of the cycle begun so far, today included (1 on the cycle's first day). */
  daysElapsed: number;
  /** Whole local days of the cycle after today. */
  daysRemaining: number;
  /** Used ÷ daysElapsed, rounded to 2 decimals. */
  avgPerDay: number;
  /** Available ÷ avgPerDay, rounded to 2 decimals; null when nothing has been used (even if nothing is left), else 0 once nothing is left. */
  runOutInDays: number | null;
  /** At avgPerDay, what is available is gone before the cycle ends (true once use has left nothing; false with no use). */
  projectedToRunOut: boolean;
}

/** The projection at the current rate. Exact: compares used × time left with available × days elapsed. */
export function projection(input: { used: NanoUnits; available: NanoUnits; cycle: Cycle; now: Date; timeZone: string }): Projection {
  const { used, available, cycle, now, timeZone } = input;
  const first = localDate(cycle.start, timeZone);
  const last = localDate(new Date(Date.parse(cycle.end) - 1), timeZone);
  const today = localDate(now, timeZone);
  const daysElapsed = dateDiff(first, today) + 1;
  const daysRemaining = dateDiff(today, last);
  const msLeft = BigInt(Math.max(0, Date.parse(cycle.end) - now.getTime()));
  const left = available > 0n ? available : 0n;
  return {
    daysElapsed,
    daysRemaining,
    avgPerDay: rounded(used, BigInt(daysElapsed) * units(1)),
    runOutInDays: used <= 0n ? null : rounded(left * BigInt(daysElapsed), used),
    projectedToRunOut: used > 0n && left * BigInt(daysElapsed) * BigInt(DAY_MS) < used * msLeft,
  };
}

export interface SummaryEntry extends Projection {
  usageType: string;
  cycleStart: string;
  cycleEnd: string;
  usedAmount: Amount;
  /** Plan allowance plus spillover carried in (L + S). */
  allowanceAmount: Amount;
  limitAmount: Amount;
  spilloverAmount: Amount;
  /** Bonus and top-up credits still available. */
  bonusAmount: Amount;
  availableAmount: Amount;
  /** Events counted this cycle. */
  requests: number;
  /** Used as a percentage of the allowance, 2 decimals; null when the allowance is 0. */
  usedPercent: number | null;
}

export async function usageSummary(subjectId: string, query: z.infer<typeof summaryQuerySchema>, deps: QuotaDeps): Promise<{ subject: string; plan: string; asOf: string; summary: SummaryEntry[] }> {
  if (query.usageType !== undefined && !deps.config.usageTypes.some((u) => u.id === query.usageType)) {
    throw new InvalidRequestError('unknown_usage_type', `usage type "${query.usageType}" is not configured`);
  }
  const subject = await knownSubject(subjectId, deps.subjects);
  // One instant for the quota view and the projection.
  const now = deps.clock.now();
  const view = await quotaView(subjectId, { ...deps, clock: { now: () => now } });
  const summary = view.quotas
    .filter((q) => query.usageType === undefined || q.usageType === query.usageType)
    .map((q): SummaryEntry => {
      const allowance = units(q.limitAmount) + units(q.spilloverAmount);
      const used = units(q.usedAmount);
      return {
        usageType: q.usageType,
        cycleStart: q.cycleStart,
        cycleEnd: q.cycleEnd,
        usedAmount: q.usedAmount,
        allowanceAmount: toAmount(allowance),
        limitAmount: q.limitAmount,
        spilloverAmount: q.spilloverAmount,
        bonusAmount: q.bonusAmount,
        availableAmount: q.availableAmount,
        requests: q.requests,
        usedPercent: allowance === 0n ? null : rounded(used * 100n, allowance),
        ...projection({ used, available: units(q.availableAmount), cycle: { start: q.cycleStart, end: q.cycleEnd }, now, timeZone: subject.timeZone }),
      };
    });
  return { subject: view.subject, plan: view.plan, asOf: now.toISOString(), summary };
}

// ---------------------------------------------------------------------------------------------
// Series

export const WINDOWS = { '24h': 'hour', '7d': 'day', '30d': 'week' } as const;
export const seriesQuerySchema = z.strictObject({ window: z.enum(['24h', '7d', '30d']), usageType: usageTypeParam });

export interface SeriesBucket {
  start: string;
  end: string;
  total: Amount;
  /** Events in the bucket. */
  requests: number;
  /** Use per channel; use without a channel is in `total` only. */
  byChannel: Record<string, Amount>;
}

export interface SeriesResponse {
  subject: string;
  asOf: string;
  window: keyof typeof WINDOWS;
  granularity: (typeof WINDOWS)[keyof typeof WINDOWS];
  series: { usageType: string; buckets: SeriesBucket[] }[];
}

interface Sum {
  total: NanoUnits;
  requests: number;
  byChannel: Map<string, NanoUnits>;
}

/**
 * 24h: the 24 UTC hours ending with the current one. 7d: the 7 local days ending today. 30d: the 30 local
 * days ending today in weeks counted back from today (the oldest bucket has the 2 days left over).
 * Every bucket is present, zero or not, oldest first.
 */
export async function usageSeries(
  subjectId: string,
  query: z.infer<typeof seriesQuerySchema>,
  deps: { subjects: SubjectStore; rollups: RollupReader; clock: { now(): Date }; usageTypes: readonly string[] },
): Promise<SeriesResponse> {
  const subject = await knownSubject(subjectId, deps.subjects);
  const now = deps.clock.now();
  const zone = subject.timeZone;
  const today = localDate(now, zone);
  const usageTypes = query.usageType === undefined ? deps.usageTypes : deps.usageTypes.filter((u) => u === query.usageType);
  if (query.usageType !== undefined && usageTypes.length === 0) throw new InvalidRequestError('unknown_usage_type', `usage type "${query.usageType}" is not configured`);

  // Buckets as [start, end) instants, plus a function placing a day item's counters in them.
  let bounds: { start: string; end: string }[];
  let place: (row: RollupRow, add: (instant: string, channel: string | undefined, amount: string) => void, count: (instant: string, requests: string | undefined) => void) => void;
  if (query.window === '24h') {
    const end = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
    bounds = Array.from({ length: 24 }, (_, i) => ({ start: iso(end - (24 - i) * HOUR_MS), end: iso(end - (23 - i) * HOUR_MS) }));
    place = (row, add, count) => {
      for (const [counter, amount] of Object.entries(row.counters)) {
        const [prefix, hour, channel] = splitCounter(counter);
        if (prefix === 'h') add(`${hour}:00:00.000Z`, undefined, amount);
        else if (prefix === 'ch') add(`${hour}:00:00.000Z`, channel, amount);
        else if (prefix === 'r') count(`${hour}:00:00.000Z`, amount);
      }
    };
  } else {
    const days = query.window === '7d' ? 7 : 30;
    const width = query.window === '7d' ? 1 : 7;
    const firstDay = addDays(today, -(days - 1));
    bounds = [];
    for (let last = today; last >= firstDay; last = addDays(last, -width)) {
      const first = addDays(last, -(width - 1)) < firstDay ? firstDay : addDays(last, -(width - 1));
      bounds.unshift({ start: startOfLocalDay(first, zone), end: startOfLocalDay(addDays(last, 1), zone) });
    }
    place = (row, add, count) => {
      const dayStart = startOfLocalDay(row.period, zone);
      add(dayStart, undefined, row.total);
      count(dayStart, row.requests);
      for (const [counter, amount] of Object.entries(row.counters)) {
        const [prefix, , channel] = splitCounter(counter);
        if (prefix === 'ch') add(dayStart, channel, amount);
      }
    };
  }
  const from = bounds[0]?.start ?? iso(now.getTime());
  const to = bounds.at(-1)?.end ?? iso(now.getTime());
  // Day items are keyed by local date; a day either side covers UTC hours that straddle local midnight.
  const rows = await deps.rollups.query(subject.id, 'day', localDate(new Date(Date.parse(from) - DAY_MS), zone), localDate(new Date(Date.parse(to) + DAY_MS), zone));

  const series = usageTypes.map((usageType) => {
    const sums: Sum[] = bounds.map(() => ({ total: 0n, requests: 0, byChannel: new Map() }));
    const sumAt = (instant: string) => {
      const index = bucketIndex(bounds, instant);
      return index === undefined ? undefined : sums[index];
    };
    const add = (instant: string, channel: string | undefined, amount: string) => {
      const sum = sumAt(instant);
      if (!sum) return;
      const value = units(amount);
      if (channel === undefined) sum.total += value;
      else sum.byChannel.set(channel, (sum.byChannel.get(channel) ?? 0n) + value);
    };
    const count = (instant: string, requests: string | undefined) => {
      const sum = sumAt(instant);
      if (sum) sum.requests += requestCount(requests);
    };
    for (const row of rows) if (row.usageType === usageType) place(row, add, count);
    const buckets = bounds.map(({ start, end }, i): SeriesBucket => {
      const sum = sums[i] as Sum;
      const byChannel = Object.fromEntries(
        [...sum.byChannel]
          .filter(([, v]) => v !== 0n)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([c, v]) => [c, toAmount(v)]),
      );
      return { start, end, total: toAmount(sum.total), requests: sum.requests, byChannel };
    });
    return { usageType, buckets };
  });
  return { subject: subject.id, asOf: now.toISOString(), window: query.window, granularity: WINDOWS[query.window], series };
}

// ---------------------------------------------------------------------------------------------
// Rankings

const cycleParam = z
  .union([z.enum(['current', 'previous']), z.iso.date().refine(withinKeyRange, KEY_RANGE_MESSAGE)])
  .default('current')
  .describe(`current, previous, or a date (YYYY-MM-DD, in the workspace's time zone) inside the cycle, from ${EARLIEST_INSTANT.slice(0, 10)} to ${LATEST_INSTANT.slice(0, 10)}`);
const limitParam = z.coerce.number().int().min(1).max(100).default(10);
/**
 * Longer than any cursor this module writes: the JSON of an amount, a member id of at most 256 characters
 * (6 each when escaped) and the ranking's context is under 2,000 bytes, so under 2,700 in base64url.
 */
const MAX_CURSOR_CHARS = 4096;
/** Any string: whatever is not a cursor of the ranking (too long, empty, undecodable) is refused as invalid_cursor. */
const cursorParam = z.string().optional().describe(`nextCursor of the previous page (at most ${MAX_CURSOR_CHARS} characters)`);

/** `workspace` ranks an account's pooled workspaces (an account's workspace items); a workspace has none. */
export const memberTopQuerySchema = z.strictObject({ by: z.enum(['user', 'group', 'workspace']), cycle: cycleParam, usageType: usageTypeParam, limit: limitParam, cursor: cursorParam });
export const workspaceTopQuerySchema = z.strictObject({ by: z.literal('workspace'), cycle: cycleParam, usageType: usageTypeParam, limit: limitParam, cursor: cursorParam });
export const reportQuerySchema = z.strictObject({ cycle: cycleParam });

export interface RankedEntry {
  rank: number;
  id: string;
  amount: Amount;
  /** amount ÷ totalAmount, 4 decimals. */
  share: number;
  /** Events counted for the entry this cycle. */
  requests: number;
}

interface Ranked {
  id: string;
  amount: NanoUnits;
  requests?: number;
}

/** The cycle a `cycle` parameter names, for one subject. */
export function resolveCycle(param: string, subject: Subject, now: Date): Cycle {
  const current = cycleContaining(now, subject);
  if (param === 'current') return current;
  if (param === 'previous') return previousCycle(current, subject);
  return cycleContaining(startOfLocalDay(param, subject.timeZone), subject);
}

export async function topMembers(
  subjectId: string,
  query: z.infer<typeof memberTopQuerySchema>,
  deps: { subjects: SubjectStore; rollups: RollupReader; clock: { now(): Date }; usageTypes: readonly string[] },
) {
  const subject = await knownSubject(subjectId, deps.subjects);
  const usageType = pickUsageType(query.usageType, deps.usageTypes);
  const now = deps.clock.now();
  const cycle = resolveCycle(query.cycle, subject, now);
  const { by } = query;
  if (by === 'workspace' && subject.kind !== 'account') throw new InvalidRequestError('invalid_parameter', `by: workspace ranks the workspaces of an account; "${subject.id}" is not one`);
  // An account's workspaces are ranked by their own items (their cycle containing the same instant), which
  // the fold writes anyway: the account holds no item per workspace.
  const readMembers = async (): Promise<Ranked[]> => {
    if (by !== 'workspace')
      return (await deps.rollups.members(subject.id, by, cycle.start, usageType)).map((row) => ({ id: row.member ?? '', amount: units(row.total), requests: requestCount(row.requests) }));
    const pooled = await deps.subjects.pooledIn(subject.id);
    return (await ownCycleEntries(pooled, query.cycle, usageType, now, deps.rollups)).entries;
  };
  const [entries, cycleRows] = await Promise.all([readMembers(), deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start)]);
  const total = units(cycleRows.find((r) => r.usageType === usageType)?.total ?? '0');
  const context = `${subject.id}|${by}|${usageType}|${cycle.start}`;
  const page = rankPage(entries, total, query.limit, query.cursor, context);
  return { subject: subject.id, by: query.by, usageType, cycleStart: cycle.start, cycleEnd: cycle.end, totalAmount: toAmount(total), ...page };
}

/** Each workspace's use of a usage type in its own cycle that `cycle` names: one cycle item each. */
async function ownCycleEntries(subjects: readonly Subject[], cycleParam: string, usageType: string, now: Date, rollups: RollupReader): Promise<{ cycles: Map<string, Cycle>; entries: Ranked[] }> {
  const cycles = new Map(subjects.map((s) => [s.id, resolveCycle(cycleParam, s, now)]));
  const entries: Ranked[] = [];
  const PARALLEL_READS = 16;
  for (let i = 0; i < subjects.length; i += PARALLEL_READS) {
    await Promise.all(
      subjects.slice(i, i + PARALLEL_READS).map(async (s) => {
        const cycle = cycles.get(s.id) as Cycle;
        const row = (await rollups.query(s.id, 'cycle', cycle.start, cycle.start)).find((r) => r.usageType === usageType);
        entries.push({ id: s.id, amount: units(row?.total ?? '0'), requests: requestCount(row?.requests) });
      }),
    );
  }
  return { cycles, entries };
}

/** Workspaces ranked by their use in their own cycle (current, previous, or containing a date): one cycle item each. */
export async function topWorkspaces(query: z.infer<typeof workspaceTopQuerySchema>, deps: { subjects: SubjectStore; rollups: RollupReader; clock: { now(): Date }; usageTypes: readonly string[] }) {
  const usageType = pickUsageType(query.usageType, deps.usageTypes);
  const now = deps.clock.now();
  // Accounts count their workspaces' credits again: ranked apart (…/usage/top of the account), not among workspaces.
  const subjects = (await deps.subjects.list()).filter((s) => s.kind !== 'account');
  const { cycles, entries } = await ownCycleEntries(subjects, query.cycle, usageType, now, deps.rollups);
  const total = entries.reduce((sum, e) => sum + e.amount, 0n);
  // The cursor belongs to the cycles `cycle` named when the first page was read: after a rollover it is refused.
  const resolved = createHash('sha256')
    .update(
      [...cycles.values()]
        .map((c) => c.start)
        .sort()
        .join('|'),
    )
    .digest('base64url')
    .slice(0, 16);
  const page = rankPage(entries, total, query.limit, query.cursor, `workspace|${usageType}|${query.cycle}|${resolved}`);
  const names = new Map(subjects.map((s) => [s.id, s.name]));
  return {
    by: query.by,
    usageType,
    cycle: query.cycle,
    totalAmount: toAmount(total),
    entries: page.entries.map((e) => {
      const cycle = cycles.get(e.id) as Cycle;
      const name = names.get(e.id);
      return { ...e, ...(name ? { name } : {}), cycleStart: cycle.start, cycleEnd: cycle.end };
    }),
    nextCursor: page.nextCursor,
  };
}

/**
 * One page of a ranking by amount (descending), then id. The cursor is the last entry's (amount, id):
 * the next page starts after it in the ranking as it is then, so an entry is never returned twice
 * while amounts only grow, and every entry whose amount did not change between pages is returned once.
 */
export function rankPage(all: readonly Ranked[], total: NanoUnits, limit: number, cursor: string | undefined, context: string): { entries: RankedEntry[]; nextCursor: string | null } {
  const ranked = all.filter((e) => e.amount > 0n).sort(byRank);
  let start = 0;
  if (cursor !== undefined) {
    const after = decodeCursor(cursor, context);
    start = ranked.findIndex((e) => byRank(e, after) > 0);
    if (start < 0) start = ranked.length;
  }
  const slice = ranked.slice(start, start + limit);
  const entries = slice.map((e, i) => ({ rank: start + i + 1, id: e.id, amount: toAmount(e.amount), share: total > 0n ? rounded(e.amount, total, 4) : 0, requests: e.requests ?? 0 }));
  const last = slice.at(-1);
  const more = start + limit < ranked.length;
  return { entries, nextCursor: more && last ? encodeCursor(last, context) : null };
}

function byRank(a: Ranked, b: Ranked): number {
  if (a.amount !== b.amount) return a.amount > b.amount ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function encodeCursor(entry: Ranked, context: string): string {
  return Buffer.from(JSON.stringify({ a: entry.amount.toString(), i: entry.id, c: context })).toString('base64url');
}

function decodeCursor(cursor: string, context: string): Ranked {
  const invalid = new InvalidRequestError('invalid_cursor', 'cursor: not a cursor of this ranking (pass nextCursor back with the same parameters)');
  if (cursor.length > MAX_CURSOR_CHARS) throw invalid;
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  const parsed = z.object({ a: z.string().regex(/^-?\d+$/), i: z.string(), c: z.literal(context) }).safeParse(raw);
  if (!parsed.success) throw invalid;
  return { amount: BigInt(parsed.data.a), id: parsed.data.i };
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function knownSubject(id: string, subjects: SubjectDirectory): Promise<Subject> {
  const subject = (await subjects.getMany([id])).get(id);
  if (!subject) throw new NotFoundError('unknown_workspace', `workspace "${id}" does not exist`);
  return subject;
}

function pickUsageType(requested: string | undefined, configured: readonly string[]): string {
  if (requested === undefined) return configured[0] ?? '';
  if (!configured.includes(requested)) throw new InvalidRequestError('unknown_usage_type', `usage type "${requested}" is not configured`);
  return requested;
}

/** numerator ÷ denominator rounded half up to `decimals` places (non-negative inputs), as a number. */
function rounded(numerator: bigint, denominator: bigint, decimals = 2): number {
  if (denominator === 0n) return 0;
  const scale = 10n ** BigInt(decimals);
  const scaled = (numerator * scale * 2n + denominator) / (denominator * 2n);
  return Number(scaled) / Number(scale);
}

/** 'h#2026-11-24T10' → ['h', '2026-11-24T10']; 'ch#2026-11-24T10#api' → ['ch', '2026-11-24T10', 'api']. */
function splitCounter(counter: string): [string, string, string | undefined] {
  const first = counter.indexOf('#');
  const second = counter.indexOf('#', first + 1);
  const prefix = counter.slice(0, first);
  if (second < 0) return [prefix, counter.slice(first + 1), undefined];
  return [prefix, counter.slice(first + 1, second), counter.slice(second + 1)];
}

function bucketIndex(bounds: readonly { start: string; end: string }[], instant: string): number | undefined {
  const index = bounds.findIndex((b) => b.start <= instant && instant < b.end);
  return index < 0 ? undefined : index;
}

const iso = (ms: number) => new Date(ms).toISOString();

function addDays(date: string, days: number): string {
  return new Date(Date.parse(`${date}T00:00:00.000Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

function dateDiff(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00.000Z`) - Date.parse(`${from}T00:00:00.000Z`)) / DAY_MS);
}
