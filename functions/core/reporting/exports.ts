import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Principal } from '../access/api-keys';
import { units } from '../billing/balance';
import { localDate, startOfLocalDay } from '../cycles';
import { ForbiddenError, InvalidRequestError, NotFoundError } from '../errors';
import { EARLIEST_INSTANT, KEY_RANGE_MESSAGE, LATEST_INSTANT, withinKeyRange } from '../instants';
import type { RollupReader, RollupRow } from '../metering/metering-ports';
import { hourCounter, hourRequestsCounter, requestCount } from '../metering/rollups';
import type { Clock, Subject, SubjectStore } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import { type ExportBucket, REPORT_SCHEMA_VERSION } from './report-schema';
import type { FileWriter } from './reporting-ports';

/**
 * On-demand exports: usage per hour or per local day, for a time range and a set of workspaces,
 * written as one JSON document or as JSON lines. A request creates a job; the export function
 * streams the rollups into the file one subject and one month at a time, so memory stays flat
 * however many buckets the file holds.
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** The longest range one export covers (a billing year and a little more). */
export const MAX_EXPORT_DAYS = 400;
/** Day items read per query: one month of a subject, a few dozen items. */
const WINDOW_DAYS = 31;

const boundary = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()])
  .refine(withinKeyRange, KEY_RANGE_MESSAGE)
  .transform((value) => new Date(value.length === 10 ? `${value}T00:00:00.000Z` : value).toISOString())
  .describe(`RFC 3339 instant, or a date meaning 00:00 UTC, from ${EARLIEST_INSTANT} to ${LATEST_INSTANT}`);

export const exportRequestSchema = z
  .strictObject({
    from: boundary,
    to: boundary.describe('exclusive'),
    granularity: z.enum(['hour', 'day']),
    /** Workspaces to export; all of them when absent (finance and admin keys only). */
    subjects: z
      .array(z.string().min(1).max(128))
      .min(1)
      .max(1000)
      .refine((ids) => new Set(ids).size === ids.length, 'must not name a workspace twice')
      .optional(),
    format: z.enum(['json', 'jsonl']).default('json'),
  })
  .refine((r) => r.from < r.to, { message: 'must be after from', path: ['to'] })
  .refine((r) => Date.parse(r.to) - Date.parse(r.from) <= MAX_EXPORT_DAYS * DAY_MS, { message: `the range may span at most ${MAX_EXPORT_DAYS} days`, path: ['to'] });

export type ExportRequest = z.infer<typeof exportRequestSchema>;
export type ExportStatus = 'queued' | 'running' | 'ready' | 'failed';

export interface ExportJob {
  id: string;
  status: ExportStatus;
  request: ExportRequest;
  /** Who asked: a workspace key sees only its own workspace's exports. */
  requestedBy: Principal;
  createdAt: string;
  startedAt?: string;
  completedAt?: string;
  /** Where the file is, once ready. */
  key?: string;
  bucketCount?: number;
  bytes?: number;
  error?: { code: string; message: string };
}

export interface ExportStore {
  create(job: ExportJob): Promise<void>;
  get(id: string): Promise<ExportJob | undefined>;
  /** Moves a queued (or interrupted running) job to running; false if it is already done. */
  start(id: string, at: string): Promise<boolean>;
  finish(id: string, result: Required<Pick<ExportJob, 'key' | 'bucketCount' | 'bytes' | 'completedAt'>>): Promise<void>;
  fail(id: string, error: { code: string; message: string }, at: string): Promise<void>;
}

export async function requestExport(request: ExportRequest, principal: Principal, deps: { exports: ExportStore; subjects: SubjectStore; clock: Clock }): Promise<{ id: string; status: ExportStatus }> {
  if (principal.scope === 'workspace') {
    if (request.subjects && request.subjects.some((s) => s !== principal.subject)) throw new ForbiddenError('forbidden_workspace', 'this key may export only its own workspace');
    request = { ...request, subjects: [principal.subject ?? ''] };
  }
  for (const subject of request.subjects ?? []) {
    if (!(await deps.subjects.get(subject))) throw new InvalidRequestError('unknown_workspace', `workspace "${subject}" does not exist`);
  }
  const job: ExportJob = { id: `exp_${randomBytes(12).toString('hex')}`, status: 'queued', request, requestedBy: principal, createdAt: deps.clock.now().toISOString() };
  await deps.exports.create(job);
  return { id: job.id, status: job.status };
}

/** The job as its requester sees it; another workspace's job does not exist for a workspace key. */
export async function exportView(id: string, principal: Principal, deps: { exports: ExportStore; downloadUrl: (job: ExportJob) => Promise<string> }) {
  const job = await deps.exports.get(id);
  if (!job || (principal.scope === 'workspace' && job.requestedBy.subject !== principal.subject)) throw new NotFoundError('unknown_export', `export "${id}" does not exist`);
  return {
    id: job.id,
    status: job.status,
    request: job.request,
    createdAt: job.createdAt,
    completedAt: job.completedAt ?? null,
    bucketCount: job.bucketCount ?? null,
    bytes: job.bytes ?? null,
    url: job.status === 'ready' ? await deps.downloadUrl(job) : null,
    error: job.error ?? null,
  };
}

