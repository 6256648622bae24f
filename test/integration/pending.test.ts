import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { PENDING_LIMITS } from '../../functions/core/metering/pending';
import { checkpointLaneOf, type LedgerChange } from '../../functions/core/metering/rollups';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, startDynamoDbLocal } from '../../local/stand-ins';

/**
 * Deltas that wait in their lane's item (core/metering/pending.ts), on the real adapter and DynamoDB Local: what a
 * sparse batch writes, what readers see before and after the fold, a close, two invocations of one shard, and
 * checkpoints kept before lane items existed. Every expected count is worked out here from the records sent.
 */

let dynamo: Awaited<ReturnType<typeof startDynamoDbLocal>>;
let raw: DynamoDBClient;
let table: string;
const documents = () => createDocumentClient(raw);
const CYCLE = '2026-03-01T00:00:00.000Z';

beforeAll(async () => {
  dynamo = await startDynamoDbLocal({ region: 'us-east-1' });
  raw = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS });
  table = (await createTables(raw)).names.rollups;
});

afterAll(async () => {
  raw?.destroy();
  await dynamo?.stop();
});

/** Writes the client sends, by command, counted from its middleware: what a commit costs in requests. */
function countWrites(client: DynamoDBClient): Map<string, number> {
  const counts = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = String(context.commandName);
      if (/Put|Update|Transact|Delete/.test(name)) counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: `countWrites${Math.random()}` },
  );
  return counts;
}

function record(sequence: number, subject: string, quantity: number, hour = '2026-03-04T05'): LedgerChange {
  return {
    sequenceNumber: String(sequence),
    newImage: { eventKey: JSON.stringify(['test', `${subject}-${sequence}`]), subject, usageType: 'tokens', quantity: String(quantity), hour, day: hour.slice(0, 10), cycleStart: CYCLE },
  };
}

/** Workspaces that share one lane, found by hashing here. */
function sameLane(prefix: string, count: number): string[] {
  const ids = Array.from({ length: 2000 }, (_, i) => `${prefix}_${i}`);
  const lane = checkpointLaneOf(ids[0] as string);
  return ids.filter((id) => checkpointLaneOf(id) === lane).slice(0, count);
}

const sum = (records: readonly LedgerChange[], subject: string) => records.filter((r) => r.newImage?.subject === subject).reduce((total, r) => total + Number(r.newImage?.quantity), 0);

async function stored(subject: string, sk: string): Promise<Record<string, unknown> | undefined> {
  return (await documents().send(new GetCommand({ TableName: table, Key: { pk: subject, sk }, ConsistentRead: true }))).Item;
}

