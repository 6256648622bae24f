import { type Chunk, type LedgerChange, type LedgerImage, changeDeltas, padSequenceNumber, planChunks } from '../../functions/core/rollups';
import { chunkTotals, generateChanges, modelTotals, sorted } from './rollup-model';

const NANO = 1_000_000_000n;
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
    .map((u) => ({ item: `${u.subject} ${u.usageType} ${u.kind} ${u.period}`, total: u.total, counters: Object.fromEntries(u.counters) }))
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
  test('an INSERT adds its quantity to the day total and hour counter, and to the cycle total and day counter', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '7', newImage: image({ quantity: '5' }) }], 99);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toMatchObject({ firstSequenceNumber: '7', lastSequenceNumber: '7', records: 1 });
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO } },
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
      { item: 'ws_a credits day 2026-11-22', total: 300_000_000n, counters: { 'h#2026-11-22T10': 300_000_000n } },
    ]);
  });

  test('a MODIFY of the quantity in the same buckets adds the difference', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '5' }), newImage: image({ quantity: '8' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 3n * NANO, counters: { 'd#2026-11-22': 3n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 3n * NANO, counters: { 'h#2026-11-22T10': 3n * NANO } },
    ]);
  });

  test('a correction that moves an event to another hour of the same day moves the hour counter; the cycle item cancels out and is dropped', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ hour: '2026-11-22T10' }), newImage: image({ hour: '2026-11-22T11' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: 'ws_a tokens day 2026-11-22', total: 0n, counters: { 'h#2026-11-22T10': -5n * NANO, 'h#2026-11-22T11': 5n * NANO } },
    ]);
  });

  test('a correction that moves an event to another day of the same cycle moves both day items and the cycle day counter', () => {
    // Act
    const chunks = planChunks(
      [{ sequenceNumber: '1', oldImage: image(), newImage: image({ day: '2026-11-23', hour: '2026-11-23T10' }) }],
      99,
    );

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 0n, counters: { 'd#2026-11-22': -5n * NANO, 'd#2026-11-23': 5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO } },
      { item: 'ws_a tokens day 2026-11-23', total: 5n * NANO, counters: { 'h#2026-11-23T10': 5n * NANO } },
    ]);
  });

  test('a correction that moves an event into the previous cycle (and changes its quantity) touches four items', () => {
    // Act
    const chunks = planChunks(
      [{ sequenceNumber: '1', oldImage: image(), newImage: image({ quantity: '2', day: '2026-11-14', hour: '2026-11-14T23', cycleStart: OCT_CYCLE }) }],
      99,
    );

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${OCT_CYCLE}`, total: 2n * NANO, counters: { 'd#2026-11-14': 2n * NANO } },
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -5n * NANO, counters: { 'd#2026-11-22': -5n * NANO } },
      { item: 'ws_a tokens day 2026-11-14', total: 2n * NANO, counters: { 'h#2026-11-14T23': 2n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO } },
    ]);
  });

  test('a correction that moves an event to another subject takes it from one and gives it to the other', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ subject: 'ws_a' }), newImage: image({ subject: 'ws_b' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -5n * NANO, counters: { 'd#2026-11-22': -5n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -5n * NANO, counters: { 'h#2026-11-22T10': -5n * NANO } },
      { item: `ws_b tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_b tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO } },
    ]);
  });

  test('a user REMOVE subtracts the quantity', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image({ quantity: '4' }) }], 99);

    // Assert
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: -4n * NANO, counters: { 'd#2026-11-22': -4n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: -4n * NANO, counters: { 'h#2026-11-22T10': -4n * NANO } },
    ]);
  });

  test('a TTL expiry is counted as a record but changes no item', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '12', oldImage: image(), expired: true }], 99);

    // Assert
    expect(chunks).toEqual([{ firstSequenceNumber: '12', lastSequenceNumber: '12', records: 1, updates: [] }]);
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
    expect(chunks).toEqual([{ firstSequenceNumber: '20', lastSequenceNumber: '21', records: 2, updates: [] }]);
  });

  test('a ledger image with an invalid quantity is an error, not a silent zero', () => {
    // Act / Assert
    expect(() => planChunks([{ sequenceNumber: '1', newImage: image({ quantity: 'lots' }) }], 99)).toThrow(/invalid quantity "lots"/);
  });

  test('no changes give no chunks', () => {
    expect(planChunks([], 99)).toEqual([]);
  });
});

