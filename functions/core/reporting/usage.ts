import { z } from 'zod';
import { parseQuery } from '../access/workspaces';
import { localDate, startOfLocalDay } from '../cycles';
import { InvalidRequestError, NotFoundError } from '../errors';
import { EARLIEST_INSTANT, KEY_RANGE_MESSAGE, LATEST_INSTANT, withinKeyRange } from '../instants';
import type { RollupReader, RollupRow } from '../metering/metering-ports';
import { requestCount } from '../metering/rollups';
import type { SubjectDirectory } from '../ports';
import { type Amount, toAmount, toNanoUnits } from '../quantity';

/**
 * Usage buckets of one subject from the rollups.
 * 1. Find the subject (its time zone decides where a day starts).
 * 2. Read the day or cycle items covering [from, to).
 * 3. Expand hour/day counters into buckets, keep those starting in [from, to), sort by start then usage type.
 */

const MAX_RANGE_DAYS = { hour: 93, day: 3660, cycle: 3660 } as const;

// Within the key range (core/instants.ts): the day either side a query reads keeps a four-digit year.
const instant = z.iso
  .datetime({ offset: true })
  .refine(withinKeyRange, KEY_RANGE_MESSAGE)
  .transform((s) => new Date(s))
  .describe(`RFC 3339 instant, from ${EARLIEST_INSTANT} to ${LATEST_INSTANT}`);

/** Strict: an unknown parameter is refused, named, rather than ignored. */
export const usageQuerySchema = z
  .strictObject({
    granularity: z.enum(['hour', 'day', 'cycle']),
    from: instant,
    to: instant,
    usageType: z.string().min(1).max(128).optional(),
  })
  .refine((q) => q.from < q.to, { message: '"from" must be before "to"', path: ['to'] });

export type UsageQuery = z.infer<typeof usageQuerySchema>;

export interface UsageBucket {
  start: string;
  usageType: string;
  quantity: Amount;
  /** Events in the bucket (a correction is the same event). */
  requests: number;
}

export interface UsageResponse {
  subject: string;
  granularity: UsageQuery['granularity'];
  buckets: UsageBucket[];
}

export function parseUsageQuery(params: Record<string, string | undefined> | undefined): UsageQuery {
  const query = parseQuery(usageQuerySchema, params);
  const days = (query.to.getTime() - query.from.getTime()) / 86_400_000;
  if (days > MAX_RANGE_DAYS[query.granularity]) {
    throw new InvalidRequestError('range_too_large', `granularity=${query.granularity} allows at most ${MAX_RANGE_DAYS[query.granularity]} days between from and to`);
  }
  return query;
}

export async function queryUsage(subjectId: string, query: UsageQuery, deps: { subjects: SubjectDirectory; rollups: RollupReader }): Promise<UsageResponse> {
  const subject = (await deps.subjects.getMany([subjectId])).get(subjectId);
  if (!subject) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  const from = query.from.toISOString();
  const to = query.to.toISOString();
  const wanted = (row: RollupRow) => !query.usageType || row.usageType === query.usageType;
  // Summed by (start, usage type): in a zone with a half-hour offset, one UTC hour spans two local days.
  const sums = new Map<string, { start: string; usageType: string; units: bigint; requests: number }>();
  const push = (start: string, usageType: string, quantity: string | undefined, requests: string | undefined) => {
    if (start < from || start >= to) return;
    const key = `${start}|${usageType}`;
    const bucket = sums.get(key) ?? { start, usageType, units: 0n, requests: 0 };
    bucket.units += toNanoUnits(quantity ?? '0') ?? 0n;
    bucket.requests += requestCount(requests);
    sums.set(key, bucket);
  };

  if (query.granularity === 'cycle') {
    // A cycle item's period is its start instant; cycles are at most 31 days long.
    const rows = await deps.rollups.query(subject.id, 'cycle', from, to);
    for (const row of rows.filter(wanted)) push(row.period, row.usageType, row.total, row.requests);
  } else {
    // Day items are keyed by local date; widen by a day on each side for time-zone offsets.
    const firstDay = localDate(new Date(query.from.getTime() - 86_400_000), subject.timeZone);
    const lastDay = localDate(new Date(query.to.getTime() + 86_400_000), subject.timeZone);
    const rows = await deps.rollups.query(subject.id, 'day', firstDay, lastDay);
    for (const row of rows.filter(wanted)) {
      if (query.granularity === 'day') {
        push(startOfLocalDay(row.period, subject.timeZone), row.usageType, row.total, row.requests);
        continue;
      }
      for (const [counter, value] of Object.entries(row.counters)) {
        if (counter.startsWith('h#')) push(`${counter.slice(2)}:00:00.000Z`, row.usageType, value, undefined);
        else if (counter.startsWith('r#')) push(`${counter.slice(2)}:00:00.000Z`, row.usageType, undefined, value);
      }
    }
  }
  const buckets: UsageBucket[] = [...sums.values()]
    .filter((b) => b.units !== 0n || b.requests !== 0)
    .map((b) => ({ start: b.start, usageType: b.usageType, quantity: toAmount(b.units), requests: b.requests }));
  buckets.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.usageType < b.usageType ? -1 : a.usageType > b.usageType ? 1 : 0));
  return { subject: subject.id, granularity: query.granularity, buckets };
}