export const exportFileKey = (prefix: string, job: Pick<ExportJob, 'id' | 'request'>) => `${prefix}${job.id}.${job.request.format}`;

export interface ExportDeps {
  exports: ExportStore;
  subjects: SubjectStore;
  rollups: RollupReader;
  files: FileWriter;
  clock: Clock;
  /** Where export files go, e.g. `exports/`. */
  prefix: string;
  /** Wall-clock time (ms) by which the export must have stopped: past it, the job is marked failed, not left running. */
  deadline?: number;
}

/** The export ran out of the time its function has. */
export class ExportTimeoutError extends Error {
  override readonly name = 'ExportTimeoutError';
}

/** Runs one job: writes its file and marks it ready, or marks it failed with the reason. */
export async function runExport(id: string, deps: ExportDeps): Promise<ExportJob | undefined> {
  const job = await deps.exports.get(id);
  if (!job || !(await deps.exports.start(id, deps.clock.now().toISOString()))) return job;
  const generatedAt = deps.clock.now().toISOString();
  const subjects = job.request.subjects ? await Promise.all(job.request.subjects.map((s) => deps.subjects.get(s))) : await deps.subjects.list();
  const known = subjects.filter((s): s is Subject => s !== undefined).sort((a, b) => (a.id < b.id ? -1 : 1));
  let bucketCount = 0;
  const counted = async function* (): AsyncGenerator<ExportBucket> {
    for (const subject of known) {
      if (deps.deadline !== undefined && Date.now() > deps.deadline)
        throw new ExportTimeoutError(`the export did not finish in time (stopped before ${subject.id}); ask for a shorter range or fewer workspaces`);
      for await (const bucket of subjectBuckets(subject, job.request, deps.rollups)) {
        bucketCount += 1;
        yield bucket;
      }
    }
  };
  const header = {
    schemaVersion: REPORT_SCHEMA_VERSION,
    kind: 'usage-export' as const,
    id: job.id,
    generatedAt,
    from: job.request.from,
    to: job.request.to,
    granularity: job.request.granularity,
    subjects: known.map((s) => s.id),
  };
  const key = exportFileKey(deps.prefix, job);
  const format = job.request.format;
  try {
    const { bytes } = await deps.files.write(key, format === 'json' ? 'application/json' : 'application/x-ndjson', format === 'json' ? jsonDocument(header, counted()) : jsonLines(header, counted()));
    await deps.exports.finish(id, { key, bucketCount, bytes, completedAt: deps.clock.now().toISOString() });
  } catch (error) {
    const code = error instanceof ExportTimeoutError ? 'export_timeout' : 'export_failed';
    await deps.exports.fail(id, { code, message: (error as Error).message }, deps.clock.now().toISOString());
  }
  return deps.exports.get(id);
}

/** `{header…, "buckets": [ … ]}`, one bucket per line, built as it is written. */
export async function* jsonDocument(header: object, buckets: AsyncIterable<ExportBucket>): AsyncGenerator<string> {
  const head = JSON.stringify(header);
  yield `${head.slice(0, -1)},"buckets":[`;
  let first = true;
  for await (const bucket of buckets) {
    yield `${first ? '\n' : ',\n'}${JSON.stringify(bucket)}`;
    first = false;
  }
  yield '\n]}\n';
}

/** The header line, then one bucket per line. */
export async function* jsonLines(header: object, buckets: AsyncIterable<ExportBucket>): AsyncGenerator<string> {
  yield `${JSON.stringify(header)}\n`;
  for await (const bucket of buckets) yield `${JSON.stringify(bucket)}\n`;
}

/**
 * One subject's buckets in [from, to), in time order then usage type: hour buckets are UTC hours; day
 * buckets are the subject's local days whose first instant is in the range. Empty buckets are left out.
 * In a zone whose offset is not whole hours, one UTC hour straddles two local days and so has a counter
 * in both day items: a day's hour buckets are held back until the next day has been read, and merged.
 */
