import { afterEach, beforeEach, describe, expect, jest, test } from '@jest/globals';
import { HandlerClock, Visibility } from '../../../bench/pipeline/harness';

/**
 * The bench's own instruments: the sustained rate the events/s column is judged on, and the handler
 * clock behind the durations, the CPU and the timeline (BENCH_TIMELINE). Time is faked, so each
 * expected figure is worked out by hand from the schedule the test plays.
 */

beforeEach(() => {
  jest.useFakeTimers({ now: new Date('2026-11-24T10:00:00Z') });
});
afterEach(() => {
  jest.useRealTimers();
});

const keys = (from: number, count: number) => Array.from({ length: count }, (_, i) => `e-${from + i}`);

describe('Visibility.sustained', () => {
  test('counts the reports between the commit that reaches 10% and the one that reaches 90%', () => {
    // Arrange: 1,000 events expected, committed 100 at a time, one commit a second after a 5 s start
    const visibility = new Visibility();
    visibility.track(1000);
    jest.advanceTimersByTime(5000);

    // Act
    for (let commit = 0; commit < 10; commit += 1) {
      visibility.visible(keys(commit * 100, 100));
      jest.advanceTimersByTime(1000);
    }

    // Assert: 10% is reached by the 1st commit (100), 90% by the 9th (900), 8 s apart; the start is not counted
    expect(visibility.sustained()).toEqual({ reports: 800, seconds: 8 });
  });

  test('a slow last commit moves the drain, not the sustained rate', () => {
    // Arrange
    const visibility = new Visibility();
    visibility.track(1000);

    // Act: nine commits a second apart, then the last 100 events after a 10 s wait
    for (let commit = 0; commit < 9; commit += 1) {
      visibility.visible(keys(commit * 100, 100));
      jest.advanceTimersByTime(1000);
    }
    jest.advanceTimersByTime(10_000);
    visibility.visible(keys(900, 100));

    // Assert
    expect(visibility.sustained()).toEqual({ reports: 800, seconds: 8 });
  });

  test('gives no rate when both marks fall in one commit', () => {
    // Arrange
    const visibility = new Visibility();
    visibility.track(3000);
    jest.advanceTimersByTime(2000);

    // Act
    visibility.visible(keys(0, 3000));

    // Assert
    expect(visibility.sustained()).toBeUndefined();
  });

  test('counts only the reports made after tracking starts', () => {
    // Arrange: a warm-up's 500 reports before the phase
    const visibility = new Visibility();
    visibility.visible(keys(0, 500));
    visibility.track(200);

    // Act: 10% of 200 is 20, 90% is 180
    visibility.visible(keys(500, 20));
    jest.advanceTimersByTime(4000);
    visibility.visible(keys(520, 160));

    // Assert
    expect(visibility.sustained()).toEqual({ reports: 160, seconds: 4 });
    expect(visibility.reported).toBe(680);
  });
});

describe('HandlerClock', () => {
  const invocation = (clock: HandlerClock, name: string, records: number, ms: number, fail = false) =>
    clock.time(name, 1024, records, async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      if (fail) throw new Error('the handler failed');
    });

  test('keeps each invocation with its batch size, start and end, failed ones included', async () => {
    // Arrange
    const clock = new HandlerClock();
    const origin = performance.now();

    // Act: ingest for 3 s from 0; aggregate for 1 s from 0, then a failing one for 0.5 s
    const ingest = invocation(clock, 'ingest', 1000, 3000);
    const aggregate = invocation(clock, 'aggregate', 6000, 1000).then(() => invocation(clock, 'aggregate', 6000, 500, true));
    const settled = Promise.allSettled([ingest, aggregate]);
    await jest.advanceTimersByTimeAsync(3000);
    await settled;
    const taken = clock.take();

    // Assert
    const relative = taken.invocations.map((i) => ({ function: i.function, start: i.startMs - origin, end: i.endMs - origin, records: i.records }));
    expect(relative).toEqual([
      { function: 'aggregate', start: 0, end: 1000, records: 6000 },
      { function: 'aggregate', start: 1000, end: 1500, records: 6000 },
      { function: 'ingest', start: 0, end: 3000, records: 1000 },
    ]);
    expect(taken.functions).toEqual({
      ingest: { invocations: 1, durationMs: 3000, memoryMb: 1024 },
      aggregate: { invocations: 2, durationMs: 1500, memoryMb: 1024 },
    });
  });

  test('take starts a new phase', async () => {
    // Arrange
    const clock = new HandlerClock();
    const first = invocation(clock, 'ingest', 10, 100);
    await jest.advanceTimersByTimeAsync(100);
    await first;
    clock.take();

    // Act
    const second = invocation(clock, 'ingest', 20, 200);
    await jest.advanceTimersByTimeAsync(200);
    await second;
    const taken = clock.take();

    // Assert
    expect(taken.invocations.map((i) => i.records)).toEqual([20]);
    expect(taken.functions).toEqual({ ingest: { invocations: 1, durationMs: 200, memoryMb: 1024 } });
  });
});