describe('planChunks splits changes into chunks of at most maxItems items', () => {
  test('hand-worked split with maxItems = 4', () => {
    // Arrange: each subject's event touches 2 items (its day item and its cycle item).
    const changes: LedgerChange[] = [
      { sequenceNumber: '98', newImage: image({ subject: 'ws_a' }) }, // chunk 1: a-day, a-cycle
      { sequenceNumber: '99', newImage: image({ subject: 'ws_b' }) }, // chunk 1: + b-day, b-cycle = 4
      { sequenceNumber: '100', newImage: image({ subject: 'ws_a', quantity: '1' }) }, // chunk 1: no new item
      { sequenceNumber: '101', newImage: image({ subject: 'ws_c' }) }, // 6 > 4 → chunk 2: c-day, c-cycle
      { sequenceNumber: '102', oldImage: image({ subject: 'ws_c' }), newImage: image({ subject: 'ws_d' }) }, // + d-day, d-cycle = 4
      { sequenceNumber: '103', oldImage: image({ subject: 'ws_d' }), expired: true }, // touches nothing
      { sequenceNumber: '104', newImage: image({ subject: 'ws_a', quantity: '2' }) }, // 6 > 4 → chunk 3
    ];

    // Act
    const chunks = planChunks(changes, 4);

    // Assert
    expect(chunks.map(({ firstSequenceNumber, lastSequenceNumber, records }) => ({ firstSequenceNumber, lastSequenceNumber, records }))).toEqual([
      { firstSequenceNumber: '98', lastSequenceNumber: '100', records: 3 },
      { firstSequenceNumber: '101', lastSequenceNumber: '103', records: 3 },
      { firstSequenceNumber: '104', lastSequenceNumber: '104', records: 1 },
    ]);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 6n * NANO, counters: { 'd#2026-11-22': 6n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 6n * NANO, counters: { 'h#2026-11-22T10': 6n * NANO } },
      { item: `ws_b tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_b tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO } },
    ]);
    // ws_c's insert and its move to ws_d cancel for ws_c: only ws_d's items remain.
    expect(plain(chunks[1])).toEqual([
      { item: `ws_d tokens cycle ${NOV_CYCLE}`, total: 5n * NANO, counters: { 'd#2026-11-22': 5n * NANO } },
      { item: 'ws_d tokens day 2026-11-22', total: 5n * NANO, counters: { 'h#2026-11-22T10': 5n * NANO } },
    ]);
    expect(plain(chunks[2])).toEqual([
      { item: `ws_a tokens cycle ${NOV_CYCLE}`, total: 2n * NANO, counters: { 'd#2026-11-22': 2n * NANO } },
      { item: 'ws_a tokens day 2026-11-22', total: 2n * NANO, counters: { 'h#2026-11-22T10': 2n * NANO } },
    ]);
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

  const cases = [1, 2, 3].flatMap((seed) => [8, 9, 13, 99].map((maxItems) => ({ seed, maxItems })));

  test.each(cases)('generated stream (seed $seed, maxItems $maxItems): bounded, ordered, greedy chunks that sum to the model', ({ seed, maxItems }) => {
    // Arrange
    const changes = generateChanges(120, seed);

    // Act
    const chunks = planChunks(changes, maxItems);

    // Assert: the chunks tile the changes in order, with the right first and last sequence numbers.
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      const own = changes.slice(offset, offset + chunk.records);
      expect(chunk.records).toBeGreaterThan(0);
      expect(chunk.firstSequenceNumber).toBe(own[0]?.sequenceNumber);
      expect(chunk.lastSequenceNumber).toBe(own.at(-1)?.sequenceNumber);
      // At most maxItems distinct items are touched, and each item appears once.
      const touched = new Set(own.flatMap(itemsOf));
      expect(touched.size).toBeLessThanOrEqual(maxItems);
      const written = chunk.updates.map((u) => `${u.subject}|${u.usageType}|${u.kind}|${u.period}${u.member ? `#${u.member}` : ''}`);
      expect(new Set(written).size).toBe(written.length);
      expect(written.every((item) => touched.has(item))).toBe(true);
      // Greedy: the next chunk's first record would not have fitted into this one.
      const nextChange = changes[offset + chunk.records];
      if (i < chunks.length - 1 && nextChange) {
        expect(new Set([...touched, ...itemsOf(nextChange)]).size).toBeGreaterThan(maxItems);
      }
      offset += chunk.records;
    }
    expect(offset).toBe(changes.length);
    // The sum over chunks equals the independent model.
    expect(sorted(chunkTotals(chunks))).toEqual(sorted(modelTotals(changes)));
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
