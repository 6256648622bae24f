import type { DashboardEvent } from '../../local/demo';
import { utcCycleStart } from '../../testkit/ground-truth';

/**
 * What the dashboard must show, worked out from the events the test sent with plain UTC arithmetic (the
 * example workspaces are all in UTC), independently of functions/ and dashboard/.
 */

export const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Quantities as integers (the dashboard data has whole numbers only). */
const sum = (events: readonly DashboardEvent[]) => events.reduce((total, e) => total + e.data.quantity, 0);

export function cycleOf(now: Date, anchor: number): { start: Date; end: Date } {
  const start = utcCycleStart(now, anchor);
  // The next cycle starts at the first instant not in this one: found by stepping a day past this cycle's days.
  let probe = new Date(start.getTime() + 27 * DAY_MS);
  while (utcCycleStart(probe, anchor).getTime() === start.getTime()) probe = new Date(probe.getTime() + DAY_MS);
  return { start, end: utcCycleStart(probe, anchor) };
}

const of = (events: readonly DashboardEvent[], subject: string, usageType: string, from: number, to: number) =>
  events.filter((e) => e.subject === subject && e.data.usageType === usageType && Date.parse(e.time) >= from && Date.parse(e.time) < to);

/** a ÷ b rounded half up to `decimals` places, in integers. */
function roundedRatio(a: bigint, b: bigint, decimals = 2): number {
  const scale = 10n ** BigInt(decimals);
  return Number((a * scale * 2n + b) / (b * 2n)) / Number(scale);
}

export interface CardTruth {
  used: number;
  available: number;
  daysElapsed: number;
  daysRemaining: number;
  avgPerDay: number;
  runOutInDays: number | null;
  projectedToRunOut: boolean;
  /** Events counted this cycle. */
  requests: number;
}

/** The summary of a workspace with no grants, spillover or closes yet, as of `asOf`. */
export function cardTruth(events: readonly DashboardEvent[], subject: string, usageType: string, anchor: number, limit: number, asOf: Date): CardTruth {
  const cycle = cycleOf(asOf, anchor);
  const inCycle = of(events, subject, usageType, cycle.start.getTime(), cycle.end.getTime());
  const used = sum(inCycle);
  const available = Math.max(0, limit - used);
  const day = (instant: number) => Math.floor(instant / DAY_MS);
  const daysElapsed = day(asOf.getTime()) - day(cycle.start.getTime()) + 1;
  const daysRemaining = day(cycle.end.getTime() - 1) - day(asOf.getTime());
  const msLeft = BigInt(Math.max(0, cycle.end.getTime() - asOf.getTime()));
  return {
    used,
    available,
    daysElapsed,
    daysRemaining,
    avgPerDay: roundedRatio(BigInt(used), BigInt(daysElapsed)),
    runOutInDays: used === 0 ? null : roundedRatio(BigInt(available) * BigInt(daysElapsed), BigInt(used)),
    projectedToRunOut: used > 0 && BigInt(available) * BigInt(daysElapsed) * BigInt(DAY_MS) < BigInt(used) * msLeft,
    requests: inCycle.length,
  };
}

export interface BucketTruth {
  start: string;
  /** Use per channel, "other" for events that named none; channels without use left out. */
  byChannel: Record<string, number>;
  total: number;
}

/** The [from, to) bounds of a chart window: 24 UTC hours ending with the current one, 7 UTC days ending today, or 30 days in weeks counted back from today. */
function seriesBounds(window: '24h' | '7d' | '30d', asOf: Date): [number, number][] {
  const bounds: [number, number][] = [];
  if (window === '24h') {
    const end = Math.floor(asOf.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
    for (let i = 24; i >= 1; i--) bounds.push([end - i * HOUR_MS, end - (i - 1) * HOUR_MS]);
  } else {
    const tomorrow = (Math.floor(asOf.getTime() / DAY_MS) + 1) * DAY_MS;
    const days = window === '7d' ? 7 : 30;
    const width = window === '7d' ? 1 : 7;
    const first = tomorrow - days * DAY_MS;
    for (let end = tomorrow; end > first; end -= width * DAY_MS) bounds.unshift([Math.max(first, end - width * DAY_MS), end]);
  }
  return bounds;
}

/** The buckets of a chart window (seriesBounds). */
export function seriesTruth(events: readonly DashboardEvent[], subject: string, usageType: string, window: '24h' | '7d' | '30d', asOf: Date): BucketTruth[] {
  return seriesBounds(window, asOf).map(([from, to]) => {
    const byChannel: Record<string, number> = {};
    for (const e of of(events, subject, usageType, from, to)) byChannel[e.data.channel ?? 'other'] = (byChannel[e.data.channel ?? 'other'] ?? 0) + e.data.quantity;
    return { start: new Date(from).toISOString(), byChannel, total: Object.values(byChannel).reduce((a, b) => a + b, 0) };
  });
}

/** Events per bucket of a chart window (seriesBounds), each bucket's start with how many events were sent in it. */
export function seriesRequestsTruth(events: readonly DashboardEvent[], subject: string, usageType: string, window: '24h' | '7d' | '30d', asOf: Date): { start: string; requests: number }[] {
  return seriesBounds(window, asOf).map(([from, to]) => ({ start: new Date(from).toISOString(), requests: of(events, subject, usageType, from, to).length }));
}

/** Members (users or groups) of a workspace ranked by use in the current cycle (with the events each counts): amount descending, then id. */
export function rankingTruth(
  events: readonly DashboardEvent[],
  subject: string,
  usageType: string,
  by: 'userId' | 'groupId',
  anchor: number,
  asOf: Date,
): { id: string; amount: number; share: number; requests: number }[] {
  const cycle = cycleOf(asOf, anchor);
  const inCycle = of(events, subject, usageType, cycle.start.getTime(), cycle.end.getTime());
  const total = sum(inCycle);
  const amounts = new Map<string, { amount: number; requests: number }>();
  for (const e of inCycle) {
    const entry = amounts.get(e.data[by]) ?? { amount: 0, requests: 0 };
    amounts.set(e.data[by], { amount: entry.amount + e.data.quantity, requests: entry.requests + 1 });
  }
  return [...amounts]
    .map(([id, { amount, requests }]) => ({ id, amount, share: roundedRatio(BigInt(amount), BigInt(total), 4), requests }))
    .sort((a, b) => b.amount - a.amount || (a.id < b.id ? -1 : 1));
}

/** Each workspace's use in its own current cycle. */
export function workspaceTotals(events: readonly DashboardEvent[], usageType: string, anchors: Record<string, number>, asOf: Date): Map<string, number> {
  const totals = new Map<string, number>();
  for (const [subject, anchor] of Object.entries(anchors)) {
    const cycle = cycleOf(asOf, anchor);
    totals.set(subject, sum(of(events, subject, usageType, cycle.start.getTime(), cycle.end.getTime())));
  }
  return totals;
}

/** Daily use (or, with `count`, events) per workspace, usage type and UTC day in [from, to). */
export function dailyTruth(events: readonly DashboardEvent[], subject: string, from: number, to: number, count: 'quantity' | 'requests' = 'quantity'): Map<string, number> {
  const days = new Map<string, number>();
  for (const e of events) {
    const t = Date.parse(e.time);
    if (e.subject !== subject || t < from || t >= to) continue;
    const key = `${e.data.usageType}|${e.time.slice(0, 10)}`;
    days.set(key, (days.get(key) ?? 0) + (count === 'quantity' ? e.data.quantity : 1));
  }
  return days;
}
