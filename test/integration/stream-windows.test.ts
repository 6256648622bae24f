import { CreateTableCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { type _Record, DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-dynamodb-streams';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { sleep } from '../../local/sqs-poller';
import { LOCAL_CREDENTIALS, type StandIn, startDynamoDbLocal } from '../../local/stand-ins';
import { type StreamEvent, StreamPoller, type StreamResponse } from '../../local/stream-poller';

/**
 * The local stream poller against DynamoDB Local's own stream, with a tumbling window, checked
 * against what AWS documents: a batch never spans two windows, a record's window is that of the
 * time it entered the stream, aligned on multiples of the window's length, each window ends with
 * one final invoke without records, and the state the function returns comes back within its
 * window and starts afresh in the next. The test controls time: each item carries the instant it
 * stands for (DynamoDB Local stamps records to the minute only), and the poller's clock is held
 * still, so batches close only when full, at a window's edge, or when the test moves the clock. The
 * expected windows are worked out here from the stream records as read straight from DynamoDB Local.
 */

const REGION = 'us-east-1';
const WINDOW_SECONDS = 60;
/** A fixed instant: the test's times, whatever the day it runs. */
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const WINDOW_MS = WINDOW_SECONDS * 1000;

let dynamo: StandIn;
let client: DynamoDBClient;
let streams: DynamoDBStreamsClient;

beforeAll(async () => {
  dynamo = await startDynamoDbLocal({ region: REGION });
  const config = { region: REGION, endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS };
  client = new DynamoDBClient(config);
  streams = new DynamoDBStreamsClient(config);
});

afterAll(async () => {
  client?.destroy();
  streams?.destroy();
  await dynamo?.stop();
});

async function tableWithStream(name: string): Promise<string> {
  const { TableDescription } = await client.send(
    new CreateTableCommand({
      TableName: name,
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
      StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' },
    }),
  );
  const arn = TableDescription?.LatestStreamArn;
  if (!arn) throw new Error('DynamoDB Local created the table without a stream');
  return arn;
}

/** Puts one item per instant (ms after T0), in order; each item carries its instant as `t`. */
async function writeAt(table: string, offsets: readonly number[]): Promise<void> {
  for (const [n, offset] of offsets.entries()) {
    await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: `item-${String(n).padStart(4, '0')}` }, t: { N: String(T0 + offset) } } }));
  }
}

/** `count` instants, a second apart, from `second` seconds after T0. */
const seconds = (second: number, count: number) => Array.from({ length: count }, (_, i) => (second + i) * 1000);

const recordTime = (record: _Record) => Number(record.dynamodb?.NewImage?.t?.N);

/** Every record of the stream, in order, read without the poller. */
async function streamRecords(streamArn: string): Promise<_Record[]> {
  const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn }));
  const records: _Record[] = [];
  for (const shard of StreamDescription?.Shards ?? []) {
    const { ShardIterator } = await streams.send(new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }));
    let iterator = ShardIterator;
    for (;;) {
      if (!iterator) break;
      const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
      records.push(...(page.Records ?? []));
      if ((page.Records ?? []).length === 0) break;
      iterator = page.NextShardIterator;
    }
  }
  return records;
}

const windowOf = (record: _Record) => Math.floor(recordTime(record) / WINDOW_MS) * WINDOW_MS;

async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Moves the clock a window at a time until the condition holds: batching windows expire, windows end. */
async function untilWithClock(clock: { ms: number }, condition: () => boolean, what: string): Promise<void> {
  await until(() => {
    clock.ms += WINDOW_MS;
    return condition();
  }, what);
}

interface Harness {
  poller: StreamPoller;
  invokes: StreamEvent[];
  /** The clock the poller reads; it moves only when the test moves it. */
  clock: { ms: number };
}

function windowedPoller(streamArn: string, batchSize: number, respond: (event: StreamEvent) => StreamResponse): Harness {
  const invokes: StreamEvent[] = [];
  const clock = { ms: T0 };
  const poller = new StreamPoller({
    streams,
    streamArn,
    batchSize,
    maxBatchingWindowMs: 60_000,
    tumblingWindowSeconds: WINDOW_SECONDS,
    now: () => clock.ms,
    recordTime,
    invoke: async (event) => {
      invokes.push(structuredClone(event));
      return respond(event);
    },
    onError: () => undefined,
  });
  return { poller, invokes, clock };
}

/** Counts records into the state: `{ records }` grows within a window. */
const counting = (event: StreamEvent): StreamResponse => ({ batchItemFailures: [], state: { records: String(Number(event.state?.records ?? 0) + event.Records.length) } });

