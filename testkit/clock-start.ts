import { z } from 'zod';

/**
 * Where a date-sensitive suite starts the local clock: the instant in TEST_CLOCK_START when
 * `npm run test:dates` pins it, else the wall clock. A suite derives every time it sends from this
 * instant or from the stack's clock, never from the wall clock, so it passes on any date.
 */
export function suiteClockStart(): Date {
  const pinned = process.env.TEST_CLOCK_START;
  if (pinned === undefined || pinned === '') return new Date();
  if (!z.iso.datetime().safeParse(pinned).success) throw new Error(`TEST_CLOCK_START must be a UTC instant such as 2028-02-29T23:30:00Z, got "${pinned}"`);
  return new Date(pinned);
}
