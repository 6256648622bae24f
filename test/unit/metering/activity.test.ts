import { describe, expect, test } from '@jest/globals';
import { LosslessNumber } from 'lossless-json';
import { NotFoundError } from '../../../functions/core/errors';
import { ACTIVITY_EVENTS_PER_ITEM, activityItems, activityQuerySchema, recentActivity } from '../../../functions/core/metering/activity';
import type { ActivityItem, ActivityReader } from '../../../functions/core/metering/metering-ports';
import type { LedgerChange, LedgerImage } from '../../../functions/core/metering/rollups';
import type { Subject, SubjectDirectory } from '../../../functions/core/ports';

/**
 * Recent activity: the pure builder of a batch's activity items (one per workspace, its newest 20 events, a key
 * that the same records always give) and the reader's merge of items into the newest `limit` events. Expected
 * items are written out by hand from the records each test builds.
 */

const SHARD = 'shardId-00000001';
const WRITTEN_AT = new Date('2026-11-22T12:00:00.000Z');
const EXPIRES_AT = Date.parse('2026-11-29T12:00:00.000Z') / 1000;
const PAD = (n: number) => String(n).padStart(40, '0');

/** Event n of a workspace: at 10:00 + n seconds, n + 1 tokens. */
const image = (n: number, overrides: Partial<LedgerImage> = {}): LedgerImage => ({
  eventKey: `["//app","e${String(n).padStart(3, '0')}"]`,
  subject: 'ws_a',
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

const insert = (sequence: number, newImage: LedgerImage): LedgerChange => ({ sequenceNumber: String(sequence), newImage });

describe('activityItems', () => {
  test("one item per workspace, holding its newest 20 events newest first, keyed by the newest time, the shard and the workspace's first record", () => {
    // Arrange: 25 events of ws_a in shuffled time order, 2 of ws_b
    const order = [7, 3, 24, 0, 11, 19, 1, 22, 5, 13, 8, 20, 2, 17, 9, 23, 4, 15, 10, 21, 6, 14, 12, 18, 16];
    const changes = [insert(100, image(50, { subject: 'ws_b' })), ...order.map((n, i) => insert(101 + i, image(n))), insert(200, image(51, { subject: 'ws_b', feature: 'chat' }))];

    // Act
    const items = activityItems(SHARD, changes, WRITTEN_AT);

    // Assert: events 24 down to 5 for ws_a (the oldest 5 left out); ws_b's first record is 100, ws_a's 101
    const newest = Array.from({ length: ACTIVITY_EVENTS_PER_ITEM }, (_, i) => 24 - i);
    expect(items).toEqual([
      {
        subject: 'ws_b',
        sk: `A#${time(51)}#${SHARD}#${PAD(100)}`,
        events: [
          { t: time(51), u: 'tokens', f: 'chat', q: '52', k: key(51) },
          { t: time(50), u: 'tokens', q: '51', k: key(50) },
        ],
        expiresAt: EXPIRES_AT,
      },
      { subject: 'ws_a', sk: `A#${time(24)}#${SHARD}#${PAD(101)}`, events: newest.map((n) => ({ t: time(n), u: 'tokens', q: String(n + 1), k: key(n) })), expiresAt: EXPIRES_AT },
    ]);
  });

  test('the same records give the same items (a retried batch rewrites the same key), whatever the write time but the expiry', () => {
    // Arrange
    const changes = [insert(7, image(1)), insert(8, image(2, { subject: 'ws_b' })), insert(9, image(3))];

    // Act
    const first = activityItems(SHARD, changes, WRITTEN_AT);
    const again = activityItems(SHARD, changes, new Date(WRITTEN_AT.getTime() + 60_000));

    // Assert
    expect(again.map(({ sk, events }) => ({ sk, events }))).toEqual(first.map(({ sk, events }) => ({ sk, events })));
    expect(first.map((i) => i.sk)).toEqual([`A#${time(3)}#${SHARD}#${PAD(7)}`, `A#${time(2)}#${SHARD}#${PAD(8)}`]);
    expect(again.map((i) => i.expiresAt - (first[0] as ActivityItem).expiresAt)).toEqual([60, 60]);
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
    const [item, ...others] = activityItems(SHARD, changes, WRITTEN_AT);

    // Assert
    expect(others).toEqual([]);
    expect(item?.sk).toBe(`A#${time(4)}#${SHARD}#${PAD(10)}`);
    expect(item?.events).toEqual([
      { t: time(4), u: 'tokens', q: '5', k: key(4) },
      { t: time(0), u: 'tokens', f: 'generate', q: '9', c: '4.5', k: key(1) },
    ]);
  });

  test('a batch of removals only, or of images without a time, writes nothing', () => {
    // Arrange
    const { time: _, ...timeless } = image(5);

    // Act / Assert
    expect(activityItems(SHARD, [{ sequenceNumber: '1', oldImage: image(1) }, insert(2, timeless)], WRITTEN_AT)).toEqual([]);
  });

  test('events at the same time are ordered by event key, the greater first', () => {
    // Arrange
    const at = time(0);

    // Act
    const [item] = activityItems(SHARD, [insert(1, image(1, { time: at })), insert(2, image(2, { time: at })), insert(3, image(0))], WRITTEN_AT);

    // Assert
    expect(item?.events.map((e) => e.k)).toEqual([key(2), key(1), key(0)]);
  });
});

describe('recentActivity', () => {
  const NOW = new Date('2026-11-22T12:00:00.000Z');
  const subjects: SubjectDirectory = {
    getMany: async (ids) => new Map(ids.filter((id) => id === 'ws_a').map((id) => [id, { id } as Subject])),
  };
  /** A reader over items (served greatest key first), counting how many it yielded. */
  function reader(items: ActivityItem[]): ActivityReader & { read: number } {
    const sorted = [...items].sort((a, b) => (a.sk < b.sk ? 1 : -1));
    const fake = {
      read: 0,
      async *newest(subject: string) {
        for (const item of sorted) {
          if (item.subject !== subject) continue;
          fake.read++;
          yield item;
        }
      },
    };
    return fake;
  }
  const item = (batch: number, ns: number[], overrides: Partial<ActivityItem> = {}): ActivityItem => {
    const [one] = activityItems(
      SHARD,
      ns.map((n, i) => insert(batch * 1000 + i, image(n))),
      NOW,
    );
    return { ...(one as ActivityItem), ...overrides };
  };
  const deps = (activity: ActivityReader) => ({ subjects, activity, clock: { now: () => NOW } });
  const viewOf = (n: number) => ({ time: time(n), usageType: 'tokens', quantity: n + 1 });

  test('the newest `limit` events across items, newest first, reading only the items that can hold them', async () => {
    // Arrange: three batches, the first overlapping the others in time; two old ones
    const activity = reader([item(1, [20, 21, 22, 30]), item(2, [23, 24, 25]), item(3, [26, 27, 28, 29]), item(4, [1, 2, 3]), item(5, [0])]);

    // Act
    const view = await recentActivity('ws_a', activityQuerySchema.parse({ limit: '6' }), deps(activity));

    // Assert: 30 (batch 1's newest) puts batch 1 first; 29..25 follow from batches 3 and 2; batch 4 is only
    // looked at (its newest time, 3, is older than the 6th event kept), batch 5 never
    expect(view).toEqual({ subject: 'ws_a', events: [30, 29, 28, 27, 26, 25].map(viewOf) });
    expect(activity.read).toBe(4);
  });

  test('an event in several items (a retried batch that started elsewhere, a later correction) is shown once, from the item written from the later records', async () => {
    // Arrange: event 5 in both items; the newer item holds a corrected quantity
    const older = item(1, [4, 5]);
    const newer = item(2, [5, 6]);
    newer.events = newer.events.map((e) => (e.k === key(5) ? { ...e, q: '100', c: '0.5' } : e));

    // Act
    const view = await recentActivity('ws_a', { limit: 20 }, deps(reader([older, newer])));

    // Assert
    expect(view.events).toEqual([viewOf(6), { time: time(5), usageType: 'tokens', quantity: 100, credits: 0.5 }, viewOf(4)]);
  });

  test('a later correction of an event that was not the newest of its batch wins over its first copy, whose item has the greater key', async () => {
    // Arrange: batch 1 holds events 4 and 9 (its key names 9's time); batch 2 corrects event 4 alone (its key names 4's time)
    const first = item(1, [4, 9]);
    const correction = item(2, [4]);
    correction.events = correction.events.map((e) => ({ ...e, q: '40' }));

    // Act
    const view = await recentActivity('ws_a', { limit: 2 }, deps(reader([first, correction])));

    // Assert
    expect(first.sk > correction.sk).toBe(true);
    expect(view.events).toEqual([viewOf(9), { time: time(4), usageType: 'tokens', quantity: 40 }]);
  });

  test('items past their expiry are skipped; amounts past 2^53 stay exact', async () => {
    // Arrange
    const expired = item(2, [9], { expiresAt: Math.floor(NOW.getTime() / 1000) });
    const live = item(1, [1]);
    live.events = live.events.map((e) => ({ ...e, q: '9007199254740993' }));

    // Act
    const view = await recentActivity('ws_a', { limit: 20 }, deps(reader([expired, live])));

    // Assert
    expect(view.events).toEqual([{ time: time(1), usageType: 'tokens', quantity: new LosslessNumber('9007199254740993') }]);
  });

  test('an unknown workspace is 404 unknown_workspace; the query takes a limit of 1 to 100 (default 20) and nothing else', async () => {
    // Act / Assert
    await expect(recentActivity('ws_nobody', { limit: 20 }, deps(reader([])))).rejects.toMatchObject({ constructor: NotFoundError, code: 'unknown_workspace' });
    expect(activityQuerySchema.parse({})).toEqual({ limit: 20 });
    for (const bad of [{ limit: '0' }, { limit: '101' }, { limit: '2.5' }, { limit: 'x' }, { since: '1' }]) expect(activityQuerySchema.safeParse(bad).success).toBe(false);
  });
});
