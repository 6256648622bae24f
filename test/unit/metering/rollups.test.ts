import { CHECKPOINT_LANES, type Chunk, changeDeltas, checkpointLaneOf, type LedgerChange, type LedgerImage, padSequenceNumber, planChunks } from '../../../functions/core/metering/rollups';
import { chunkTotals, generateChanges, hadToClose, laneOfChange, modelTotals, sorted } from './rollup-model';

const NANO = 1_000_000_000n;
/** An hour requests counter ('r#…') of `n` events: one event is stored as 1, in the nano-units of a quantity. */
const events = (n: bigint) => n * NANO;
const NOV_CYCLE = '2026-11-15T00:00:00.000Z';
const OCT_CYCLE = '2026-10-15T00:00:00.000Z';

const image = (overrides: Partial<LedgerImage> = {}): LedgerImage => ({
  eventKey: '["test","e1"]',
  subject: 'ws_a',
  usageType: 'tokens',
  quantity: '5',
  hour: '2026-11-22T10',
  day: '2026-11-22',
  cycleStart: NOV_CYCLE,
  ...overrides,
});

interface PlainUpdate {
  item: string;
  total: bigint;
  counters: Record<string, bigint>;
}

/** A chunk's updates as sorted plain objects, so expectations can be written by hand. */
const plain = (chunk: Chunk | undefined): PlainUpdate[] =>
  (chunk?.updates ?? [])
    .map((u) => ({ item: `${u.subject} ${u.usageType} ${u.kind} ${u.period}${u.member === undefined ? '' : ` ${u.member}`}`, total: u.total, counters: Object.fromEntries(u.counters) }))
    .sort((a, b) => (a.item < b.item ? -1 : 1));

describe('changeDeltas', () => {
  test('an INSERT adds the new image', () => {
    // Arrange
    const newImage = image();

    // Act
    const deltas = changeDeltas({ sequenceNumber: '1', newImage });

    // Assert
    expect(deltas).toEqual([{ image: newImage, sign: 1n }]);
  });

  test('a MODIFY subtracts the old image and adds the new one', () => {
    // Arrange
    const oldImage = image({ quantity: '5' });
    const newImage = image({ quantity: '7', hour: '2026-11-22T11' });

    // Act
    const deltas = changeDeltas({ sequenceNumber: '2', oldImage, newImage });

    // Assert
    expect(deltas).toEqual([
      { image: oldImage, sign: -1n },
      { image: newImage, sign: 1n },
    ]);
  });

  test('a user REMOVE subtracts the old image', () => {
    // Arrange
    const oldImage = image();

    // Act
    const deltas = changeDeltas({ sequenceNumber: '3', oldImage });

    // Assert
    expect(deltas).toEqual([{ image: oldImage, sign: -1n }]);
  });

  test('a TTL expiry changes nothing: the event ages out, its counts stay', () => {
    // Act
    const deltas = changeDeltas({ sequenceNumber: '4', oldImage: image(), expired: true });

    // Assert
    expect(deltas).toEqual([]);
  });
});

