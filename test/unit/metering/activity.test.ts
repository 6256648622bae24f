import { describe, expect, test } from '@jest/globals';
import { LosslessNumber } from 'lossless-json';
import { NotFoundError } from '../../../functions/core/errors';
import {
  ACTIVITY_EVENTS_PER_ITEM,
  ACTIVITY_ITEM_BYTES,
  ACTIVITY_MAX_ITEMS_READ,
  ACTIVITY_ROLL_MARGIN_SECONDS,
  ACTIVITY_ROLL_SECONDS,
  activityLaneItemBytes,
  activityLaneItems,
  activityLanePk,
  activityQuerySchema,
  activityReadFrom,
  recentActivity,
  recordActivity,
  rollActivity,
} from '../../../functions/core/metering/activity';
import { FIELD_BYTE_LIMITS } from '../../../functions/core/metering/envelope';
import type { ActivityEvent, ActivityLaneItem, ActivityMarker, ActivityReader, ActivityRolled, ActivityWriter } from '../../../functions/core/metering/metering-ports';
import { checkpointLaneOf, type LedgerChange, type LedgerImage } from '../../../functions/core/metering/rollups';
import type { Subject, SubjectDirectory } from '../../../functions/core/ports';
import { Random } from '../../../testkit/random';

/**
 * Recent activity: the pure builder of a batch's lane items (one per lane of workspaces, each workspace's newest 20
 * events, split past the size bound), the roll-up of lane items into each workspace's rolling item, the use case that
 * writes both, and the reader's merge into the newest `limit` events. Expected items and answers are worked out here
 * from the records each test builds; the simulation compares every answer with the newest events it sent.
 */

const SHARD = 'shardId-00000001';
const WRITTEN_AT = new Date('2026-11-22T12:00:00.000Z');
const EXPIRES_AT = Date.parse('2026-11-29T12:00:00.000Z') / 1000;
const PAD = (n: number) => String(n).padStart(40, '0');
const SECOND = 1000;

/** The first `n` ids `${prefix}<i>` in one checkpoint lane (the lane's definition, not what the code under test does with it). */
function sameLane(n: number, prefix: string, lane?: string): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < n; i++) {
    const id = `${prefix}${i}`;
    if (checkpointLaneOf(id) === (lane ?? checkpointLaneOf(ids[0] ?? id))) ids.push(id);
  }
  return ids;
}
const [WS_A, WS_B] = sameLane(2, 'ws_lane_') as [string, string];
const LANE = checkpointLaneOf(WS_A);
const WS_C = ((): string => {
  for (let i = 0; ; i++) if (checkpointLaneOf(`ws_far_${i}`) !== LANE) return `ws_far_${i}`;
})();
const LANE_C = checkpointLaneOf(WS_C);

/** Event n of a workspace: at 10:00 + n seconds, n + 1 tokens. */
const image = (n: number, overrides: Partial<LedgerImage> = {}): LedgerImage => ({
  eventKey: `["//app","e${String(n).padStart(3, '0')}"]`,
  subject: WS_A,
  usageType: 'tokens',
  quantity: String(n + 1),
  hour: '2026-11-22T10',
  day: '2026-11-22',
  cycleStart: '2026-11-01T00:00:00.000Z',
  time: new Date(Date.parse('2026-11-22T10:00:00.000Z') + n * 1000).toISOString(),
  ...overrides,
});
const time = (n: number) => image(n).time as string;
const key = (n: number) => image(n).eventKey;
const stored = (n: number, overrides: Partial<ActivityEvent> = {}): ActivityEvent => ({ t: time(n), u: 'tokens', q: String(n + 1), k: key(n), ...overrides });

const insert = (sequence: number, newImage: LedgerImage): LedgerChange => ({ sequenceNumber: String(sequence), newImage });

/** DynamoDB's size of an item as stored ("DynamoDB item sizes and formats"), worked out from the stored shape. */
function dynamoSize(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') return Math.ceil(String(value).replace(/^0+|0+$/g, '').length / 2) + 1;
  if (Array.isArray(value)) return 3 + value.reduce((sum: number, v) => sum + 1 + dynamoSize(v), 0);
  return 3 + Object.entries(value as object).reduce((sum, [name, v]) => sum + 1 + Buffer.byteLength(name, 'utf8') + dynamoSize(v), 0);
}
const storedSize = (item: ActivityLaneItem) => dynamoSize({ pk: activityLanePk(item.lane), sk: item.sk, events: item.events, expiresAt: item.expiresAt }) - 3 - 4;