test('a sparse batch of one lane is one plain put of its lane item; readers see every delta; a fold moves them into the items unchanged', async () => {
  // Arrange: 3 workspaces of one lane, 2 events each.
  const subjects = sameLane('ws_pend', 3);
  const batch = subjects.flatMap((subject, i) => [record(100 + 2 * i, subject, i + 1), record(101 + 2 * i, subject, 10 * (i + 1), '2026-03-04T06')]);
  const client = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS });
  const writes = countWrites(client);
  const rollups = new DynamoRollups(createDocumentClient(client), table);

  // Act
  const result = await aggregateChanges('shard-pend', batch, { rollups });

  // Assert: one PutItem, no transaction; no day or cycle item stored yet; readers see the totals and hours.
  expect(result).toMatchObject({ applied: 6, chunks: 1 });
  expect(Object.fromEntries(writes)).toEqual({ PutItemCommand: 1 });
  for (const [i, subject] of subjects.entries()) {
    expect(await stored(subject, 'D#2026-03-04#tokens')).toBeUndefined();
    const [day] = await rollups.query(subject, 'day', '2026-03-04', '2026-03-04');
    expect(day).toMatchObject({
      total: String(sum(batch, subject)),
      requests: '2',
      counters: { 'h#2026-03-04T05': String(i + 1), 'h#2026-03-04T06': String(10 * (i + 1)), 'r#2026-03-04T05': '1', 'r#2026-03-04T06': '1' },
    });
    const cycle = (await rollups.cycleItems([{ subject, cycleStart: CYCLE, usageType: 'tokens' }])).values().next().value;
    expect(cycle).toMatchObject({ total: String(sum(batch, subject)), requests: '2', counters: { 'd#2026-03-04': String(sum(batch, subject)) } });
  }

  // Act: the next batch of the lane, with every delta due (a store that lets none wait longer).
  const folding = new DynamoRollups(createDocumentClient(client), table, undefined, undefined, { ...PENDING_LIMITS, maxPendingSeconds: 0 });
  const next = [record(200, subjects[0] as string, 7)];
  await aggregateChanges('shard-pend', next, { rollups: folding });

  // Assert: one transaction folded everything; the items hold the totals, and the readers still show them once.
  expect(writes.get('TransactWriteItemsCommand')).toBe(1);
  const all = [...batch, ...next];
  for (const subject of subjects) {
    expect(Number((await stored(subject, 'D#2026-03-04#tokens'))?.total)).toBe(sum(all, subject));
    expect(Number((await stored(subject, `C#${CYCLE}#tokens`))?.total)).toBe(sum(all, subject));
    const [day] = await rollups.query(subject, 'day', '2026-03-04', '2026-03-04');
    expect(Number(day?.total)).toBe(sum(all, subject));
  }
  const lane = await stored(`lane#${checkpointLaneOf(subjects[0] as string)}`, 'lane');
  expect(JSON.parse(String(lane?.pending)).d).toEqual([]);
  client.destroy();
});

test('a close folds what waited into the cycle as applied before it; a later event of the closed cycle never waits and counts as late', async () => {
  // Arrange: one workspace's 3 events wait in its lane.
  const [subject] = sameLane('ws_close', 1) as [string];
  const rollups = new DynamoRollups(createDocumentClient(raw), table);
  const before = [record(300, subject, 2), record(301, subject, 3), record(302, subject, 4)];
  await aggregateChanges('shard-close', before, { rollups });
  expect(await stored(subject, `C#${CYCLE}#tokens`)).toBeUndefined();

  // Act: the cycle closes; then a late event arrives (the aggregate learns the close from the refused commit).
  await rollups.closeCycle(subject, CYCLE, ['tokens'], '2026-04-01T01:00:00.000Z');
  const late = [record(303, subject, 5)];
  const result = await aggregateChanges('shard-close', late, { rollups: new DynamoRollups(createDocumentClient(raw), table) });

  // Assert: the close holds the 9 applied before it, not as late; the late event adds 5 to the total and to `late`.
  expect(result.failedSequenceNumber).toBeUndefined();
  const cycle = await stored(subject, `C#${CYCLE}#tokens`);
  expect([Number(cycle?.total), Number(cycle?.late), typeof cycle?.closedAt]).toEqual([14, 5, 'string']);
  const [read] = await rollups.query(subject, 'cycle', CYCLE, CYCLE);
  expect([read?.total, read?.late]).toEqual(['14', '5']);
  const changes = await rollups.lateChanges(subject, CYCLE, CYCLE);
  expect(changes.map((c) => [c.eventKey, c.delta])).toEqual([[JSON.stringify(['test', `${subject}-303`]), '5']]);
  const lane = await stored(`lane#${checkpointLaneOf(subject)}`, 'lane');
  expect(lane?.closedThrough).toBe(CYCLE);
});

