import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { BREAKDOWN_LIMITS, type BreakdownPolicy, type LedgerChange, type LedgerImage } from '../../functions/core/metering/rollups';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { GroundTruth, type TestEvent } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';

/**
 * Breakdowns are bounded, whatever the input: a cycle keeps its first 20 channels and 100 features apart
 * (priced features always) and counts the rest under "(other)"; no update grows past DynamoDB's 4 KB
 * expression or 400 KB item, so one workspace's distinct values never stall a shard, and totals stay exact.
 * On DynamoDB Local through the real adapter, and once through SQS on the local stack.
 */

const OTHER = '(other)';
const CYCLE = '2026-01-01T00:00:00.000Z';
const DAY = '2026-01-10';

let stack: LocalStack;
let rollups: DynamoRollups;
let raw: DynamoDBClient;
let client: StackClient;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/config.json', onError: () => undefined });
  raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
  rollups = new DynamoRollups(createDocumentClient(raw), stack.tables.rollups);
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  raw?.destroy();
  await stack?.stop();
});

const hourOf = (i: number) => `${DAY}T${String(i % 24).padStart(2, '0')}`;

function image(subject: string, i: number, fields: Partial<LedgerImage>): LedgerImage {
  return { eventKey: JSON.stringify(['//breakdowns', `${subject}-${i}`]), subject, usageType: 'tokens', quantity: String((i % 7) + 1), hour: hourOf(i), day: DAY, cycleStart: CYCLE, ...fields };
}

const insert = (sequence: number, newImage: LedgerImage): LedgerChange => ({ sequenceNumber: String(sequence), newImage });

/**
 * The documented rule, written out independently: in stream order, a value is kept apart if it is "(other)"
 * itself, priced, already kept, or one of the first `limit` others; everything else counts under "(other)".
 */
function expectedPlaces(values: readonly (string | undefined)[], limit: number, kept: ReadonlySet<string> = new Set()): Map<string, string> {
  const admitted = new Set<string>();
  const places = new Map<string, string>();
  for (const value of values) {
    if (value === undefined || places.has(value)) continue;
    if (value === OTHER || kept.has(value)) places.set(value, value);
    else if (admitted.size < limit) {
      admitted.add(value);
      places.set(value, value);
    } else places.set(value, OTHER);
  }
  return places;
}

/** Sums of quantity by `key(image)`, over every image that has one. */
function sums(images: readonly LedgerImage[], key: (image: LedgerImage) => string | undefined): Record<string, string> {
  const out = new Map<string, bigint>();
  for (const i of images) {
    const k = key(i);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0n) + BigInt(i.quantity));
  }
  return Object.fromEntries([...out].map(([k, v]) => [k, String(v)]));
}

/** How many images there are by `key(image)`, as decimal text. */
function counts(images: readonly LedgerImage[], key: (image: LedgerImage) => string): Record<string, string> {
  const out = new Map<string, number>();
  for (const i of images) out.set(key(i), (out.get(key(i)) ?? 0) + 1);
  return Object.fromEntries([...out].map(([k, v]) => [k, String(v)]));
}

const pick = (counters: Record<string, string>, prefix: string) => Object.fromEntries(Object.entries(counters).filter(([name]) => name.startsWith(prefix)));
const prefixed = (prefix: string, values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [`${prefix}${k}`, v]));

async function cycleRow(subject: string) {
  const [row] = await rollups.query(subject, 'cycle', CYCLE, CYCLE);
  if (!row) throw new Error(`no cycle item for ${subject}`);
  return row;
}

async function dayRow(subject: string) {
  const [row] = await rollups.query(subject, 'day', DAY, DAY);
  if (!row) throw new Error(`no day item for ${subject}`);
  return row;
}

