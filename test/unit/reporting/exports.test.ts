import { readFileSync } from 'node:fs';
import { describe, expect, test } from '@jest/globals';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Principal } from '../../../functions/core/access/api-keys';
import { ForbiddenError, InvalidRequestError, NotFoundError } from '../../../functions/core/errors';
import type { Subject } from '../../../functions/core/ports';
import {
  type ExportJob,
  type ExportRequest,
  type ExportStore,
  exportRequestSchema,
  exportView,
  jsonDocument,
  jsonLines,
  MAX_EXPORT_DAYS,
  requestExport,
  runExport,
  subjectBuckets,
} from '../../../functions/core/reporting/exports';
import type { ExportBucket } from '../../../functions/core/reporting/report-schema';
import type { FileWriter } from '../../../functions/core/reporting/reporting-ports';
import { caught } from '../../support/caught';
import { FixedClock, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';
import { dayRow } from '../../support/rollup-rows';

/**
 * Exports: the request schema, who may ask for and see which export, the buckets read from day items
 * (hand-built below), and the file a job writes. Expected buckets are written out by hand.
 */

const schemaDocument = JSON.parse(readFileSync(new URL('../../../schemas/usage-report.schema.json', import.meta.url), 'utf8')) as { $id: string };
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(schemaDocument);

function expectValid(definition: 'exportDocument' | 'exportHeaderLine' | 'exportBucket', value: unknown): void {
  const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/${definition}`) as ValidateFunction;
  const valid = validate(value);
  expect(valid ? 'valid' : ajv.errorsText(validate.errors)).toBe('valid');
}

/** An export store with the guarantees runExport relies on: a done job does not start again. */
class InMemoryExports implements ExportStore {
  readonly jobs = new Map<string, ExportJob>();

  async create(job: ExportJob): Promise<void> {
    if (this.jobs.has(job.id)) throw new Error(`job ${job.id} exists`);
    this.jobs.set(job.id, structuredClone(job));
  }

  async get(id: string): Promise<ExportJob | undefined> {
    const job = this.jobs.get(id);
    return job && structuredClone(job);
  }

  async start(id: string, at: string): Promise<boolean> {
    const job = this.jobs.get(id);
    if (!job || job.status === 'ready' || job.status === 'failed') return false;
    job.status = 'running';
    job.startedAt = at;
    return true;
  }

  async finish(id: string, result: Required<Pick<ExportJob, 'key' | 'bucketCount' | 'bytes' | 'completedAt'>>): Promise<void> {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    Object.assign(job, result, { status: 'ready' });
  }

  async fail(id: string, error: { code: string; message: string }, at: string): Promise<void> {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    Object.assign(job, { status: 'failed', error, completedAt: at });
  }
}

/** Files by key; `failAfter` chunks makes the write throw (a dropped upload). */
class InMemoryFiles implements FileWriter {
  readonly files = new Map<string, { contentType: string; body: string }>();
  writes = 0;

  constructor(private readonly failAfter?: number) {}

  async write(key: string, contentType: string, chunks: AsyncIterable<string>): Promise<{ bytes: number }> {
    this.writes += 1;
    let body = '';
    let count = 0;
    for await (const chunk of chunks) {
      if (this.failAfter !== undefined && count >= this.failAfter) throw new Error('disk full');
      body += chunk;
      count += 1;
    }
    this.files.set(key, { contentType, body });
    return { bytes: Buffer.byteLength(body, 'utf8') };
  }
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

const HOUR_MS = 3_600_000;

const utc: Subject = { id: 'ws_utc', plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] };
const ny: Subject = { id: 'ws_ny', plan: 'pro', billingAnchorDay: 1, timeZone: 'America/New_York', contacts: [] };

/**
 * ws_utc: Mar 1 tokens 6 (00h 1, 10h 3 = api 2 + ui 1, 11h 0, 23h 2), images 5 (10h, ui); Mar 2 tokens 5 (00h 4, 05h 1).
 * ws_ny (clocks go forward at 02:00 on Mar 8, a day of 23 hours: 05:00Z Mar 8 → 04:00Z Mar 9):
 * Mar 6 tokens 9; Mar 7 tokens 10 (api); Mar 8 tokens 12 (06Z 2 api, 20Z 5 = api 1 + ui 4, 02Z of Mar 9 5), images 3;
 * Mar 9 tokens 4 (04Z); Mar 10 tokens 0.
 * Requests (events; r# per hour, `requests` per item), unlike the use:
 * ws_utc Mar 1 tokens 7 (00h 2, 10h 1, 11h 0, 23h 4), images 2 (10h); Mar 2 tokens 4 (00h 1, 05h 3).
 * ws_ny Mar 6 tokens 2; Mar 7 tokens 3; Mar 8 tokens 9 (06Z 1, 20Z 2, 02Z of Mar 9 6), images 1; Mar 9 tokens 2; Mar 10 tokens 0.
 */
function rollups(): InMemoryRollupReader {
  return new InMemoryRollupReader()
    .add(
      'ws_utc',
      dayRow(
        '2026-03-01',
        'tokens',
        '6',
        {
          'h#2026-03-01T00': '1',
          'h#2026-03-01T10': '3',
          'h#2026-03-01T11': '0',
          'h#2026-03-01T23': '2',
          'r#2026-03-01T00': '2',
          'r#2026-03-01T10': '1',
          'r#2026-03-01T11': '0',
          'r#2026-03-01T23': '4',
          'ch#2026-03-01T10#api': '2',
          'ch#2026-03-01T10#ui': '1',
          'ch#2026-03-01T23#mcp': '0',
        },
        '7',
      ),
      dayRow('2026-03-01', 'images', '5', { 'h#2026-03-01T10': '5', 'r#2026-03-01T10': '2', 'ch#2026-03-01T10#ui': '5' }, '2'),
      dayRow('2026-03-02', 'tokens', '5', { 'h#2026-03-02T00': '4', 'h#2026-03-02T05': '1', 'r#2026-03-02T00': '1', 'r#2026-03-02T05': '3' }, '4'),
    )
    .add(
      'ws_ny',
      dayRow('2026-03-06', 'tokens', '9', { 'h#2026-03-06T15': '9', 'r#2026-03-06T15': '2' }, '2'),
      dayRow('2026-03-07', 'tokens', '10', { 'h#2026-03-07T15': '10', 'r#2026-03-07T15': '3', 'ch#2026-03-07T15#api': '10' }, '3'),
      dayRow(
        '2026-03-08',
        'tokens',
        '12',
        {
          'h#2026-03-08T06': '2',
          'h#2026-03-08T20': '5',
          'h#2026-03-09T02': '5',
          'r#2026-03-08T06': '1',
          'r#2026-03-08T20': '2',
          'r#2026-03-09T02': '6',
          'ch#2026-03-08T06#api': '2',
          'ch#2026-03-08T20#api': '1',
          'ch#2026-03-08T20#ui': '4',
        },
        '9',
      ),
      dayRow('2026-03-08', 'images', '3', { 'h#2026-03-08T12': '3', 'r#2026-03-08T12': '1' }, '1'),
      dayRow('2026-03-09', 'tokens', '4', { 'h#2026-03-09T04': '4', 'r#2026-03-09T04': '2' }, '2'),
      dayRow('2026-03-10', 'tokens', '0', { 'h#2026-03-10T04': '0', 'r#2026-03-10T04': '0' }, '0'),
    );
}

const hourBucket = (subject: string, usageType: string, start: string, quantity: string, requests: number, byChannel: Record<string, string> = {}): ExportBucket => ({
  subject,
  usageType,
  start,
  end: new Date(Date.parse(start) + HOUR_MS).toISOString(),
  day: null,
  quantity,
  requests,
  byChannel,
});

describe('exportRequestSchema', () => {
  test('a date means midnight UTC; format defaults to json; subjects are optional', () => {
    // Act
    const request = exportRequestSchema.parse({ from: '2026-03-01', to: '2026-03-02', granularity: 'day' });

    // Assert
    expect(request).toEqual({ from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z', granularity: 'day', format: 'json' });
  });

  test('an instant with an offset is normalized to UTC with milliseconds', () => {
    // Act
    const request = exportRequestSchema.parse({ from: '2026-03-01T10:30:00+02:00', to: '2026-03-01T23:00:00Z', granularity: 'hour', subjects: ['ws_a'], format: 'jsonl' });

    // Assert
    expect(request).toEqual({ from: '2026-03-01T08:30:00.000Z', to: '2026-03-01T23:00:00.000Z', granularity: 'hour', subjects: ['ws_a'], format: 'jsonl' });
  });

  test.each([
    ['to equal to from', { from: '2026-03-01', to: '2026-03-01T00:00:00Z' }],
    ['to before from', { from: '2026-03-02', to: '2026-03-01' }],
  ])('rejects %s, on `to`', (_label, range) => {
    // Act
    const result = exportRequestSchema.safeParse({ ...range, granularity: 'day' });

    // Assert
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => i.path)).toEqual([['to']]);
  });

  test(`the range may span ${MAX_EXPORT_DAYS} days, not a millisecond more`, () => {
    // Arrange: 2026-01-01 + 400 days = 2027-02-05 (365 days to 2027-01-01, then 35)
    expect(MAX_EXPORT_DAYS).toBe(400);

    // Act
    const longest = exportRequestSchema.safeParse({ from: '2026-01-01', to: '2027-02-05', granularity: 'day' });
    const tooLong = exportRequestSchema.safeParse({ from: '2026-01-01', to: '2027-02-05T00:00:00.001Z', granularity: 'day' });

    // Assert
    expect(longest.success).toBe(true);
    expect(tooLong.success).toBe(false);
    expect(tooLong.error?.issues[0]?.path).toEqual(['to']);
  });

  test('subjects: 1 to 1000 ids of 1 to 128 characters', () => {
    const request = (subjects: string[]) => exportRequestSchema.safeParse({ from: '2026-03-01', to: '2026-03-02', granularity: 'day', subjects }).success;

    expect(request(['ws_a'])).toBe(true);
    expect(request(Array.from({ length: 1000 }, (_, i) => `ws_${i}`))).toBe(true);
    expect(request([])).toBe(false);
    expect(request(Array.from({ length: 1001 }, (_, i) => `ws_${i}`))).toBe(false);
    expect(request([''])).toBe(false);
    expect(request(['x'.repeat(128)])).toBe(true);
    expect(request(['x'.repeat(129)])).toBe(false);
    expect(request(['ws_a', 'ws_b', 'ws_a'])).toBe(false);
  });

  test.each([
    ['an unknown key', { extra: true }],
    ['an unknown format', { format: 'csv' }],
    ['an unknown granularity', { granularity: 'week' }],
    ['a date that is not one', { from: '2026-02-30' }],
    ['an instant without offset', { from: '2026-03-01T00:00:00' }],
    ['a range in December 9999 (its days would pass year 9999)', { from: '9999-12-01', to: '9999-12-31' }],
    ['a to whose offset carries it into year 10000', { from: '9998-12-01', to: '9999-12-31T23:00:00-05:00' }],
    ['a from in year 0000', { from: '0000-12-01', to: '0001-01-01' }],
  ])('rejects %s', (_label, change) => {
    expect(exportRequestSchema.safeParse({ from: '2026-03-01', to: '2026-03-02', granularity: 'day', ...change }).success).toBe(false);
  });
});

describe('requestExport and exportView', () => {
  const wsA: Principal = { keyId: 'k_a', scope: 'workspace', subject: 'ws_a' };
  const wsB: Principal = { keyId: 'k_b', scope: 'workspace', subject: 'ws_b' };
  const finance: Principal = { keyId: 'k_f', scope: 'finance' };
  const request = (subjects?: string[]): ExportRequest => ({ from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z', granularity: 'day', format: 'json', ...(subjects ? { subjects } : {}) });

  function world() {
    const exports = new InMemoryExports();
    const subjects = new InMemorySubjectStore([
      { ...utc, id: 'ws_a' },
      { ...utc, id: 'ws_b' },
    ]);
    const clock = new FixedClock('2026-03-05T09:00:00.000Z');
    return { exports, deps: { exports, subjects, clock } };
  }

  test('a workspace key exports its own workspace, whether or not it names it', async () => {
    // Arrange
    const { exports, deps } = world();

    // Act
    const unnamed = await requestExport(request(), wsA, deps);
    const named = await requestExport(request(['ws_a']), wsA, deps);

    // Assert
    for (const created of [unnamed, named]) {
      expect(created.status).toBe('queued');
      expect(created.id).toMatch(/^exp_[0-9a-f]{24}$/);
      expect(exports.jobs.get(created.id)).toEqual({ id: created.id, status: 'queued', request: request(['ws_a']), requestedBy: wsA, createdAt: '2026-03-05T09:00:00.000Z' });
    }
    expect(unnamed.id).not.toBe(named.id);
  });

  test('a workspace key asking for another workspace is forbidden, and nothing is queued', async () => {
    // Arrange
    const { exports, deps } = world();

    // Act
    const error = await caught(() => requestExport(request(['ws_a', 'ws_b']), wsA, deps));

    // Assert
    expect(error).toBeInstanceOf(ForbiddenError);
    expect(error).toMatchObject({ code: 'forbidden_workspace' });
    expect(exports.jobs.size).toBe(0);
  });

  test('an unknown workspace is an invalid request, and nothing is queued', async () => {
    // Arrange
    const { exports, deps } = world();

    // Act
    const error = await caught(() => requestExport(request(['ws_a', 'ws_zz']), finance, deps));

    // Assert
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'unknown_workspace' });
    expect((error as Error).message).toContain('ws_zz');
    expect(exports.jobs.size).toBe(0);
  });

  test('a finance key may export any workspaces, or all of them', async () => {
    // Arrange
    const { exports, deps } = world();

    // Act
    const some = await requestExport(request(['ws_b', 'ws_a']), finance, deps);
    const all = await requestExport(request(), finance, deps);

    // Assert
    expect(exports.jobs.get(some.id)?.request.subjects).toEqual(['ws_b', 'ws_a']);
    expect(exports.jobs.get(all.id)?.request.subjects).toBeUndefined();
  });

  test('a workspace key does not see another workspace’s export, nor finance’s; finance sees both', async () => {
    // Arrange
    const { deps } = world();
    const ofA = await requestExport(request(), wsA, deps);
    const ofFinance = await requestExport(request(), finance, deps);
    const viewDeps = { exports: deps.exports, downloadUrl: async (job: ExportJob) => `https://files.example/${job.key ?? ''}` };

    // Act
    const byB = await caught(() => exportView(ofA.id, wsB, viewDeps));
    const financeByA = await caught(() => exportView(ofFinance.id, wsA, viewDeps));
    const unknown = await caught(() => exportView('exp_missing', finance, viewDeps));
    const byA = await exportView(ofA.id, wsA, viewDeps);
    const byFinance = await exportView(ofA.id, finance, viewDeps);

    // Assert
    for (const error of [byB, financeByA, unknown]) {
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error).toMatchObject({ code: 'unknown_export' });
    }
    const queued = { id: ofA.id, status: 'queued', request: request(['ws_a']), createdAt: '2026-03-05T09:00:00.000Z', completedAt: null, bucketCount: null, bytes: null, url: null, error: null };
    expect(byA).toEqual(queued);
    expect(byFinance).toEqual(queued);
  });

  test('a ready export has its download url', async () => {
    // Arrange
    const { exports, deps } = world();
    const { id } = await requestExport(request(), wsA, deps);
    await exports.finish(id, { key: `exports/${id}.json`, bucketCount: 3, bytes: 120, completedAt: '2026-03-05T09:01:00.000Z' });

    // Act
    const view = await exportView(id, wsA, { exports, downloadUrl: async (job) => `https://files.example/${job.key ?? ''}` });

    // Assert
    expect(view).toMatchObject({ status: 'ready', bucketCount: 3, bytes: 120, completedAt: '2026-03-05T09:01:00.000Z', url: `https://files.example/exports/${id}.json`, error: null });
  });
});

