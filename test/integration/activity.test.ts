import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { DynamoActivity } from '../../functions/adapters/activity-store';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { ACTIVITY_ITEM_BYTES, ACTIVITY_ROLL_SECONDS, activityLaneItems, activityReadFrom, recentActivity } from '../../functions/core/metering/activity';
import { FIELD_BYTE_LIMITS } from '../../functions/core/metering/envelope';
import { checkpointLaneOf, type LedgerChange } from '../../functions/core/metering/rollups';
import type { Subject } from '../../functions/core/ports';
import type { LocalStack } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { ADMIN_KEY, StackClient, startLocalWithConfig } from '../support/local-stack';

/**
 * Recent activity end to end: events sent over SQS (a duplicate among them, one priced in credits, one corrected
 * later) reach GET /v1/workspaces/{id}/activity through ingest, the ledger stream and the aggregate on the local
 * stack, whose batches write lane items shared by the workspaces of a lane and roll them up into each workspace's
 * rolling item as the stack's clock moves on. Every expected event is worked out here from what the test sent,
 * never read from the code.
 */

const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** Noon UTC of the suite's date; every event is sent within the hour before it. */
const START = (() => {
  const day = suiteClockStart();
  return Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 12);
})();

/** The rate card's price of generating an image, in credits. */
const GENERATE_CREDITS = 2;
const OTHER_KEY = 'other-workspace-key-000000000000';

/** The first `n` ids `${prefix}<i>` in one checkpoint lane, and a lane none of `avoid` is in. */
function sameLane(n: number, prefix: string, avoid: readonly string[] = []): string[] {
  const taken = new Set(avoid.map(checkpointLaneOf));
  const ids: string[] = [];
  for (let i = 0; ids.length < n; i++) {
    const id = `${prefix}${i}`;
    const lane = checkpointLaneOf(id);
    if (ids.length === 0 ? !taken.has(lane) : lane === checkpointLaneOf(ids[0] as string)) ids.push(id);
  }
  return ids;
}
/** Two workspaces sharing a lane, so their events share lane items. */
const [NEIGHBOUR_A, NEIGHBOUR_B] = sameLane(2, 'ws_lane_') as [string, string];
const ROLLED = 'ws_rolled';

const CONFIG = {
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'images', unit: 'image' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1_000_000, overage: 'allow' }, credits: { monthlyLimit: 500, overage: 'allow' } } }],
  subjects: ['ws_feed', 'ws_burst', 'ws_wide', 'ws_other', NEIGHBOUR_A, NEIGHBOUR_B, ROLLED].map((id) => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC' })),
  credits: { usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { feature: 'generate' }, credits: GENERATE_CREDITS }] }] } },
  apiKeys: [
    { key: ADMIN_KEY, scope: 'admin', name: 'tests' },
    { key: OTHER_KEY, scope: 'workspace', subject: 'ws_other' },
  ],
};

interface Sent {
  id: string;
  source?: string;
  subject: string;
  time: string;
  usageType: string;
  quantity: number;
  feature?: string;
}
interface Shown {
  time: string;
  usageType: string;
  feature?: string;
  quantity: number;
  credits?: number;
}

let stack: LocalStack;
let client: StackClient;
let raw: DynamoDBClient;
/** The activity adapter on the stack's rollups table, to look at what the aggregate stored. */
let store: DynamoActivity;

const body = (e: Sent) =>
  JSON.stringify({
    specversion: '1.0',
    id: e.id,
    source: e.source ?? '//activity-test',
    type: 'com.example.usage',
    subject: e.subject,
    time: e.time,
    data: { usageType: e.usageType, quantity: e.quantity, ...(e.feature ? { feature: e.feature } : {}) },
  });

