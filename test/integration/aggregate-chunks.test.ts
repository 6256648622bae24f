import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { checkpointLaneOf, type LedgerChange } from '../../functions/core/metering/rollups';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';

/**
 * A crash between two rollup transactions of one batch, on the real adapter and DynamoDB Local:
 * the retry (same batch, or a batch of another size starting elsewhere) applies each record once,
 * also when the batch interleaves many subjects and each transaction holds whole lanes.
 */

let stack: LocalStack;
let rollups: DynamoRollups;
let raw: DynamoDBClient;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/config.json', onError: () => undefined });
  raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
  rollups = new DynamoRollups(createDocumentClient(raw), stack.tables.rollups);
});

afterAll(async () => {
  raw?.destroy();
  await stack?.stop();
});

/** Records for one subject on many distinct days, so the batch needs several transactions. */
function changes(subject: string, count: number, firstSequence: number): LedgerChange[] {
  return Array.from({ length: count }, (_, i) => {
    const day = new Date(Date.UTC(2026, 0, 1) + i * 86_400_000).toISOString().slice(0, 10);
    return {
      sequenceNumber: String(firstSequence + i),
      newImage: {
        eventKey: JSON.stringify(['test', String(firstSequence + i)]),
        subject,
        usageType: 'tokens',
        quantity: String(i + 1),
        hour: `${day}T05`,
        day,
        cycleStart: `${day.slice(0, 8)}01T00:00:00.000Z`,
      },
    };
  });
}

async function dayTotals(subject: string): Promise<Map<string, number>> {
  const rows = await rollups.query(subject, 'day', '2025-12-01', '2027-01-01');
  return new Map(rows.map((r) => [r.period, Number(r.total)]));
}

function expectedDayTotals(records: LedgerChange[]): Map<string, number> {
  return new Map(records.map((r) => [r.newImage!.day, Number(r.newImage!.quantity)]));
}

class InjectedCrash extends Error {}

test('a crash between chunks, retried with the same batch, applies every record once', async () => {
  // Arrange: 150 day items + 5 cycle items + the checkpoint → two transactions of at most 100 items.
  const batch = changes('ws_crash_same', 150, 1000);
  const crashAfterFirstChunk = ({ index }: { index: number }) => {
    if (index === 0) throw new InjectedCrash('injected between chunk 1 and 2');
  };

  // Act
  await expect(aggregateChanges('shard-same', batch, { rollups, onChunk: crashAfterFirstChunk })).rejects.toThrow(InjectedCrash);
  const partial = await dayTotals('ws_crash_same');
  const retry = await aggregateChanges('shard-same', batch, { rollups });
  const again = await aggregateChanges('shard-same', batch, { rollups });

  // Assert
  expect(partial.size).toBeGreaterThan(0);
  expect(partial.size).toBeLessThan(150);
  expect(await dayTotals('ws_crash_same')).toEqual(expectedDayTotals(batch));
  expect(retry.skipped).toBe(partial.size);
  expect(again.applied).toBe(0);
});

test('a crash between chunks, retried with a differently sized batch, applies every record once', async () => {
  // Arrange
  const all = changes('ws_crash_resized', 200, 5000);
  const first = all.slice(0, 120);
  const crashAfterFirstChunk = ({ index }: { index: number }) => {
    if (index === 0) throw new InjectedCrash('injected after chunk 1');
  };

  // Act: the retry starts earlier than the crash point and carries 80 more records.
  await expect(aggregateChanges('shard-resized', first, { rollups, onChunk: crashAfterFirstChunk, maxItemsPerChunk: 37 })).rejects.toThrow(InjectedCrash);
  await aggregateChanges('shard-resized', all.slice(3), { rollups, maxItemsPerChunk: 61 });
  await aggregateChanges('shard-resized', all.slice(0, 3), { rollups });

  // Assert: the first three records were already applied, so the late re-delivery of them is skipped;
  // every day appears once with its own quantity.
  expect(await dayTotals('ws_crash_resized')).toEqual(expectedDayTotals(all));
});

