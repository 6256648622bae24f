import { describe, expect, test } from '@jest/globals';
import { aggregateChanges } from '../../../functions/core/metering/aggregate';
import { type Chunk, CyclesClosedError, cycleItemKey, type LedgerChange, type LedgerImage, planChunks } from '../../../functions/core/metering/rollups';
import { addTo, flatKey, InMemoryRollupWriter } from '../../support/fakes';
import { closedKey, plain } from './plain-chunks';
import { chunkTotals, generateChanges, hadToClose, laneOfChange, modelTotals, nano, sorted } from './rollup-model';

/**
 * Late events and corrections: changes to a cycle after its close. planChunks marks such a cycle item closed
 * and adds one late item per event; aggregateChanges re-plans a chunk whose cycle closed before it committed.
 * Expected totals are worked out by hand in the comments, or by the independent model in rollup-model.ts.
 */

const NANO = 1_000_000_000n;
/** An hour requests counter ('r#…') of `n` events: one event is stored as 1, in the nano-units of a quantity. */
const events = (n: bigint) => n * NANO;
const SHARD = 'shardId-00000001700000000000-late0001';
const OCT = '2026-10-15T00:00:00.000Z';
const NOV = '2026-11-15T00:00:00.000Z';

const key = (id: string) => `["test","${id}"]`;
const image = (overrides: Partial<LedgerImage> = {}): LedgerImage => ({
  eventKey: key('e1'),
  subject: 'ws_a',
  usageType: 'tokens',
  quantity: '5',
  hour: '2026-11-10T09',
  day: '2026-11-10',
  cycleStart: OCT,
  ...overrides,
});

const isLateKey = (flat: string) => flat.split('|')[2] === 'late' || flat.endsWith('|late');
/** Rollup totals without the late accounting (late items and closed cycles' late counters). */
const withoutLate = (totals: Map<string, bigint>) => sorted(new Map([...totals].filter(([flat]) => !isLateKey(flat))));
/** Sum of the late items of one cycle of one subject and usage type. */
const lateItemsSum = (totals: Map<string, bigint>, subject: string, usageType: string, cycleStart: string) =>
  [...totals].filter(([flat]) => flat.startsWith(`${subject}|${usageType}|late|${cycleStart}#`)).reduce((sum, [, value]) => sum + value, 0n);
const lateCounter = (totals: Map<string, bigint>, subject: string, usageType: string, cycleStart: string) => totals.get(flatKey(subject, usageType, 'cycle', cycleStart, 'late')) ?? 0n;

describe('cycleItemKey', () => {
  test('names a cycle item by subject and sort key', () => {
    expect(cycleItemKey('ws_a', OCT, 'tokens')).toBe(closedKey('ws_a', OCT, 'tokens'));
  });
});