/** What the route shows of a sent event: its credits where the rate card prices it. */
const shown = (e: Sent): Shown => ({
  time: e.time,
  usageType: e.usageType,
  ...(e.feature ? { feature: e.feature } : {}),
  quantity: e.quantity,
  ...(e.usageType === 'images' && e.feature === 'generate' ? { credits: e.quantity * GENERATE_CREDITS } : {}),
});
/** Newest first: by time, then by the identity the route orders ties by (the greater first). */
const newestFirst = (events: readonly Sent[]) => [...events].sort((a, b) => (a.time === b.time ? (a.id < b.id ? 1 : -1) : a.time < b.time ? 1 : -1));

async function activity(subject: string, query = '', key = ADMIN_KEY): Promise<{ status: number; body: { subject?: string; events?: Shown[]; error?: { code: string } } }> {
  const { status, body } = await client.get(`/v1/workspaces/${subject}/activity${query}`, key);
  return { status, body: body as { subject?: string; events?: Shown[]; error?: { code: string } } };
}

beforeAll(async () => {
  stack = await startLocalWithConfig(CONFIG, new Date(START));
  client = new StackClient(stack);
  raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
  store = new DynamoActivity(createDocumentClient(raw), stack.tables.rollups);
}, 180_000);

afterAll(async () => {
  client?.close();
  raw?.destroy();
  await stack?.stop();
});

