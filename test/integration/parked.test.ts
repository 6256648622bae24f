import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoLedger } from '../../functions/adapters/ledger-store';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { replayParked } from '../../functions/core/metering/replay';
import { DEFAULT_BREAKDOWNS, type LedgerChange, type LedgerImage } from '../../functions/core/metering/rollups';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { GroundTruth, type TestEvent, utcCycleStart } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';

/**
 * A record DynamoDB refuses on its own never stalls its shard: the aggregate narrows the refused chunk to
 * it, parks it with its reason and ledger images, moves the checkpoint past it and applies every other
 * record once; `replay --from parked` applies it once the cause is fixed, exactly once however often it
 * runs. On DynamoDB Local through the real adapter, and end to end on the local stack.
 */

const CYCLE = '2026-03-01T00:00:00.000Z';
const HOUR_MS = 3_600_000;

let stack: LocalStack;
let raw: DynamoDBClient;
let documents: DynamoDBDocumentClient;
let rollups: DynamoRollups;
let client: StackClient;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/config.json', onError: () => undefined });
  raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
  documents = createDocumentClient(raw);
  rollups = new DynamoRollups(documents, stack.tables.rollups);
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  raw?.destroy();
  await stack?.stop();
});

function image(subject: string, i: number, fields: Partial<LedgerImage> = {}): LedgerImage {
  const day = `2026-03-${String(1 + (i % 5)).padStart(2, '0')}`;
  return { eventKey: JSON.stringify(['//parked', `${subject}-${i}`]), subject, usageType: 'tokens', quantity: String(i + 1), hour: `${day}T07`, day, cycleStart: CYCLE, ...fields };
}

const insert = (sequence: number, newImage: LedgerImage): LedgerChange => ({ sequenceNumber: String(sequence), newImage });

async function dayTotals(subject: string): Promise<Record<string, string>> {
  const rows = await rollups.query(subject, 'day', '2026-03-01', '2026-03-31');
  return Object.fromEntries(rows.map((r) => [r.period, r.total]));
}

function expectedDayTotals(images: readonly LedgerImage[]): Record<string, string> {
  const out: Record<string, bigint> = {};
  for (const i of images) out[i.day] = (out[i.day] ?? 0n) + BigInt(i.quantity);
  return Object.fromEntries(Object.entries(out).map(([day, total]) => [day, String(total)]));
}

/** A document client that refuses, as DynamoDB does for an expression over its limit, every transaction updating `subject`'s rollups until fixed. */
function refusingFor(subject: string, real: DynamoDBDocumentClient): { client: DynamoDBDocumentClient; fixed: () => void } {
  let refusing = true;
  // Every write that would store the subject's counts: its items' updates, in a transaction or alone (an admission),
  // and its deltas waiting in a lane item (core/metering/pending.ts).
  const touches = (entry: { Update?: { Key?: Record<string, unknown> }; Put?: { Item?: Record<string, unknown> } } | undefined) =>
    entry?.Update?.Key?.pk === subject || String(entry?.Put?.Item?.pending ?? '').includes(`"${subject}"`);
  const send = (command: unknown) => {
    const refused =
      (command instanceof TransactWriteCommand && (command.input.TransactItems ?? []).some(touches)) ||
      (command instanceof UpdateCommand && touches({ Update: { Key: command.input.Key } })) ||
      (command instanceof PutCommand && touches({ Put: { Item: command.input.Item } }));
    if (refusing && refused) {
      return Promise.reject(Object.assign(new Error('Invalid UpdateExpression: Expression size has exceeded the maximum allowed size'), { name: 'ValidationException' }));
    }
    return real.send(command as TransactWriteCommand);
  };
  return { client: { send } as unknown as DynamoDBDocumentClient, fixed: () => (refusing = false) };
}

