import type { CreditUsage, SeriesBucket, SeriesWindow, SummaryEntry } from './types';

/**
 * What the dashboard shows of a cycle, worked out from the API's own numbers and nothing else: the
 * cards, the allowance bar, the warning and the chart's rows. Pure, so every number is unit-tested;
 * where the API gives a number (days, average, projection) it is shown as given, never recomputed.
 */

const DAY_MS = 86_400_000;

export type CardId = 'days-remaining' | 'days-elapsed' | 'avg-per-day' | 'run-out';

export interface Card {
  id: CardId;
  label: string;
  /** The number shown large, formatted. */
  value: string;
  /** What the number is in, after it ("days", "tokens / day"). */
  unit: string;
  detail: string;
}

/** Amounts as the API sends them (exact decimals, at most 9 places), grouped for reading. */
export function formatAmount(value: number): string {
  return new Intl.NumberFormat('en-US', { maximumFractionDigits: 9 }).format(value);
}

/** A date (no time) as the reader's calendar shows it, in the given zone. */
export function formatDate(instant: string | number | Date, timeZone?: string): string {
  return new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', year: 'numeric', ...(timeZone ? { timeZone } : {}) }).format(new Date(instant));
}

const plural = (n: number, one: string, many = `${one}s`) => (n === 1 ? one : many);
const capitalise = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** When the allowance runs out at the current rate: as of the summary, plus the API's runOutInDays. */
export function runOutDate(entry: SummaryEntry, asOf: string): Date | null {
  return entry.runOutInDays === null ? null : new Date(Date.parse(asOf) + Math.round(entry.runOutInDays * DAY_MS));
}

/** The last instant of the cycle as a reader names the day it resets on: the cycle's end. */
export const resetsOn = (entry: SummaryEntry, timeZone?: string) => formatDate(entry.cycleEnd, timeZone);

export function cycleCards(entry: SummaryEntry, asOf: string, unit: string, timeZone?: string): Card[] {
  const cycleDays = entry.daysElapsed + entry.daysRemaining;
  const end = runOutDate(entry, asOf);
  let runOut: Card;
  if (entry.runOutInDays === null) {
    runOut = { id: 'run-out', label: 'Runs out in', value: '—', unit: '', detail: 'No use yet this cycle' };
  } else if (entry.runOutInDays === 0) {
    runOut = { id: 'run-out', label: 'Runs out in', value: '0', unit: 'days', detail: 'Nothing left this cycle' };
  } else {
    runOut = {
      id: 'run-out',
      label: 'Runs out in',
      value: formatAmount(entry.runOutInDays),
      unit: plural(entry.runOutInDays, 'day'),
      detail: entry.projectedToRunOut && end ? `Around ${formatDate(end, timeZone)}, before the cycle resets` : 'Lasts past the end of the cycle at this rate',
    };
  }
  return [
    { id: 'days-remaining', label: 'Days remaining', value: String(entry.daysRemaining), unit: plural(entry.daysRemaining, 'day'), detail: `Resets on ${resetsOn(entry, timeZone)}` },
    { id: 'days-elapsed', label: 'Days elapsed', value: String(entry.daysElapsed), unit: `of ${cycleDays}`, detail: `Cycle began ${formatDate(entry.cycleStart, timeZone)}` },
    {
      id: 'avg-per-day',
      label: 'Average per day',
      value: formatAmount(entry.avgPerDay),
      unit: '/ day',
      detail: `${capitalise(unit)}s a day over the ${entry.daysElapsed} ${plural(entry.daysElapsed, 'day')} so far`,
    },
    runOut,
  ];
}

/** The warning above the cards, when the projection runs out before the cycle ends (the API's projectedToRunOut). */
export function runOutWarning(entry: SummaryEntry, asOf: string, unit: string, timeZone?: string): string | null {
  if (!entry.projectedToRunOut) return null;
  if (entry.availableAmount <= 0) return `You have used all of this cycle's ${unit}s. Your allowance resets on ${resetsOn(entry, timeZone)}.`;
  const end = runOutDate(entry, asOf);
  return `At ${formatAmount(entry.avgPerDay)} ${unit}s a day, this cycle's ${unit}s run out in about ${formatAmount(entry.runOutInDays ?? 0)} ${plural(entry.runOutInDays ?? 0, 'day')}${end ? ` (around ${formatDate(end, timeZone)})` : ''}, before your allowance resets on ${resetsOn(entry, timeZone)}.`;
}

export interface AllowanceBar {
  /** Everything this cycle could use: what was used plus what is left (the bar's full width). */
  capacity: number;
  /** The monthly part: plan allowance plus spillover carried in. */
  monthly: number;
  /** The bonus part: bonus and top-up credits, drawn and left (and use beyond every credit). */
  bonus: number;
  used: number;
  /** Shares of the bar's width, 0–100: the monthly zone, and the used fill within each zone. */
  monthlyPercent: number;
  usedMonthlyPercent: number;
  usedBonusPercent: number;
}