describe('activityLaneItems', () => {
  test("one item per lane, holding each of its workspaces' newest 20 events newest first, keyed by the write time, the shard and the lane's first record", () => {
    // Arrange: 25 events of WS_A in shuffled time order and 2 of WS_B (the same lane), 1 of WS_C (another lane)
    const order = [7, 3, 24, 0, 11, 19, 1, 22, 5, 13, 8, 20, 2, 17, 9, 23, 4, 15, 10, 21, 6, 14, 12, 18, 16];
    const changes = [
      insert(100, image(50, { subject: WS_B })),
      insert(101, image(60, { subject: WS_C })),
      ...order.map((n, i) => insert(102 + i, image(n))),
      insert(200, image(51, { subject: WS_B, feature: 'chat' })),
    ];

    // Act
    const items = activityLaneItems(SHARD, changes, WRITTEN_AT);

    // Assert: events 24 down to 5 for WS_A (the oldest 5 left out); the lane's first record is 100, WS_C's lane's 101
    const newest = Array.from({ length: ACTIVITY_EVENTS_PER_ITEM }, (_, i) => 24 - i);
    expect(items).toEqual([
      {
        lane: LANE,
        sk: `A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(100)}`,
        events: { [WS_B]: [stored(51, { f: 'chat' }), stored(50)], [WS_A]: newest.map((n) => stored(n)) },
        expiresAt: EXPIRES_AT,
      },
      { lane: LANE_C, sk: `A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(101)}`, events: { [WS_C]: [stored(60)] }, expiresAt: EXPIRES_AT },
    ]);
  });

  test('the same records give the same items but for the write time in their keys and their expiry', () => {
    // Arrange
    const changes = [insert(7, image(1)), insert(8, image(2, { subject: WS_C })), insert(9, image(3, { subject: WS_B }))];
    const later = new Date(WRITTEN_AT.getTime() + 60_000);

    // Act
    const first = activityLaneItems(SHARD, changes, WRITTEN_AT);
    const again = activityLaneItems(SHARD, changes, later);

    // Assert
    expect(again.map(({ lane, events }) => ({ lane, events }))).toEqual(first.map(({ lane, events }) => ({ lane, events })));
    expect(first.map((i) => i.sk)).toEqual([`A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(7)}`, `A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(8)}`]);
    expect(again.map((i) => i.sk)).toEqual([`A#${later.toISOString()}#${SHARD}#${PAD(7)}`, `A#${later.toISOString()}#${SHARD}#${PAD(8)}`]);
    expect(again.map((i) => i.expiresAt - EXPIRES_AT)).toEqual([60, 60]);
  });

  test('a correction in the same batch keeps the newer image; removals and TTL expiries are left out; credits are kept as text', () => {
    // Arrange: event 1 inserted, then corrected to 9 tokens priced at 4.5 credits with an earlier time; event 2 removed; event 3 expired
    const corrected = image(1, { quantity: '9', time: time(0), credits: { usageType: 'credits', quantity: '4.5' }, feature: 'generate' });
    const changes: LedgerChange[] = [
      insert(10, image(1)),
      { sequenceNumber: '11', oldImage: image(2) },
      { sequenceNumber: '12', oldImage: image(1), newImage: corrected },
      { sequenceNumber: '13', oldImage: image(3), expired: true },
      insert(14, image(4)),
    ];

    // Act
    const [item, ...others] = activityLaneItems(SHARD, changes, WRITTEN_AT);

    // Assert
    expect(others).toEqual([]);
    expect(item?.sk).toBe(`A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(10)}`);
    expect(item?.events).toEqual({ [WS_A]: [stored(4), stored(0, { f: 'generate', q: '9', c: '4.5', k: key(1) })] });
  });

  test('a batch of removals only, or of images without a time, writes nothing', () => {
    // Arrange
    const { time: _, ...timeless } = image(5);

    // Act / Assert
    expect(activityLaneItems(SHARD, [{ sequenceNumber: '1', oldImage: image(1) }, insert(2, timeless)], WRITTEN_AT)).toEqual([]);
  });

  test('events at the same time are ordered by event key, the greater first', () => {
    // Arrange
    const at = time(0);

    // Act
    const [item] = activityLaneItems(SHARD, [insert(1, image(1, { time: at })), insert(2, image(2, { time: at })), insert(3, image(0))], WRITTEN_AT);

    // Assert
    expect(item?.events[WS_A]?.map((e) => e.k)).toEqual([key(2), key(1), key(0)]);
  });

  describe('at the field limits, a lane item is split before it passes the size bound', () => {
    // Every field at its byte limit (FIELD_BYTE_LIMITS), in two- and three-byte characters; quantities of 16 digits
    const subjects = sameLane(40, `ws_${'w'.repeat(FIELD_BYTE_LIMITS.subject - 8)}`);
    const wide = (subject: string, n: number): LedgerImage =>
      image(n, {
        subject,
        eventKey: JSON.stringify([`//${'ş'.repeat((FIELD_BYTE_LIMITS.source - 2) / 2)}`, `${String(n).padStart(2, '0')}${'€'.repeat((FIELD_BYTE_LIMITS.id - 4) / 3)}`]),
        usageType: 'ü'.repeat(FIELD_BYTE_LIMITS.usageType / 2),
        feature: 'ü'.repeat(FIELD_BYTE_LIMITS.feature / 2),
        quantity: String(1_000_000_000_000_000 + n),
        credits: { usageType: 'credits', quantity: `${'9'.repeat(16)}.5` },
      });
    /** Each workspace's 21 events (one more than an item keeps), workspace after workspace. */
    const batch = (count: number) => subjects.slice(0, count).flatMap((subject, w) => Array.from({ length: 21 }, (_, n) => insert(w * 100 + n + 1, wide(subject, n))));
    /** One item of `count` workspaces as it would be stored unsplit, sized here. */
    const unsplitSize = (count: number) => {
      const items = activityLaneItems(SHARD, batch(count), WRITTEN_AT);
      const events = Object.assign({}, ...items.map((i) => i.events)) as Record<string, ActivityEvent[]>;
      return storedSize({ lane: LANE, sk: `A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(1)}`, events, expiresAt: EXPIRES_AT });
    };
    /** The most workspaces whose item, unsplit, stays at or under the bound (with room for the size estimate's slack). */
    const fitting = (() => {
      let count = 1;
      while (unsplitSize(count + 1) <= ACTIVITY_ITEM_BYTES - 64) count++;
      return count;
    })();

    test('as many workspaces as fit make one item at the bound; the size the code counts is DynamoDB’s, a few bytes over at most', () => {
      // Arrange / Act
      const items = activityLaneItems(SHARD, batch(fitting), WRITTEN_AT);

      // Assert: near the bound (one workspace more would pass it), one item, each workspace's newest 20 events
      expect(unsplitSize(fitting)).toBeGreaterThan(ACTIVITY_ITEM_BYTES - 40_000);
      expect(unsplitSize(fitting + 1)).toBeGreaterThan(ACTIVITY_ITEM_BYTES);
      expect(items).toHaveLength(1);
      const [item] = items as [ActivityLaneItem];
      expect(item.sk).toBe(`A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(1)}`);
      expect(Object.keys(item.events)).toEqual(subjects.slice(0, fitting));
      for (const events of Object.values(item.events)) expect(events.map((e) => e.q)).toEqual(Array.from({ length: 20 }, (_, i) => String(1_000_000_000_000_000 + 20 - i)));
      expect(activityLaneItemBytes(item) - storedSize(item)).toBeGreaterThanOrEqual(0);
      expect(activityLaneItemBytes(item) - storedSize(item)).toBeLessThan(64);
      expect(storedSize(item)).toBeLessThanOrEqual(ACTIVITY_ITEM_BYTES);
    });

    test('one workspace more, or four times as many, split into parts #p0, #p1, … each under the bound, together holding every workspace whole', () => {
      for (const count of [fitting + 1, 4 * fitting]) {
        // Act
        const items = activityLaneItems(SHARD, batch(count), WRITTEN_AT);

        // Assert
        expect(items.length).toBe(Math.ceil(count / fitting));
        expect(items.map((i) => i.sk)).toEqual(items.map((_, p) => `A#${WRITTEN_AT.toISOString()}#${SHARD}#${PAD(1)}#p${p}`));
        for (const item of items) expect(storedSize(item)).toBeLessThanOrEqual(ACTIVITY_ITEM_BYTES);
        expect(items.flatMap((i) => Object.keys(i.events))).toEqual(subjects.slice(0, count));
        for (const item of items) for (const events of Object.values(item.events)) expect(events).toHaveLength(ACTIVITY_EVENTS_PER_ITEM);
      }
    });
  });
});

