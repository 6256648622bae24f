import { DateTime, IANAZone } from 'luxon';

/**
 * Billing cycles. A cycle starts at the first instant of the anchor day in the subject's time zone (local
 * midnight, or the end of a DST gap when midnight does not exist) and ends, exclusive, where the next begins.
 * An anchor day past a month's end clamps to its last day (31 → Feb 28/29, Apr 30) and returns in longer months.
 * Every instant returned is UTC ISO 8601 with milliseconds: '2026-11-15T00:00:00.000Z'.
 */

export interface BillingAnchor {
  billingAnchorDay: number;
  timeZone: string;
}

/** UTC ISO instants; `end` is exclusive and equals the next cycle's `start`. */
export interface Cycle {
  start: string;
  end: string;
}

type Instant = string | Date;

interface LocalDate {
  year: number;
  month: number;
  day: number;
}

// Ingest calls cycleContaining once per event. Placing the instant on a local date is cheap; computing the
// cycle's bounds through luxon costs ~150 µs, so cycles are memoized per (anchor day, zone, starting month).
const MAX_CACHED_CYCLES = 10_000;
const cycleCache = new Map<string, Cycle>();

export function cycleContaining(instant: Instant, anchor: BillingAnchor): Cycle {
  const { billingAnchorDay: day, timeZone } = anchor;
  if (!Number.isInteger(day) || day < 1 || day > 31) throw new RangeError(`invalid billing anchor day ${day}: expected 1..31`);
  const local = localDateOf(instant, timeZone);
  // Months counted from year 0 make "the month before" plain arithmetic, including across a year boundary.
  const thisMonth = local.year * 12 + local.month - 1;
  const startMonth = local.day >= clampedDay(thisMonth, day) ? thisMonth : thisMonth - 1;

  const key = `${day}|${timeZone}|${startMonth}`;
  let cycle = cycleCache.get(key);
  if (!cycle) {
    cycle = { start: toIso(cycleStart(startMonth, day, timeZone)), end: toIso(cycleStart(startMonth + 1, day, timeZone)) };
    if (cycleCache.size >= MAX_CACHED_CYCLES) cycleCache.clear();
    cycleCache.set(key, cycle);
  }
  return { ...cycle }; // a copy, so a caller mutating it cannot corrupt the cache
}

/** The cycle after the given one: the one containing its (exclusive) end. */
export function nextCycle(cycle: Cycle, anchor: BillingAnchor): Cycle {
  return cycleContaining(cycle.end, anchor);
}

/** The cycle before the given one: the one containing the last millisecond before its start. */
export function previousCycle(cycle: Cycle, anchor: BillingAnchor): Cycle {
  return cycleContaining(new Date(toMillis(cycle.start) - 1), anchor);
}

/** The calendar date ('YYYY-MM-DD') of an instant in a time zone. */
export function localDate(instant: Instant, timeZone: string): string {
  return formatDate(localDateOf(instant, timeZone));
}

/** The first instant (UTC ISO) of a local date ('YYYY-MM-DD') in a time zone. */
export function startOfLocalDay(date: string, timeZone: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!match) throw new RangeError(`invalid date "${date}": expected YYYY-MM-DD`);
  return toIso(firstInstantOf(Number(match[1]), Number(match[2]), Number(match[3]), timeZone));
}

/** Where an event's quantity is counted: its UTC hour, its local day and the start of its billing cycle. */
export interface EventBuckets {
  hour: string;
  day: string;
  cycleStart: string;
}

// Ingest buckets every event; consecutive events of a subject mostly share a minute, and a minute has one UTC
// hour, one local day and one cycle (zone offsets and cycle starts fall on whole minutes).
const MAX_CACHED_BUCKETS = 50_000;
const bucketCache = new Map<string, Readonly<EventBuckets>>();

/** The buckets of an instant for a subject's zone and billing anchor. */
export function bucketsOf(instant: string, anchor: BillingAnchor): Readonly<EventBuckets> {
  const minute = CANONICAL.test(instant) ? instant.slice(0, 16) : new Date(toMillis(instant)).toISOString().slice(0, 16);
  const key = `${anchor.timeZone}|${anchor.billingAnchorDay}|${minute}`;
  let buckets = bucketCache.get(key);
  if (!buckets) {
    buckets = Object.freeze({ hour: utcHour(instant), day: localDate(instant, anchor.timeZone), cycleStart: cycleContaining(instant, anchor).start });
    if (bucketCache.size >= MAX_CACHED_BUCKETS) bucketCache.clear();
    bucketCache.set(key, buckets);
  }
  return buckets;
}

