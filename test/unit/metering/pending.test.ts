import { describe, expect, test } from '@jest/globals';
import type { RollupRow } from '../../../functions/core/metering/metering-ports';
import { decodePending, emptyLane, encodePending, type LaneState, PENDING_LIMITS, pendingKey, planLaneCommit, withCheckpoint, withPending } from '../../../functions/core/metering/pending';
import { checkpointLaneOf, MAX_COUNTERS_PER_UPDATE, type RollupUpdate } from '../../../functions/core/metering/rollups';

const NANO = 1_000_000_000n;
const CYCLE = '2026-11-15T00:00:00.000Z';
const NOW = new Date('2026-11-22T10:30:00.000Z');
const SHARD = { shardId: 'shard-1', sequenceNumber: '0'.repeat(30) + '1234567890' };

/** Two workspaces of one lane and one of another, found by hashing here rather than trusting any list. */
const [WS_A, WS_B] = (() => {
  const ids = Array.from({ length: 500 }, (_, i) => `ws_${i}`);
  const lane = checkpointLaneOf(ids[0] as string);
  return ids.filter((id) => checkpointLaneOf(id) === lane).slice(0, 2) as [string, string];
})();
const LANE = checkpointLaneOf(WS_A);
const WS_ELSEWHERE = Array.from({ length: 500 }, (_, i) => `ws_x${i}`).find((id) => checkpointLaneOf(id) !== LANE) as string;

function day(subject: string, quantity: bigint, requests: bigint, hour = '2026-11-22T10'): RollupUpdate {
  return {
    subject,
    usageType: 'tokens',
    kind: 'day',
    period: hour.slice(0, 10),
    total: quantity * NANO,
    requests,
    counters: new Map([
      [`h#${hour}`, quantity * NANO],
      [`r#${hour}`, requests * NANO],
    ]),
  };
}
function cycle(subject: string, quantity: bigint, requests: bigint, extra: Partial<RollupUpdate> = {}): RollupUpdate {
  return { subject, usageType: 'tokens', kind: 'cycle', period: CYCLE, total: quantity * NANO, requests, counters: new Map([['d#2026-11-22', quantity * NANO]]), ...extra };
}
const keys = (updates: readonly RollupUpdate[]) => updates.map(pendingKey).sort();