/** A lane item built by hand: `events` of each workspace, written at `at` (seconds after WRITTEN_AT) from first record `first`. */
const laneItem = (at: number, first: number, events: Record<string, ActivityEvent[]>, lane = LANE): ActivityLaneItem => {
  const writtenAt = new Date(WRITTEN_AT.getTime() + at * SECOND);
  return { lane, sk: `A#${writtenAt.toISOString()}#${SHARD}#${PAD(first)}`, events, expiresAt: Math.floor(writtenAt.getTime() / 1000) + 7 * 86_400 };
};
const withExpiry = (item: ActivityLaneItem, events: ActivityEvent[]) => events.map((e) => ({ ...e, x: item.expiresAt }));

describe('rollActivity', () => {
  const NOW = new Date(WRITTEN_AT.getTime() + 3_600_000);

  test("each workspace's newest 20 of its rolling item's and the lane items' events, each once, from the copy written from the later records", () => {
    // Arrange: WS_A has 15 events rolled; two lane items bring 10 more, one of them a correction of a rolled event
    // (event 3) and one an event in both lane items, corrected in the later one (event 30)
    const before = laneItem(0, 1, { [WS_A]: Array.from({ length: 15 }, (_, n) => stored(n)) });
    const rolled: ActivityRolled = {
      subject: WS_A,
      through: before.sk,
      events: withExpiry(
        before,
        Array.from({ length: 15 }, (_, n) => stored(14 - n)),
      ),
      expiresAt: before.expiresAt,
    };
    const first = laneItem(10, 50, { [WS_A]: [stored(30), stored(22), stored(21), stored(20)], [WS_B]: [stored(40)] });
    const second = laneItem(20, 60, { [WS_A]: [stored(30, { q: '300' }), stored(26), stored(25), stored(24), stored(23), stored(3, { q: '33' })] });

    // Act
    const result = rollActivity([first, second], new Map([[WS_A, rolled]]), NOW);

    // Assert: 30, 26..20 from the lane items, then 14 down to 3 (the newest 20), 3 as corrected
    expect(result).toEqual([
      {
        subject: WS_A,
        through: second.sk,
        events: [
          { ...stored(30, { q: '300' }), x: second.expiresAt },
          ...withExpiry(second, [stored(26), stored(25), stored(24), stored(23)]),
          ...withExpiry(first, [stored(22), stored(21), stored(20)]),
          ...withExpiry(
            before,
            [14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4].map((n) => stored(n)),
          ),
          { ...stored(3, { q: '33' }), x: second.expiresAt },
        ],
        expiresAt: second.expiresAt,
      },
      { subject: WS_B, through: second.sk, events: withExpiry(first, [stored(40)]), expiresAt: first.expiresAt },
    ]);
  });

  test('idempotent: rolling the same lane items again, or in two roll-ups instead of one, gives the same rolling items', () => {
    // Arrange: 8 lane items of WS_A and WS_B, some events corrected in later items
    const items = Array.from({ length: 8 }, (_, i) =>
      laneItem(i * 10, 100 + i * 10, {
        [WS_A]: [stored(3 * i + 2), stored(3 * i + 1), stored(3 * i), ...(i > 2 ? [stored(i, { q: `${i}00` })] : [])].sort((a, b) => (a.t < b.t ? 1 : -1)),
        [WS_B]: [stored(100 + i)],
      }),
    );

    // Act
    const once = rollActivity(items, new Map(), NOW);
    const twice = rollActivity(items, new Map(once.map((r) => [r.subject, r])), NOW);
    const firstHalf = rollActivity(items.slice(0, 4), new Map(), NOW);
    const inTwo = rollActivity(items.slice(4), new Map(firstHalf.map((r) => [r.subject, r])), NOW);

    // Assert: WS_A's newest 20 of events 0..23 (23 down to 4), events 4..7 as corrected
    expect(twice).toEqual(once);
    expect(inTwo).toEqual(once);
    const [a] = once as [ActivityRolled];
    expect(a.events.map((e) => [e.k, e.q])).toEqual(Array.from({ length: 20 }, (_, i) => 23 - i).map((n) => [key(n), n >= 3 && n <= 7 ? `${n}00` : String(n + 1)]));
  });

  test('a lane item at or before the rolling item’s `through` does not replace its copy; events past their expiry are dropped', () => {
    // Arrange: the rolling item's copy of event 5 came from a later item than `old`, which holds an older copy
    const old = laneItem(0, 1, { [WS_A]: [stored(5)] });
    const newer = laneItem(10, 9, { [WS_A]: [stored(5, { q: '55' })] });
    const rolled: ActivityRolled = {
      subject: WS_A,
      through: newer.sk,
      events: [
        { ...stored(5, { q: '55' }), x: newer.expiresAt },
        { ...stored(1), x: 1 },
      ],
      expiresAt: newer.expiresAt,
    };

    // Act
    const [result] = rollActivity([old], new Map([[WS_A, rolled]]), NOW);

    // Assert
    expect(result).toEqual({ subject: WS_A, through: newer.sk, events: [{ ...stored(5, { q: '55' }), x: newer.expiresAt }], expiresAt: newer.expiresAt });
  });
});