/** Every counter of the cycle and day items equals the rule applied to the images, in order. */
async function expectBreakdowns(subject: string, images: readonly LedgerImage[], kept: ReadonlySet<string> = new Set()): Promise<void> {
  const channels = expectedPlaces(
    images.map((i) => i.channel),
    BREAKDOWN_LIMITS.channel,
  );
  const features = expectedPlaces(
    images.map((i) => i.feature),
    BREAKDOWN_LIMITS.feature,
    kept,
  );
  const total = String(images.reduce((sum, i) => sum + BigInt(i.quantity), 0n));
  const cycle = await cycleRow(subject);
  const day = await dayRow(subject);
  expect({ total: cycle.total, channels: pick(cycle.counters, 'c#'), features: pick(cycle.counters, 'f#') }).toEqual({
    total,
    channels: prefixed(
      'c#',
      sums(images, (i) => (i.channel === undefined ? undefined : channels.get(i.channel))),
    ),
    features: prefixed(
      'f#',
      sums(images, (i) => (i.feature === undefined ? undefined : features.get(i.feature))),
    ),
  });
  expect({ total: day.total, requests: day.requests, hours: pick(day.counters, 'h#'), hourRequests: pick(day.counters, 'r#'), hourChannels: pick(day.counters, 'ch#') }).toEqual({
    total,
    requests: String(images.length),
    hours: prefixed(
      'h#',
      sums(images, (i) => i.hour),
    ),
    // One event each, in the counters' decimal units: "1" per event.
    hourRequests: prefixed(
      'r#',
      counts(images, (i) => i.hour),
    ),
    hourChannels: prefixed(
      'ch#',
      sums(images, (i) => (i.channel === undefined ? undefined : `${i.hour}#${channels.get(i.channel) ?? ''}`)),
    ),
  });
}

describe('bounded breakdowns on DynamoDB Local', () => {
  test('10,000 distinct values of every dimension in one batch on one workspace and day: all counted, breakdowns capped, the other tenant too', async () => {
    // Arrange: a priced feature past the cap stays apart.
    const images = Array.from({ length: 10_000 }, (_, i) => image('ws_many', i, { channel: `channel-${i}`, feature: `feature-${i}`, userId: `user-${i}`, groupId: `group-${i}` }));
    const other = image('ws_other_tenant', 0, { channel: 'api' });
    const batch = [...images.map((img, i) => insert(100_000 + i, img)), insert(110_000, other)];
    const kept = new Set(['feature-9999']);
    const breakdowns: BreakdownPolicy = { limits: BREAKDOWN_LIMITS, kept: (usageType) => (usageType === 'tokens' ? kept : undefined) };

    // Act
    const result = await aggregateChanges('shard-many-values', batch, { rollups, breakdowns });

    // Assert
    expect([result.applied, result.failedSequenceNumber]).toEqual([batch.length, undefined]);
    await expectBreakdowns('ws_many', images, kept);
    const cycle = await cycleRow('ws_many');
    expect(Object.keys(pick(cycle.counters, 'c#'))).toHaveLength(BREAKDOWN_LIMITS.channel + 1);
    expect(cycle.counters['f#feature-9999']).toBe(images[9_999]?.quantity);
    // Users and groups are ranked: one small item each, every one exact.
    const users = await rollups.members('ws_many', 'user', CYCLE, 'tokens');
    expect(Object.fromEntries(users.map((u) => [u.member, u.total]))).toEqual(sums(images, (i) => i.userId));
    expect((await rollups.members('ws_many', 'group', CYCLE, 'tokens')).length).toBe(10_000);
    expect((await dayRow('ws_other_tenant')).total).toBe(other.quantity);
  }, 300_000);

  test('a slow stream of 2,500 distinct 256-byte values, in batches of 100 from fresh processes, passes every cap and stays exact', async () => {
    // Arrange: 3-byte characters, 256 bytes each; every batch brings 100 values never seen before.
    const long = (kind: string, i: number) => `${'€'.repeat(83)}${kind}${String(i).padStart(6, '0')}`.slice(0, 256);
    const images = Array.from({ length: 2_500 }, (_, i) => image('ws_slow', i, { channel: long('c', i), feature: long('f', i) }));
    expect(new TextEncoder().encode(images[0]?.channel).length).toBeLessThanOrEqual(256);

    // Act
    for (let from = 0; from < images.length; from += 100) {
      const batch = images.slice(from, from + 100).map((img, j) => insert(200_000 + from + j, img));
      const result = await aggregateChanges('shard-slow', batch, { rollups });
      expect(result.failedSequenceNumber).toBeUndefined();
    }

    // Assert
    await expectBreakdowns('ws_slow', images);
  }, 300_000);

  test('two shards admitting new values to one cycle at once admit exactly the limit between them', async () => {
    // Arrange: 30 new channels on each shard; which 20 win is a race, that only 20 do is not.
    const images = Array.from({ length: 60 }, (_, i) => image('ws_race', i, { channel: `race-${i}` }));
    const shardA = images.slice(0, 30).map((img, i) => insert(300_000 + i, img));
    const shardB = images.slice(30).map((img, i) => insert(300_000 + i, img));

    // Act
    const results = await Promise.all([aggregateChanges('shard-race-a', shardA, { rollups }), aggregateChanges('shard-race-b', shardB, { rollups })]);

    // Assert
    expect(results.map((r) => r.failedSequenceNumber)).toEqual([undefined, undefined]);
    const cycle = await cycleRow('ws_race');
    const named = Object.keys(pick(cycle.counters, 'c#'))
      .map((name) => name.slice(2))
      .filter((channel) => channel !== OTHER);
    expect(named).toHaveLength(BREAKDOWN_LIMITS.channel);
    const byChannel = sums(images, (i) => i.channel);
    for (const channel of named) expect(cycle.counters[`c#${channel}`]).toBe(byChannel[channel]);
    const rest = images.filter((i) => !named.includes(i.channel ?? '')).reduce((sum, i) => sum + BigInt(i.quantity), 0n);
    expect(cycle.counters[`c#${OTHER}`]).toBe(String(rest));
    expect(cycle.total).toBe(String(images.reduce((sum, i) => sum + BigInt(i.quantity), 0n)));
    const item = await createDocumentClient(raw).send(new GetCommand({ TableName: stack.tables.rollups, Key: { pk: 'ws_race', sk: `C#${CYCLE}#tokens` } }));
    expect(Number(item.Item?.channelsAdmitted)).toBe(BREAKDOWN_LIMITS.channel);
  }, 120_000);
});