test('chunks of one shard never affect the checkpoint of another', async () => {
  const records = changes('ws_two_shards', 10, 1);
  await aggregateChanges('shard-one', records, { rollups });
  await aggregateChanges('shard-two', records, { rollups });
  const doubled = new Map([...expectedDayTotals(records)].map(([day, q]) => [day, q * 2]));
  expect(await dayTotals('ws_two_shards')).toEqual(doubled);
});

/** Records round-robin over `subjects` subjects, all on one day: each subject needs its day and cycle items. */
function interleaved(prefix: string, subjects: number, count: number, firstSequence: number): LedgerChange[] {
  return Array.from({ length: count }, (_, i) => ({
    sequenceNumber: String(firstSequence + i),
    newImage: {
      eventKey: JSON.stringify(['test', `${prefix}-${i}`]),
      subject: `${prefix}_${i % subjects}`,
      usageType: 'tokens',
      quantity: String((i % 7) + 1),
      hour: '2026-03-04T05',
      day: '2026-03-04',
      cycleStart: '2026-03-01T00:00:00.000Z',
    },
  }));
}

/** Per subject, the sum of its records' quantities: what its day item must hold. */
function expectedSubjectTotals(records: LedgerChange[]): Map<string, number> {
  const totals = new Map<string, number>();
  for (const r of records) totals.set(r.newImage!.subject, (totals.get(r.newImage!.subject) ?? 0) + Number(r.newImage!.quantity));
  return totals;
}

async function subjectTotals(subjects: readonly string[]): Promise<Map<string, number>> {
  const totals = new Map<string, number>();
  for (const subject of subjects) {
    const [day] = await rollups.query(subject, 'day', '2026-03-04', '2026-03-04');
    if (day) totals.set(subject, Number(day.total));
  }
  return totals;
}

test('a batch interleaving 120 subjects is folded per lane, and a failed commit redelivered from the reported record completes it once', async () => {
  // Arrange: 1,200 records, 10 per subject; each subject takes 2 transaction items (day, cycle) and each lane
  // one checkpoint, so a transaction holds a few dozen whole subjects.
  const batch = interleaved('ws_mix', 120, 1200, 20_000);
  const subjects = [...new Set(batch.map((r) => r.newImage!.subject))];
  let commits = 0;
  const failThird = async () => {
    if (++commits === 3) throw new InjectedCrash('commit rejected');
  };
  const failing = new DynamoRollups(createDocumentClient(raw), stack.tables.rollups);
  const commit = failing.commitChunk.bind(failing);
  failing.commitChunk = async (shardId, chunk) => {
    await failThird();
    return commit(shardId, chunk);
  };

  // Act: the third transaction fails; Lambda redelivers from the record the batch reports, and later again the whole batch.
  const first = await aggregateChanges('shard-mix', batch, { rollups: failing });
  const failedAt = batch.findIndex((r) => r.sequenceNumber === first.failedSequenceNumber);
  const partial = await subjectTotals(subjects);
  const retry = await aggregateChanges('shard-mix', batch.slice(failedAt), { rollups });
  const again = await aggregateChanges('shard-mix', batch, { rollups });

  // Assert: two transactions of whole subjects, in whole buckets, committed before the failure, and nothing else.
  expect(first.error).toBeInstanceOf(InjectedCrash);
  expect(first.chunks).toBe(3);
  expect(partial.size).toBeGreaterThan(0);
  expect(partial.size).toBeLessThan(120);
  expect(first.applied).toBe(10 * partial.size);
  for (const [subject, total] of partial) expect(total).toBe(expectedSubjectTotals(batch).get(subject));
  for (const subject of subjects) {
    const sameLane = subjects.filter((other) => checkpointLaneOf(other) === checkpointLaneOf(subject));
    expect(sameLane.every((other) => partial.has(other))).toBe(partial.has(subject));
  }
  expect(failedAt).toBeGreaterThan(0);
  expect(retry.failedSequenceNumber).toBeUndefined();
  expect(retry.applied).toBe(1200 - first.applied);
  expect(await subjectTotals(subjects)).toEqual(expectedSubjectTotals(batch));
  expect(again).toMatchObject({ applied: 0, skipped: 1200, chunks: 0 });
});