describe('planChunks with closed cycles', () => {
  const closed = new Set([closedKey('ws_a', OCT, 'tokens')]);

  test('a change to a closed cycle marks its cycle update closed and adds a late item for the event', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', newImage: image({ userId: 'u1', channel: 'api' }) }], 99, closed);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT}`, total: 5n * NANO, closed: true, counters: { 'd#2026-11-10': 5n * NANO, 'c#api': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-10', total: 5n * NANO, counters: { 'h#2026-11-10T09': 5n * NANO, 'r#2026-11-10T09': events(1n), 'ch#2026-11-10T09#api': 5n * NANO } },
      { item: `ws_a tokens late ${OCT} ${key('e1')}`, total: 5n * NANO, counters: {} },
      { item: `ws_a tokens user ${OCT} u1`, total: 5n * NANO, counters: {} },
    ]);
  });

  test('a correction (old and new image of one event) nets to new − old in one late item', () => {
    // Act: 5 → 8
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '5' }), newImage: image({ quantity: '8' }) }], 99, closed);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT}`, total: 3n * NANO, closed: true, counters: { 'd#2026-11-10': 3n * NANO } },
      // the same event, in the same hour: no event more
      { item: 'ws_a tokens day 2026-11-10', total: 3n * NANO, counters: { 'h#2026-11-10T09': 3n * NANO, 'r#2026-11-10T09': 0n } },
      { item: `ws_a tokens late ${OCT} ${key('e1')}`, total: 3n * NANO, counters: {} },
    ]);
  });

  test('a correction lowering a late event gives a negative late item', () => {
    // Act: 5 → 0.25
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '5' }), newImage: image({ quantity: '0.25' }) }], 99, closed);

    // Assert: −4.75
    const late = chunks[0]?.updates.filter((u) => u.kind === 'late');
    expect(late?.map((u) => [u.member, u.total])).toEqual([[key('e1'), -4_750_000_000n]]);
  });

  test('several events: one late item per event key, each the sum of its deltas; an event added and removed is listed with 0', () => {
    // Arrange: e1 +5, e2 +3, e1 corrected 5 → 2, e3 inserted and removed
    const changes: LedgerChange[] = [
      { sequenceNumber: '1', newImage: image({ eventKey: key('e1'), quantity: '5' }) },
      { sequenceNumber: '2', newImage: image({ eventKey: key('e2'), quantity: '3', day: '2026-11-11', hour: '2026-11-11T00' }) },
      { sequenceNumber: '3', oldImage: image({ eventKey: key('e1'), quantity: '5' }), newImage: image({ eventKey: key('e1'), quantity: '2' }) },
      { sequenceNumber: '4', newImage: image({ eventKey: key('e3'), quantity: '7' }) },
      { sequenceNumber: '5', oldImage: image({ eventKey: key('e3'), quantity: '7' }) },
    ];

    // Act
    const chunks = planChunks(changes, 99, closed);

    // Assert: e1 2, e2 3, e3 0; cycle 5 (day 10: 2, day 11: 3); events: day 10 one (e1 +1, corrected −1 +1; e3 +1 −1), day 11 one (e2)
    expect(chunks).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT}`, total: 5n * NANO, closed: true, counters: { 'd#2026-11-10': 2n * NANO, 'd#2026-11-11': 3n * NANO } },
      { item: 'ws_a tokens day 2026-11-10', total: 2n * NANO, counters: { 'h#2026-11-10T09': 2n * NANO, 'r#2026-11-10T09': events(1n) } },
      { item: 'ws_a tokens day 2026-11-11', total: 3n * NANO, counters: { 'h#2026-11-11T00': 3n * NANO, 'r#2026-11-11T00': events(1n) } },
      { item: `ws_a tokens late ${OCT} ${key('e1')}`, total: 2n * NANO, counters: {} },
      { item: `ws_a tokens late ${OCT} ${key('e2')}`, total: 3n * NANO, counters: {} },
      { item: `ws_a tokens late ${OCT} ${key('e3')}`, total: 0n, counters: {} },
    ]);
  });

  test('a correction that moves an event to another day of a closed cycle keeps the cycle update and lists the event with 0', () => {
    // Act: e1 moves from Nov 10 to Nov 12, same quantity
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), newImage: image({ day: '2026-11-12', hour: '2026-11-12T09' }) }], 99, closed);

    // Assert: the late item nets to 0 but names the event (the closed cycle changed); the cycle update stays, so its commit checks the close
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT}`, total: 0n, closed: true, counters: { 'd#2026-11-10': -5n * NANO, 'd#2026-11-12': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-10', total: -5n * NANO, counters: { 'h#2026-11-10T09': -5n * NANO, 'r#2026-11-10T09': events(-1n) } },
      { item: 'ws_a tokens day 2026-11-12', total: 5n * NANO, counters: { 'h#2026-11-12T09': 5n * NANO, 'r#2026-11-12T09': events(1n) } },
      { item: `ws_a tokens late ${OCT} ${key('e1')}`, total: 0n, counters: {} },
    ]);
  });

  test('a correction moving an event out of a closed cycle into an open one: a negative late item, the open cycle plain', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), newImage: image({ quantity: '6', day: '2026-11-16', hour: '2026-11-16T09', cycleStart: NOV }) }], 99, closed);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT}`, total: -5n * NANO, closed: true, counters: { 'd#2026-11-10': -5n * NANO } },
      { item: `ws_a tokens cycle ${NOV}`, total: 6n * NANO, counters: { 'd#2026-11-16': 6n * NANO } },
      { item: 'ws_a tokens day 2026-11-10', total: -5n * NANO, counters: { 'h#2026-11-10T09': -5n * NANO, 'r#2026-11-10T09': events(-1n) } },
      { item: 'ws_a tokens day 2026-11-16', total: 6n * NANO, counters: { 'h#2026-11-16T09': 6n * NANO, 'r#2026-11-16T09': events(1n) } },
      { item: `ws_a tokens late ${OCT} ${key('e1')}`, total: -5n * NANO, counters: {} },
    ]);
  });

  test('changes to open cycles produce no late items and no closed flag, even of the same cycle start elsewhere', () => {
    // Arrange: ws_b tokens and ws_a credits share the closed cycle's start, but are not closed
    const changes: LedgerChange[] = [
      { sequenceNumber: '1', newImage: image({ subject: 'ws_b' }) },
      { sequenceNumber: '2', newImage: image({ usageType: 'credits', eventKey: key('e2') }) },
      { sequenceNumber: '3', newImage: image({ cycleStart: NOV, day: '2026-11-20', hour: '2026-11-20T09', eventKey: key('e3') }) },
    ];

    // Act
    const withClosed = planChunks(changes, 99, closed);
    const withoutClosed = planChunks(changes, 99);

    // Assert
    const updates = withClosed.flatMap((c) => c.updates);
    expect(updates.filter((u) => u.kind === 'late')).toEqual([]);
    expect(updates.filter((u) => u.closed !== undefined)).toEqual([]);
    expect(withClosed).toEqual(withoutClosed);
  });

  test('late items count toward maxItems: nine events that fit one open chunk take two when their cycle is closed', () => {
    // Arrange: nine events of one day and cycle. Open: 2 items and the checkpoint. Closed: day + cycle + checkpoint
    // + one late item each, so seven events make 10 items and the eighth would make 11.
    const changes: LedgerChange[] = Array.from({ length: 9 }, (_, i) => ({ sequenceNumber: String(10 + i), newImage: image({ eventKey: key(`n${i}`), quantity: '1' }) }));

    // Act
    const open = planChunks(changes, 10);
    const closedChunks = planChunks(changes, 10, closed);

    // Assert
    const shape = (c: Chunk) => [c.sequenceNumbers[0], c.sequenceNumbers.at(-1), c.sequenceNumbers.length, c.updates.length];
    expect(open.map(shape)).toEqual([['10', '18', 9, 2]]);
    expect(closedChunks.map(shape)).toEqual([
      ['10', '16', 7, 9],
      ['17', '18', 2, 4],
    ]);
  });

  /** The items a change touches, late items included, keyed independently of rollups.ts. */
  const itemsOf = (change: LedgerChange, closedCycles: ReadonlySet<string>): string[] =>
    change.expired
      ? []
      : [change.oldImage, change.newImage].flatMap((i) =>
          i
            ? [
                `${i.subject}|${i.usageType}|day|${i.day}`,
                `${i.subject}|${i.usageType}|cycle|${i.cycleStart}`,
                ...(closedCycles.has(closedKey(i.subject, i.cycleStart, i.usageType)) ? [`${i.subject}|${i.usageType}|late|${i.cycleStart}#${i.eventKey}`] : []),
                ...(i.userId ? [`${i.subject}|${i.usageType}|user|${i.cycleStart}#${i.userId}`] : []),
                ...(i.groupId ? [`${i.subject}|${i.usageType}|group|${i.cycleStart}#${i.groupId}`] : []),
              ]
            : [],
        );

  /** Late totals per event of closed cycles, from the changes alone. */
  function modelLate(changes: readonly LedgerChange[], closedCycles: ReadonlySet<string>): Map<string, bigint> {
    const late = new Map<string, bigint>();
    for (const change of changes) {
      if (change.expired) continue;
      for (const [i, sign] of [
        [change.oldImage, -1n],
        [change.newImage, 1n],
      ] as const) {
        if (i && closedCycles.has(closedKey(i.subject, i.cycleStart, i.usageType))) addTo(late, flatKey(i.subject, i.usageType, 'late', `${i.cycleStart}#${i.eventKey}`), sign * nano(i.quantity));
      }
    }
    return late;
  }

  const generatedClosed = new Set([closedKey('ws_a', OCT, 'tokens'), closedKey('ws_b', OCT, 'credits'), closedKey('ws_c', NOV, 'tokens')]);
  const cases = [1, 2, 3].flatMap((seed) => [11, 12, 13, 100].map((maxItems) => ({ seed, maxItems })));

  test.each(cases)('generated stream (seed $seed, maxItems $maxItems): one lane per chunk, bounded chunks, late items per event, totals unchanged', ({ seed, maxItems }) => {
    // Arrange
    const changes = generateChanges(120, seed);
    const bySequence = new Map(changes.map((c) => [c.sequenceNumber, c]));

    // Act
    const chunks = planChunks(changes, maxItems, generatedClosed);

    // Assert: one lane per chunk; never more than maxItems transaction items (late items and the checkpoint included);
    // greedy within a lane (a chunk closes only before another lane's record, or one that would not fit)
    for (const [i, chunk] of chunks.entries()) {
      const own = chunk.sequenceNumbers.map((n) => bySequence.get(n) as LedgerChange);
      expect(chunk.runs).toHaveLength(1);
      expect(own.every((c) => laneOfChange(c) === chunk.runs[0]?.lane)).toBe(true);
      const touched = new Set(own.flatMap((c) => itemsOf(c, generatedClosed)));
      expect(chunk.updates.length + chunk.runs.length).toBeLessThanOrEqual(maxItems);
      expect(touched.size + chunk.runs.length).toBeLessThanOrEqual(maxItems);
      const next = chunks[i + 1]?.sequenceNumbers[0];
      if (next !== undefined) expect(hadToClose(chunk, bySequence.get(next) as LedgerChange, changes, (c) => itemsOf(c, generatedClosed), maxItems)).toBe(true);
      // Exactly the cycle updates of closed cycles are flagged
      for (const u of chunk.updates.filter((x) => x.kind === 'cycle')) expect(u.closed === true).toBe(generatedClosed.has(closedKey(u.subject, u.period, u.usageType)));
    }
    expect(chunks.flatMap((c) => c.sequenceNumbers).sort()).toEqual(changes.map((c) => c.sequenceNumber).sort());
    const totals = chunkTotals(chunks);
    // Day, cycle, user and group totals (and the day items' hour requests counters) are those of the model; the late items are the per-event model
    expect(withoutLate(totals)).toEqual(sorted(modelTotals(changes)));
    expect(sorted(new Map([...totals].filter(([flat]) => flat.split('|')[2] === 'late')))).toEqual(sorted(modelLate(changes, generatedClosed)));
  });
});