describe('planLaneCommit', () => {
  test('sparse updates wait in the lane item with the checkpoint: nothing folds, the version grows, the clock of the oldest starts', () => {
    // Act
    const { fold, next } = planLaneCommit(LANE, emptyLane(), [day(WS_A, 3n, 1n), cycle(WS_A, 3n, 1n)], SHARD, NOW);

    // Assert
    expect(fold).toEqual([]);
    expect(next.version).toBe(1);
    expect(next.checkpoints.get('shard-1')).toEqual({ sequenceNumber: SHARD.sequenceNumber, at: NOW.toISOString() });
    expect(next.since).toBe(NOW.toISOString());
    expect(keys([...next.pending.values()])).toEqual(keys([day(WS_A, 0n, 0n), cycle(WS_A, 0n, 0n)]));
    expect(next.pending.get(pendingKey(day(WS_A, 0n, 0n)))?.total).toBe(3n * NANO);
  });

  test(`an item that gathers ${PENDING_LIMITS.foldAtRequests} events folds with a commit that is a transaction anyway, with everything that waited for it; alone it keeps waiting`, () => {
    // Arrange: WS_A has 19 events waiting (quantity 1 each), WS_B 2.
    const before = planLaneCommit(LANE, emptyLane(), [day(WS_A, 19n, 19n), cycle(WS_A, 19n, 19n), day(WS_B, 2n, 2n)], SHARD, NOW).next;
    const member: RollupUpdate = { subject: WS_B, usageType: 'tokens', kind: 'user', period: CYCLE, member: 'u1', total: NANO, requests: 1n, counters: new Map() };

    // Act: the 20th event of WS_A (quantity 5) and one more of WS_B; once alone, once beside a user item (which never waits).
    const alone = planLaneCommit(LANE, before, [day(WS_A, 5n, 1n), cycle(WS_A, 5n, 1n), day(WS_B, 1n, 1n)], SHARD, NOW);
    const { fold, next } = planLaneCommit(LANE, before, [day(WS_A, 5n, 1n), cycle(WS_A, 5n, 1n), day(WS_B, 1n, 1n), member], SHARD, NOW);

    // Assert: alone, a single put of the lane item: nothing folds. Beside the user item, WS_A's two items fold with
    // 19 + 5 = 24 and 20 events; WS_B's day item waits with 3.
    expect(alone.fold).toEqual([]);
    expect(alone.next.pending.get(pendingKey(day(WS_A, 0n, 0n)))?.requests).toBe(20n);
    expect(keys(fold)).toEqual(keys([day(WS_A, 0n, 0n), cycle(WS_A, 0n, 0n), member]));
    for (const update of fold.filter((u) => u.subject === WS_A)) {
      expect(update.total).toBe(24n * NANO);
      expect(update.requests).toBe(20n);
    }
    expect(fold.find((u) => u.kind === 'day')?.counters.get('r#2026-11-22T10')).toBe(20n * NANO);
    expect([...next.pending.values()].map((u) => [u.subject, u.kind, u.total])).toEqual([[WS_B, 'day', 3n * NANO]]);
    expect(next.version).toBe(before.version + 1);
    expect(next.since).toBe(before.since);
  });

  test('what may not wait folds at once, with what of its item waited: members, late items, admissions, closed cycles, another lane, a cycle that may be closed', () => {
    // Arrange: WS_A's cycle item has 2 events waiting; the lane knows a close of the cycle starting at CYCLE's previous month.
    const waiting = planLaneCommit(LANE, emptyLane(), [cycle(WS_A, 2n, 2n)], SHARD, NOW).next;
    const member: RollupUpdate = { subject: WS_A, usageType: 'tokens', kind: 'user', period: CYCLE, member: 'u1', total: NANO, requests: 1n, counters: new Map() };
    const late: RollupUpdate = { subject: WS_A, usageType: 'tokens', kind: 'late', period: '2026-10-15T00:00:00.000Z', member: '["s","e"]', total: NANO, counters: new Map() };
    const admitting = cycle(WS_A, 1n, 1n, { admit: { channel: { expected: 0, values: ['web'] } } });
    const elsewhere = day(WS_ELSEWHERE, 1n, 1n);

    // Act
    const { fold, next } = planLaneCommit(LANE, waiting, [member, late, admitting, elsewhere], SHARD, NOW);
    const closed = planLaneCommit(LANE, { ...emptyLane(), closedThrough: CYCLE }, [cycle(WS_B, 1n, 1n), day(WS_B, 1n, 1n)], SHARD, NOW);

    // Assert: all four fold; the admitting cycle update carries the 2 waiting events and its admission.
    expect(keys(fold)).toEqual(keys([member, late, admitting, elsewhere]));
    const merged = fold.find((u) => u.kind === 'cycle');
    expect(merged?.total).toBe(3n * NANO);
    expect(merged?.requests).toBe(3n);
    expect(merged?.admit).toEqual({ channel: { expected: 0, values: ['web'] } });
    expect(next.pending.size).toBe(0);
    // A cycle starting at or before closedThrough folds (its commit checks the item is open); its day item may wait.
    expect(keys(closed.fold)).toEqual(keys([cycle(WS_B, 0n, 0n)]));
    expect(keys([...closed.next.pending.values()])).toEqual(keys([day(WS_B, 0n, 0n)]));
    expect(closed.next.closedThrough).toBe(CYCLE);
  });

  test(`a lane whose oldest delta waited ${PENDING_LIMITS.maxPendingSeconds} s folds whole, at most ${PENDING_LIMITS.maxFoldItems} items per commit`, () => {
    // Arrange: 120 day items waiting: 5 workspaces of the lane × 24 days.
    const subjects = Array.from({ length: 500 }, (_, i) => `ws_${i}`)
      .filter((id) => checkpointLaneOf(id) === LANE)
      .slice(0, 5);
    const hours = Array.from({ length: 24 }, (_, h) => `2026-11-22T${String(h).padStart(2, '0')}`);
    const updates = subjects.flatMap((s) => hours.map((hour, h) => ({ ...day(s, 1n, 1n, hour), period: `2026-11-${String(h + 1).padStart(2, '0')}` })));
    const started = planLaneCommit(LANE, emptyLane(), updates, SHARD, NOW, { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 }).next;
    expect(started.pending.size).toBe(120);

    // Act: one commit just before the limit, one at it.
    const before = planLaneCommit(LANE, started, [], SHARD, new Date(NOW.getTime() + (PENDING_LIMITS.maxPendingSeconds - 1) * 1000), { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 });
    const at = planLaneCommit(LANE, started, [], SHARD, new Date(NOW.getTime() + PENDING_LIMITS.maxPendingSeconds * 1000), { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 });

    // Assert: before, nothing; at the limit 99 items fold and 21 wait, their clock started again.
    expect(before.fold).toEqual([]);
    expect(at.fold).toHaveLength(99);
    expect(at.next.pending.size).toBe(21);
    expect(at.next.since).toBe(new Date(NOW.getTime() + PENDING_LIMITS.maxPendingSeconds * 1000).toISOString());
    expect(new Set([...keys(at.fold), ...keys([...at.next.pending.values()])]).size).toBe(120);
  });

  test(`an update the lane item has no room for (${PENDING_LIMITS.maxPendingBytes} bytes of deltas) folds at once; what waits stays within the limit`, () => {
    // Arrange: day items with many hour × channel counters, named apart (about 1.3 KB each once stored, whatever is shared).
    const wide = (dayOfMonth: number): RollupUpdate => {
      const update = day(WS_A, 1n, 1n);
      update.period = `2026-11-${String(dayOfMonth).padStart(2, '0')}`;
      for (let c = 0; c < 40; c++) update.counters.set(`ch#2026-11-22T10#channel-${dayOfMonth}-${c}`, NANO);
      return update;
    };
    const many = Array.from({ length: 20 }, (_, i) => wide(i + 1));
    expect(encodePending(new Map(many.map((u) => [pendingKey(u), u]))).length).toBeGreaterThan(PENDING_LIMITS.maxPendingBytes);

    // Act
    const { fold, next } = planLaneCommit(LANE, emptyLane(), many, SHARD, NOW);

    // Assert: the first ones wait while they fit, the rest fold; nothing is lost, and the commit folds no waiting item
    // beyond what has no room (none has gathered 20 events).
    expect(encodePending(next.pending).length).toBeLessThanOrEqual(PENDING_LIMITS.maxPendingBytes);
    expect(next.pending.size).toBeGreaterThan(0);
    expect(fold.length).toBeGreaterThan(0);
    expect(keys([...fold, ...next.pending.values()])).toEqual(keys(many));
    expect(keys([...next.pending.values()])).toEqual(keys(many.slice(0, next.pending.size)));
  });

  test(`an item never folds with more than ${MAX_COUNTERS_PER_UPDATE} counters, the most one update expression takes`, () => {
    // Arrange: WS_A's day item waits with 200 hour × channel counters; the next update names 100 others.
    const withChannels = (from: number, count: number): RollupUpdate => {
      const update = day(WS_A, 1n, 1n);
      for (let c = from; c < from + count; c++) update.counters.set(`ch#2026-11-22T10#c${c}`, NANO);
      return update;
    };
    const waiting = planLaneCommit(LANE, emptyLane(), [withChannels(0, 198)], SHARD, NOW, { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 }).next;
    const key = pendingKey(day(WS_A, 0n, 0n));
    expect(waiting.pending.get(key)?.counters.size).toBe(200);
    const member: RollupUpdate = { subject: WS_A, usageType: 'tokens', kind: 'user', period: CYCLE, member: 'u1', total: NANO, requests: 1n, counters: new Map() };

    // Act: once as a day update that may wait; once as one that must fold (its subject's lane is not this one: a pooled record).
    const pendable = planLaneCommit(LANE, waiting, [withChannels(500, 100)], SHARD, NOW, { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 });
    const mustFold = planLaneCommit(`${LANE}-other`, { ...waiting }, [withChannels(500, 100), member], SHARD, NOW, { ...PENDING_LIMITS, maxPendingBytes: 1_000_000 });

    // Assert: the new update folds alone (102 counters) and what waited waits on (200); nothing is lost.
    expect(pendable.fold.map((u) => u.counters.size)).toEqual([102]);
    expect(pendable.next.pending.get(key)?.counters.size).toBe(200);
    expect((pendable.fold[0]?.total ?? 0n) + (pendable.next.pending.get(key)?.total ?? 0n)).toBe(2n * NANO);
    // Folding at once, the update goes alone and what waited keeps waiting.
    const folded = mustFold.fold.find((u) => u.kind === 'day');
    expect(folded?.counters.size).toBe(102);
    expect(mustFold.next.pending.get(key)?.counters.size).toBe(200);
  });

  test('a checkpoint moved alone (a parked record, a chunk of several lanes) keeps every delta, however long it waited', () => {
    // Arrange: a delta that has waited past the fold limit.
    const waiting = planLaneCommit(LANE, emptyLane(), [day(WS_A, 3n, 1n)], SHARD, NOW).next;
    const later = new Date(NOW.getTime() + 2 * PENDING_LIMITS.maxPendingSeconds * 1000);

    // Act
    const moved = withCheckpoint(waiting, { shardId: 'shard-2', sequenceNumber: '9'.padStart(40, '0') }, later);

    // Assert
    expect(moved.pending).toEqual(waiting.pending);
    expect(moved.since).toBe(waiting.since);
    expect(moved.version).toBe(waiting.version + 1);
    expect(Object.fromEntries(moved.checkpoints)).toEqual({ ...Object.fromEntries(waiting.checkpoints), 'shard-2': { sequenceNumber: '9'.padStart(40, '0'), at: later.toISOString() } });
  });

  test('deltas that cancel out (a correction moving an event back) write nothing', () => {
    const { fold, next } = planLaneCommit(LANE, emptyLane(), [cycle(WS_A, 0n, 0n, { counters: new Map() })], SHARD, NOW);
    expect(fold).toEqual([]);
    expect(next.pending.size).toBe(1);
  });
});

