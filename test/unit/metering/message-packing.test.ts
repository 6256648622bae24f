import { describe, expect, test } from '@jest/globals';
import { sendBatches, withAttributeRoom } from '../../../functions/adapters/usage-queue';
import { packEvents, parseMessageBody } from '../../../functions/core/metering/envelope';

/**
 * Events go to the queue as messages of at most 1 MiB, and messages in SendMessageBatch calls of at most
 * 10 entries and 1 MiB in all: nothing the API accepts may be refused by SQS or quarantined as too large.
 */

const MIB = 1_048_576;
const bytes = (text: string) => new TextEncoder().encode(text).length;
/** An event whose JSON is exactly `size` bytes: a feature of 3-byte characters and ASCII padding. */
function eventOfSize(n: number, size: number): { id: string; data: { feature: string } } {
  const base = JSON.stringify({ id: `e${n}`, data: { feature: '' } });
  const room = size - bytes(base);
  return { id: `e${n}`, data: { feature: '€'.repeat(Math.floor(room / 3)) + 'a'.repeat(room % 3) } };
}

describe('packEvents', () => {
  test('500 events of 4,000 bytes: every message within 1 MiB, full but for the last, all events once in order', () => {
    // Arrange
    const events = Array.from({ length: 500 }, (_, i) => eventOfSize(i, 4000));
    expect(events.every((e) => bytes(JSON.stringify(e)) === 4000)).toBe(true);

    // Act
    const bodies = packEvents(events);

    // Assert: a message holds ⌊(1 MiB − 2) / 4,001⌋ = 262 events ("[" "]" and a comma between)
    expect(bodies.map((b) => (JSON.parse(b) as unknown[]).length)).toEqual([262, 238]);
    expect(bodies.every((b) => bytes(b) <= MIB)).toBe(true);
    expect(bodies.flatMap((b) => JSON.parse(b) as unknown[])).toEqual(events);
    for (const body of bodies) expect(parseMessageBody(body).ok).toBe(true);
  });

  test('a message filled to exactly 1 MiB is kept whole; one byte more starts another', () => {
    // Arrange: "[a,b]" is 3 bytes of punctuation; events of 524,286 and 524,287 bytes fill it to 1 MiB exactly
    const half = (MIB - 4) / 2;
    const exact = [eventOfSize(1, half), eventOfSize(2, half + 1)];
    const over = [eventOfSize(1, half + 1), eventOfSize(2, half + 1)];

    // Act
    const exactBodies = packEvents(exact);
    const overBodies = packEvents(over);

    // Assert
    expect(exactBodies.map(bytes)).toEqual([MIB]);
    expect(overBodies.map(bytes)).toEqual([half + 3, half + 3]);
  });
});

describe('sendBatches', () => {
  test('at most 10 entries and 1 MiB of bodies a call, in order', () => {
    // Arrange: 25 small bodies, then four of 400,000 bytes, then 3 small
    const small = Array.from({ length: 25 }, (_, i) => `s${i}`);
    const large = Array.from({ length: 4 }, (_, i) => `${i}`.padEnd(400_000, 'x'));
    const tail = ['t1', 't2', 't3'];

    // Act
    const batches = sendBatches([...small, ...large, ...tail], (b) => b);

    // Assert: 10 and 10 small; the last 5 small with two large (800,015 bytes: a third would pass 1 MiB); two large and the tail
    expect(batches.map((b) => b.length)).toEqual([10, 10, 7, 5]);
    expect(batches.flat()).toEqual([...small, ...large, ...tail]);
    expect(batches.every((b) => b.reduce((sum, body) => sum + bytes(body), 0) <= MIB)).toBe(true);
  });
});

describe('withAttributeRoom (a replayed message with its originalSentAt attribute)', () => {
  /** Event texts with what a naive splitter trips on: commas, brackets and escaped quotes in strings, and a number no double holds. */
  const eventTexts = (count: number, size: number) =>
    Array.from({ length: count }, (_, n) => {
      const text = `{"id":"e${n}, [x] {y} \\"q\\"","data":{"quantity":9007199254740993,"feature":"`;
      return `${text}${'€'.repeat(Math.floor((size - bytes(text) - 3) / 3))}"}}`;
    });

  test('a body of exactly 1 MiB is split into messages that leave room for the attribute, each event once, in order, as written', () => {
    // Arrange: 260 events of about 4,000 bytes, padded with whitespace to exactly 1 MiB.
    const events = eventTexts(260, 4_000);
    const json = `[${events.join(',')}]`;
    const body = json + ' '.repeat(MIB - bytes(json));
    expect(bytes(body)).toBe(MIB);

    // Act
    const parts = withAttributeRoom(body);

    // Assert
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.every((part) => bytes(part) + 'originalSentAt'.length + 'String'.length + 32 <= MIB)).toBe(true);
    expect(parts.flatMap((part) => part.slice(1, -1).split(/,(?={"id":)/))).toEqual(events);
  });

  test('a body with room to spare, and one event alone too large to split, are left whole', () => {
    const small = `[${eventTexts(3, 1_000).join(',')}]`;
    const single = eventTexts(1, MIB)[0] as string;
    expect([withAttributeRoom(small), withAttributeRoom(single), withAttributeRoom(`[${single}]`)]).toEqual([[small], [single], [`[${single}]`]]);
  });
});