describe('GET /v1/workspaces/{id}/activity', () => {
  const chat: Sent = { id: 'chat-1', subject: 'ws_feed', time: iso(START - 50 * MINUTE), usageType: 'tokens', quantity: 500, feature: 'chat' };
  const generate: Sent = { id: 'generate-1', subject: 'ws_feed', time: iso(START - 40 * MINUTE), usageType: 'images', quantity: 4, feature: 'generate' };
  const summarize: Sent = { id: 'summarize-1', subject: 'ws_feed', time: iso(START - 30 * MINUTE), usageType: 'tokens', quantity: 70 };
  const latest: Sent = { id: 'latest-1', subject: 'ws_feed', time: iso(START - 20 * MINUTE), usageType: 'tokens', quantity: 3, feature: 'chat' };

  test('shows each event once, newest first, with its feature and the credits it was priced at; a correction replaces what it corrects', async () => {
    // Act: four events and a duplicate of the first; then a correction of the second oldest, which is not the
    // newest of its batch (the summarize run used 90 tokens, not 70)
    await client.send([chat, generate, summarize, latest, chat].map(body));
    await stack.settle();
    const before = await activity('ws_feed');
    const corrected: Sent = { ...summarize, quantity: 90 };
    await client.send([body(corrected)]);
    await stack.settle();
    const after = await activity('ws_feed');
    const firstTwo = await activity('ws_feed', '?limit=2');

    // Assert
    expect(before).toEqual({ status: 200, body: { subject: 'ws_feed', events: newestFirst([chat, generate, summarize, latest]).map(shown) } });
    expect(after).toEqual({ status: 200, body: { subject: 'ws_feed', events: newestFirst([chat, generate, corrected, latest]).map(shown) } });
    expect(after.body.events?.find((e) => e.usageType === 'images')).toEqual({ time: generate.time, usageType: 'images', feature: 'generate', quantity: 4, credits: 8 });
    expect(firstTwo.body.events).toEqual(newestFirst([chat, generate, corrected, latest]).slice(0, 2).map(shown));
  });

  test('of 25 events sent at once, the newest `limit` (up to the 20 a batch keeps) are exact, and every event shown was sent once', async () => {
    // Arrange: one event a minute, sent in shuffled order
    const burst: Sent[] = Array.from({ length: 25 }, (_, i) => ({
      id: `burst-${String(i).padStart(2, '0')}`,
      subject: 'ws_burst',
      time: iso(START - (30 - i) * MINUTE),
      usageType: 'tokens',
      quantity: i + 1,
    }));
    const order = [3, 17, 0, 24, 9, 12, 21, 5, 14, 1, 19, 7, 23, 10, 2, 16, 8, 22, 4, 13, 18, 6, 11, 20, 15];

    // Act
    await client.send(order.map((i) => body(burst[i] as Sent)));
    await stack.settle();
    const all = await activity('ws_burst', '?limit=100');
    const five = await activity('ws_burst', '?limit=5');
    const twenty = await activity('ws_burst', '?limit=20');

    // Assert: a batch keeps its newest 20 of a workspace, so the newest 20 overall are always there; the oldest 5
    // are shown only when they landed in another batch than the 20 newer events
    const expected = newestFirst(burst).map(shown);
    expect(five.body.events).toEqual(expected.slice(0, 5));
    expect(twenty.body.events).toEqual(expected.slice(0, 20));
    const events = all.body.events ?? [];
    expect(events.length).toBeGreaterThanOrEqual(20);
    expect(events.slice(0, 20)).toEqual(expected.slice(0, 20));
    expect(expected).toEqual(expect.arrayContaining(events));
    expect(new Set(events.map((e) => e.time)).size).toBe(events.length);
  });

  test('at the field limits, 21 events of one batch fit its item: the newest 20 are shown byte for byte', async () => {
    // Arrange: every field an item keeps at its limit (FIELD_BYTE_LIMITS: source 1,024 bytes, id 256, feature 256),
    // in two- and three-byte characters, and quantities of 16 digits; one event more than an item keeps
    const wide: Sent[] = Array.from({ length: 21 }, (_, i) => ({
      source: `//${'ş'.repeat(511)}`,
      id: `${String(i).padStart(2, '0')}${'€'.repeat(84)}`,
      subject: 'ws_wide',
      time: iso(START - (30 - i) * MINUTE),
      usageType: 'tokens',
      quantity: 1_000_000_000_000_000 + i,
      feature: 'ü'.repeat(128),
    }));
    expect(wide.map((e) => [Buffer.byteLength(e.source ?? '', 'utf8'), Buffer.byteLength(e.id, 'utf8'), Buffer.byteLength(e.feature ?? '', 'utf8')])).toEqual(wide.map(() => [1024, 254, 256]));

    // Act
    await client.send(wide.map(body));
    await stack.settle();
    const all = await activity('ws_wide', '?limit=100');

    // Assert: the batch's item keeps the newest 20 (the oldest may show only if it landed in a batch of its own)
    const expected = newestFirst(wide).map(shown);
    expect(all.status).toBe(200);
    expect(all.body.events?.slice(0, 20)).toEqual(expected.slice(0, 20));
    expect(expected).toEqual(expect.arrayContaining(all.body.events ?? []));
  });

  test("another workspace's key is refused (403), an unknown workspace is 404, a workspace with no events has none, and the limit is 1 to 100", async () => {
    // Act
    const otherKey = await activity('ws_feed', '', OTHER_KEY);
    const own = await activity('ws_other', '', OTHER_KEY);
    const unknown = await activity('ws_nobody');
    const zero = await activity('ws_feed', '?limit=0');
    const tooMany = await activity('ws_feed', '?limit=101');
    const unknownParameter = await activity('ws_feed', '?since=2026-01-01');

    // Assert
    expect([otherKey.status, otherKey.body.error?.code]).toEqual([403, 'forbidden_workspace']);
    expect(own).toEqual({ status: 200, body: { subject: 'ws_other', events: [] } });
    expect([unknown.status, unknown.body.error?.code]).toEqual([404, 'unknown_workspace']);
    for (const refused of [zero, tooMany, unknownParameter]) expect([refused.status, refused.body.error?.code]).toEqual([400, 'invalid_parameter']);
  });
  test('two workspaces of the same lane share its items, and each sees only its own events', async () => {
    // Arrange: their events interleaved in one send, at the same minutes
    expect(checkpointLaneOf(NEIGHBOUR_A)).toBe(checkpointLaneOf(NEIGHBOUR_B));
    const events: Sent[] = Array.from({ length: 12 }, (_, i) => ({
      id: `neighbour-${String(i).padStart(2, '0')}`,
      subject: i % 2 === 0 ? NEIGHBOUR_A : NEIGHBOUR_B,
      time: iso(START - (40 - Math.floor(i / 2)) * MINUTE),
      usageType: 'tokens',
      quantity: 10 + i,
    }));

    // Act
    await client.send(events.map(body));
    await stack.settle();
    const a = await activity(NEIGHBOUR_A, '?limit=100');
    const b = await activity(NEIGHBOUR_B, '?limit=100');

    // Assert
    expect(a).toEqual({ status: 200, body: { subject: NEIGHBOUR_A, events: newestFirst(events.filter((e) => e.subject === NEIGHBOUR_A)).map(shown) } });
    expect(b).toEqual({ status: 200, body: { subject: NEIGHBOUR_B, events: newestFirst(events.filter((e) => e.subject === NEIGHBOUR_B)).map(shown) } });
  });

  test('lane items at the field limits past the size bound are stored in parts under 400 KB, and read back whole', async () => {
    // Arrange: 11 workspaces of a lane no other test uses, 21 events each with every field at its byte limit
    // (~35 KB a workspace, so ~385 KB in one item), built as the aggregate builds them and put through the adapter
    const subjects = sameLane(11, `ws_${'w'.repeat(FIELD_BYTE_LIMITS.subject - 8)}`, ['ws_feed', 'ws_burst', 'ws_wide', 'ws_other', NEIGHBOUR_A, ROLLED]);
    const now = stack.clock.now();
    const changes: LedgerChange[] = subjects.flatMap((subject, w) =>
      Array.from({ length: 21 }, (_, n) => {
        const time = iso(START - (30 - n) * MINUTE);
        const eventKey = JSON.stringify([`//${'ş'.repeat((FIELD_BYTE_LIMITS.source - 2) / 2)}`, `${String(n).padStart(2, '0')}${'€'.repeat((FIELD_BYTE_LIMITS.id - 4) / 3)}`]);
        const image = { eventKey, subject, usageType: 'ü'.repeat(FIELD_BYTE_LIMITS.usageType / 2), feature: 'ü'.repeat(FIELD_BYTE_LIMITS.feature / 2), quantity: String(1_000_000_000_000_000 + n) };
        return { sequenceNumber: String(1_000 * w + n + 1), newImage: { ...image, time, hour: time.slice(0, 13), day: time.slice(0, 10), cycleStart: `${time.slice(0, 8)}01T00:00:00.000Z` } };
      }),
    );
    const items = activityLaneItems('shard-limits', changes, now);

    // Act
    const { failed, error } = await store.putLaneItems(items);
    const stored = [];
    for await (const item of store.laneItemsSince(checkpointLaneOf(subjects[0] as string), 'A#')) stored.push(item);
    const directory = { getMany: async (ids: readonly string[]) => new Map(ids.map((id) => [id, { id } as Subject])) };
    const last = await recentActivity(subjects[10] as string, { limit: 100 }, { subjects: directory, activity: store, clock: stack.clock });

    // Assert: parts, each accepted by DynamoDB (400 KB at most) and under the bound, together every workspace's newest 20
    expect([failed, error]).toEqual([[], undefined]);
    expect(items.length).toBeGreaterThan(1);
    const jsonBytes = items.map((item) => Buffer.byteLength(JSON.stringify(item.events), 'utf8'));
    expect(jsonBytes.reduce((sum, bytes) => sum + bytes, 0)).toBeGreaterThan(ACTIVITY_ITEM_BYTES);
    for (const bytes of jsonBytes) expect(bytes).toBeLessThan(400 * 1024);
    expect(stored.sort((x, y) => (x.sk < y.sk ? -1 : 1))).toEqual(items);
    expect(items.flatMap((i) => Object.keys(i.events)).sort()).toEqual([...subjects].sort());
    expect(last.events.map((e) => e.time)).toEqual(Array.from({ length: 20 }, (_, i) => iso(START - (30 - (20 - i)) * MINUTE)));
    const { quantity, ...newest } = last.events[0] ?? { quantity: undefined };
    expect([newest, String(quantity)]).toEqual([{ time: iso(START - 10 * MINUTE), usageType: 'ü'.repeat(64), feature: 'ü'.repeat(128) }, '1000000000000020']);
  });

  test('after roll-ups, events from before and after them are all shown once, the rolled ones from the rolling item', async () => {
    // Arrange: three sends, the stack's clock moved past the roll-up period between them; the second corrects an
    // event of the first, the third corrects one of the second and repeats one unchanged (a duplicate)
    const lane = checkpointLaneOf(ROLLED);
    const at = (minutesBack: number) => iso(stack.clock.now().getTime() - minutesBack * MINUTE);
    const event = (id: string, minutesBack: number, quantity: number): Sent => ({ id, subject: ROLLED, time: at(minutesBack), usageType: 'tokens', quantity, feature: 'chat' });
    const moveOn = () => stack.advanceClock(new Date(stack.clock.now().getTime() + (ACTIVITY_ROLL_SECONDS + 60) * 1000));
    const first = [1, 2, 3, 4, 5, 6].map((i) => event(`first-${i}`, 20 - i, i));
    await client.send(first.map(body));
    await stack.settle();
    const firstSks = await sksHolding(lane, first);

    // Act
    await moveOn();
    const second = [...[1, 2, 3, 4, 5].map((i) => event(`second-${i}`, 10 - i, 10 + i)), { ...(first[0] as Sent), quantity: 100 }];
    await client.send(second.map(body));
    await stack.settle();
    const afterOne = await activity(ROLLED, '?limit=100');
    const rolledOnce = await store.rolled(ROLLED);
    await moveOn();
    const third = [...[1, 2, 3].map((i) => event(`third-${i}`, 5 - i, 20 + i)), { ...(second[1] as Sent), quantity: 200 }, second[2] as Sent];
    await client.send(third.map(body));
    await stack.settle();
    const afterTwo = await activity(ROLLED, '?limit=100');
    const five = await activity(ROLLED, '?limit=5');
    const rolledTwice = await store.rolled(ROLLED);
    const marker = await store.marker(lane);

    // Assert: the first roll-up took the first send's events; the second, the second's too, and readers now start
    // after the first send's lane items, so its events come from the rolling item alone
    const latest = (events: readonly Sent[]) => [...new Map(events.map((e) => [e.id, e])).values()];
    const once = latest([...first, ...second]);
    const all = latest([...first, ...second, ...third]);
    expect(rolledOnce?.events.map((e) => e.q).sort()).toEqual(first.map((e) => String(e.quantity)).sort());
    expect(rolledTwice?.events.map((e) => e.q).sort()).toEqual(once.map((e) => String(e.quantity)).sort());
    expect(firstSks.length).toBeGreaterThan(0);
    for (const sk of firstSks) expect(sk < activityReadFrom(marker?.through)).toBe(true);
    expect(afterOne).toEqual({ status: 200, body: { subject: ROLLED, events: newestFirst(once).map(shown) } });
    expect(afterTwo).toEqual({ status: 200, body: { subject: ROLLED, events: newestFirst(all).map(shown) } });
    expect(five.body.events).toEqual(newestFirst(all).slice(0, 5).map(shown));
  }, 120_000);
});

/** The sort keys of the lane items holding any of these events (by time), read through the adapter. */
async function sksHolding(lane: string, events: readonly Sent[]): Promise<string[]> {
  const times = new Set(events.map((e) => e.time));
  const sks: string[] = [];
  for await (const item of store.laneItemsSince(lane, 'A#')) if (Object.values(item.events).some((list) => list.some((e) => times.has(e.t)))) sks.push(item.sk);
  return sks;
}