describe('stored form', () => {
  test('round trips exactly: amounts past 2^53, fractions, negative deltas, kinds, periods and usage types', () => {
    // Arrange
    const big = 9_007_199_254_740_993n * NANO + 1n;
    const state: LaneState = planLaneCommit(
      LANE,
      emptyLane(),
      [
        { ...day(WS_A, 1n, 1n), total: big },
        { ...cycle(WS_B, -2n, -1n), usageType: 'credits' },
      ],
      SHARD,
      NOW,
    ).next;

    // Act
    const decoded = decodePending(encodePending(state.pending));

    // Assert
    expect([...decoded.keys()].sort()).toEqual([...state.pending.keys()].sort());
    for (const [key, update] of state.pending) {
      const back = decoded.get(key);
      expect(back?.total).toBe(update.total);
      expect(back?.requests).toBe(update.requests);
      expect([back?.kind, back?.period, back?.usageType, back?.subject]).toEqual([update.kind, update.period, update.usageType, update.subject]);
      expect(Object.fromEntries(back?.counters ?? [])).toEqual(Object.fromEntries(update.counters));
    }
    expect(decoded.get(pendingKey({ subject: WS_A, kind: 'day', period: '2026-11-22', usageType: 'tokens' }))?.total).toBe(big);
    expect(decodePending(undefined).size).toBe(0);
  });
});