describe('planChunks folds each change into day and cycle items', () => {
  test('an INSERT adds its quantity to the day total and hour counter, one event to the hour requests counter, and its quantity to the cycle total and day counter', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '7', newImage: image({ quantity: '5' }) }], 99);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toMatchObject({ sequenceNumbers: ['7'], runs: [{ lane: checkpointLaneOf('ws_a'), firstSequenceNumber: '7', lastSequenceNumber: '7' }] });
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO, 'r#2026-11-22T10': events(1n) } },
    ]);
  });

  test('fractional quantities are folded exactly in nano-units', () => {
    // Arrange: 0.1 + 0.2 in the same hour
    const changes: LedgerChange[] = [
      { sequenceNumber: '1', newImage: image({ usageType: 'credits', quantity: '0.1' }) },
      { sequenceNumber: '2', newImage: image({ usageType: 'credits', quantity: '0.2' }) },
    ];

    // Act
    const chunks = planChunks(changes, 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV_CYCLE}`, total: 300_000_000n, counters: { 'd#2026-11-22': 300_000_000n } },
      { item: 'ws_a credits day 2026-11-22', total: 300_000_000n, counters: { 'h#2026-11-22T10': 300_000_000n, 'r#2026-11-22T10': events(2n) } },
    ]);
  });

  test('a MODIFY of the quantity in the same buckets adds the difference, and no event: its old image takes back the one its new image adds', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '5' }), newImage: image({ quantity: '8' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 3n * NANO, counters: { 'd#2026-11-22': 3n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 3n * NANO, counters: { 'h#2026-11-22T10': 3n * NANO, 'r#2026-11-22T10': 0n } },
    ]);
  });

  test('a correction that moves an event to another hour of the same day moves the hour and hour requests counters; the cycle item cancels out and is dropped', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ hour: '2026-11-22T10' }), newImage: image({ hour: '2026-11-22T11' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      {
        item: 'ws_a tokens day 2026-11-22',
        total: 0n,
        counters: { 'h#2026-11-22T10': -5n * NANO, 'h#2026-11-22T11': 5n * NANO, 'r#2026-11-22T10': events(-1n), 'r#2026-11-22T11': events(1n) },
      },
    ]);
  });

  test('a correction that moves an event to another day of the same cycle moves both day items and the cycle day counter', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), newImage: image({ day: '2026-11-23', hour: '2026-11-23T10' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 0n, counters: { 'd#2026-11-22': -5n * NANO, 'd#2026-11-23': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO, 'r#2026-11-22T10': events(-1n) } },
      { item: 'ws_a tokens day 2026-11-23', total: 5n * NANO, counters: { 'h#2026-11-23T10': 5n * NANO, 'r#2026-11-23T10': events(1n) } },
    ]);
  });

  test('a correction that moves an event into the previous cycle (and changes its quantity) touches four items', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), newImage: image({ quantity: '2', day: '2026-11-14', hour: '2026-11-14T23', cycleStart: OCT_CYCLE }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT_CYCLE}`, total: 2n * NANO, counters: { 'd#2026-11-14': 2n * NANO } },
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -5n * NANO, counters: { 'd#2026-11-22': -5n * NANO } },
      { item: 'ws_a tokens day 2026-11-14', total: 2n * NANO, counters: { 'h#2026-11-14T23': 2n * NANO, 'r#2026-11-14T23': events(1n) } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO, 'r#2026-11-22T10': events(-1n) } },
    ]);
  });

  test('a correction that moves an event to another subject takes it from one and gives it to the other', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ subject: 'ws_a' }), newImage: image({ subject: 'ws_b' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -5n * NANO, counters: { 'd#2026-11-22': -5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO, 'r#2026-11-22T10': events(-1n) } },
      { item: `ws_b tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_b tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO, 'r#2026-11-22T10': events(1n) } },
    ]);
  });

  test('a user REMOVE subtracts the quantity and takes back its event', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '4' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -4n * NANO, counters: { 'd#2026-11-22': -4n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -4n * NANO, counters: { 'h#2026-11-22T10': -4n * NANO, 'r#2026-11-22T10': events(-1n) } },
    ]);
  });

  test('a TTL expiry is counted as a record but changes no item', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '12', oldImage: image(), expired: true }], 99);

    // Assert
    expect(chunks).toEqual([{ updates: [], runs: [{ lane: checkpointLaneOf('ws_a'), firstSequenceNumber: '12', lastSequenceNumber: '12' }], sequenceNumbers: ['12'] }]);
  });

  test('an INSERT and a REMOVE of the same event in one chunk cancel out: no item is written', () => {
    // Act
    const chunks = planChunks(
      [
        { sequenceNumber: '20', newImage: image() },
        { sequenceNumber: '21', oldImage: image() },
      ],
      99,
    );

    // Assert
    expect(chunks).toEqual([{ updates: [], runs: [{ lane: checkpointLaneOf('ws_a'), firstSequenceNumber: '20', lastSequenceNumber: '21' }], sequenceNumbers: ['20', '21'] }]);
  });

  test('a ledger image with an invalid quantity is an error, not a silent zero', () => {
    // Act / Assert
    expect(() => planChunks([{ sequenceNumber: '1', newImage: image({ quantity: 'lots' }) }], 99)).toThrow(/invalid quantity "lots"/);
  });

  test('no changes give no chunks', () => {
    expect(planChunks([], 99)).toEqual([]);
  });
});

describe('checkpointLaneOf', () => {
  test('is FNV-1a (32 bits) modulo the bucket count, as the published test vectors give it', () => {
    // Arrange: FNV-1a 32-bit hashes of ASCII strings, from the FNV reference test suite.
    const vectors: [string, number][] = [
      ['', 0x811c9dc5],
      ['a', 0xe40c292c],
      ['foobar', 0xbf9cf968],
    ];

    // Act
    const buckets = vectors.map(([text]) => checkpointLaneOf(text));

    // Assert
    expect(buckets).toEqual(vectors.map(([, hash]) => `bucket-${hash % CHECKPOINT_LANES}`));
  });

  test('spreads 1,000 workspace ids over every bucket, none holding more than twice its share', () => {
    // Arrange
    const subjects = Array.from({ length: 1000 }, (_, i) => `ws_${String(i).padStart(4, '0')}`);

    // Act
    const counts = new Map<string, number>();
    for (const subject of subjects) counts.set(checkpointLaneOf(subject), (counts.get(checkpointLaneOf(subject)) ?? 0) + 1);

    // Assert
    expect(counts.size).toBe(CHECKPOINT_LANES);
    expect(Math.max(...counts.values())).toBeLessThanOrEqual((2 * 1000) / CHECKPOINT_LANES);
  });
});

describe('planChunks groups records by checkpoint lane across the batch, each lane in chunks of its own of at most maxItems items', () => {
  test('hand-worked split with maxItems = 6: each lane in chunks of its own, a lane too big continues in the next', () => {
    // Arrange: the four subjects are in four lanes. A chunk holds one lane: its rollup items plus its checkpoint.
    expect(new Set(['ws_a', 'ws_b', 'ws_c', 'ws_d'].map(checkpointLaneOf)).size).toBe(4);
    const changes: LedgerChange[] = [
      { sequenceNumber: '98', newImage: image({ subject: 'ws_a' }) }, // lane a, chunk 1: a-day-22, a-cycle, checkpoint = 3
      { sequenceNumber: '99', newImage: image({ subject: 'ws_b' }) }, // lane b: would fit beside ws_a (3 + 3 = 6), but gets chunk 3 of its own
      { sequenceNumber: '100', newImage: image({ subject: 'ws_a', quantity: '1', userId: 'u1' }) }, // chunk 1: + a-user-u1 = 4
      { sequenceNumber: '101', newImage: image({ subject: 'ws_c' }) }, // lane c, chunk 4: c-day, c-cycle, checkpoint = 3
      { sequenceNumber: '102', oldImage: image({ subject: 'ws_c' }), newImage: image({ subject: 'ws_d' }) }, // lane d (new image), chunk 5: c-day, c-cycle, d-day, d-cycle, checkpoint = 5
      { sequenceNumber: '103', oldImage: image({ subject: 'ws_d' }), expired: true }, // lane d, chunk 5: touches nothing
      // lane a: + a-day-23, a-user-u2, a-group-g1 would make 4 + 3 = 7 > 6 → chunk 2: a-day-23, a-cycle, a-user-u2, a-group-g1, checkpoint = 5
      { sequenceNumber: '104', newImage: image({ subject: 'ws_a', quantity: '2', day: '2026-11-23', hour: '2026-11-23T10', userId: 'u2', groupId: 'g1' }) },
    ];

    // Act
    const chunks = planChunks(changes, 6);

    // Assert: lanes in the order their first records arrive (a, b, c, d), ws_a's two chunks one after the other.
    const run = (subject: string, first: string, last: string) => [{ lane: checkpointLaneOf(subject), firstSequenceNumber: first, lastSequenceNumber: last }];
    expect(chunks.map(({ sequenceNumbers, runs }) => ({ sequenceNumbers, runs }))).toEqual([
      { sequenceNumbers: ['98', '100'], runs: run('ws_a', '98', '100') },
      { sequenceNumbers: ['104'], runs: run('ws_a', '104', '104') },
      { sequenceNumbers: ['99'], runs: run('ws_b', '99', '99') },
      { sequenceNumbers: ['101'], runs: run('ws_c', '101', '101') },
      { sequenceNumbers: ['102', '103'], runs: run('ws_d', '102', '103') },
    ]);
    // ws_a, chunk 1: 98 (5) and 100 (1, user u1) in hour 22T10: 6, two events.
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 6n * NANO, counters: { 'd#2026-11-22': 6n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 6n * NANO, counters: { 'h#2026-11-22T10': 6n * NANO, 'r#2026-11-22T10': events(2n) } },
      { item: `ws_a tokens user ${NOV_CYCLE} u1`, total: 1n * NANO, counters: {} },
    ]);
    // ws_a, chunk 2: 104 (2) on day 23; the cycle item is written again, as the lane did not fit one chunk.
    expect(plain(chunks[1])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 2n * NANO, counters: { 'd#2026-11-23': 2n * NANO } },
      { item: 'ws_a tokens day 2026-11-23', total: 2n * NANO, counters: { 'h#2026-11-23T10': 2n * NANO, 'r#2026-11-23T10': events(1n) } },
      { item: `ws_a tokens group ${NOV_CYCLE} g1`, total: 2n * NANO, counters: {} },
      { item: `ws_a tokens user ${NOV_CYCLE} u2`, total: 2n * NANO, counters: {} },
    ]);
    expect(plain(chunks[2])).toEqual([
      { item: `ws_b tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_b tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO, 'r#2026-11-22T10': events(1n) } },
    ]);
    // ws_c's insert (lane c) and its move to ws_d (lane d) are in different chunks now, so they no longer cancel
    // inside one: +5 and one event in chunk 4, −5 and one event back in chunk 5 (net 0 over the batch).
    expect(plain(chunks[3])).toEqual([
      { item: `ws_c tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_c tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO, 'r#2026-11-22T10': events(1n) } },
    ]);
    expect(plain(chunks[4])).toEqual([
      { item: `ws_c tokens cycle ${NOV_CYCLE}`, total: -5n * NANO, counters: { 'd#2026-11-22': -5n * NANO } },
      { item: 'ws_c tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO, 'r#2026-11-22T10': events(-1n) } },
      { item: `ws_d tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_d tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO, 'r#2026-11-22T10': events(1n) } },
    ]);
  });

  test('many subjects in few buckets: a bucket that fits a chunk of its own is not split, so each item is written once', () => {
    // Arrange: 2,000 records round-robin over 500 subjects (about 8 per lane, so about 16 items and a checkpoint per lane).
    const subjects = Array.from({ length: 500 }, (_, i) => `ws_${String(i).padStart(3, '0')}`);
    const changes: LedgerChange[] = Array.from({ length: 2000 }, (_, i) => ({ sequenceNumber: String(5000 + i), newImage: image({ subject: subjects[i % 500] as string, quantity: '1' }) }));
    const buckets = new Set(subjects.map(checkpointLaneOf));

    // Act
    const chunks = planChunks(changes, 100);

    // Assert: one chunk per lane, so every subject's day and cycle items once, every lane's checkpoint once.
    expect(chunks).toHaveLength(buckets.size);
    for (const chunk of chunks) expect(chunk.runs).toHaveLength(1);
    const written = chunks.flatMap((c) => c.updates.map((u) => `${u.subject} ${u.kind}`));
    expect(written).toHaveLength(1000);
    expect(new Set(written).size).toBe(1000);
    expect(new Set(chunks.flatMap((c) => c.runs.map((r) => r.lane)))).toEqual(buckets);
    for (const update of chunks.flatMap((c) => c.updates)) expect(update.total).toBe(4n * NANO);
  });

  test('interleaved subjects: one chunk per lane, each item written once per batch while the lane fits', () => {
    // Arrange: 1,000 records round-robin over 30 subjects; each subject needs 2 items, each lane 1 checkpoint.
    const subjects = Array.from({ length: 30 }, (_, i) => `ws_${String(i).padStart(2, '0')}`);
    const changes: LedgerChange[] = Array.from({ length: 1000 }, (_, i) => ({ sequenceNumber: String(1000 + i), newImage: image({ subject: subjects[i % 30] as string, quantity: '1' }) }));
    // Each lane's subjects and records, in order of first arrival (ws_00 is record 1000, ws_01 record 1001, …).
    const lanes = [...new Set(subjects.map(checkpointLaneOf))];
    const subjectsOf = (lane: string) => subjects.filter((s) => checkpointLaneOf(s) === lane);
    const recordsOf = (lane: string) => changes.filter((c) => checkpointLaneOf(c.newImage?.subject as string) === lane).map((c) => c.sequenceNumber);
    expect(lanes).toHaveLength(30); // these 30 subjects happen to fall in 30 lanes: 30 chunks

    // Act
    const chunks = planChunks(changes, 100);

    // Assert: a lane holds at most 30 × 2 items and its checkpoint, so each lane is one chunk of all its records.
    expect(chunks.map((c) => c.runs.map((r) => r.lane))).toEqual(lanes.map((lane) => [lane]));
    expect(chunks.map((c) => c.sequenceNumbers)).toEqual(lanes.map(recordsOf));
    expect(chunks.map((c) => c.updates.length)).toEqual(lanes.map((lane) => 2 * subjectsOf(lane).length));
    // Each subject's day and cycle items once in the whole batch: 60 distinct updates.
    const written = chunks.flatMap((c) => c.updates.map((u) => `${u.subject} ${u.kind}`));
    expect(written).toHaveLength(60);
    expect(new Set(written).size).toBe(60);
    // 1,000 = 33 × 30 + 10: ws_00 … ws_09 get 34 records, the others 33.
    for (const update of chunks.flatMap((c) => c.updates)) expect(update.total).toBe((update.subject < 'ws_10' ? 34n : 33n) * NANO);
  });

  /** The rollup items a change touches, keyed independently of rollups.ts. */
  const itemsOf = (change: LedgerChange): string[] =>
    change.expired
      ? []
      : [change.oldImage, change.newImage].flatMap((i) =>
          i
            ? [
                `${i.subject}|${i.usageType}|day|${i.day}`,
                `${i.subject}|${i.usageType}|cycle|${i.cycleStart}`,
                ...(i.userId ? [`${i.subject}|${i.usageType}|user|${i.cycleStart}#${i.userId}`] : []),
                ...(i.groupId ? [`${i.subject}|${i.usageType}|group|${i.cycleStart}#${i.groupId}`] : []),
              ]
            : [],
        );
  const cases = [1, 2, 3].flatMap((seed) => [11, 12, 17, 100].map((maxItems) => ({ seed, maxItems })));

  test.each(cases)('generated stream (seed $seed, maxItems $maxItems): one lane per chunk, bounded, per-lane ordered, greedy chunks that sum to the model', ({ seed, maxItems }) => {
    // Arrange
    const changes = generateChanges(120, seed);
    const bySequence = new Map(changes.map((c) => [c.sequenceNumber, c]));

    // Act
    const chunks = planChunks(changes, maxItems);

    // Assert: every record is in exactly one chunk.
    const planned = chunks.flatMap((c) => c.sequenceNumbers);
    expect([...planned].sort()).toEqual(changes.map((c) => c.sequenceNumber).sort());
    // Each lane's records, read chunk after chunk, are its records in stream order.
    const lanes = [...new Set(changes.map(laneOfChange))];
    for (const lane of lanes) {
      const inPlan = planned.filter((n) => laneOfChange(bySequence.get(n) as LedgerChange) === lane);
      expect(inPlan).toEqual(changes.filter((c) => laneOfChange(c) === lane).map((c) => c.sequenceNumber));
    }
    // A lane's chunks follow one another: a lane too big for one chunk continues in the next.
    const chunkLanes = chunks.map((c) => c.runs.map((r) => r.lane).join(','));
    const laneStarts = chunkLanes.filter((lane, i) => lane !== chunkLanes[i - 1]);
    expect(laneStarts).toHaveLength(lanes.length);
    for (const [i, chunk] of chunks.entries()) {
      const own = chunk.sequenceNumbers.map((n) => bySequence.get(n) as LedgerChange);
      // The records of one lane only, and its one run, from its first to its last record here.
      const lane = laneOfChange(own[0] as LedgerChange);
      expect(own.every((c) => laneOfChange(c) === lane)).toBe(true);
      expect(chunk.runs).toEqual([{ lane, firstSequenceNumber: own[0]?.sequenceNumber, lastSequenceNumber: own.at(-1)?.sequenceNumber }]);
      // At most maxItems transaction items: distinct rollup items plus the lane's checkpoint.
      const touched = new Set(own.flatMap(itemsOf));
      expect(touched.size + chunk.runs.length).toBeLessThanOrEqual(maxItems);
      const written = chunk.updates.map((u) => `${u.subject}|${u.usageType}|${u.kind}|${u.period}${u.member ? `#${u.member}` : ''}`);
      expect(new Set(written).size).toBe(written.length);
      expect(written.every((item) => touched.has(item))).toBe(true);
      // A day update's hour requests counters add up to the events it gains.
      for (const u of chunk.updates.filter((x) => x.kind === 'day')) {
        const hourRequests = [...u.counters].filter(([counter]) => counter.startsWith('r#')).reduce((sum, [, value]) => sum + value, 0n);
        expect(hourRequests).toBe(events(u.requests ?? 0n));
      }
      // Greedy within a lane: a chunk closes only when the next record is of another lane, or would not fit.
      const next = chunks[i + 1]?.sequenceNumbers[0];
      if (next !== undefined) expect(hadToClose(chunk, bySequence.get(next) as LedgerChange, changes, itemsOf, maxItems)).toBe(true);
    }
    // The sum over chunks equals the independent model, hour requests counters included (and the stream has some).
    const model = modelTotals(changes);
    expect([...model.keys()].some((flat) => flat.includes('|r#'))).toBe(true);
    expect(sorted(chunkTotals(chunks))).toEqual(sorted(model));
  });
});

describe('padSequenceNumber', () => {
  test('makes "9" sort before "10" as strings', () => {
    // Arrange
    expect('9' < '10').toBe(false); // the raw strings compare the wrong way

    // Act
    const nine = padSequenceNumber('9');
    const ten = padSequenceNumber('10');

    // Assert
    expect(nine < ten).toBe(true);
    expect(nine).toBe(`${'0'.repeat(39)}9`);
    expect(ten).toHaveLength(40);
  });

  test('orders real-looking stream sequence numbers of different lengths numerically', () => {
    // Arrange
    const numbers = ['49668000000000000000000000001', '300000000000000000000100', '1000', '999'];

    // Act
    const order = [...numbers].sort((a, b) => (padSequenceNumber(a) < padSequenceNumber(b) ? -1 : 1));

    // Assert
    expect(order).toEqual(['999', '1000', '300000000000000000000100', '49668000000000000000000000001']);
  });
});