/** Both activity ports in memory, as DynamoDB keeps them: lane items by sort key, markers, rolling items. */
function memoryActivity() {
  const lanes = new Map<string, Map<string, ActivityLaneItem>>();
  const markers = new Map<string, ActivityMarker>();
  const rolled = new Map<string, ActivityRolled>();
  const laneOf = (lane: string) => lanes.get(lane) ?? lanes.set(lane, new Map()).get(lane) ?? new Map<string, ActivityLaneItem>();
  const sorted = (lane: string) => [...laneOf(lane).values()].sort((a, b) => (a.sk < b.sk ? -1 : 1));
  const store = {
    lanes,
    markerOf: (lane: string) => markers.get(lane),
    rolledOf: (subject: string) => rolled.get(subject),
    /** Lane items a reader was given, over all reads. */
    laneItemsRead: 0,
    failRolledPuts: false,
    failLanePuts: false,
    async putLaneItems(items: readonly ActivityLaneItem[]) {
      if (store.failLanePuts) return { failed: [...items], error: new Error('throttled') };
      for (const item of items) laneOf(item.lane).set(item.sk, structuredClone(item));
      return { failed: [] };
    },
    async markers(names: readonly string[]) {
      return new Map(names.flatMap((lane) => (markers.has(lane) ? [[lane, { ...(markers.get(lane) as ActivityMarker) }] as const] : [])));
    },
    async claimRoll(lane: string, seen: ActivityMarker | undefined, rolledAt: number) {
      const current = markers.get(lane);
      if (seen ? current?.rolledAt !== seen.rolledAt : current) return false;
      markers.set(lane, { lane, ...(seen?.through ? { through: seen.through } : {}), rolledAt });
      return true;
    },
    async laneItems(lane: string, after: string | undefined, before: string, max: number) {
      return sorted(lane)
        .filter((i) => i.sk > (after ?? '') && i.sk < before)
        .slice(0, max)
        .map((i) => structuredClone(i));
    },
    async rolledMany(subjects: readonly string[]) {
      return new Map(subjects.flatMap((s) => (rolled.has(s) ? [[s, structuredClone(rolled.get(s) as ActivityRolled)] as const] : [])));
    },
    async putRolled(items: readonly ActivityRolled[]) {
      if (store.failRolledPuts) return { failed: [...items], error: new Error('throttled') };
      for (const item of items) rolled.set(item.subject, structuredClone(item));
      return { failed: [] };
    },
    async finishRoll(marker: ActivityMarker, claimedAt: number) {
      if (markers.get(marker.lane)?.rolledAt !== claimedAt) return false;
      markers.set(marker.lane, { ...marker });
      return true;
    },
    async marker(lane: string) {
      return markers.get(lane);
    },
    async rolled(subject: string) {
      return rolled.get(subject);
    },
    async *laneItemsSince(lane: string, from: string) {
      for (const item of sorted(lane).reverse()) {
        if (item.sk < from) return;
        store.laneItemsRead++;
        yield structuredClone(item);
      }
    },
  };
  return store satisfies ActivityWriter & ActivityReader;
}