/** The UTC hour containing an instant, as 'YYYY-MM-DDTHH'. */
export function utcHour(instant: Instant): string {
  const millis = toMillis(instant);
  // A canonical instant that parsed is its own UTC hour (see isCanonical); no need to format it again.
  return typeof instant === 'string' && CANONICAL.test(instant) ? instant.slice(0, 13) : new Date(millis).toISOString().slice(0, 13);
}

export function isValidTimeZone(tz: string): boolean {
  return IANAZone.isValidZone(tz);
}

function cycleStart(monthIndex: number, anchorDay: number, zone: string): DateTime<true> {
  return firstInstantOf(Math.floor(monthIndex / 12), (monthIndex % 12) + 1, clampedDay(monthIndex, anchorDay), zone);
}

function clampedDay(monthIndex: number, anchorDay: number): number {
  // Day 0 of the following month is the last day of this one.
  const daysInMonth = new Date(Date.UTC(Math.floor(monthIndex / 12), (monthIndex % 12) + 1, 0)).getUTCDate();
  return Math.min(anchorDay, daysInMonth);
}

function firstInstantOf(year: number, month: number, day: number, zone: string): DateTime<true> {
  // Luxon moves a nonexistent midnight (DST gap at 00:00) to the first instant after the gap.
  const start = DateTime.fromObject({ year, month, day }, { zone }).startOf('day');
  if (!start.isValid) throw new RangeError(`invalid date ${year}-${month}-${day} or time zone "${zone}"`);
  // A midnight that occurs twice (clocks back from 01:00 to 00:00, e.g. America/Havana) resolves to either
  // occurrence depending on the current date's offset; the day starts at the earlier one.
  const justBefore = start.minus(1);
  return justBefore.day === start.day ? justBefore.startOf('day') : start;
}

// Placing an instant in a zone takes luxon ~8 µs and a cached Intl formatter ~3 µs; ingest does it per event.
const dateFormats = new Map<string, Intl.DateTimeFormat>();

// Placing an instant on a local date (Intl's formatToParts) was most of ingest's CPU per event. Zone offsets, and
// their changes, fall on whole minutes, so a local date cannot change within a UTC minute: dates are memoized
// per zone and minute, which live traffic hits almost every time.
const MAX_CACHED_DATES = 50_000;
const dateCache = new Map<string, Readonly<LocalDate>>();

function localDateOf(instant: Instant, zone: string): Readonly<LocalDate> {
  const millis = toMillis(instant);
  const key = `${zone}|${Math.floor(millis / 60_000)}`;
  const cached = dateCache.get(key);
  if (cached) return cached;
  let format = dateFormats.get(zone);
  if (!format) {
    // Throws a RangeError for an unknown zone, so only valid zones are cached.
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: 'numeric', day: 'numeric' });
    dateFormats.set(zone, format);
  }
  const parts = format.formatToParts(millis);
  const part = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value);
  const date = Object.freeze({ year: part('year'), month: part('month'), day: part('day') });
  if (dateCache.size >= MAX_CACHED_DATES) dateCache.clear();
  dateCache.set(key, date);
  return date;
}

function formatDate({ year, month, day }: LocalDate): string {
  return `${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
}

const CANONICAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function toMillis(instant: Instant): number {
  let millis = typeof instant === 'string' ? Date.parse(instant) : instant.getTime();
  // Date.parse is fast but lenient (Feb 30 rolls into March, no offset means host-local time), so only trust it
  // for the canonical form, and only when the day and hour did not roll over; anything else goes through
  // luxon's strict ISO parser, which reads no offset as UTC.
  if (typeof instant === 'string' && !(Number.isFinite(millis) && isCanonical(instant, millis))) {
    millis = DateTime.fromISO(instant, { zone: 'utc' }).toMillis();
  }
  if (!Number.isFinite(millis)) throw new RangeError(`invalid instant "${String(instant)}"`);
  return millis;
}

/** `instant` is 'YYYY-MM-DDTHH:MM:SS.sssZ' and names the very day and hour it parsed to. */
function isCanonical(instant: string, millis: number): boolean {
  if (!CANONICAL.test(instant)) return false;
  const parsed = new Date(millis);
  return parsed.getUTCDate() === Number(instant.slice(8, 10)) && parsed.getUTCHours() === Number(instant.slice(11, 13));
}

function toIso(dateTime: DateTime): string {
  return new Date(dateTime.toMillis()).toISOString();
}
