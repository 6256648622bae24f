import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { type Granularity, GroundTruth, type TestEvent } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';

/**
 * The pipeline end to end on DynamoDB Local and the SQS stand-in, through the real handlers and
 * pollers: every hourly, daily and cycle bucket from the read API must equal an independent
 * ground truth after duplicates, corrections, out-of-order times, malformed input and crashes.
 */

const HOUR = 3_600_000;
const DAY = 86_400_000;
const NOW = suiteClockStart().getTime();
const ANCHORS = { ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29 };
const RANGE = { from: new Date(NOW - 400 * DAY), to: new Date(NOW + DAY) };

/** Faults the wrappers inject; each counter is consumed as faults fire. */
const faults = { ingestCrashAfterWrite: 0, aggregateCrashAfterCommit: 0, poisonMarker: '', injected: 0 };

let stack: LocalStack;
let client: StackClient;
const truth = new GroundTruth(ANCHORS);

beforeAll(async () => {
  stack = await startLocal({
    configPath: 'test/fixtures/config.json',
    clockStart: new Date(NOW),
    // Short, so redeliveries happen within the test, yet longer than a batch takes on a busy machine:
    // a batch that outlives it is received again and can reach the DLQ, as in Lambda.
    visibilityTimeoutSeconds: 8,
    onError: () => undefined,
    wrapIngest: (invoke) => async (event) => {
      const response = await invoke(event);
      if (faults.ingestCrashAfterWrite > 0) {
        faults.ingestCrashAfterWrite -= 1;
        faults.injected += 1;
        throw new Error('injected: crash after the ledger write, before the batch response');
      }
      const poisoned = event.Records.filter((r) => faults.poisonMarker && r.body.includes(faults.poisonMarker));
      return { batchItemFailures: [...response.batchItemFailures, ...poisoned.map((r) => ({ itemIdentifier: r.messageId }))] };
    },
    wrapAggregate: (invoke) => async (event) => {
      const response = await invoke(event);
      if (faults.aggregateCrashAfterCommit > 0 && event.Records.length > 0) {
        faults.aggregateCrashAfterCommit -= 1;
        faults.injected += 1;
        throw new Error('injected: crash after the rollup commit, before the response');
      }
      return response;
    },
  });
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

/** Instants on and around day and billing-cycle boundaries over the last months, in shuffled order. */
function boundaryInstants(): Date[] {
  const instants: Date[] = [];
  const now = new Date(NOW);
  for (let back = 1; back <= 5; back++) {
    const year = now.getUTCFullYear();
    const month = now.getUTCMonth() - back;
    const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    for (const day of new Set([1, 14, 15, 28, 29, 30, 31].map((d) => Math.min(d, lastDay)))) {
      const midnight = Date.UTC(year, month, day);
      instants.push(new Date(midnight), new Date(midnight - 1), new Date(midnight + 45_296_789));
    }
  }
  return instants.filter((t) => t.getTime() < NOW - DAY);
}

let sequence = 0;
function makeEvent(subject: string, time: Date, usageType: string, quantity: number): TestEvent {
  sequence += 1;
  return usageEvent({
    id: `evt-${sequence}`,
    source: sequence % 3 === 0 ? '//test/images' : '//test/chat',
    subject,
    time,
    usageType,
    quantity,
    channel: ['ui', 'api', 'cli'][sequence % 3] ?? 'ui',
    userId: `u${sequence % 7}`,
  });
}

function quantityFor(usageType: string, n: number): number {
  if (usageType === 'credits') return Number(((n % 17) + 0.125 * (n % 5) + 0.001).toFixed(3));
  if (usageType === 'images') return 1 + (n % 9);
  return 1 + ((n * 7919) % 5000);
}

/** Shuffles deterministically, so times arrive out of order. */
function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  let state = 7;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

async function expectRollupsToMatchTruth(): Promise<void> {
  await stack.settle();
  for (const subject of truth.subjects()) {
    for (const granularity of ['hour', 'day', 'cycle'] as Granularity[]) {
      const actual = await client.buckets(subject, granularity, RANGE.from, RANGE.to);
      expect({ subject, granularity, buckets: actual }).toEqual({ subject, granularity, buckets: truth.buckets(subject, granularity) });
    }
  }
}

const accepted: TestEvent[] = [];

describe('ingest and aggregate against DynamoDB Local and the SQS stand-in', () => {
  test('duplicates across and inside batches, arrays, out-of-order times and malformed messages', async () => {
    // Arrange
    let n = 0;
    for (const time of boundaryInstants()) {
      for (const subject of Object.keys(ANCHORS)) {
        for (const usageType of ['tokens', 'images', 'credits']) accepted.push(makeEvent(subject, time, usageType, quantityFor(usageType, n++)));
      }
    }
    const events = shuffle(accepted);
    events.forEach((e) => truth.accept(e));
    const bodies: string[] = [];
    for (let i = 0; i < events.length; ) {
      const size = i % 4 === 0 ? 1 + (i % 5) : 1;
      const group = events.slice(i, i + size);
      // Some arrays repeat an event inside the same message.
      if (size > 2 && group[0]) group.push(group[0]);
      bodies.push(JSON.stringify(group.length === 1 ? group[0] : group));
      i += size;
    }
    // Duplicates across batches, and the same body twice inside one SendMessageBatch.
    const resent = events.filter((_, i) => i % 6 === 0).map((e) => JSON.stringify(e));
    const doubled = events.slice(0, 5).flatMap((e) => [JSON.stringify(e), JSON.stringify(e)]);
    const good = events[0] as TestEvent;
    const bad = (marker: string, patch: Record<string, unknown>) => JSON.stringify({ ...good, id: marker, ...patch });
    const malformed: { body: string; reason: string; marker: string }[] = [
      { body: 'not json at all {', reason: 'not_json', marker: 'not json at all' },
      { body: bad('bad-negative', { data: { usageType: 'tokens', quantity: -3 } }), reason: 'invalid_quantity', marker: 'bad-negative' },
      { body: bad('bad-zero', { data: { usageType: 'tokens', quantity: 0 } }), reason: 'invalid_quantity', marker: 'bad-zero' },
      { body: bad('bad-fraction', { data: { usageType: 'tokens', quantity: 1.5 } }), reason: 'invalid_quantity', marker: 'bad-fraction' },
      { body: bad('bad-type', { data: { usageType: 'video', quantity: 1 } }), reason: 'unknown_usage_type', marker: 'bad-type' },
      { body: bad('bad-subject', { subject: 'ws_nobody' }), reason: 'unknown_subject', marker: 'bad-subject' },
      { body: JSON.stringify({ ...good, id: undefined, source: '//test/bad-missing-id' }), reason: 'missing_id', marker: 'bad-missing-id' },
      { body: bad('bad-future', { time: new Date(NOW + HOUR).toISOString() }), reason: 'future_time', marker: 'bad-future' },
      { body: bad('bad-old', { time: new Date(NOW - 500 * DAY).toISOString() }), reason: 'too_old', marker: 'bad-old' },
      { body: bad('bad-time', { time: 'yesterday' }), reason: 'invalid_time', marker: 'bad-time' },
      { body: bad('bad-version', { specversion: '0.3' }), reason: 'invalid_envelope', marker: 'bad-version' },
    ];
    // A message holding a good and a bad event: the good one counts, the bad one is quarantined.
    const mixedGood = makeEvent('ws_b01', new Date(NOW - 3 * DAY), 'tokens', 777);
    truth.accept(mixedGood);
    accepted.push(mixedGood);
    malformed.push({ body: JSON.stringify([mixedGood, { ...good, id: 'bad-in-array', data: { usageType: 'tokens', quantity: 'ten' } }]), reason: 'invalid_quantity', marker: 'bad-in-array' });
    const all = [...bodies, ...resent, ...doubled];
    malformed.forEach((m, i) => all.splice(Math.floor(((i + 1) * all.length) / (malformed.length + 1)), 0, m.body));

    // Act
    await client.send(all);

    // Assert
    await expectRollupsToMatchTruth();
    const quarantined = await client.quarantine();
    for (const m of malformed) {
      const found = quarantined.filter((q) => q.body.includes(m.marker));
      expect({ marker: m.marker, reasons: found.map((q) => q.reason) }).toEqual({ marker: m.marker, reasons: [m.reason] });
    }
    expect(quarantined).toHaveLength(malformed.length);
  });

  test('a correction replaces the earlier event, also across hour, day, cycle and subject', async () => {
    // Arrange: each move goes forward unless that would reach the last day before now; then it goes back.
    const corrections = accepted.slice(0, 40).map((event, i) => {
      const shift = [0, HOUR, DAY, 20 * DAY][i % 4]!;
      const time = Date.parse(event.time);
      const moved = new Date(time + shift < NOW - DAY ? time + shift : time - shift);
      const subject = i % 10 === 9 ? 'ws_c15' : event.subject;
      return { ...event, subject, time: moved.toISOString(), data: { ...event.data, quantity: event.data.usageType === 'credits' ? 0.5 : event.data.quantity + 100 } };
    });
    corrections.forEach((e) => truth.accept(e));

    // Act
    await client.send(corrections.map((e) => JSON.stringify(e)));

    // Assert
    await expectRollupsToMatchTruth();
  });

  test('a correction sent right behind its original, in the same burst, wins over it', async () => {
    // Arrange: originals and corrections go out back to back, so concurrent batches race.
    const originals = Array.from({ length: 120 }, (_, i) => makeEvent(Object.keys(ANCHORS)[i % 4]!, new Date(NOW - (i + 30) * HOUR), 'tokens', 1000 + i));
    const corrections = originals.map((e, i) => ({ ...e, time: new Date(Date.parse(e.time) - (i % 2) * DAY).toISOString(), data: { ...e.data, quantity: e.data.quantity + 1 } }));
    corrections.forEach((e) => truth.accept(e));
    accepted.push(...corrections);

    // Act
    await client.send(originals.map((e) => JSON.stringify(e)));
    await client.send(corrections.map((e) => JSON.stringify(e)));

    // Assert
    await expectRollupsToMatchTruth();
  });

  test('re-sending every event unchanged changes nothing', async () => {
    await client.send(accepted.slice(40).map((e) => JSON.stringify(e)));
    await expectRollupsToMatchTruth();
  });

  test('a crash after the ledger write and before the batch response is redelivered and counted once', async () => {
    // Arrange
    const events = Array.from({ length: 60 }, (_, i) => makeEvent(Object.keys(ANCHORS)[i % 4]!, new Date(NOW - (i + 2) * HOUR), 'tokens', 10 + i));
    events.forEach((e) => truth.accept(e));
    faults.ingestCrashAfterWrite = 2;
    const before = faults.injected;

    // Act
    await client.send(events.map((e) => JSON.stringify(e)));

    // Assert
    await expectRollupsToMatchTruth();
    expect(faults.injected - before).toBe(2);
  });

  test('a crash after the rollup commit and before the response is retried without counting twice', async () => {
    // Arrange
    const events = Array.from({ length: 80 }, (_, i) => makeEvent(Object.keys(ANCHORS)[i % 4]!, new Date(NOW - (i + 5) * 7_200_000), 'images', 1 + (i % 9)));
    events.forEach((e) => truth.accept(e));
    faults.aggregateCrashAfterCommit = 3;
    const before = faults.injected;

    // Act
    await client.send(events.map((e) => JSON.stringify(e)));

    // Assert
    await expectRollupsToMatchTruth();
    expect(faults.injected - before).toBe(3);
  });

  test('a message that keeps failing moves to the dead-letter queue after maxReceiveCount, and its batch proceeds', async () => {
    // Arrange
    const poison = makeEvent('ws_a31', new Date(NOW - 2 * DAY), 'tokens', 5);
    poison.data.userId = 'poison-pill';
    faults.poisonMarker = 'poison-pill';
    const neighbours = Array.from({ length: 9 }, (_, i) => makeEvent('ws_a31', new Date(NOW - 2 * DAY), 'tokens', 100 + i));
    neighbours.forEach((e) => truth.accept(e));
    // The poison event reaches the ledger on every attempt (its write succeeds; only its response fails).
    truth.accept(poison);

    // Act
    await client.send([JSON.stringify(poison), ...neighbours.map((e) => JSON.stringify(e))]);

    // Assert
    await expectRollupsToMatchTruth();
    const { Messages = [] } = await client.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.ready.sqs.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 2 }));
    faults.poisonMarker = '';
    expect(Messages.map((m) => (JSON.parse(m.Body ?? '{}') as TestEvent).id)).toEqual([poison.id]);
  });
});