describe('recordActivity', () => {
  const clockAt = (ms: number) => ({ now: () => new Date(ms) });
  const T0 = WRITTEN_AT.getTime();

  test('puts the lane items; rolls a lane without a marker at once (its items older than the margin), then not before the roll-up period, then again', async () => {
    // Arrange
    const store = memoryActivity();
    const batch = (n: number, at: number) => recordActivity(SHARD, [insert(n, image(n)), insert(n + 1, image(n + 1, { subject: WS_C }))], { activity: store, clock: clockAt(T0 + at * SECOND) });

    // Act / Assert: the first batch writes its items and marks both lanes rolled, with nothing old enough to roll
    const first = await batch(0, 0);
    expect({ ...first, rolled: first.rolled.sort() }).toEqual({ laneItems: 2, failedLaneItems: 0, rolled: [LANE, LANE_C].sort(), failedRolls: [] });
    expect(store.markerOf(LANE)).toEqual({ lane: LANE, rolledAt: T0 });
    expect(store.rolledOf(WS_A)).toBeUndefined();

    // within the period: items are written, nothing rolled
    expect((await batch(10, 300)).rolled).toEqual([]);
    expect(store.lanes.get(LANE)?.size).toBe(2);

    // the period over: the items older than the margin (at 0 and 300 s) are rolled, this batch's own is not
    const due = ACTIVITY_ROLL_SECONDS;
    expect((await batch(20, due)).rolled.sort()).toEqual([LANE, LANE_C].sort());
    const skAt = (at: number, first: number) => `A#${new Date(T0 + at * SECOND).toISOString()}#${SHARD}#${PAD(first)}`;
    expect(store.markerOf(LANE)).toEqual({ lane: LANE, through: skAt(300, 10), rolledAt: T0 + due * SECOND });
    expect(store.rolledOf(WS_A)?.events.map((e) => e.k)).toEqual([key(10), key(0)]);
    expect(store.rolledOf(WS_A)?.through).toBe(skAt(300, 10));
    expect(store.rolledOf(WS_C)?.events.map((e) => e.k)).toEqual([key(11), key(1)]);
  });

  test('a roll-up another process claimed first is left to it', async () => {
    // Arrange: the marker read says due, but another process has claimed the roll-up since
    const store = memoryActivity();
    await recordActivity(SHARD, [insert(1, image(1))], { activity: store, clock: clockAt(T0) });
    const stale = { ...store, markers: async () => new Map([[LANE, { lane: LANE, rolledAt: T0 - ACTIVITY_ROLL_SECONDS * SECOND }]]) };

    // Act
    const result = await recordActivity(SHARD, [insert(2, image(2))], { activity: stale, clock: clockAt(T0 + 2 * ACTIVITY_ROLL_MARGIN_SECONDS * SECOND) });

    // Assert
    expect(result.rolled).toEqual([]);
    expect(store.markerOf(LANE)).toEqual({ lane: LANE, rolledAt: T0 });
    expect(store.rolledOf(WS_A)).toBeUndefined();
  });

  test('failed writes are reported, never thrown; a failed roll-up leaves the marker, so a later one redoes it', async () => {
    // Arrange
    const store = memoryActivity();
    await recordActivity(SHARD, [insert(1, image(1))], { activity: store, clock: clockAt(T0) });
    store.failRolledPuts = true;

    // Act
    const failedRoll = await recordActivity(SHARD, [insert(2, image(2))], { activity: store, clock: clockAt(T0 + ACTIVITY_ROLL_SECONDS * SECOND) });
    store.failLanePuts = true;
    const failedPut = await recordActivity(SHARD, [insert(3, image(3))], { activity: store, clock: clockAt(T0 + (ACTIVITY_ROLL_SECONDS + 1) * SECOND) });
    store.failRolledPuts = false;
    store.failLanePuts = false;
    const redone = await recordActivity(SHARD, [insert(4, image(4))], { activity: store, clock: clockAt(T0 + 2 * ACTIVITY_ROLL_SECONDS * SECOND) });

    // Assert
    expect(failedRoll).toMatchObject({ laneItems: 1, failedLaneItems: 0, rolled: [], failedRolls: [LANE], error: new Error('throttled') });
    expect(failedPut).toMatchObject({ laneItems: 1, failedLaneItems: 1, rolled: [], failedRolls: [], error: new Error('throttled') });
    expect(redone).toMatchObject({ rolled: [LANE], failedRolls: [] });
    expect(store.rolledOf(WS_A)?.events.map((e) => e.k)).toEqual([key(2), key(1)]);
  });
});