describe('withPending', () => {
  test('adds to the stored rows as a fold would, makes rows for items not stored yet, and keeps sort-key order', () => {
    // Arrange: a stored day row with 10 in hour 10; pending +5 there and +2 in hour 11, and a day not stored yet.
    const stored: RollupRow[] = [{ usageType: 'tokens', kind: 'day', period: '2026-11-22', total: '10', requests: '4', counters: { 'h#2026-11-22T10': '10', 'r#2026-11-22T10': '4' } }];
    const plus = {
      ...day(WS_A, 5n, 1n),
      counters: new Map([
        ['h#2026-11-22T10', 5n * NANO],
        ['h#2026-11-22T11', 2n * NANO],
        ['r#2026-11-22T10', NANO],
      ]),
    };
    plus.total = 7n * NANO;
    const earlier = { ...day(WS_A, 1n, 1n, '2026-11-21T23') };

    // Act
    const rows = withPending(stored, [plus, earlier]);

    // Assert
    expect(rows.map((r) => r.period)).toEqual(['2026-11-21', '2026-11-22']);
    expect(rows[1]).toEqual({
      usageType: 'tokens',
      kind: 'day',
      period: '2026-11-22',
      total: '17',
      requests: '5',
      counters: { 'h#2026-11-22T10': '15', 'h#2026-11-22T11': '2', 'r#2026-11-22T10': '5' },
    });
    expect(rows[0]).toMatchObject({ total: '1', requests: '1', counters: { 'h#2026-11-21T23': '1', 'r#2026-11-21T23': '1' } });
    expect(withPending(stored, [])).toEqual(stored);
  });
});