test("through SQS: a backfill of one day over 16 channels (384 events in two messages) is counted, and so is another workspace's event", async () => {
  // Arrange: every hour of yesterday (UTC), as the local clock has it.
  const yesterday = Math.floor(stack.clock.now().getTime() / 86_400_000) * 86_400_000 - 86_400_000;
  const truth = new GroundTruth({ ws_b01: 1, ws_c15: 15 });
  const backfill: TestEvent[] = Array.from({ length: 384 }, (_, i) =>
    usageEvent({
      id: `backfill-${i}`,
      source: '//breakdowns/backfill',
      subject: 'ws_b01',
      time: new Date(yesterday + (i % 24) * 3_600_000 + 60_000),
      quantity: 1 + (i % 5),
      channel: `channel-${Math.floor(i / 24)}`,
    }),
  );
  const elsewhere = usageEvent({ id: 'elsewhere-1', source: '//breakdowns/backfill', subject: 'ws_c15', time: new Date(yesterday + 3_600_000), quantity: 7 });
  [...backfill, elsewhere].forEach((e) => truth.accept(e));

  // Act
  await client.send([JSON.stringify(backfill.slice(0, 192)), JSON.stringify(backfill.slice(192)), JSON.stringify(elsewhere)]);
  await stack.settle();

  // Assert
  const from = new Date(yesterday);
  const to = new Date(yesterday + 86_400_000);
  for (const subject of ['ws_b01', 'ws_c15']) {
    const shown = await client.buckets(subject, 'hour', from, to);
    expect(shown).toEqual(truth.buckets(subject, 'hour'));
  }
  expect(truth.buckets('ws_b01', 'hour')).toHaveLength(24);
  // 16 channels a hour: each hour bucket counts its 16 events.
  expect(truth.buckets('ws_b01', 'hour').map((b) => b.requests)).toEqual(Array.from({ length: 24 }, () => 16));
});