/** The cycle's allowance as one bar split into its monthly and bonus parts, filled by what was used. */
export function allowanceBar(entry: SummaryEntry): AllowanceBar {
  const used = entry.usedAmount;
  const capacity = used + entry.availableAmount;
  const monthly = Math.min(entry.allowanceAmount, capacity);
  const bonus = capacity - monthly;
  const share = (part: number) => (capacity > 0 ? Math.round((part / capacity) * 10_000) / 100 : 0);
  const usedMonthly = Math.min(used, monthly);
  return {
    capacity,
    monthly,
    bonus,
    used,
    monthlyPercent: share(monthly),
    usedMonthlyPercent: share(usedMonthly),
    usedBonusPercent: share(Math.min(used - usedMonthly, bonus)),
  };
}

/** Channels in a fixed order, so a channel keeps its colour whichever window is shown. */
export const CHANNEL_ORDER = ['ui', 'api', 'cli', 'mcp'];
/** Use that named no channel: in a bucket's total but in none of its channels. */
export const NO_CHANNEL = 'other';

export interface ChartRows {
  labels: string[];
  /** One row of values per channel, aligned with labels; channels with no use in the window are left out. */
  channels: { channel: string; values: number[] }[];
  totals: number[];
}

/** The chart's rows: one label per bucket and its use per channel, the rest of the total as "other". */
export function chartRows(buckets: readonly SeriesBucket[], window: SeriesWindow, timeZone?: string): ChartRows {
  const seen = new Set(buckets.flatMap((b) => Object.keys(b.byChannel)));
  const named = [...CHANNEL_ORDER.filter((c) => seen.has(c)), ...[...seen].filter((c) => !CHANNEL_ORDER.includes(c)).sort()];
  const channels = named.map((channel) => ({ channel, values: buckets.map((b) => b.byChannel[channel] ?? 0) }));
  const rest = buckets.map((b) => roundAmount(b.total - named.reduce((sum, c) => sum + (b.byChannel[c] ?? 0), 0)));
  if (rest.some((v) => v > 0)) channels.push({ channel: NO_CHANNEL, values: rest });
  return { labels: buckets.map((b) => bucketLabel(b, window, timeZone)), channels, totals: buckets.map((b) => b.total) };
}

/** An hour ("14:00"), a day ("Mon, Nov 23") or a week ("Nov 17 – Nov 23"; its last day is the one before its end). */
export function bucketLabel(bucket: SeriesBucket, window: SeriesWindow, timeZone?: string): string {
  const zone = timeZone ? { timeZone } : {};
  if (window === '24h') return new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', ...zone }).format(new Date(bucket.start));
  const day = (instant: number, weekday: boolean) => new Intl.DateTimeFormat('en-US', { ...(weekday ? { weekday: 'short' } : {}), month: 'short', day: 'numeric', ...zone }).format(new Date(instant));
  if (window === '7d') return day(Date.parse(bucket.start), true);
  const first = day(Date.parse(bucket.start), false);
  const last = day(Date.parse(bucket.end) - 1, false);
  return first === last ? first : `${first} – ${last}`;
}

/**
 * Money the API gives in minor units of a currency (cents), as the reader's locale writes that currency:
 * the minor unit's size is the currency's own (2 places for USD and EUR, none for JPY, 3 for KWD).
 */
export function formatMoney(minorUnits: number, currency: string): string {
  const format = new Intl.NumberFormat('en-US', { style: 'currency', currency });
  const places = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(minorUnits / 10 ** places);
}

export type CreditPartId = 'included' | 'purchased' | 'bonus';

export interface CreditFigures {
  /** Credits available now, and in money (null when the rate card prices no credit). */
  balance: string;
  balanceMoney: string | null;
  /** The balance's three parts apart, in the order they burn. */
  parts: { id: CreditPartId; label: string; detail: string; credits: string; money: string | null }[];
  requests: string;
  /** Credits billed this period (a request may bill several). */
  billed: string;
  /** Requests the balance lasts at this period's average credits per request; "—" before any request billed credits. */
  estimate: string;
  periodStart: string;
}

/** The Credits card of `GET /v1/usage`, or null when the config has no credit rate card (no card then). */
export function creditFigures(usage: CreditUsage): CreditFigures | null {
  const c = usage.credits;
  if (!c) return null;
  const money = (cents: number | null) => (cents === null || c.currency === null ? null : formatMoney(cents, c.currency));
  return {
    balance: formatAmount(c.balance),
    balanceMoney: money(c.balance_cents),
    parts: [
      { id: 'included', label: 'Included', detail: "Left of this period's monthly allowance", credits: formatAmount(c.included), money: money(c.included_cents) },
      { id: 'purchased', label: 'Purchased', detail: 'Left of top-ups you bought', credits: formatAmount(c.purchased), money: money(c.purchased_cents) },
      { id: 'bonus', label: 'Bonus', detail: 'Bonus credits, which never expire', credits: formatAmount(c.bonus), money: money(c.bonus_cents) },
    ],
    requests: formatAmount(usage.requests),
    billed: formatAmount(usage.billable_units ?? 0),
    estimate: c.estimated_requests_remaining === null ? '—' : formatAmount(c.estimated_requests_remaining),
    periodStart: usage.period_start,
  };
}

/** Sums of exact decimals read as floats, cut back to the 9 places the API uses. */
const roundAmount = (value: number) => Math.round(value * 1e9) / 1e9;