describe('recentActivity', () => {
  const NOW = new Date('2026-11-22T12:00:00.000Z');
  const subjects: SubjectDirectory = {
    getMany: async (ids) => new Map(ids.filter((id) => id === WS_A || id === WS_B).map((id) => [id, { id } as Subject])),
  };
  const deps = (activity: ActivityReader, now = NOW) => ({ subjects, activity, clock: { now: () => now } });
  const viewOf = (n: number) => ({ time: time(n), usageType: 'tokens', quantity: n + 1 });
  /** A store holding a rolled lane: WS_A's rolling item, the marker and lane items. */
  async function rolledLane(rolledItems: ActivityLaneItem[], laneItems: ActivityLaneItem[]) {
    const store = memoryActivity();
    await store.putLaneItems([...rolledItems, ...laneItems]);
    const last = rolledItems[rolledItems.length - 1] as ActivityLaneItem;
    await store.putRolled(rollActivity(rolledItems, new Map(), NOW));
    await store.claimRoll(LANE, undefined, 1);
    await store.finishRoll({ lane: LANE, through: last.sk, rolledAt: 1 }, 1);
    return store;
  }

  test("the newest `limit` of the rolling item's events and the lane items' since the roll-up; the other workspaces' events of the lane are not shown", async () => {
    // Arrange: 22 events rolled (20 kept); later lane items hold WS_A's 30..33 beside WS_B's events, newer than all of them
    const rolledItems = [
      laneItem(0, 1, { [WS_A]: Array.from({ length: 12 }, (_, i) => stored(11 - i)) }),
      laneItem(10, 20, { [WS_A]: Array.from({ length: 10 }, (_, i) => stored(21 - i)), [WS_B]: [stored(90)] }),
    ];
    const store = await rolledLane(rolledItems, [
      laneItem(700, 40, { [WS_B]: [stored(91), stored(80)], [WS_A]: [stored(31), stored(30)] }),
      laneItem(710, 50, { [WS_A]: [stored(33), stored(32)], [WS_B]: [stored(95)] }),
    ]);

    // Act
    const five = await recentActivity(WS_A, { limit: 5 }, deps(store));
    const all = await recentActivity(WS_A, { limit: 100 }, deps(store));
    const b = await recentActivity(WS_B, { limit: 100 }, deps(store));

    // Assert: WS_A's rolling item kept 21..2; the lane items read add 33..30, and 1 and 0 from the rolled items read in
    // the margin (true events, shown once)
    expect(five).toEqual({ subject: WS_A, events: [33, 32, 31, 30, 21].map(viewOf) });
    expect(all.events).toEqual([33, 32, 31, 30, ...Array.from({ length: 22 }, (_, i) => 21 - i)].map(viewOf));
    expect(b.events).toEqual([95, 91, 90, 80].map(viewOf));
  });

  test('reads lane items from the margin before the marker’s `through`; a lane item there loses to the rolling item, a later one replaces it', async () => {
    // Arrange: event 5 rolled as 55 from the item at 100 s; an item landing late at 90 s (in the margin) holds 5 as 50;
    // event 6 rolled as 7, corrected to 66 at 800 s; an item before the margin is never read
    const rolledItems = [laneItem(30, 1, { [WS_A]: [stored(6), stored(4)] }), laneItem(100, 5, { [WS_A]: [stored(5, { q: '55' })] })];
    const store = await rolledLane(rolledItems, [laneItem(90, 3, { [WS_A]: [stored(5, { q: '50' })] }), laneItem(800, 9, { [WS_A]: [stored(6, { q: '66' })] })]);
    await store.putLaneItems([laneItem(30, 2, { [WS_A]: [stored(99)] })]);
    store.laneItemsRead = 0;

    // Act
    const view = await recentActivity(WS_A, { limit: 20 }, deps(store));

    // Assert
    expect(activityReadFrom(store.markerOf(LANE)?.through)).toBe(`A#${new Date(WRITTEN_AT.getTime() + 40 * SECOND).toISOString()}`);
    expect(view.events).toEqual([{ time: time(6), usageType: 'tokens', quantity: 66 }, { time: time(5), usageType: 'tokens', quantity: 55 }, viewOf(4)]);
    expect(store.laneItemsRead).toBe(3);
  });

  test('between lane items, the copy from the later records wins (a bisected retry writes later but from earlier records)', async () => {
    // Arrange: no roll-up yet; event 5 corrected by records after 20, and a retry of the first batch's half written later
    const store = memoryActivity();
    await store.putLaneItems([laneItem(0, 10, { [WS_A]: [stored(6), stored(5)] }), laneItem(10, 20, { [WS_A]: [stored(5, { q: '500' })] }), laneItem(20, 15, { [WS_A]: [stored(6), stored(5)] })]);

    // Act
    const view = await recentActivity(WS_A, { limit: 20 }, deps(store));

    // Assert
    expect(view.events).toEqual([viewOf(6), { time: time(5), usageType: 'tokens', quantity: 500 }]);
  });

  test('lane items and rolled events past their expiry are skipped; amounts past 2^53 stay exact', async () => {
    // Arrange: the lane item at 700 s expires a week after it was written; the rolled event 2 expired already
    const rolledItems = [laneItem(0, 1, { [WS_A]: [stored(2), stored(1, { q: '9007199254740993' })] })];
    const store = await rolledLane(rolledItems, [laneItem(700, 9, { [WS_A]: [stored(9)] })]);
    const item = store.rolledOf(WS_A) as ActivityRolled;
    await store.putRolled([{ ...item, events: item.events.map((e) => (e.k === key(2) ? { ...e, x: 1 } : e)) }]);
    const expiry = (rolledItems[0] as ActivityLaneItem).expiresAt;

    // Act
    const now = await recentActivity(WS_A, { limit: 20 }, deps(store));
    const weekLater = await recentActivity(WS_A, { limit: 20 }, deps(store, new Date((expiry + 1) * 1000)));

    // Assert
    expect(now.events).toEqual([viewOf(9), { time: time(1), usageType: 'tokens', quantity: new LosslessNumber('9007199254740993') }]);
    expect(weekLater.events).toEqual([viewOf(9)]);
  });

  test(`reads at most ${ACTIVITY_MAX_ITEMS_READ} lane items, newest written first`, async () => {
    // Arrange: a lane never rolled up, 250 items of WS_B, WS_A's one event in the oldest
    const store = memoryActivity();
    await store.putLaneItems([laneItem(0, 1, { [WS_A]: [stored(1)] }), ...Array.from({ length: 249 }, (_, i) => laneItem(i + 1, i + 2, { [WS_B]: [stored(i)] }))]);

    // Act
    const view = await recentActivity(WS_A, { limit: 20 }, deps(store));

    // Assert
    expect(store.laneItemsRead).toBe(ACTIVITY_MAX_ITEMS_READ);
    expect(view.events).toEqual([]);
  });

  test('an unknown workspace is 404 unknown_workspace; the query takes a limit of 1 to 100 (default 20) and nothing else', async () => {
    // Act / Assert
    await expect(recentActivity('ws_nobody', { limit: 20 }, deps(memoryActivity()))).rejects.toMatchObject({ constructor: NotFoundError, code: 'unknown_workspace' });
    expect(activityQuerySchema.parse({})).toEqual({ limit: 20 });
    for (const bad of [{ limit: '0' }, { limit: '101' }, { limit: '2.5' }, { limit: 'x' }, { since: '1' }]) expect(activityQuerySchema.safeParse(bad).success).toBe(false);
  });
});

