import { describe, expect, test } from '@jest/globals';
import { changeDeltas, type LedgerChange, type LedgerImage, meteredImages, planChunks } from '../../../functions/core/metering/rollups';
import { closedKey, plain } from './plain-chunks';

/**
 * Credits in the fold: a ledger image with credits counts its quantity under its usage type and its credits
 * under the credits usage type, in the same chunk (one transaction); a correction moves both, a TTL expiry
 * neither, and a change to closed cycles adds a late item to each. Expected totals are worked out by hand.
 */

const NANO = 1_000_000_000n;
/** An hour requests counter ('r#…') of `n` events: one event is stored as 1, in the nano-units of a quantity. */
const events = (n: bigint) => n * NANO;
const NOV = '2026-11-15T00:00:00.000Z';
const OCT = '2026-10-15T00:00:00.000Z';
const EVENT = '["//studio","variations"]';

/** Four higher-quality variations: 4 images, 8 credits. */
const image = (overrides: Partial<LedgerImage> = {}): LedgerImage => ({
  eventKey: EVENT,
  subject: 'ws_a',
  usageType: 'images',
  quantity: '4',
  hour: '2026-11-22T10',
  day: '2026-11-22',
  cycleStart: NOV,
  credits: { usageType: 'credits', quantity: '8' },
  ...overrides,
});

describe('meteredImages and changeDeltas', () => {
  test('an image without credits counts once, as itself', () => {
    // Arrange
    const { credits: _, ...unpriced } = image();

    // Act / Assert
    expect(meteredImages(unpriced)).toEqual([unpriced]);
  });

  test('an image with credits also counts as an image of the credits usage type, with its credits as quantity', () => {
    // Arrange
    const priced = image({ userId: 'u1', channel: 'web', feature: 'generate' });

    // Act
    const images = meteredImages(priced);

    // Assert
    expect(images).toEqual([
      priced,
      { eventKey: EVENT, subject: 'ws_a', usageType: 'credits', quantity: '8', hour: '2026-11-22T10', day: '2026-11-22', cycleStart: NOV, userId: 'u1', channel: 'web', feature: 'generate' },
    ]);
    expect('credits' in (images[1] as LedgerImage)).toBe(false);
  });

  test('a correction takes off the old image and its credits, and adds the new and theirs', () => {
    // Arrange
    const oldImage = image({ quantity: '5', credits: { usageType: 'credits', quantity: '10' } });
    const newImage = image({ quantity: '9', credits: { usageType: 'credits', quantity: '27' } });

    // Act
    const deltas = changeDeltas({ sequenceNumber: '1', oldImage, newImage });

    // Assert
    expect(deltas.map(({ image, sign }) => [image.usageType, image.quantity, sign])).toEqual([
      ['images', '5', -1n],
      ['credits', '10', -1n],
      ['images', '9', 1n],
      ['credits', '27', 1n],
    ]);
  });

  test('a TTL expiry has no deltas, credits or not', () => {
    expect(changeDeltas({ sequenceNumber: '1', oldImage: image(), expired: true })).toEqual([]);
  });
});