describe('on DynamoDB Local', () => {
  test('a record refused for good (its user id makes a sort key over 1,024 bytes) is parked; the rest of its chunk counts once, also on retry', async () => {
    // Arrange: 40 records of one tenant and, in the middle of the same chunk, one another tenant's record cannot store.
    const fine = Array.from({ length: 40 }, (_, i) => image('ws_fine', i));
    const poisoned = image('ws_poisoned', 0, { userId: 'u'.repeat(1_500) });
    const batch = [...fine.slice(0, 20).map((img, i) => insert(1_000 + i, img)), insert(1_020, poisoned), ...fine.slice(20).map((img, i) => insert(1_021 + i, img))];

    // Act
    const first = await aggregateChanges('shard-poisoned', batch, { rollups });
    const retry = await aggregateChanges('shard-poisoned', batch, { rollups });

    // Assert
    expect(first.failedSequenceNumber).toBeUndefined();
    expect(first.parked).toEqual([{ sequenceNumber: '1020', subject: 'ws_poisoned', reason: expect.stringContaining('range primary key values must be under 1024 bytes') }]);
    expect(await dayTotals('ws_fine')).toEqual(expectedDayTotals(fine));
    expect(await dayTotals('ws_poisoned')).toEqual({});
    expect([retry.skipped, retry.parked, retry.failedSequenceNumber]).toEqual([batch.length, [], undefined]);
    const parked = await rollups.parked('ws_poisoned');
    expect(parked.map((p) => [p.shardId, p.sequenceNumber, p.change])).toEqual([['shard-poisoned', '1020', batch[20]]]);

    // A replay while the cause remains leaves it parked and counts nothing.
    const replay = await replayParked({ subject: 'ws_poisoned' }, { dryRun: false }, { parked: rollups, rollups, breakdowns: DEFAULT_BREAKDOWNS });
    expect([replay.replayed, replay.skipped, replay.items[0]?.detail]).toEqual([0, 1, expect.stringContaining('still refused')]);
    expect(await rollups.parked('ws_poisoned')).toHaveLength(1);
  }, 60_000);

  test('once the cause is fixed, replay --from parked counts the record once, however often it runs', async () => {
    // Arrange: DynamoDB refuses every write of ws_flaky until fixed.
    const refusing = refusingFor('ws_flaky', documents);
    const flakyRollups = new DynamoRollups(refusing.client, stack.tables.rollups);
    const steady = Array.from({ length: 10 }, (_, i) => image('ws_steady', i));
    const flaky = [image('ws_flaky', 0, { channel: 'api' }), image('ws_flaky', 1, { userId: 'ana' })];
    const batch = [insert(2_000, flaky[0] as LedgerImage), ...steady.map((img, i) => insert(2_001 + i, img)), insert(2_011, flaky[1] as LedgerImage)];
    const parkedResult = await aggregateChanges('shard-flaky', batch, { rollups: flakyRollups });
    expect(parkedResult.parked.map((p) => p.sequenceNumber)).toEqual(['2000', '2011']);
    expect(await dayTotals('ws_steady')).toEqual(expectedDayTotals(steady));
    expect(await dayTotals('ws_flaky')).toEqual({});

    // Act: fixed; replayed twice (the second finds nothing), and the batch retried by Lambda once more.
    refusing.fixed();
    const deps = { parked: rollups, rollups, breakdowns: DEFAULT_BREAKDOWNS };
    const replays = [await replayParked({ subject: 'ws_flaky' }, { dryRun: false }, deps), await replayParked({ subject: 'ws_flaky' }, { dryRun: false }, deps)];
    const retry = await aggregateChanges('shard-flaky', batch, { rollups });

    // Assert
    expect(replays.map((r) => r.replayed)).toEqual([2, 0]);
    expect(await dayTotals('ws_flaky')).toEqual(expectedDayTotals(flaky));
    const [cycle] = await rollups.query('ws_flaky', 'cycle', CYCLE, CYCLE);
    expect(cycle?.counters['c#api']).toBe(flaky[0]?.quantity);
    expect((await rollups.members('ws_flaky', 'user', CYCLE, 'tokens')).map((m) => [m.member, m.total])).toEqual([['ana', flaky[1]?.quantity]]);
    expect(await dayTotals('ws_steady')).toEqual(expectedDayTotals(steady));
    expect([retry.skipped, retry.parked]).toEqual([batch.length, []]);
    expect(await rollups.parked('ws_flaky')).toEqual([]);
  }, 60_000);
});

test('end to end: a hand-edited ledger item the rollups cannot store is parked, while another tenant on the stream keeps counting in the same window', async () => {
  // Arrange: a ledger item written around validation (a 1,500-byte user id), and good events through SQS.
  const now = stack.clock.now().getTime();
  const time = new Date(Math.floor(now / HOUR_MS) * HOUR_MS - HOUR_MS);
  const iso = time.toISOString();
  const ledger = new DynamoLedger(raw, stack.tables.ledger);
  await ledger.putAll([
    {
      source: '//parked/hand-edit',
      id: 'edit-1',
      type: 'com.example.usage',
      subject: 'ws_c15',
      time: iso,
      usageType: 'tokens',
      quantity: '5',
      dimensions: { userId: 'u'.repeat(1_500) },
      hour: iso.slice(0, 13),
      day: iso.slice(0, 10),
      cycleStart: utcCycleStart(time, 15).toISOString(),
      sentAt: iso,
      expiresAt: Math.floor(now / 1000) + 86_400,
    },
  ]);
  const truth = new GroundTruth({ ws_b01: 1 });
  const events: TestEvent[] = Array.from({ length: 30 }, (_, i) =>
    usageEvent({ id: `steady-${i}`, source: '//parked/steady', subject: 'ws_b01', time: new Date(time.getTime() + (i % 50) * 60_000), quantity: i + 1 }),
  );
  events.forEach((e) => truth.accept(e));

  // Act
  await client.send(events.map((e) => JSON.stringify(e)));
  await stack.settle();

  // Assert
  expect(await client.buckets('ws_b01', 'hour', new Date(time.getTime() - HOUR_MS), new Date(time.getTime() + 2 * HOUR_MS))).toEqual(truth.buckets('ws_b01', 'hour'));
  const parked = await rollups.parked('ws_c15');
  expect(parked.map((p) => [p.change.newImage?.eventKey, p.reason])).toEqual([[JSON.stringify(['//parked/hand-edit', 'edit-1']), expect.stringContaining('ValidationError')]]);
  expect(await client.buckets('ws_c15', 'hour', new Date(time.getTime() - HOUR_MS), new Date(time.getTime() + 2 * HOUR_MS))).toEqual([]);
}, 120_000);