describe('recent activity over 40 minutes of batches from two shards', () => {
  test("every answer is the newest events sent, as last corrected, and a read takes at most the roll-up period's lane items", async () => {
    // Arrange: 6 workspaces of one lane and one of another; every 10 s each shard applies a batch of 0-4 events per
    // workspace (times up to 5 minutes back, an event's records always on its own shard), some correcting earlier events
    const workspaces = [...sameLane(6, 'ws_sim_'), WS_C];
    const random = new Random(7);
    const store = memoryActivity();
    const sent = new Map<string, { subject: string; time: string; quantity: string; shard: number }>();
    const sequence = [1_000, 1_000];
    const start = WRITTEN_AT.getTime();
    const directory: SubjectDirectory = { getMany: async (ids) => new Map(ids.map((id) => [id, { id } as Subject])) };
    let maxRead = 0;
    let eventCount = 0;

    for (let tick = 0; tick < 240; tick++) {
      const now = start + tick * 10 * SECOND;
      const clock = { now: () => new Date(now) };
      for (const shard of [0, 1]) {
        const changes: LedgerChange[] = [];
        for (const subject of workspaces) {
          for (let n = random.int(5); n > 0; n--) {
            const known = [...sent].filter(([, e]) => e.subject === subject && e.shard === shard);
            const correct = known.length > 0 && random.int(6) === 0;
            const [eventKey, event] = correct
              ? (known[random.int(known.length)] as [string, { subject: string; time: string; quantity: string; shard: number }])
              : [`["//sim","${eventCount++}"]`, { subject, time: new Date(now - random.int(300) * SECOND).toISOString(), quantity: '', shard }];
            const next = { ...event, quantity: String(1 + random.int(1000)) };
            sent.set(eventKey, next);
            sequence[shard] = (sequence[shard] as number) + 1;
            changes.push({ sequenceNumber: String(sequence[shard]), newImage: { ...image(0), eventKey, subject, time: next.time, quantity: next.quantity } });
          }
        }
        await recordActivity(`shard-${shard}`, changes, { activity: store, clock });
      }

      // Act / Assert: every minute, each workspace's answer against the newest 20 it was sent
      if (tick % 6 !== 5) continue;
      for (const subject of workspaces) {
        store.laneItemsRead = 0;
        const view = await recentActivity(subject, { limit: 20 }, { subjects: directory, activity: store, clock });
        maxRead = Math.max(maxRead, store.laneItemsRead);
        const expected = [...sent]
          .filter(([, e]) => e.subject === subject)
          .sort(([ka, a], [kb, b]) => (a.time === b.time ? (ka < kb ? 1 : -1) : a.time < b.time ? 1 : -1))
          .slice(0, 20)
          .map(([, e]) => ({ time: e.time, usageType: 'tokens', quantity: Number(e.quantity) }));
        expect({ tick, subject, events: view.events }).toEqual({ tick, subject, events: expected });
      }
    }

    // Assert: rolled up; two shards write a lane item each per 10 s, and a read covers the period and two margins
    expect(store.markerOf(checkpointLaneOf(workspaces[0] as string))?.through).toBeDefined();
    expect(store.rolledOf(workspaces[0] as string)?.events).toHaveLength(20);
    expect(maxRead).toBeLessThanOrEqual(2 * ((ACTIVITY_ROLL_SECONDS + 2 * ACTIVITY_ROLL_MARGIN_SECONDS) / 10 + 1));
    expect(maxRead).toBeGreaterThan(2 * (ACTIVITY_ROLL_SECONDS / 10) - 1);
  });
});