describe('subjectBuckets by hour', () => {
  test('UTC hours in [from, to), ordered by start then usage type, empty hours left out', async () => {
    // Act: 00h is before `from`, Mar 2 00h is `to` (exclusive); 11h and the mcp channel are zero
    const buckets = await collect(subjectBuckets(utc, { from: '2026-03-01T10:00:00.000Z', to: '2026-03-02T00:00:00.000Z', granularity: 'hour' }, rollups()));

    // Assert
    expect(buckets).toEqual([
      hourBucket('ws_utc', 'images', '2026-03-01T10:00:00.000Z', '5', 2, { ui: '5' }),
      hourBucket('ws_utc', 'tokens', '2026-03-01T10:00:00.000Z', '3', 1, { api: '2', ui: '1' }),
      hourBucket('ws_utc', 'tokens', '2026-03-01T23:00:00.000Z', '2', 4),
    ]);
    for (const bucket of buckets) expectValid('exportBucket', bucket);
  });

  test('the first hour of the range is in, the hour starting at `to` is out', async () => {
    // Act
    const buckets = await collect(subjectBuckets(utc, { from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T05:00:00.000Z', granularity: 'hour' }, rollups()));

    // Assert
    expect(buckets.map((b) => [b.start, b.usageType, b.quantity])).toEqual([
      ['2026-03-01T00:00:00.000Z', 'tokens', '1'],
      ['2026-03-01T10:00:00.000Z', 'images', '5'],
      ['2026-03-01T10:00:00.000Z', 'tokens', '3'],
      ['2026-03-01T23:00:00.000Z', 'tokens', '2'],
      ['2026-03-02T00:00:00.000Z', 'tokens', '4'],
    ]);
    expect(buckets.map((b) => b.requests)).toEqual([2, 2, 1, 4, 1]);
  });

  test('in New York, UTC hours of a local day that fall on the next UTC date are found', async () => {
    // Act: 00:00Z–05:00Z on Mar 9 is the evening of Mar 8 and the first hour of Mar 9 in New York
    const buckets = await collect(subjectBuckets(ny, { from: '2026-03-09T00:00:00.000Z', to: '2026-03-09T05:00:00.000Z', granularity: 'hour' }, rollups()));

    // Assert
    expect(buckets).toEqual([hourBucket('ws_ny', 'tokens', '2026-03-09T02:00:00.000Z', '5', 6), hourBucket('ws_ny', 'tokens', '2026-03-09T04:00:00.000Z', '4', 2)]);
  });
});

describe('subjectBuckets by hour in a zone with a half-hour offset', () => {
  test("a UTC hour split between two local days is one bucket with both days' counts and channels", async () => {
    // Arrange: Kolkata is UTC+05:30, so 18:00Z–19:00Z is 23:30 on Mar 1 and 00:30 on Mar 2 local time;
    // events at 18:10Z and 18:40Z land in different day items, both under h#2026-03-01T18 (and r#2026-03-01T18):
    // tokens 1 event on Mar 1 and 2 on Mar 2 in that hour, 3 more at 01Z on Mar 2; images 4 events.
    const kolkata: Subject = { id: 'ws_in', plan: 'pro', billingAnchorDay: 1, timeZone: 'Asia/Kolkata', contacts: [] };
    const reader = new InMemoryRollupReader().add(
      'ws_in',
      dayRow('2026-03-01', 'tokens', '2', { 'h#2026-03-01T18': '2', 'r#2026-03-01T18': '1', 'ch#2026-03-01T18#ui': '2' }, '1'),
      dayRow('2026-03-02', 'tokens', '4', { 'h#2026-03-01T18': '3', 'r#2026-03-01T18': '2', 'ch#2026-03-01T18#api': '3', 'h#2026-03-02T01': '1', 'r#2026-03-02T01': '3' }, '5'),
      dayRow('2026-03-02', 'images', '7', { 'h#2026-03-01T18': '7', 'r#2026-03-01T18': '4' }, '4'),
    );

    // Act
    const buckets = await collect(subjectBuckets(kolkata, { from: '2026-03-01T00:00:00.000Z', to: '2026-03-03T00:00:00.000Z', granularity: 'hour' }, reader));

    // Assert: 2 + 3 in one bucket with 1 + 2 requests, ordered by start then usage type
    expect(buckets).toEqual([
      hourBucket('ws_in', 'images', '2026-03-01T18:00:00.000Z', '7', 4),
      hourBucket('ws_in', 'tokens', '2026-03-01T18:00:00.000Z', '5', 3, { api: '3', ui: '2' }),
      hourBucket('ws_in', 'tokens', '2026-03-02T01:00:00.000Z', '1', 3),
    ]);
    for (const bucket of buckets) expectValid('exportBucket', bucket);
  });
});

describe('subjectBuckets by day', () => {
  test('UTC days: start and end at midnight UTC, channels summed over the day', async () => {
    // Act
    const buckets = await collect(subjectBuckets(utc, { from: '2026-03-01T00:00:00.000Z', to: '2026-03-02T00:00:00.000Z', granularity: 'day' }, rollups()));

    // Assert
    const day = { subject: 'ws_utc', start: '2026-03-01T00:00:00.000Z', end: '2026-03-02T00:00:00.000Z', day: '2026-03-01' };
    expect(buckets).toEqual([
      { ...day, usageType: 'images', quantity: '5', requests: 2, byChannel: { ui: '5' } },
      { ...day, usageType: 'tokens', quantity: '6', requests: 7, byChannel: { api: '2', ui: '1' } },
    ]);
  });

  test('New York days start at local midnight; the day clocks go forward has 23 hours', async () => {
    // Act: from = Mar 7 00:00 EST (inclusive), to = Mar 9 00:00 EDT (exclusive)
    const buckets = await collect(subjectBuckets(ny, { from: '2026-03-07T05:00:00.000Z', to: '2026-03-09T04:00:00.000Z', granularity: 'day' }, rollups()));

    // Assert
    const mar7 = { subject: 'ws_ny', start: '2026-03-07T05:00:00.000Z', end: '2026-03-08T05:00:00.000Z', day: '2026-03-07' };
    const mar8 = { subject: 'ws_ny', start: '2026-03-08T05:00:00.000Z', end: '2026-03-09T04:00:00.000Z', day: '2026-03-08' };
    expect(buckets).toEqual([
      { ...mar7, usageType: 'tokens', quantity: '10', requests: 3, byChannel: { api: '10' } },
      { ...mar8, usageType: 'images', quantity: '3', requests: 1, byChannel: {} },
      { ...mar8, usageType: 'tokens', quantity: '12', requests: 9, byChannel: { api: '3', ui: '4' } },
    ]);
    expect(Date.parse(mar7.end) - Date.parse(mar7.start)).toBe(24 * HOUR_MS);
    expect(Date.parse(mar8.end) - Date.parse(mar8.start)).toBe(23 * HOUR_MS);
    for (const bucket of buckets) expectValid('exportBucket', bucket);
  });

  test('a day whose local midnight is before `from` is left out; an empty day is left out', async () => {
    // Act: from is 07:00 on Mar 7 in New York; to is 00:00 EDT on Mar 11
    const buckets = await collect(subjectBuckets(ny, { from: '2026-03-07T12:00:00.000Z', to: '2026-03-11T04:00:00.000Z', granularity: 'day' }, rollups()));

    // Assert: Mar 8 and Mar 9 (04:00Z); Mar 10 holds 0
    expect(buckets.map((b) => [b.day, b.usageType, b.start, b.end, b.quantity])).toEqual([
      ['2026-03-08', 'images', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z', '3'],
      ['2026-03-08', 'tokens', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z', '12'],
      ['2026-03-09', 'tokens', '2026-03-09T04:00:00.000Z', '2026-03-10T04:00:00.000Z', '4'],
    ]);
    expect(buckets.map((b) => b.requests)).toEqual([1, 9, 2]);
  });

  test('a bucket of events that add up to no use is kept: its requests are not zero', async () => {
    // Arrange: two events of 0 credits at 05h on Mar 3 (a rule may price at 0): the store never writes a counter that
    // does not move, so the day item has r# 2 and no h# at all.
    const reader = new InMemoryRollupReader().add('ws_utc', dayRow('2026-03-03', 'tokens', '0', { 'r#2026-03-03T05': '2' }, '2'));
    const range = { from: '2026-03-03T00:00:00.000Z', to: '2026-03-04T00:00:00.000Z' };

    // Act
    const hours = await collect(subjectBuckets(utc, { ...range, granularity: 'hour' }, reader));
    const days = await collect(subjectBuckets(utc, { ...range, granularity: 'day' }, reader));

    // Assert
    expect(hours).toEqual([hourBucket('ws_utc', 'tokens', '2026-03-03T05:00:00.000Z', '0', 2)]);
    expect(days).toEqual([
      { subject: 'ws_utc', usageType: 'tokens', start: '2026-03-03T00:00:00.000Z', end: '2026-03-04T00:00:00.000Z', day: '2026-03-03', quantity: '0', requests: 2, byChannel: {} },
    ]);
    for (const bucket of [...hours, ...days]) expectValid('exportBucket', bucket);
  });
});

describe('subjectBuckets over more than 31 days', () => {
  // Every day from Jan 1 to Mar 14, 2026 (31 + 28 + 14 = 73 days), written by date arithmetic in the test.
  const days: string[] = [];
  for (const [month, last] of [
    ['01', 31],
    ['02', 28],
    ['03', 14],
  ] as const)
    for (let d = 1; d <= last; d++) days.push(`2026-${month}-${String(d).padStart(2, '0')}`);

  /** tokens 1 every day at 12h; images 2 every tenth day at 08h. Items written before they kept requests: no `requests`, no r#. */
  function longRollups(): InMemoryRollupReader {
    const reader = new InMemoryRollupReader();
    days.forEach((day, i) => {
      reader.add('ws_utc', dayRow(day, 'tokens', '1', { [`h#${day}T12`]: '1' }));
      if (i % 10 === 0) reader.add('ws_utc', dayRow(day, 'images', '2', { [`h#${day}T08`]: '2' }));
    });
    return reader;
  }

  test('day buckets: every day once, in order, read in windows that tile the range', async () => {
    // Arrange
    const reader = longRollups();

    // Act
    const buckets = await collect(subjectBuckets(utc, { from: '2026-01-01T00:00:00.000Z', to: '2026-03-15T00:00:00.000Z', granularity: 'day' }, reader));

    // Assert
    expect(days).toHaveLength(73);
    const expected = days.flatMap((day, i) => [...(i % 10 === 0 ? [[day, 'images', '2']] : []), [day, 'tokens', '1']]);
    expect(buckets.map((b) => [b.day, b.usageType, b.quantity])).toEqual(expected);
    expect(buckets).toHaveLength(73 + 8);
    expect(buckets.every((b) => b.requests === 0)).toBe(true); // no `requests` on the items: 0
    // The windows: contiguous, no overlap, none longer than 31 days, from Jan 1 to Mar 14
    const windows = reader.queries.map((q) => [q.fromPeriod, q.toPeriod] as const);
    expect(windows.length).toBeGreaterThan(1);
    expect(windows[0]?.[0]).toBe('2026-01-01');
    expect(windows.at(-1)?.[1]).toBe('2026-03-14');
    windows.forEach(([from, to], i) => {
      expect((Date.parse(to) - Date.parse(from)) / 86_400_000).toBeLessThanOrEqual(30);
      const previous = windows[i - 1];
      if (previous) expect(Date.parse(from) - Date.parse(previous[1])).toBe(86_400_000);
    });
  });

  test('hour buckets: every hour once, in order', async () => {
    // Act: from Jan 1 10:00 (so Jan 1 08h images is out) to Mar 14 12:00 (so Mar 14 12h tokens is out)
    const buckets = await collect(subjectBuckets(utc, { from: '2026-01-01T10:00:00.000Z', to: '2026-03-14T12:00:00.000Z', granularity: 'hour' }, longRollups()));

    // Assert
    const expected = days.flatMap((day, i) => [...(i % 10 === 0 && i > 0 ? [[`${day}T08:00:00.000Z`, 'images']] : []), ...(day < '2026-03-14' ? [[`${day}T12:00:00.000Z`, 'tokens']] : [])]);
    expect(buckets.map((b) => [b.start, b.usageType])).toEqual(expected);
    expect(new Set(buckets.map((b) => `${b.start}|${b.usageType}`)).size).toBe(buckets.length);
  });
});

describe('jsonDocument and jsonLines', () => {
  const header = {
    schemaVersion: 1,
    kind: 'usage-export',
    id: 'exp_0123',
    generatedAt: '2026-03-20T10:00:00.000Z',
    from: '2026-03-01T00:00:00.000Z',
    to: '2026-03-02T05:00:00.000Z',
    granularity: 'hour',
    subjects: ['ws_utc'],
  };
  const buckets = [
    hourBucket('ws_utc', 'tokens', '2026-03-01T00:00:00.000Z', '1', 2),
    hourBucket('ws_utc', 'images', '2026-03-01T10:00:00.000Z', '5', 3, { ui: '5' }),
    hourBucket('ws_utc', 'tokens', '2026-03-01T10:00:00.000Z', '0.000000001', 1, { api: '0.000000001' }),
  ];
  async function* stream(items: readonly ExportBucket[]): AsyncGenerator<ExportBucket> {
    yield* items;
  }

  test('jsonDocument is one JSON document: the header and its buckets', async () => {
    // Act
    const text = (await collect(jsonDocument(header, stream(buckets)))).join('');

    // Assert
    const document = JSON.parse(text) as unknown;
    expectValid('exportDocument', document);
    expect(document).toEqual({ ...header, buckets });
    expect(text.endsWith('\n')).toBe(true);
  });

  test('jsonDocument without buckets is still a valid document', async () => {
    // Act
    const text = (await collect(jsonDocument(header, stream([])))).join('');

    // Assert
    const document = JSON.parse(text) as unknown;
    expectValid('exportDocument', document);
    expect(document).toEqual({ ...header, buckets: [] });
  });

  test('jsonLines is the header line, then one bucket per line', async () => {
    // Act
    const text = (await collect(jsonLines(header, stream(buckets)))).join('');

    // Assert
    expect(text.endsWith('\n')).toBe(true);
    const lines = text
      .slice(0, -1)
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    expect(lines).toHaveLength(4);
    expectValid('exportHeaderLine', lines[0]);
    expect(lines[0]).toEqual(header);
    for (const line of lines.slice(1)) expectValid('exportBucket', line);
    expect(lines.slice(1)).toEqual(buckets);
  });

  test('the schema is not vacuous: a bucket with a float quantity or an extra key is invalid', () => {
    const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/exportBucket`) as ValidateFunction;
    const [bucket] = buckets;
    expect(validate(bucket)).toBe(true);
    expect(validate({ ...bucket, quantity: '1e3' })).toBe(false);
    expect(validate({ ...bucket, quantity: 5 })).toBe(false);
    expect(validate({ ...bucket, extra: 1 })).toBe(false);
  });

  test('the schema requires requests, a whole number of at least 0', () => {
    const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/exportBucket`) as ValidateFunction;
    const [bucket] = buckets;
    if (!bucket) throw new Error('no bucket');
    const { requests: _requests, ...withoutRequests } = bucket;
    expect(validate({ ...bucket, requests: 0 })).toBe(true);
    expect(validate(withoutRequests)).toBe(false);
    expect(validate({ ...bucket, requests: -1 })).toBe(false);
    expect(validate({ ...bucket, requests: 1.5 })).toBe(false);
    expect(validate({ ...bucket, requests: '2' })).toBe(false);
  });
});

describe('runExport', () => {
  const finance: Principal = { keyId: 'k_f', scope: 'finance' };
  const NOW = '2026-03-20T10:00:00.000Z';

  function world(files = new InMemoryFiles()) {
    const exports = new InMemoryExports();
    const subjects = new InMemorySubjectStore([utc, ny]);
    const clock = new FixedClock(NOW);
    return { exports, files, deps: { exports, subjects, rollups: rollups(), files, clock, prefix: 'exports/' } };
  }

  const job = (id: string, request: Partial<ExportRequest> = {}): ExportJob => ({
    id,
    status: 'queued',
    request: { from: '2026-03-01T00:00:00.000Z', to: '2026-03-10T00:00:00.000Z', granularity: 'day', subjects: ['ws_utc', 'ws_ny', 'ws_gone'], format: 'json', ...request },
    requestedBy: finance,
    createdAt: '2026-03-20T09:59:00.000Z',
  });

  /**
   * Mar 1 00:00Z – Mar 10 00:00Z by day, subjects in id order: ws_ny Mar 6 tokens, Mar 7 tokens, Mar 8 images and
   * tokens, Mar 9 tokens (04:00Z; Mar 10 starts at 04:00Z, after `to`); ws_utc Mar 1 images and tokens, Mar 2 tokens.
   */
  const expectedRows = [
    ['ws_ny', '2026-03-06', 'tokens', '9'],
    ['ws_ny', '2026-03-07', 'tokens', '10'],
    ['ws_ny', '2026-03-08', 'images', '3'],
    ['ws_ny', '2026-03-08', 'tokens', '12'],
    ['ws_ny', '2026-03-09', 'tokens', '4'],
    ['ws_utc', '2026-03-01', 'images', '5'],
    ['ws_utc', '2026-03-01', 'tokens', '6'],
    ['ws_utc', '2026-03-02', 'tokens', '5'],
  ];
  /** The same buckets' requests, from the items' `requests`. */
  const expectedRequests = [2, 3, 1, 9, 2, 2, 7, 4];

  test('a queued json job is written and becomes ready, counting the buckets in its file', async () => {
    // Arrange
    const { exports, files, deps } = world();
    await exports.create(job('exp_1'));

    // Act
    const done = await runExport('exp_1', deps);

    // Assert
    const file = files.files.get('exports/exp_1.json');
    if (!file) throw new Error('no file written');
    expect(file.contentType).toBe('application/json');
    const document = JSON.parse(file.body) as { subjects: string[]; buckets: ExportBucket[] };
    expectValid('exportDocument', document);
    expect(document).toMatchObject({ schemaVersion: 1, kind: 'usage-export', id: 'exp_1', generatedAt: NOW, from: '2026-03-01T00:00:00.000Z', to: '2026-03-10T00:00:00.000Z', granularity: 'day' });
    expect(document.subjects).toEqual(['ws_ny', 'ws_utc']); // the deleted workspace is left out
    expect(document.buckets.map((b) => [b.subject, b.day, b.usageType, b.quantity])).toEqual(expectedRows);
    expect(document.buckets.map((b) => b.requests)).toEqual(expectedRequests);
    expect(done).toEqual({
      ...job('exp_1'),
      status: 'ready',
      startedAt: NOW,
      completedAt: NOW,
      key: 'exports/exp_1.json',
      bucketCount: document.buckets.length,
      bytes: Buffer.byteLength(file.body, 'utf8'),
    });
    expect(done?.bucketCount).toBe(8);
  });

  test('a jsonl job writes the header line and one line per bucket', async () => {
    // Arrange
    const { exports, files, deps } = world();
    await exports.create(job('exp_2', { format: 'jsonl', subjects: ['ws_utc'] }));

    // Act
    const done = await runExport('exp_2', deps);

    // Assert
    const file = files.files.get('exports/exp_2.jsonl');
    if (!file) throw new Error('no file written');
    expect(file.contentType).toBe('application/x-ndjson');
    const lines = file.body
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as ExportBucket);
    expectValid('exportHeaderLine', lines[0]);
    for (const line of lines.slice(1)) expectValid('exportBucket', line);
    expect(lines.slice(1).map((b) => [b.subject, b.day, b.usageType, b.quantity])).toEqual(expectedRows.filter(([subject]) => subject === 'ws_utc'));
    expect(lines.slice(1).map((b) => b.requests)).toEqual(expectedRequests.slice(5)); // ws_utc's: the last three
    expect(done).toMatchObject({ status: 'ready', key: 'exports/exp_2.jsonl', bucketCount: lines.length - 1, bytes: Buffer.byteLength(file.body, 'utf8') });
  });

  test('without subjects, a job exports every workspace', async () => {
    // Arrange
    const { exports, files, deps } = world();
    const all = job('exp_3');
    delete all.request.subjects;
    await exports.create(all);

    // Act
    const done = await runExport('exp_3', deps);

    // Assert
    const document = JSON.parse(files.files.get('exports/exp_3.json')?.body ?? '') as { subjects: string[]; buckets: ExportBucket[] };
    expect(document.subjects).toEqual(['ws_ny', 'ws_utc']);
    expect(document.buckets).toHaveLength(8);
    expect(done?.bucketCount).toBe(8);
  });

  test('a failing file write marks the job failed with export_failed', async () => {
    // Arrange: the upload drops after the header
    const { exports, files, deps } = world(new InMemoryFiles(1));
    await exports.create(job('exp_4'));

    // Act
    const done = await runExport('exp_4', deps);

    // Assert
    expect(done).toEqual({ ...job('exp_4'), status: 'failed', startedAt: NOW, completedAt: NOW, error: { code: 'export_failed', message: 'disk full' } });
    expect(files.files.size).toBe(0);
  });

  test('past its deadline, a job stops before the next workspace and is marked failed with export_timeout', async () => {
    // Arrange: the function's time ran out a moment ago
    const { exports, files, deps } = world();
    await exports.create(job('exp_7'));

    // Act
    const done = await runExport('exp_7', { ...deps, deadline: Date.now() - 1 });

    // Assert: failed with the reason, no file left behind
    expect(done).toMatchObject({ status: 'failed', error: { code: 'export_timeout', message: expect.stringContaining('did not finish in time') } });
    expect(files.files.size).toBe(0);
  });

  test('a job already ready (or failed) is not run again', async () => {
    // Arrange
    const { exports, files, deps } = world();
    const ready: ExportJob = { ...job('exp_5'), status: 'ready', key: 'exports/exp_5.json', bucketCount: 2, bytes: 10, completedAt: '2026-03-20T09:00:00.000Z' };
    const failed: ExportJob = { ...job('exp_6'), status: 'failed', error: { code: 'export_failed', message: 'earlier' }, completedAt: '2026-03-20T09:00:00.000Z' };
    await exports.create(ready);
    await exports.create(failed);

    // Act
    const again = await runExport('exp_5', deps);
    const failedAgain = await runExport('exp_6', deps);
    const missing = await runExport('exp_missing', deps);

    // Assert
    expect(again).toEqual(ready);
    expect(failedAgain).toEqual(failed);
    expect(missing).toBeUndefined();
    expect(files.writes).toBe(0);
  });
});