test('two invocations of one shard, each with the lane as it read it, apply every record once', async () => {
  // Arrange: two stores (two processes) read the lane; the batch is delivered to both.
  const subjects = sameLane('ws_twice', 2);
  const batch = subjects.flatMap((subject, i) => [record(400 + 2 * i, subject, 1), record(401 + 2 * i, subject, 2)]);
  const first = new DynamoRollups(createDocumentClient(raw), table);
  const second = new DynamoRollups(createDocumentClient(raw), table);
  const lane = checkpointLaneOf(subjects[0] as string);
  await Promise.all([first.readCheckpoints('shard-twice', [lane]), second.readCheckpoints('shard-twice', [lane])]);

  // Act: both apply the batch, at once, then once more each.
  await Promise.all([aggregateChanges('shard-twice', batch, { rollups: first }), aggregateChanges('shard-twice', batch, { rollups: second })]);
  const again = await aggregateChanges('shard-twice', batch, { rollups: second });

  // Assert
  expect(again).toMatchObject({ applied: 0, skipped: 4 });
  for (const subject of subjects) {
    const [day] = await first.query(subject, 'day', '2026-03-04', '2026-03-04');
    expect([day?.total, day?.requests]).toEqual(['3', '2']);
  }
});

test('a checkpoint kept before lane items (shard#id / owner#lane) still holds: records at or below it are skipped once', async () => {
  // Arrange: the shard's old checkpoint of the lane says record 501 was applied.
  const [subject] = sameLane('ws_legacy', 1) as [string];
  const lane = checkpointLaneOf(subject);
  await documents().send(new PutCommand({ TableName: table, Item: { pk: 'shard#shard-legacy', sk: `owner#${lane}`, sequenceNumber: '501'.padStart(40, '0') } }));
  const batch = [record(500, subject, 1), record(501, subject, 2), record(502, subject, 4)];

  // Act
  const result = await aggregateChanges('shard-legacy', batch, { rollups: new DynamoRollups(createDocumentClient(raw), table) });

  // Assert: only 502 counts, and the lane item now holds the shard's checkpoint.
  expect(result).toMatchObject({ applied: 1, skipped: 2 });
  const [day] = await new DynamoRollups(createDocumentClient(raw), table).query(subject, 'day', '2026-03-04', '2026-03-04');
  expect(day?.total).toBe('4');
  const stored = await documents().send(new GetCommand({ TableName: table, Key: { pk: `lane#${lane}`, sk: 'lane' }, ConsistentRead: true }));
  expect(String((stored.Item?.checkpoints as Record<string, string>)['shard-legacy']).split('|')[0]).toBe('502'.padStart(40, '0'));
});

test('a lane item keeps the checkpoint of a shard that wrote to it within 25 hours and drops an older one, so rolled shards do not pile up', async () => {
  // Arrange: a lane clock this test moves; shard-a commits, then shard-b 24 hours later, then shard-c 26 hours after shard-a.
  const [subject] = sameLane('ws_rolled', 1) as [string];
  const lane = checkpointLaneOf(subject);
  let now = Date.UTC(2026, 2, 4, 6);
  const laneClock = { now: () => new Date(now) };
  const rollups = () => new DynamoRollups(createDocumentClient(raw), table, undefined, undefined, PENDING_LIMITS, laneClock);
  const shardsKept = async () => Object.keys(((await stored(`lane#${lane}`, 'lane'))?.checkpoints as Record<string, string>) ?? {}).sort();

  // Act and assert
  await aggregateChanges('shard-a', [record(600, subject, 1)], { rollups: rollups() });
  now += 24 * 3_600_000;
  await aggregateChanges('shard-b', [record(601, subject, 1)], { rollups: rollups() });
  expect(await shardsKept()).toEqual(['shard-a', 'shard-b']);
  now += 2 * 3_600_000;
  await aggregateChanges('shard-c', [record(602, subject, 1)], { rollups: rollups() });
  expect(await shardsKept()).toEqual(['shard-b', 'shard-c']);
  // Nothing counted is lost with the checkpoint.
  const [day] = await rollups().query(subject, 'day', '2026-03-04', '2026-03-04');
  expect(day?.total).toBe('3');
});
