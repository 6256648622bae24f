/**
 * Where a date-sensitive suite starts the local clock: the instant in TEST_CLOCK_START when
 * `npm run test:dates` pins it, else the wall clock. A suite derives every time it sends from this
 * instant or from the stack's clock, never from the wall clock, so it passes on any date.
 */
export function suiteClockStart(): Date {
  const pinned = process.env.TEST_CLOCK_START;
  if (pinned === undefined || pinned === '') return new Date();
  const instant = new Date(pinned);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(pinned) || Number.isNaN(instant.getTime())) {
    throw new Error(`TEST_CLOCK_START must be a UTC instant such as 2028-02-29T23:30:00Z, got "${pinned}"`);
  }
  return instant;
}
