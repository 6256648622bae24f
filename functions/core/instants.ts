/**
 * The instants and dates a request may name. Each becomes part of a key (`D#2026-11-24`, a cycle start) or is
 * compared with stored ISO strings, and both are only ordered while the year has four digits: `+010000-01-01`
 * sorts before `9999-11-30`, and a negative year before any other. A request's instants and dates therefore lie
 * in [EARLIEST_INSTANT, LATEST_INSTANT], a year inside 0000–9999 on each side, so that every period they touch
 * (a day read on either side of a range, a cycle around a date, in any time zone) keeps a four-digit year.
 */

export const EARLIEST_INSTANT = '0001-01-01T00:00:00Z';
export const LATEST_INSTANT = '9999-01-01T00:00:00Z';

const EARLIEST_MS = Date.parse(EARLIEST_INSTANT);
const LATEST_MS = Date.parse(LATEST_INSTANT);

export const KEY_RANGE_MESSAGE = `must be between ${EARLIEST_INSTANT} and ${LATEST_INSTANT}`;

/** Whether an RFC 3339 instant or a `YYYY-MM-DD` date (00:00 UTC) lies in the range; false for anything unparsable. */
export function withinKeyRange(value: string): boolean {
  const ms = Date.parse(value);
  return ms >= EARLIEST_MS && ms <= LATEST_MS;
}