describe('aggregateChanges when a cycle closes between planning and commit', () => {
  /**
   * maxItems 10; the four subjects are in four lanes, and each lane gets chunks of its own (its rollup items + its
   * checkpoint), in the order the lanes' first records arrive: ws_b (101), ws_c (102), ws_a (103), ws_d (105).
   * Chunk 1: ws_b Oct e3 4 (2 items + checkpoint = 3). Chunk 2: ws_c Oct e4 1 (3). Chunk 3: all of ws_a's records
   * (e1 Oct 5, e2 Nov 3, e1 corrected 5 → 8, e6 Oct 2, e7 Nov 10): Oct day, cycle, user u1, Nov day, cycle = 5 items
   * + checkpoint = 6 ≤ 10. Chunk 4: ws_d's e5 (3). ws_a's October cycle closes after chunk 1 commits, before the
   * commit of chunk 2, which does not touch it and commits. Chunk 3 fails and is planned again with the cycle
   * closed: + late items of e1 and e6 = 8 ≤ 10, still one chunk; e1's 8 and e6's 2 are late. ws_a Oct total
   * 8 + 2 = 10, all of it late.
   */
  const a = (overrides: Partial<LedgerImage>) => image({ subject: 'ws_a', ...overrides });
  const nov = { cycleStart: NOV, day: '2026-11-20', hour: '2026-11-20T10' };
  const batch: LedgerChange[] = [
    { sequenceNumber: '101', newImage: image({ subject: 'ws_b', eventKey: key('e3'), quantity: '4' }) },
    { sequenceNumber: '102', newImage: image({ subject: 'ws_c', eventKey: key('e4'), quantity: '1' }) },
    { sequenceNumber: '103', newImage: a({ eventKey: key('e1'), quantity: '5', userId: 'u1' }) },
    { sequenceNumber: '104', newImage: a({ eventKey: key('e2'), quantity: '3', ...nov }) },
    { sequenceNumber: '105', newImage: image({ subject: 'ws_d', eventKey: key('e5'), quantity: '1' }) },
    { sequenceNumber: '106', oldImage: a({ eventKey: key('e1'), quantity: '5', userId: 'u1' }), newImage: a({ eventKey: key('e1'), quantity: '8', userId: 'u1' }) },
    { sequenceNumber: '107', newImage: a({ eventKey: key('e6'), quantity: '2' }) },
    { sequenceNumber: '108', newImage: a({ eventKey: key('e7'), quantity: '10', ...nov }) },
  ];
  const A_OCT = closedKey('ws_a', OCT, 'tokens');

  /** A writer whose CyclesClosedError throws are recorded. */
  function writer() {
    const rollups = new InMemoryRollupWriter();
    const rejected: string[][] = [];
    const commit = rollups.commitChunk.bind(rollups);
    rollups.commitChunk = async (shardId, chunk) => {
      try {
        return await commit(shardId, chunk);
      } catch (error) {
        if (error instanceof CyclesClosedError) rejected.push([...error.cycles]);
        throw error;
      }
    };
    return { rollups, rejected };
  }

  test('the chunk is planned again: every record applied once, the late events counted in the closed cycle only', async () => {
    // Arrange
    const { rollups, rejected } = writer();
    rollups.beforeCommit = (_shard, _chunk, attempt) => {
      if (attempt === 1) rollups.closed.add(A_OCT);
    };
    const closedCycles = new Set<string>();

    // Act
    const result = await aggregateChanges(SHARD, batch, { rollups, maxItemsPerChunk: 10, closedCycles });

    // Assert
    // Four chunks committed (the failed attempt is not counted); one transaction per lane
    expect(result).toMatchObject({ applied: 8, skipped: 0, chunks: 4 });
    expect(result.failedSequenceNumber).toBeUndefined();
    expect(rejected).toEqual([[A_OCT]]);
    expect(rollups.attempts.map((x) => [x.sequenceNumbers.join(' '), x.result])).toEqual([
      ['101', 'committed'],
      ['102', 'committed'],
      ['103 104 106 107 108', 'threw'],
      ['103 104 106 107 108', 'committed'],
      ['105', 'committed'],
    ]);
    const t = rollups.totals;
    expect(t.get(flatKey('ws_a', 'tokens', 'cycle', OCT))).toBe(10n * NANO);
    expect(lateCounter(t, 'ws_a', 'tokens', OCT)).toBe(10n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e1')}`))).toBe(8n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e6')}`))).toBe(2n * NANO);
    expect(lateItemsSum(t, 'ws_a', 'tokens', OCT)).toBe(10n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'user', `${OCT}#u1`))).toBe(8n * NANO);
    // Open cycles: no late accounting
    expect(t.get(flatKey('ws_a', 'tokens', 'cycle', NOV))).toBe(13n * NANO);
    for (const [subject, cycle] of [
      ['ws_a', NOV],
      ['ws_b', OCT],
      ['ws_c', OCT],
      ['ws_d', OCT],
    ] as const) {
      expect(lateCounter(t, subject, 'tokens', cycle)).toBe(0n);
      expect(lateItemsSum(t, subject, 'tokens', cycle)).toBe(0n);
    }
    expect([...t.keys()].filter(isLateKey).sort()).toEqual(
      [flatKey('ws_a', 'tokens', 'cycle', OCT, 'late'), flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e1')}`), flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e6')}`)].sort(),
    );
    // Closing changes no day, cycle, user or group total
    expect(withoutLate(t)).toEqual(sorted(modelTotals(batch)));
    expect([...closedCycles]).toEqual([A_OCT]);
  });

  test('the learned closed cycle is kept across batches: the next batch does not hit the close again', async () => {
    // Arrange
    const { rollups, rejected } = writer();
    rollups.beforeCommit = (_shard, _chunk, attempt) => {
      if (attempt === 1) rollups.closed.add(A_OCT);
    };
    const closedCycles = new Set<string>();
    await aggregateChanges(SHARD, batch, { rollups, maxItemsPerChunk: 10, closedCycles });
    const attemptsBefore = rollups.attempts.length;
    // e6 corrected 2 → 1 (late −1), a new Oct event e8 of 4 (late +4) and a Nov one
    const next: LedgerChange[] = [
      { sequenceNumber: '109', oldImage: a({ eventKey: key('e6'), quantity: '2' }), newImage: a({ eventKey: key('e6'), quantity: '1' }) },
      { sequenceNumber: '110', newImage: a({ eventKey: key('e8'), quantity: '4', day: '2026-11-14', hour: '2026-11-14T23' }) },
      { sequenceNumber: '111', newImage: a({ eventKey: key('e9'), quantity: '6', ...nov }) },
    ];

    // Act
    const result = await aggregateChanges(SHARD, next, { rollups, maxItemsPerChunk: 10, closedCycles });

    // Assert
    expect(result).toMatchObject({ applied: 3, skipped: 0, chunks: 1 });
    expect(rejected).toEqual([[A_OCT]]); // still the one from the first batch
    expect(rollups.attempts.slice(attemptsBefore).map((x) => x.result)).toEqual(['committed']);
    const t = rollups.totals;
    // Oct: 10 − 1 + 4 = 13, late 10 − 1 + 4 = 13; e6 2 − 1 = 1; e8 4
    expect(t.get(flatKey('ws_a', 'tokens', 'cycle', OCT))).toBe(13n * NANO);
    expect(lateCounter(t, 'ws_a', 'tokens', OCT)).toBe(13n * NANO);
    expect(lateItemsSum(t, 'ws_a', 'tokens', OCT)).toBe(13n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e6')}`))).toBe(1n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'late', `${OCT}#${key('e8')}`))).toBe(4n * NANO);
    expect(t.get(flatKey('ws_a', 'tokens', 'cycle', NOV))).toBe(19n * NANO);
    expect(lateCounter(t, 'ws_a', 'tokens', NOV)).toBe(0n);
    expect(withoutLate(t)).toEqual(sorted(modelTotals([...batch, ...next])));
  });

  test('without a kept set, each batch learns the close again from a failed commit, with the same result', async () => {
    // Arrange
    const { rollups, rejected } = writer();
    rollups.closed.add(A_OCT);

    // Act
    await aggregateChanges(SHARD, batch.slice(0, 4), { rollups, maxItemsPerChunk: 10 });
    await aggregateChanges(SHARD, batch.slice(4), { rollups, maxItemsPerChunk: 10 });

    // Assert: both batches touched ws_a Oct, so both were rejected once; every change to it is late (5 + 3 + 2)
    expect(rejected).toEqual([[A_OCT], [A_OCT]]);
    expect(lateCounter(rollups.totals, 'ws_a', 'tokens', OCT)).toBe(10n * NANO);
    expect(lateItemsSum(rollups.totals, 'ws_a', 'tokens', OCT)).toBe(10n * NANO);
    expect(withoutLate(rollups.totals)).toEqual(sorted(modelTotals(batch)));
  });

  test('a chunk that takes a cycle for closed when the store has not closed it fails and writes nothing', async () => {
    // Arrange: the process believes ws_a Oct closed; the store does not
    const { rollups, rejected } = writer();

    // Act
    const result = await aggregateChanges(SHARD, batch.slice(2, 4), { rollups, maxItemsPerChunk: 10, closedCycles: new Set([A_OCT]) });

    // Assert
    expect(result).toMatchObject({ applied: 0, failedSequenceNumber: '103' });
    expect(result.error).toBeInstanceOf(Error);
    expect(result.error).not.toBeInstanceOf(CyclesClosedError);
    expect(rejected).toEqual([]);
    expect(rollups.totals.size).toBe(0);
    expect(rollups.checkpoints.size).toBe(0);
  });

  test('a retried chunk the checkpoint has passed is already applied, even if its cycle has closed since', async () => {
    // Arrange
    const { rollups, rejected } = writer();
    await aggregateChanges(SHARD, batch.slice(0, 4), { rollups, maxItemsPerChunk: 10 });
    rollups.closed.add(A_OCT);
    const before = sorted(rollups.totals);

    // Act: ws_a's chunk (103, 104), planned with its October cycle open
    const chunk = planChunks(batch.slice(0, 4), 10).find((c) => c.sequenceNumbers.includes('103'));
    expect(chunk?.updates.some((u) => u.kind === 'cycle' && u.subject === 'ws_a' && u.period === OCT && u.closed === undefined)).toBe(true);
    const outcome = chunk && (await rollups.commitChunk(SHARD, chunk));

    // Assert
    expect(outcome).toBe('already-applied');
    expect(rejected).toEqual([]);
    expect(sorted(rollups.totals)).toEqual(before);
  });
});