describe('tumbling windows', () => {
  test('batches end at window edges, each window ends with one final invoke, and state is carried within a window only', async () => {
    // Arrange: 7 items in the first minute, 5 in the second, none in the third, 4 in the fourth.
    const table = 'windows-edges';
    const streamArn = await tableWithStream(table);
    await writeAt(table, [...seconds(5, 7), ...seconds(60, 5), ...seconds(185, 4)]);
    const truth = await streamRecords(streamArn);
    const expectedWindows = [...new Set(truth.map(windowOf))];
    expect(expectedWindows).toEqual([T0, T0 + WINDOW_MS, T0 + 3 * WINDOW_MS]);
    const perWindow = new Map(expectedWindows.map((w) => [w, truth.filter((r) => windowOf(r) === w).map((r) => r.dynamodb?.SequenceNumber)]));
    const batchSize = 3;
    const { poller, invokes, clock } = windowedPoller(streamArn, batchSize, counting);

    // Act: with the clock held, every window but the last is ended by the records of the next.
    poller.start();
    const last = expectedWindows.at(-1) as number;
    const finals = () => invokes.filter((e) => e.isFinalInvokeForWindow);
    await until(
      () =>
        finals().length === expectedWindows.length - 1 &&
        invokes.filter((e) => e.Records.length > 0 && Date.parse(e.window?.start ?? '') === last).length === Math.floor((perWindow.get(last)?.length ?? 0) / batchSize),
      'every full batch of every window',
    );
    const beforeTheClockMoved = invokes.length;
    // The last window's remainder waits for its batching window, and its end for the clock.
    await untilWithClock(clock, () => finals().length === expectedWindows.length, 'the last window to end');
    await poller.stop();

    // Assert: the invokes, window by window, in stream order.
    expect(beforeTheClockMoved).toBeLessThan(invokes.length);
    const delivered = invokes.flatMap((e) => e.Records.map((r) => r.dynamodb?.SequenceNumber));
    expect(delivered).toEqual(truth.map((r) => r.dynamodb?.SequenceNumber));
    let at = 0;
    for (const window of expectedWindows) {
      const sequence = perWindow.get(window) ?? [];
      const batches = Math.ceil(sequence.length / batchSize);
      const ofWindow = invokes.slice(at, at + batches + 1);
      at += batches + 1;
      let seen = 0;
      for (const [i, event] of ofWindow.entries()) {
        expect(event.window).toEqual({ start: new Date(window).toISOString(), end: new Date(window + WINDOW_MS).toISOString() });
        expect(event.shardId).toEqual(expect.any(String));
        expect(event.eventSourceARN).toBe(streamArn);
        expect(event.isWindowTerminatedEarly).toBe(false);
        // The state is what the previous invoke of the same window returned; a window starts from {}.
        expect(event.state).toEqual(i === 0 ? {} : { records: String(seen) });
        if (i < batches) {
          expect(event.isFinalInvokeForWindow).toBe(false);
          expect(event.Records.map((r) => r.dynamodb?.SequenceNumber)).toEqual(sequence.slice(i * batchSize, (i + 1) * batchSize));
          seen += event.Records.length;
        } else {
          expect(event.isFinalInvokeForWindow).toBe(true);
          expect(event.Records).toEqual([]);
          expect(event.state).toEqual({ records: String(sequence.length) });
        }
      }
    }
    expect(at).toBe(invokes.length);
  });

  test('a failed final invoke is retried before the next window starts; a response without state is a failure', async () => {
    // Arrange: the first final invoke throws, the second answers without state, the third succeeds.
    const table = 'windows-final-retry';
    const streamArn = await tableWithStream(table);
    await writeAt(table, [...seconds(0, 4), ...seconds(70, 3), ...seconds(150, 2)]);
    const truth = await streamRecords(streamArn);
    const windows = [...new Set(truth.map(windowOf))];
    let finalAttempts = 0;
    const { poller, invokes, clock } = windowedPoller(streamArn, 10_000, (event) => {
      if (event.isFinalInvokeForWindow && Date.parse(event.window?.start ?? '') === windows[0]) {
        finalAttempts += 1;
        if (finalAttempts === 1) throw new Error('injected: the final invoke fails');
        if (finalAttempts === 2) return { batchItemFailures: [] };
      }
      return counting(event);
    });

    // Act
    poller.start();
    await until(() => invokes.some((e) => e.Records.length > 0 && Date.parse(e.window?.start ?? '') === windows[1]), 'the second window to start');
    await untilWithClock(clock, () => invokes.filter((e) => e.isFinalInvokeForWindow).length === windows.length + 2, 'every window to end');
    await poller.stop();

    // Assert: three attempts of the first window's final invoke, all with its full state, then the next window from {}.
    const first = truth.filter((r) => windowOf(r) === windows[0]).length;
    const kinds = invokes.map((e) => `${Date.parse(e.window?.start ?? '') - (windows[0] as number)}:${e.isFinalInvokeForWindow ? 'final' : e.Records.length}`);
    expect(kinds.slice(0, 4)).toEqual([`0:${first}`, '0:final', '0:final', '0:final']);
    for (const event of invokes.slice(1, 4)) expect(event.state).toEqual({ records: String(first) });
    expect(invokes[4]?.state).toEqual({});
    expect(invokes[4]?.Records.length).toBeGreaterThan(0);
  });

  test('a state past 1 MB ends the window early, and the same window goes on with a fresh state', async () => {
    // Arrange: the first batch answers with a state of 1 MB and more.
    const table = 'windows-early-end';
    const streamArn = await tableWithStream(table);
    await writeAt(table, seconds(10, 4));
    const truth = await streamRecords(streamArn);
    expect(new Set(truth.map(windowOf)).size).toBe(1);
    let answered = 0;
    const { poller, invokes, clock } = windowedPoller(streamArn, 2, (event) =>
      (answered += 1) === 1 ? { batchItemFailures: [], state: { records: String(event.Records.length), padding: 'x'.repeat(1024 * 1024) } } : counting(event),
    );

    // Act
    poller.start();
    await until(() => invokes.filter((e) => e.Records.length > 0).length >= 2, 'both batches');
    await untilWithClock(clock, () => invokes.filter((e) => e.isFinalInvokeForWindow && !e.isWindowTerminatedEarly).length >= 1, 'the window to end');
    await poller.stop();

    // Assert: two records, the early end with their state, then the same window afresh, then its end.
    const window = { start: new Date(windowOf(truth[0] as _Record)).toISOString(), end: new Date(windowOf(truth[0] as _Record) + WINDOW_MS).toISOString() };
    expect(invokes).toHaveLength(4);
    expect(invokes.map((e) => e.window)).toEqual([window, window, window, window]);
    expect(invokes.map((e) => [e.Records.length, e.isFinalInvokeForWindow, e.isWindowTerminatedEarly])).toEqual([
      [2, false, false],
      [0, true, true],
      [2, false, false],
      [0, true, false],
    ]);
    expect(invokes[1]?.state?.records).toBe('2');
    expect(invokes[2]?.state).toEqual({});
    expect(invokes[3]?.state).toEqual({ records: '2' });
  });

  test('without a tumbling window the event is a plain stream event', async () => {
    // Arrange
    const table = 'no-window';
    const streamArn = await tableWithStream(table);
    await client.send(new PutItemCommand({ TableName: table, Item: { pk: { S: 'only' } } }));
    const invokes: StreamEvent[] = [];
    const poller = new StreamPoller({
      streams,
      streamArn,
      batchSize: 10,
      maxBatchingWindowMs: 0,
      tumblingWindowSeconds: 0,
      invoke: async (event) => {
        invokes.push(event);
        return { batchItemFailures: [] };
      },
      onError: () => undefined,
    });

    // Act
    poller.start();
    await until(() => invokes.length > 0, 'the record');
    await poller.stop();

    // Assert
    expect(Object.keys(invokes[0] ?? {})).toEqual(['Records']);
    expect(invokes[0]?.Records[0]?.dynamodb?.Keys).toEqual({ pk: { S: 'only' } });
  });

  test("by default a record's window is that of its stream timestamp, DynamoDB's ApproximateCreationDateTime", async () => {
    // Arrange
    const table = 'windows-stamps';
    const streamArn = await tableWithStream(table);
    await writeAt(table, seconds(0, 3));
    const truth = await streamRecords(streamArn);
    const stampWindow = new Map(truth.map((r) => [r.dynamodb?.SequenceNumber, Math.floor((r.dynamodb?.ApproximateCreationDateTime?.getTime() ?? Number.NaN) / WINDOW_MS) * WINDOW_MS]));
    const invokes: StreamEvent[] = [];
    const poller = new StreamPoller({
      streams,
      streamArn,
      batchSize: 10,
      maxBatchingWindowMs: 0,
      tumblingWindowSeconds: WINDOW_SECONDS,
      invoke: async (event) => {
        invokes.push(event);
        return { batchItemFailures: [], state: {} };
      },
      onError: () => undefined,
    });

    // Act
    poller.start();
    await until(() => invokes.reduce((n, e) => n + e.Records.length, 0) === truth.length, 'every record');
    await poller.stop();

    // Assert: each batch's window is that of its records' stamps.
    for (const event of invokes.filter((e) => e.Records.length > 0)) {
      for (const record of event.Records) expect(event.window?.start).toBe(new Date(stampWindow.get(record.dynamodb?.SequenceNumber) ?? Number.NaN).toISOString());
    }
  });
});