export async function* subjectBuckets(subject: Subject, request: Pick<ExportRequest, 'from' | 'to' | 'granularity'>, rollups: RollupReader): AsyncGenerator<ExportBucket> {
  // Local days that can hold a bucket of the range: the day containing `from` (its later hours) to the one containing `to`.
  const lastDay = localDate(new Date(Date.parse(request.to) - 1), subject.timeZone);
  let held = new Map<string, ExportBucket>();
  for (let day = localDate(request.from, subject.timeZone); day <= lastDay; day = addDays(day, WINDOW_DAYS)) {
    const windowEnd = minDay(addDays(day, WINDOW_DAYS - 1), lastDay);
    const rows = await rollups.query(subject.id, 'day', day, windowEnd);
    const byDay = new Map<string, RollupRow[]>();
    for (const row of rows) byDay.set(row.period, [...(byDay.get(row.period) ?? []), row]);
    for (const [period, dayRows] of [...byDay].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (request.granularity === 'day') {
        yield* inOrder(dayRows.flatMap((row) => dayBucket(subject, period, row, request)));
        continue;
      }
      const next = new Map<string, ExportBucket>();
      for (const bucket of dayRows.flatMap((row) => hourBuckets(subject, row, request))) {
        const key = `${bucket.start}|${bucket.usageType}`;
        const earlier = held.get(key);
        if (earlier) held.set(key, merged(earlier, bucket));
        else next.set(key, bucket);
      }
      // The next day's buckets of the straddling hour (or earlier) go out with this day's.
      const last = [...held.values()].reduce((max, b) => (b.start > max ? b.start : max), '');
      const now = [...next].filter(([, b]) => b.start <= last);
      for (const [key] of now) next.delete(key);
      yield* inOrder([...held.values(), ...now.map(([, b]) => b)]);
      held = next;
    }
  }
  yield* inOrder([...held.values()]);
}

function inOrder(buckets: ExportBucket[]): ExportBucket[] {
  return buckets.sort((a, b) => (a.start === b.start ? (a.usageType < b.usageType ? -1 : 1) : a.start < b.start ? -1 : 1));
}

/** One UTC hour's counts from two local days. */
function merged(a: ExportBucket, b: ExportBucket): ExportBucket {
  const byChannel = new Map<string, NanoUnits>();
  for (const part of [a.byChannel, b.byChannel]) for (const [channel, amount] of Object.entries(part)) byChannel.set(channel, (byChannel.get(channel) ?? 0n) + units(amount));
  return { ...a, quantity: toDecimalString(units(a.quantity) + units(b.quantity)), requests: a.requests + b.requests, byChannel: channels(byChannel) };
}

function dayBucket(subject: Subject, day: string, row: RollupRow, range: Pick<ExportRequest, 'from' | 'to'>): ExportBucket[] {
  const start = startOfLocalDay(day, subject.timeZone);
  const quantity = units(row.total);
  const requests = requestCount(row.requests);
  if (start < range.from || start >= range.to || (quantity === 0n && requests === 0)) return [];
  const byChannel = new Map<string, NanoUnits>();
  for (const [name, value] of Object.entries(row.counters)) {
    if (!name.startsWith('ch#')) continue;
    const channel = name.slice(name.indexOf('#', 3) + 1);
    byChannel.set(channel, (byChannel.get(channel) ?? 0n) + units(value));
  }
  return [
    {
      subject: subject.id,
      usageType: row.usageType,
      start,
      end: startOfLocalDay(addDays(day, 1), subject.timeZone),
      day,
      quantity: toDecimalString(quantity),
      requests,
      byChannel: channels(byChannel),
    },
  ];
}

function hourBuckets(subject: Subject, row: RollupRow, range: Pick<ExportRequest, 'from' | 'to'>): ExportBucket[] {
  const buckets: ExportBucket[] = [];
  // An hour of events priced at nothing (0 credits) has a requests counter and no use counter.
  const hours = new Set(Object.keys(row.counters).flatMap((name) => (name.startsWith('h#') || name.startsWith('r#') ? [name.slice(2)] : [])));
  for (const hour of hours) {
    const start = `${hour}:00:00.000Z`;
    const quantity = units(row.counters[hourCounter(hour)] ?? '0');
    const requests = requestCount(row.counters[hourRequestsCounter(hour)]);
    if (start < range.from || start >= range.to || (quantity === 0n && requests === 0)) continue;
    const byChannel = new Map<string, NanoUnits>();
    const prefix = `ch#${hour}#`;
    for (const [counter, amount] of Object.entries(row.counters)) if (counter.startsWith(prefix)) byChannel.set(counter.slice(prefix.length), units(amount));
    buckets.push({
      subject: subject.id,
      usageType: row.usageType,
      start,
      end: new Date(Date.parse(start) + HOUR_MS).toISOString(),
      day: null,
      quantity: toDecimalString(quantity),
      requests,
      byChannel: channels(byChannel),
    });
  }
  return buckets;
}

function channels(byChannel: ReadonlyMap<string, NanoUnits>): Record<string, string> {
  return Object.fromEntries(
    [...byChannel]
      .filter(([, amount]) => amount !== 0n)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([channel, amount]) => [channel, toDecimalString(amount)]),
  );
}

function addDays(day: string, days: number): string {
  return new Date(Date.parse(`${day}T00:00:00.000Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

const minDay = (a: string, b: string) => (a < b ? a : b);
