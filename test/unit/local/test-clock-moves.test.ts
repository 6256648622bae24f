import { describe, expect, test } from '@jest/globals';
import { InvalidRequestError } from '../../../functions/core/errors';
import { MOVES_KEPT, TestClockMoves } from '../../../local/clock';

/** The test clock's moves as jobs: run one at a time in the order asked, each readable until 100 later ones push it out. */

const at = (minute: number) => new Date(Date.UTC(2028, 1, 29, 23, minute % 60, 0) + Math.floor(minute / 60) * 3_600_000);

describe('test clock moves', () => {
  test('run one at a time in the order asked, and read done with their result or failed with their code', async () => {
    // Arrange: each move records when it starts and ends; the second fails as a refused move would
    const log: string[] = [];
    const moves = new TestClockMoves(async (instant) => {
      log.push(`start ${instant.toISOString()}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
      log.push(`end ${instant.toISOString()}`);
      if (instant.getTime() === at(2).getTime()) throw new InvalidRequestError('clock_backwards', 'refused');
      return { now: instant.toISOString() };
    });

    // Act
    const started = [at(1), at(2), at(3)].map((instant) => moves.start(instant));
    const settled = await Promise.allSettled(started.map((s) => s.finished));

    // Assert
    expect(log).toEqual([at(1), at(1), at(2), at(2), at(3), at(3)].map((instant, i) => `${i % 2 === 0 ? 'start' : 'end'} ${instant.toISOString()}`));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(started.map((s) => moves.get(s.move.id)?.status)).toEqual(['done', 'failed', 'done']);
    expect(moves.get(started[0]?.move.id ?? '')?.result).toEqual({ now: at(1).toISOString() });
    expect(moves.get(started[1]?.move.id ?? '')?.error).toEqual({ code: 'clock_backwards', message: 'refused' });
  });

  test(`keeps the last ${MOVES_KEPT} moves: at the bound every one is readable, one more forgets the oldest`, async () => {
    // Arrange
    const moves = new TestClockMoves(async (instant) => instant.toISOString());

    // Act
    const ids = Array.from({ length: MOVES_KEPT }, (_, i) => moves.start(at(i)).move.id);
    const atBound = ids.map((id) => moves.get(id) !== undefined);
    const past = moves.start(at(MOVES_KEPT));
    await past.finished;

    // Assert
    expect(atBound.every(Boolean)).toBe(true);
    expect(moves.get(ids[0] ?? '')).toBeUndefined();
    expect(ids.slice(1).every((id) => moves.get(id) !== undefined)).toBe(true);
    expect(moves.get(past.move.id)?.status).toBe('done');
  });
});