describe('aggregateChanges with cycles closing during generated streams', () => {
  const closing = [
    { subject: 'ws_a', usageType: 'tokens', cycleStart: OCT, atAttempt: 2 },
    { subject: 'ws_b', usageType: 'credits', cycleStart: NOV, atAttempt: 5 },
    { subject: 'ws_c', usageType: 'tokens', cycleStart: NOV, atAttempt: 0 },
  ];
  const cases = [21, 22, 23, 24].flatMap((seed) => [11, 13].map((maxItems) => ({ seed, maxItems })));

  test.each(cases)('seed $seed, maxItems $maxItems: totals as the model, late = the deltas applied after each close', async ({ seed, maxItems }) => {
    // Arrange: each cycle closes just before the given commit attempt; the records of later commits come after it
    const changes = generateChanges(120, seed);
    const rollups = new InMemoryRollupWriter();
    const closedAt = new Map<string, number>();
    const rejected: string[] = [];
    const commit = rollups.commitChunk.bind(rollups);
    rollups.commitChunk = async (shardId, chunk) => {
      try {
        return await commit(shardId, chunk);
      } catch (error) {
        if (error instanceof CyclesClosedError) rejected.push(...error.cycles);
        throw error;
      }
    };
    rollups.beforeCommit = (_shardId, _chunk, attempt) => {
      for (const c of closing) {
        if (c.atAttempt !== attempt) continue;
        const k = closedKey(c.subject, c.cycleStart, c.usageType);
        rollups.closed.add(k);
        closedAt.set(k, attempt);
      }
    };
    const closedCycles = new Set<string>();

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: maxItems, closedCycles });

    // Assert
    expect(result).toMatchObject({ applied: 120, skipped: 0 });
    expect(result.failedSequenceNumber).toBeUndefined();
    expect(closedAt.size).toBe(closing.length);
    // Closing changes nothing but the late accounting
    expect(withoutLate(rollups.totals)).toEqual(sorted(modelTotals(changes)));
    const lateSeen: bigint[] = [];
    for (const c of closing) {
      const k = closedKey(c.subject, c.cycleStart, c.usageType);
      const closeAttempt = closedAt.get(k) ?? 0;
      const committedAfterClose = new Set(rollups.attempts.flatMap((x, i) => (x.result === 'committed' && i >= closeAttempt ? x.sequenceNumbers : [])));
      // Deltas to this cycle of the records committed after the close, from the changes alone
      let expected = 0n;
      for (const change of changes) {
        if (change.expired || !committedAfterClose.has(change.sequenceNumber)) continue;
        for (const [i, sign] of [
          [change.oldImage, -1n],
          [change.newImage, 1n],
        ] as const) {
          if (i && i.subject === c.subject && i.usageType === c.usageType && i.cycleStart === c.cycleStart) expected += sign * nano(i.quantity);
        }
      }
      expect(lateCounter(rollups.totals, c.subject, c.usageType, c.cycleStart)).toBe(expected);
      expect(lateItemsSum(rollups.totals, c.subject, c.usageType, c.cycleStart)).toBe(expected);
      lateSeen.push(expected);
    }
    // The stream does change closed cycles after their close (the case is not vacuous)
    expect(lateSeen.some((late) => late !== 0n)).toBe(true);
    expect(rejected.length).toBeGreaterThan(0);
    // No late accounting anywhere else
    const closedKeys = new Set(closing.map((c) => `${c.subject}|${c.usageType}|${c.cycleStart}`));
    for (const flat of [...rollups.totals.keys()].filter(isLateKey)) {
      const [subject, usageType, , period = ''] = flat.split('|');
      expect(closedKeys.has(`${subject}|${usageType}|${period.slice(0, OCT.length)}`)).toBe(true);
    }
    // Each closed cycle fails a commit at most once, and is then known to the process (which also learns a
    // close when it reads a cycle item's breakdowns before planning)
    expect(rejected.length).toBe(new Set(rejected).size);
    for (const k of rejected) expect(closedCycles).toContain(k);
    for (const k of closedCycles) expect(closing.map((c) => closedKey(c.subject, c.cycleStart, c.usageType))).toContain(k);
  });
});