describe('planChunks with credits', () => {
  test("a new priced event counts its quantity and its credits on each usage type's day and cycle items, in one chunk", () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', newImage: image() }], 99);

    // Assert: 4 images, 8 credits, on the same hour and day counters; the event counts once in each usage type's hour
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.sequenceNumbers).toEqual(['1']);
    expect(chunks[0]?.runs).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: 8_000_000_000n, counters: { 'd#2026-11-22': 8_000_000_000n } },
      { item: 'ws_a credits day 2026-11-22', total: 8_000_000_000n, counters: { 'h#2026-11-22T10': 8_000_000_000n, 'r#2026-11-22T10': events(1n) } },
      { item: `ws_a images cycle ${NOV}`, total: 4_000_000_000n, counters: { 'd#2026-11-22': 4_000_000_000n } },
      { item: 'ws_a images day 2026-11-22', total: 4_000_000_000n, counters: { 'h#2026-11-22T10': 4_000_000_000n, 'r#2026-11-22T10': events(1n) } },
    ]);
  });

  test("the credits count under the event's user, channel and feature too", () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', newImage: image({ userId: 'u1', channel: 'web', feature: 'generate' }) }], 99);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: 8n * NANO, counters: { 'd#2026-11-22': 8n * NANO, 'c#web': 8n * NANO, 'f#generate': 8n * NANO } },
      { item: 'ws_a credits day 2026-11-22', total: 8n * NANO, counters: { 'h#2026-11-22T10': 8n * NANO, 'r#2026-11-22T10': events(1n), 'ch#2026-11-22T10#web': 8n * NANO } },
      { item: `ws_a credits user ${NOV} u1`, total: 8n * NANO, counters: {} },
      { item: `ws_a images cycle ${NOV}`, total: 4n * NANO, counters: { 'd#2026-11-22': 4n * NANO, 'c#web': 4n * NANO, 'f#generate': 4n * NANO } },
      { item: 'ws_a images day 2026-11-22', total: 4n * NANO, counters: { 'h#2026-11-22T10': 4n * NANO, 'r#2026-11-22T10': events(1n), 'ch#2026-11-22T10#web': 4n * NANO } },
      { item: `ws_a images user ${NOV} u1`, total: 4n * NANO, counters: {} },
    ]);
  });

  test('fractional credits are folded exactly', () => {
    // Act: 0.1 + 0.2 credits
    const chunks = planChunks(
      [
        { sequenceNumber: '1', newImage: image({ eventKey: 'e1', quantity: '1', credits: { usageType: 'credits', quantity: '0.1' } }) },
        { sequenceNumber: '2', newImage: image({ eventKey: 'e2', quantity: '1', credits: { usageType: 'credits', quantity: '0.2' } }) },
      ],
      99,
    );

    // Assert: 0.3 credits = 300,000,000 nano-credits, 2 images
    const totals = plain(chunks[0]).map(({ item, total }) => [item, total]);
    expect(totals).toEqual([
      [`ws_a credits cycle ${NOV}`, 300_000_000n],
      ['ws_a credits day 2026-11-22', 300_000_000n],
      [`ws_a images cycle ${NOV}`, 2n * NANO],
      ['ws_a images day 2026-11-22', 2n * NANO],
    ]);
  });

  test('a correction nets the credits and the quantity moved, in one chunk', () => {
    // Act: 5 images for 10 credits, corrected to 9 images for 27 credits
    const chunks = planChunks(
      [
        {
          sequenceNumber: '1',
          oldImage: image({ quantity: '5', credits: { usageType: 'credits', quantity: '10' } }),
          newImage: image({ quantity: '9', credits: { usageType: 'credits', quantity: '27' } }),
        },
      ],
      99,
    );

    // Assert: +4 images, +17 credits; the same event in the same hour, so no event more on either
    expect(chunks).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: 17n * NANO, counters: { 'd#2026-11-22': 17n * NANO } },
      { item: 'ws_a credits day 2026-11-22', total: 17n * NANO, counters: { 'h#2026-11-22T10': 17n * NANO, 'r#2026-11-22T10': 0n } },
      { item: `ws_a images cycle ${NOV}`, total: 4n * NANO, counters: { 'd#2026-11-22': 4n * NANO } },
      { item: 'ws_a images day 2026-11-22', total: 4n * NANO, counters: { 'h#2026-11-22T10': 4n * NANO, 'r#2026-11-22T10': 0n } },
    ]);
  });

  test('a correction that stops pricing an event takes its credits off', () => {
    // Act: 4 images for 8 credits, corrected to 4 images without credits
    const { credits: _, ...unpriced } = image();
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), newImage: unpriced }], 99);

    // Assert: the images net to nothing (quantity and event) and drop out; −8 credits, and the event taken back from the credits
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: -8n * NANO, counters: { 'd#2026-11-22': -8n * NANO } },
      { item: 'ws_a credits day 2026-11-22', total: -8n * NANO, counters: { 'h#2026-11-22T10': -8n * NANO, 'r#2026-11-22T10': events(-1n) } },
    ]);
  });

  test('a TTL expiry moves nothing', () => {
    // Act
    const chunks = planChunks([{ sequenceNumber: '1', oldImage: image(), expired: true }], 99);

    // Assert: the record is checkpointed, no counter moves
    expect(chunks.flatMap((chunk) => chunk.updates)).toEqual([]);
    expect(chunks.flatMap((chunk) => chunk.sequenceNumbers)).toEqual(['1']);
  });

  test('a change to closed cycles of both usage types adds a late item for each', () => {
    // Arrange
    const closed = new Set([closedKey('ws_a', NOV, 'images'), closedKey('ws_a', NOV, 'credits')]);

    // Act
    const chunks = planChunks([{ sequenceNumber: '1', newImage: image() }], 99, closed);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(plain(chunks[0])).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: 8n * NANO, closed: true, counters: { 'd#2026-11-22': 8n * NANO } },
      { item: 'ws_a credits day 2026-11-22', total: 8n * NANO, counters: { 'h#2026-11-22T10': 8n * NANO, 'r#2026-11-22T10': events(1n) } },
      { item: `ws_a credits late ${NOV} ${EVENT}`, total: 8n * NANO, counters: {} },
      { item: `ws_a images cycle ${NOV}`, total: 4n * NANO, closed: true, counters: { 'd#2026-11-22': 4n * NANO } },
      { item: 'ws_a images day 2026-11-22', total: 4n * NANO, counters: { 'h#2026-11-22T10': 4n * NANO, 'r#2026-11-22T10': events(1n) } },
      { item: `ws_a images late ${NOV} ${EVENT}`, total: 4n * NANO, counters: {} },
    ]);
    const late = chunks[0]?.updates.filter((u) => u.kind === 'late');
    expect(late?.map((u) => [u.usageType, u.member])).toEqual(
      expect.arrayContaining([
        ['images', EVENT],
        ['credits', EVENT],
      ]),
    );
  });

  test('a correction to closed cycles nets each late item', () => {
    // Arrange
    const closed = new Set([closedKey('ws_a', NOV, 'images'), closedKey('ws_a', NOV, 'credits')]);

    // Act: 5 images for 10 credits → 9 for 27
    const chunks = planChunks(
      [
        {
          sequenceNumber: '1',
          oldImage: image({ quantity: '5', credits: { usageType: 'credits', quantity: '10' } }),
          newImage: image({ quantity: '9', credits: { usageType: 'credits', quantity: '27' } }),
        },
      ],
      99,
      closed,
    );

    // Assert
    const late = plain(chunks[0]).filter((u) => u.item.includes(' late '));
    expect(late).toEqual([
      { item: `ws_a credits late ${NOV} ${EVENT}`, total: 17n * NANO, counters: {} },
      { item: `ws_a images late ${NOV} ${EVENT}`, total: 4n * NANO, counters: {} },
    ]);
  });

  test('only the closed cycle of the two gets a late item', () => {
    // Arrange: the images cycle is closed, the credits one is not
    const closed = new Set([closedKey('ws_a', NOV, 'images')]);

    // Act
    const chunks = planChunks([{ sequenceNumber: '1', newImage: image() }], 99, closed);

    // Assert
    const updates = plain(chunks[0]);
    expect(updates.filter((u) => u.item.includes(' late '))).toEqual([{ item: `ws_a images late ${NOV} ${EVENT}`, total: 4n * NANO, counters: {} }]);
    expect(updates.find((u) => u.item === `ws_a credits cycle ${NOV}`)).toEqual({ item: `ws_a credits cycle ${NOV}`, total: 8n * NANO, counters: { 'd#2026-11-22': 8n * NANO } });
  });

  test('the largest change, a correction across closed cycles with user and group, fits one chunk of 21 items', () => {
    // Arrange: old in October, new in November, every cycle closed: 4 images × (day, cycle, late, user, group) + 1 checkpoint
    const closed = new Set([closedKey('ws_a', OCT, 'images'), closedKey('ws_a', OCT, 'credits'), closedKey('ws_a', NOV, 'images'), closedKey('ws_a', NOV, 'credits')]);
    const change: LedgerChange = {
      sequenceNumber: '1',
      oldImage: image({ cycleStart: OCT, day: '2026-11-10', hour: '2026-11-10T09', userId: 'u1', groupId: 'g1', quantity: '5', credits: { usageType: 'credits', quantity: '10' } }),
      newImage: image({ userId: 'u1', groupId: 'g1' }),
    };

    // Act
    const chunks = planChunks([change], 21, closed);

    // Assert
    expect(chunks).toHaveLength(1);
    expect(chunks[0]?.updates).toHaveLength(20);
    expect(chunks[0]?.runs).toHaveLength(1);
    const late = plain(chunks[0]).filter((u) => u.item.includes(' late '));
    expect(late.map(({ item, total }) => [item, total])).toEqual([
      [`ws_a credits late ${OCT} ${EVENT}`, -10n * NANO],
      [`ws_a credits late ${NOV} ${EVENT}`, 8n * NANO],
      [`ws_a images late ${OCT} ${EVENT}`, -5n * NANO],
      [`ws_a images late ${NOV} ${EVENT}`, 4n * NANO],
    ]);
  });

  test('credits of events of several usage types add up on one credits item', () => {
    // Act: 4 images for 8 credits, 12,000 tokens for 36 credits
    const chunks = planChunks(
      [
        { sequenceNumber: '1', newImage: image() },
        { sequenceNumber: '2', newImage: image({ eventKey: 'run-1', usageType: 'agent_tokens', quantity: '12000', credits: { usageType: 'credits', quantity: '36' } }) },
      ],
      99,
    );

    // Assert: 44 credits, of two events in the same hour
    expect(chunks).toHaveLength(1);
    const credits = plain(chunks[0]).filter((u) => u.item.startsWith('ws_a credits '));
    expect(credits).toEqual([
      { item: `ws_a credits cycle ${NOV}`, total: 44n * NANO, counters: { 'd#2026-11-22': 44n * NANO } },
      { item: 'ws_a credits day 2026-11-22', total: 44n * NANO, counters: { 'h#2026-11-22T10': 44n * NANO, 'r#2026-11-22T10': events(2n) } },
    ]);
  });
});
