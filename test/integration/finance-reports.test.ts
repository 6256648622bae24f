import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { DateTime } from 'luxon';
import type { AuditRow } from '../../functions/core/reporting/audit';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse } from '../support/api-contract';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * Finance reports end to end, as a client of our own meets them: a known set of events (duplicates, arrays,
 * late events and corrections included) goes in over SQS and the API, the test clock closes two cycles, and
 * the cycle reports and summaries written to S3, the on-demand reports, and hourly and daily exports are
 * downloaded, validated against schemas/usage-report.schema.json and compared, field by field, with this
 * file's own model of the events (plain bigint arithmetic in thousandths and luxon for local days; nothing
 * from functions/). Last, `usage-pipeline audit` finds no difference, and finds the one written on purpose.
 */

const CONFIG = 'test/fixtures/report-config.json';
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const GRACE = 60 * MINUTE;

const KEYS = {
  finance: 'report-finance-key-00000000000',
  ws_alpha: 'report-alpha-key-000000000000',
  ws_beta: 'report-beta-key-0000000000000',
  ws_gamma: 'report-gamma-key-000000000000',
} as const;

type UsageType = 'credits' | 'images' | 'tokens';
/** Sorted, as reports list them. */
const USAGE_TYPES: readonly UsageType[] = ['credits', 'images', 'tokens'];
const UNITS: Record<UsageType, string> = { credits: 'credit', images: 'image', tokens: 'token' };

/** Amounts in thousandths of a unit: every quantity here has at most three decimals, so bigint sums are exact. */
const th = (units: number): bigint => BigInt(Math.round(units * 1000));
const sumOf = (values: Iterable<bigint>) => [...values].reduce((a, b) => a + b, 0n);
const max0 = (v: bigint) => (v > 0n ? v : 0n);
const minOf = (a: bigint, b: bigint) => (a < b ? a : b);

/** The exact decimal text the reports use: no exponent, no trailing zeros ("1.5", "-3", "0"). */
function dec(value: bigint): string {
  const abs = value < 0n ? -value : value;
  const fraction = (abs % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
  return `${value < 0n ? '-' : ''}${abs / 1000n}${fraction ? `.${fraction}` : ''}`;
}

/** test/fixtures/report-config.json, restated. */
type Spillover = 'all' | 'none' | { cap: bigint };
const PLANS: Record<string, Partial<Record<UsageType, { limit: bigint; spillover: Spillover }>>> = {
  team: {
    tokens: { limit: th(20000), spillover: { cap: th(5000) } },
    images: { limit: th(30), spillover: 'all' },
    credits: { limit: th(10), spillover: 'none' },
  },
  basic: {
    tokens: { limit: th(5000), spillover: 'all' },
    images: { limit: th(10), spillover: 'none' },
  },
};
const PRICES: Record<UsageType, { unitPrice: number; per: number; features: Record<string, number> }> = {
  tokens: { unitPrice: 2, per: 1000, features: { reasoning: 6 } },
  images: { unitPrice: 4, per: 1, features: { 'generate:hd': 9, background_removal: 2 } },
  credits: { unitPrice: 7, per: 1, features: {} },
};
const WORKSPACES = {
  ws_alpha: { name: 'Alpha Analytics', plan: 'team', anchor: 1, zone: 'UTC' },
  ws_beta: { name: 'Beta Brothers', plan: 'team', anchor: 15, zone: 'America/New_York' },
  ws_gamma: { name: null, plan: 'basic', anchor: 1, zone: 'UTC' },
} as const;
type Subject = keyof typeof WORKSPACES;
const SUBJECTS = Object.keys(WORKSPACES).sort() as Subject[];

// ---------------------------------------------------------------------------------------------------------
// Time: cycles and local days with luxon (anchors 1 and 15 never clamp).

const iso = (ms: number) => new Date(ms).toISOString();
interface Cycle {
  start: string;
  end: string;
}

const cycleMemo = new Map<string, Cycle>();
function cycleOf(subject: Subject, ms: number): Cycle {
  const { anchor, zone } = WORKSPACES[subject];
  const local = DateTime.fromMillis(ms, { zone });
  const memoKey = `${subject}|${local.toISODate()}`;
  const known = cycleMemo.get(memoKey);
  if (known) return known;
  const start = (local.day >= anchor ? local : local.minus({ months: 1 })).set({ day: anchor }).startOf('day');
  const cycle = { start: iso(start.toMillis()), end: iso(start.plus({ months: 1 }).toMillis()) };
  cycleMemo.set(memoKey, cycle);
  return cycle;
}
const cycleAt = (subject: Subject, time: string) => cycleOf(subject, Date.parse(time));
const nextCycle = (subject: Subject, cycle: Cycle) => cycleOf(subject, Date.parse(cycle.end));
const localDay = (subject: Subject, ms: number) => DateTime.fromMillis(ms, { zone: WORKSPACES[subject].zone }).toISODate() as string;
const dayStart = (subject: Subject, day: string) => iso(DateTime.fromISO(day, { zone: WORKSPACES[subject].zone }).startOf('day').toMillis());
const addDays = (day: string, days: number) => DateTime.fromISO(day, { zone: 'utc' }).plus({ days }).toISODate() as string;
const hourOf = (time: string) => `${time.slice(0, 13)}:00:00.000Z`;

/** An interval of the test clock within which something happened (a send until it settled, a close). */
interface Window {
  from: number;
  to: number;
}

/** Matches an instant (UTC ISO with milliseconds) inside the window. */
function within(window: Window): unknown {
  const { from, to } = window;
  if (!Number.isFinite(to)) throw new Error('the window is still open');
  return {
    asymmetricMatch: (value: unknown) => typeof value === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(value) && Date.parse(value) >= from && Date.parse(value) <= to,
    toAsymmetricMatcher: () => `an instant in [${iso(from)}, ${iso(to)}]`,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The model: the latest version of every event, the closes, the late changes, the grants.

interface Ev {
  source: string;
  id: string;
  subject: Subject;
  time: string;
  usageType: UsageType;
  /** Thousandths. */
  q: bigint;
  channel?: string;
  feature?: string;
  userId?: string;
  groupId?: string;
}

/** The event's identity as reports name it: JSON of [source, id]. */
const identity = (e: Pick<Ev, 'source' | 'id'>) => JSON.stringify([e.source, e.id]);
const contentOf = (e: Ev) => JSON.stringify([e.subject, e.time, e.usageType, e.q.toString(), e.channel ?? null, e.feature ?? null, e.userId ?? null, e.groupId ?? null]);

function envelope(e: Ev, withSubject = true): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: e.id,
    source: e.source,
    type: 'com.example.usage',
    ...(withSubject ? { subject: e.subject } : {}),
    time: e.time,
    data: {
      usageType: e.usageType,
      quantity: Number(e.q) / 1000,
      ...(e.channel ? { channel: e.channel } : {}),
      ...(e.feature ? { feature: e.feature } : {}),
      ...(e.userId ? { userId: e.userId } : {}),
      ...(e.groupId ? { groupId: e.groupId } : {}),
    },
  };
}

interface LateItem {
  subject: Subject;
  cycleStart: string;
  usageType: UsageType;
  eventKey: string;
  source: string;
  id: string;
  delta: bigint;
  /** When the event last changed the closed cycle. */
  window: Window;
}

interface Coverage {
  limit: bigint;
  spilloverIn: bigint;
  used: bigint;
  plan: bigint;
  spillover: bigint;
  bonus: bigint;
  topup: bigint;
  uncovered: bigint;
  spilloverOut: bigint;
  drawn: Map<string, bigint>;
}

interface Snapshot {
  subject: Subject;
  cycle: Cycle;
  usage: Record<UsageType, Coverage>;
  window: Window;
}

interface GrantModel {
  subject: Subject;
  id: string;
  kind: 'bonus' | 'topup';
  usageType: UsageType;
  amount: bigint;
  grantedAt: string;
  expiresAt?: string;
}

class Model {
  readonly ledger = new Map<string, Ev>();
  /** subject|cycleStart|usageType of every cycle item an event version ever touched. */
  readonly touched = new Set<string>();
  readonly late = new Map<string, LateItem>();
  readonly snapshots = new Map<string, Snapshot>();
  readonly grants: GrantModel[] = [];

  /** Applies an accepted event: new, a correction (replaces), or a duplicate (changes nothing; false). */
  apply(event: Ev, window: Window): boolean {
    const key = identity(event);
    const old = this.ledger.get(key);
    if (old && contentOf(old) === contentOf(event)) return false;
    this.ledger.set(key, event);
    const deltas = new Map<string, { image: Ev; cycleStart: string; delta: bigint }>();
    for (const [image, sign] of [
      [old, -1n],
      [event, 1n],
    ] as const) {
      if (!image) continue;
      const cycleStart = cycleAt(image.subject, image.time).start;
      this.touched.add(`${image.subject}|${cycleStart}|${image.usageType}`);
      if (!this.snapshots.has(`${image.subject}|${cycleStart}`)) continue;
      const lateKey = `${image.subject}|${cycleStart}|${image.usageType}|${key}`;
      const entry = deltas.get(lateKey) ?? { image, cycleStart, delta: 0n };
      entry.delta += sign * image.q;
      deltas.set(lateKey, entry);
    }
    // A change that nets to zero in a closed cycle writes no late item (nothing to list).
    for (const [lateKey, { image, cycleStart, delta }] of deltas) {
      if (delta === 0n) continue;
      const item = this.late.get(lateKey) ?? { subject: image.subject, cycleStart, usageType: image.usageType, eventKey: key, source: image.source, id: image.id, delta: 0n, window };
      item.delta += delta;
      item.window = window;
      this.late.set(lateKey, item);
    }
    return true;
  }

  eventsIn(subject: Subject, cycleStart: string, usageType?: UsageType): Ev[] {
    return [...this.ledger.values()].filter((e) => e.subject === subject && (usageType === undefined || e.usageType === usageType) && cycleAt(subject, e.time).start === cycleStart);
  }

  total(subject: Subject, cycleStart: string, usageType: UsageType): bigint {
    return sumOf(this.eventsIn(subject, cycleStart, usageType).map((e) => e.q));
  }

  snapshotOf(subject: Subject, cycle: Cycle): Snapshot | undefined {
    return this.snapshots.get(`${subject}|${cycle.start}`);
  }

  /** How `used` is covered in the cycle: spillover, then the plan, then top-ups (soonest expiry first) and bonus. */
  coverage(subject: Subject, cycle: Cycle, usageType: UsageType, used: bigint): Coverage {
    const quota = PLANS[WORKSPACES[subject].plan]?.[usageType];
    const limit = quota?.limit ?? 0n;
    const previous = [...this.snapshots.values()].find((s) => s.subject === subject && s.cycle.end === cycle.start);
    const spilloverIn = previous?.usage[usageType].spilloverOut ?? 0n;
    const spillover = minOf(used, spilloverIn);
    const plan = minOf(used - spillover, limit);
    let left = max0(used - limit - spilloverIn);
    const drawn = new Map<string, bigint>();
    let bonus = 0n;
    let topup = 0n;
    const held = this.grants
      .filter((g) => g.subject === subject && g.usageType === usageType && g.grantedAt < cycle.end && (g.expiresAt === undefined || g.expiresAt > cycle.start))
      .sort((a, b) => cmp(a.expiresAt ?? '\uffff', b.expiresAt ?? '\uffff') || cmp(a.grantedAt, b.grantedAt) || cmp(a.id, b.id));
    for (const grant of held) {
      const drawnBefore = sumOf([...this.snapshots.values()].filter((s) => s.subject === subject && s.cycle.start < cycle.start).map((s) => s.usage[usageType].drawn.get(grant.id) ?? 0n));
      const take = minOf(max0(grant.amount - drawnBefore), left);
      left -= take;
      if (take === 0n) continue;
      drawn.set(grant.id, take);
      if (grant.kind === 'topup') topup += take;
      else bonus += take;
    }
    const unused = max0(limit - max0(used - spilloverIn));
    const policy = quota?.spillover ?? 'none';
    const spilloverOut = policy === 'all' ? unused : policy === 'none' ? 0n : minOf(unused, policy.cap);
    return { limit, spilloverIn, used, plan, spillover, bonus, topup, uncovered: left, spilloverOut, drawn };
  }

  close(subject: Subject, cycle: Cycle, window: Window): void {
    const usage = Object.fromEntries(USAGE_TYPES.map((u) => [u, this.coverage(subject, cycle, u, this.total(subject, cycle.start, u))])) as Record<UsageType, Coverage>;
    this.snapshots.set(`${subject}|${cycle.start}`, { subject, cycle, usage, window });
  }
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const sk = (l: LateItem) => `L#${l.cycleStart}#${l.usageType}#${l.eventKey}`;

/** quantity × unitPrice / per in minor units, rounded half up. */
function lineAmount(quantity: bigint, unitPrice: number, per: number): number {
  const numerator = quantity * BigInt(unitPrice);
  const denominator = BigInt(per) * 1000n;
  const whole = numerator / denominator;
  return Number((numerator % denominator) * 2n >= denominator ? whole + 1n : whole);
}

function moneyOf(usageType: UsageType, total: bigint, byFeature: ReadonlyMap<string, bigint>) {
  const price = PRICES[usageType];
  const lines: { feature: string | null; quantity: string; unitPrice: number; per: number; amount: number }[] = [];
  let rest = total;
  for (const feature of Object.keys(price.features).sort()) {
    const quantity = byFeature.get(feature) ?? 0n;
    if (quantity <= 0n) continue;
    rest -= quantity;
    lines.push({ feature, quantity: dec(quantity), unitPrice: price.features[feature] as number, per: price.per, amount: lineAmount(quantity, price.features[feature] as number, price.per) });
  }
  if (rest > 0n) lines.unshift({ feature: null, quantity: dec(rest), unitPrice: price.unitPrice, per: price.per, amount: lineAmount(rest, price.unitPrice, price.per) });
  return { lines, amount: lines.reduce((sum, l) => sum + l.amount, 0) };
}

function addTo(map: Map<string, bigint>, key: string | undefined, value: bigint): void {
  if (key !== undefined) map.set(key, (map.get(key) ?? 0n) + value);
}

/** Named parts largest first (then by name), zeros left out, and the rest under null. */
function breakdown(parts: ReadonlyMap<string, bigint>, total: bigint): [string | null, string][] {
  const named = [...parts].filter(([, v]) => v !== 0n).sort(([a, x], [b, y]) => (x === y ? cmp(a, b) : x > y ? -1 : 1));
  const rest = total - sumOf(named.map(([, v]) => v));
  return [...named.map(([k, v]): [string | null, string] => [k, dec(v)]), ...(rest === 0n ? [] : [[null, dec(rest)] as [null, string]])];
}

function top(members: ReadonlyMap<string, bigint>) {
  return [...members]
    .filter(([, v]) => v !== 0n)
    .sort(([a, x], [b, y]) => (x === y ? cmp(a, b) : x > y ? -1 : 1))
    .slice(0, 10)
    .map(([id, v]) => ({ id, amount: dec(v) }));
}

function lateWindowIn(item: LateItem, cycle: Cycle): boolean {
  const start = Date.parse(cycle.start);
  const end = Date.parse(cycle.end);
  if (item.window.from >= start && item.window.to < end) return true;
  if (item.window.to < start || item.window.from >= end) return false;
  throw new Error(`late change ${item.eventKey} straddles a boundary of cycle ${cycle.start}: the test cannot tell where it belongs`);
}

const lateEvent = (l: LateItem) => ({ source: l.source, id: l.id, delta: dec(l.delta), appliedAt: within(l.window) });

/** The cycle report the model says the workspace must get for `cycle`, as of `now`. */
function expectedReport(subject: Subject, cycle: Cycle, now: number, generatedAt: unknown) {
  const ws = WORKSPACES[subject];
  const snapshot = model.snapshotOf(subject, cycle);
  const planTypes = Object.keys(PLANS[ws.plan] ?? {});
  // A closed cycle has an item for every configured usage type; an open one for its plan's and those used.
  const usageTypes = snapshot ? USAGE_TYPES : USAGE_TYPES.filter((u) => planTypes.includes(u) || model.touched.has(`${subject}|${cycle.start}|${u}`));
  const days: string[] = [];
  const lastDay = localDay(subject, Math.min(now, Date.parse(cycle.end) - 1));
  for (let day = localDay(subject, Date.parse(cycle.start)); day <= lastDay; day = addDays(day, 1)) days.push(day);
  const late = [...model.late.values()].filter((l) => l.subject === subject).sort((a, b) => cmp(sk(a), sk(b)));

  const usage = usageTypes.map((usageType) => {
    const events = model.eventsIn(subject, cycle.start, usageType);
    const total = sumOf(events.map((e) => e.q));
    const daily = new Map(days.map((d) => [d, 0n]));
    const byChannel = new Map<string, bigint>();
    const byFeature = new Map<string, bigint>();
    const users = new Map<string, bigint>();
    const groups = new Map<string, bigint>();
    for (const e of events) {
      addTo(daily, localDay(subject, Date.parse(e.time)), e.q);
      addTo(byChannel, e.channel, e.q);
      addTo(byFeature, e.feature, e.q);
      addTo(users, e.userId, e.q);
      addTo(groups, e.groupId, e.q);
    }
    const coverage = snapshot ? snapshot.usage[usageType] : model.coverage(subject, cycle, usageType, total);
    const adjustments = late.filter((l) => l.cycleStart === cycle.start && l.usageType === usageType);
    if (snapshot && sumOf(adjustments.map((l) => l.delta)) !== total - snapshot.usage[usageType].used) throw new Error(`model: late deltas of ${subject} ${cycle.start} ${usageType} do not add up`);
    return {
      usageType,
      unit: UNITS[usageType],
      total: dec(total),
      closedTotal: snapshot ? dec(snapshot.usage[usageType].used) : null,
      requests: events.length,
      daily: [...daily].sort(([a], [b]) => cmp(a, b)).map(([day, amount]) => ({ day, amount: dec(amount) })),
      byChannel: breakdown(byChannel, total).map(([channel, amount]) => ({ channel, amount })),
      byFeature: breakdown(byFeature, total).map(([feature, amount]) => ({ feature, amount })),
      topUsers: top(users),
      topGroups: top(groups),
      allowance: { limit: dec(coverage.limit), spilloverIn: dec(coverage.spilloverIn) },
      grantsUsed: { plan: dec(coverage.plan), spillover: dec(coverage.spillover), bonus: dec(coverage.bonus), topup: dec(coverage.topup), uncovered: dec(coverage.uncovered) },
      spilloverOut: dec(coverage.spilloverOut),
      adjustments: { total: dec(snapshot ? total - snapshot.usage[usageType].used : 0n), events: adjustments.map(lateEvent) },
      money: moneyOf(usageType, total, byFeature),
    };
  });
  return {
    schemaVersion: 1,
    kind: 'cycle-report',
    generatedAt,
    subject: { id: subject, name: ws.name, plan: ws.plan, timeZone: ws.zone, billingAnchorDay: ws.anchor },
    cycle: { start: cycle.start, end: cycle.end, status: snapshot ? 'closed' : 'open', closedAt: snapshot ? within(snapshot.window) : null },
    currency: 'USD',
    usage,
    earlierCycleAdjustments: late.filter((l) => l.cycleStart < cycle.start && lateWindowIn(l, cycle)).map((l) => ({ cycleStart: l.cycleStart, usageType: l.usageType, ...lateEvent(l) })),
    amount: usage.reduce((sum, u) => sum + u.money.amount, 0),
  };
}

type ExpectedReport = ReturnType<typeof expectedReport>;

function expectedSummary(cycleStart: string, reports: { subject: Subject; cycle: Cycle; report: ExpectedReport }[], generatedAt: unknown) {
  const totals = new Map<string, bigint>();
  for (const { report } of reports) for (const u of report.usage) addTo(totals, u.usageType, th(Number(u.total)));
  return {
    schemaVersion: 1,
    kind: 'cycle-summary',
    generatedAt,
    cycleStart,
    currency: 'USD',
    subjects: [...reports]
      .sort((a, b) => cmp(a.subject, b.subject))
      .map(({ subject, cycle, report }) => ({
        subject,
        cycleEnd: cycle.end,
        totals: Object.fromEntries(report.usage.map((u) => [u.usageType, u.total])),
        amount: report.amount,
        report: `reports/${cycleStart}/${subject}.json`,
      })),
    totals: Object.fromEntries([...totals].sort(([a], [b]) => cmp(a, b)).map(([u, v]) => [u, dec(v)])),
    amount: reports.reduce((sum, r) => sum + r.report.amount, 0),
  };
}

interface ExportBucket {
  subject: string;
  usageType: string;
  start: string;
  end: string;
  day: string | null;
  quantity: string;
  /** Events in the bucket: the latest version of each event counts once, where that version falls. */
  requests: number;
  byChannel: Record<string, string>;
}

/** Export buckets of the model: UTC hours, or the subject's local days, whose start is in [from, to). */
function expectedBuckets(subjects: readonly Subject[], granularity: 'hour' | 'day', from: string, to: string): ExportBucket[] {
  const buckets: ExportBucket[] = [];
  for (const subject of [...subjects].sort()) {
    const totals = new Map<string, { usageType: UsageType; period: string; quantity: bigint; requests: number; channels: Map<string, bigint> }>();
    for (const e of model.ledger.values()) {
      if (e.subject !== subject) continue;
      const period = granularity === 'hour' ? hourOf(e.time) : localDay(subject, Date.parse(e.time));
      const key = `${period}|${e.usageType}`;
      const entry = totals.get(key) ?? { usageType: e.usageType, period, quantity: 0n, requests: 0, channels: new Map<string, bigint>() };
      entry.quantity += e.q;
      entry.requests += 1;
      addTo(entry.channels, e.channel, e.q);
      totals.set(key, entry);
    }
    const mine: ExportBucket[] = [];
    for (const { usageType, period, quantity, requests, channels } of totals.values()) {
      const start = granularity === 'hour' ? period : dayStart(subject, period);
      if ((quantity === 0n && requests === 0) || start < from || start >= to) continue;
      mine.push({
        subject,
        usageType,
        start,
        end: granularity === 'hour' ? iso(Date.parse(period) + HOUR) : dayStart(subject, addDays(period, 1)),
        day: granularity === 'hour' ? null : period,
        quantity: dec(quantity),
        requests,
        byChannel: Object.fromEntries(
          [...channels]
            .filter(([, v]) => v !== 0n)
            .sort(([a], [b]) => cmp(a, b))
            .map(([c, v]) => [c, dec(v)]),
        ),
      });
    }
    buckets.push(...mine.sort((a, b) => cmp(a.start, b.start) || cmp(a.usageType, b.usageType)));
  }
  return buckets;
}

// ---------------------------------------------------------------------------------------------------------
// Events: a seeded generator, and the fixed events the late changes and corrections refer to.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PROFILES: Record<Subject, { users: string[]; weights: [UsageType, number][]; tokens: [number, number]; images: [number, number]; eighths: [number, number] }> = {
  // 13 users: the report names the top 10.
  ws_alpha: {
    users: Array.from({ length: 13 }, (_, i) => `u${String(i + 1).padStart(2, '0')}`),
    weights: [
      ['tokens', 0.55],
      ['images', 0.3],
      ['credits', 0.15],
    ],
    tokens: [100, 1500],
    images: [1, 4],
    eighths: [1, 12],
  },
  ws_beta: {
    users: ['ana', 'bo', 'cy', 'dee', 'eli'],
    weights: [
      ['tokens', 0.45],
      ['images', 0.35],
      ['credits', 0.2],
    ],
    tokens: [50, 600],
    images: [1, 5],
    eighths: [1, 16],
  },
  ws_gamma: {
    users: ['x1', 'x2', 'x3'],
    weights: [
      ['tokens', 0.5],
      ['images', 0.25],
      ['credits', 0.25],
    ],
    tokens: [20, 300],
    images: [1, 2],
    eighths: [1, 8],
  },
};
const CHANNELS = ['api', 'ui', 'cli', undefined] as const;
const FEATURES: Record<UsageType, readonly (string | undefined)[]> = {
  tokens: ['reasoning', 'chat', undefined],
  images: ['generate:hd', 'background_removal', 'generate:draft', undefined],
  credits: ['export', undefined],
};
const GROUPS = ['red', 'green', 'blue', undefined] as const;

function generate(subject: Subject, tag: string, count: number, from: number, to: number, seed: number): Ev[] {
  const rand = mulberry32(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)] as T;
  const between = ([lo, hi]: [number, number]) => lo + Math.floor(rand() * (hi - lo + 1));
  const profile = PROFILES[subject];
  return Array.from({ length: count }, (_, i): Ev => {
    let r = rand();
    const usageType = profile.weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'tokens';
    const q = usageType === 'tokens' ? th(between(profile.tokens)) : usageType === 'images' ? th(between(profile.images)) : BigInt(between(profile.eighths) * 125);
    const channel = pick(CHANNELS);
    const feature = pick(FEATURES[usageType]);
    const userId = rand() < 0.85 ? pick(profile.users) : undefined;
    const groupId = pick(GROUPS);
    return {
      source: i % 3 === 0 ? '//reports/gateway' : '//reports/batch',
      id: `${tag}-${subject}-${i}`,
      subject,
      time: iso(from + Math.floor(rand() * Math.max(0, to - from))),
      usageType,
      q,
      ...(channel ? { channel } : {}),
      ...(feature ? { feature } : {}),
      ...(userId ? { userId } : {}),
      ...(groupId ? { groupId } : {}),
    };
  });
}

/** Events every workspace has in cycle 1, named so that later corrections can refer to them. */
function fixedEvents(subject: Subject, cycle: Cycle, from: number, to: number): Ev[] {
  const [first, second] = PROFILES[subject].users as [string, string];
  const mid = (f: number) => iso(from + Math.floor((to - from) * f));
  const fixed = (id: string, time: string, usageType: UsageType, q: bigint, dims: Partial<Ev> = {}): Ev => ({
    source: '//reports/fixed',
    id: `${subject}-${id}`,
    subject,
    time,
    usageType,
    q,
    ...dims,
  });
  return [
    fixed('tokens-1', mid(0.2), 'tokens', th(1000), { channel: 'api', feature: 'reasoning', userId: first, groupId: 'red' }),
    fixed('tokens-2', mid(0.4), 'tokens', th(500), { channel: 'ui', userId: second }),
    // The cycle's first instant.
    fixed('tokens-3', cycle.start, 'tokens', th(400)),
    fixed('images-1', mid(0.3), 'images', th(3), { channel: 'ui', feature: 'generate:draft', userId: first }),
    fixed('images-2', mid(0.6), 'images', th(2), { feature: 'background_removal', groupId: 'blue' }),
    fixed('credits-1', mid(0.5), 'credits', th(2.5), { channel: 'cli', feature: 'export', userId: second }),
    fixed('credits-2', mid(0.7), 'credits', th(0.375), { channel: 'api' }),
  ];
}

// ---------------------------------------------------------------------------------------------------------
// The stack and the client.

let stack: LocalStack;
let client: StackClient;
let s3: S3Client;
const model = new Model();
const schemaCounts = new Map<string, number>();

const schemaDocument = JSON.parse(readFileSync(new URL('../../schemas/usage-report.schema.json', import.meta.url), 'utf8')) as { $id: string };
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(schemaDocument);

type SchemaDef = 'cycleReport' | 'cycleSummary' | 'exportDocument' | 'exportHeaderLine' | 'exportBucket';
function expectValid(definition: SchemaDef, value: unknown): void {
  const validate = ajv.getSchema(`${schemaDocument.$id}#/$defs/${definition}`) as ValidateFunction;
  const valid = validate(value);
  expect(valid ? 'valid' : `${definition}: ${ajv.errorsText(validate.errors)}`).toBe('valid');
  schemaCounts.set(definition, (schemaCounts.get(definition) ?? 0) + 1);
}

type Body = Record<string, unknown>;

/** Calls the API; every response (but the local-only test clock's) is checked against openapi.json. */
async function call(method: string, path: string, key: string = ADMIN_KEY, body?: unknown): Promise<{ status: number; body: Body }> {
  const response = await fetch(`${stack.ready.api}${path}`, { method, headers: bearer(key), ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const parsed = (await response.json()) as Body;
  if (path !== '/v1/test-clock') checkResponse(method, path, response.status, parsed);
  return { status: response.status, body: parsed };
}

const clockNow = () => stack.clock.now().getTime();

/** A window opened now; `settled` closes it once the pipeline has applied everything sent in it. */
function openWindow(): Window & { settled: () => Promise<void> } {
  const window = {
    from: clockNow(),
    to: Number.POSITIVE_INFINITY,
    settled: async () => {
      await stack.settle();
      window.to = clockNow();
    },
  };
  return window;
}

/**
 * Sends events as producers do: most over SQS (single events, arrays of three, a copy of some in the same
 * batch and again later), every fourth through POST /usages with the workspace's own key. The model takes
 * each one; copies must change nothing.
 */
async function send(events: readonly Ev[], window: Window): Promise<void> {
  const viaApi = events.filter((_, i) => i % 4 === 0);
  const viaSqs = events.filter((_, i) => i % 4 !== 0);
  const bodies: string[] = [];
  for (let i = 0; i < viaSqs.length; ) {
    if (i % 7 === 3 && i + 2 < viaSqs.length) {
      bodies.push(JSON.stringify(viaSqs.slice(i, i + 3).map((e) => envelope(e))));
      i += 3;
      continue;
    }
    const body = JSON.stringify(envelope(viaSqs[i] as Ev));
    bodies.push(body);
    if (i % 5 === 0) bodies.push(body); // the same message twice in one batch
    i += 1;
  }
  bodies.push(...viaSqs.filter((_, i) => i % 6 === 1).map((e) => JSON.stringify(envelope(e)))); // copies in later batches
  await client.send(bodies);
  for (const subject of SUBJECTS) {
    const mine = viaApi.filter((e) => e.subject === subject);
    if (mine.length === 0) continue;
    // The workspace comes from the path; the events leave `subject` out.
    const posted = await call(
      'POST',
      `/v1/workspaces/${subject}/usages`,
      KEYS[subject],
      mine.map((e) => envelope(e, false)),
    );
    expect(posted).toEqual({ status: 202, body: { events: mine.map((e) => ({ source: e.source, id: e.id })) } });
  }
  const seen = new Set<string>();
  for (const e of events) {
    if (seen.has(identity(e))) throw new Error(`test bug: ${identity(e)} twice in one send`);
    seen.add(identity(e));
    model.apply(e, window);
  }
}

/** Sends corrections (or copies) one message each over SQS, after what they correct has settled. */
async function sendEach(events: readonly Ev[], window: Window): Promise<void> {
  await client.send(events.map((e) => JSON.stringify(envelope(e))));
  for (const e of events) model.apply(e, window);
}

const closes: { subject: Subject; cycle: Cycle; window: Window; report: ExpectedReport }[] = [];
const summaries = new Map<string, unknown>();
const cycles = {} as Record<Subject, { c1: Cycle; c2: Cycle; c3: Cycle }>;

/** Moves the test clock over HTTP; the model closes what falls due and records what the close must write. */
async function advanceTo(instant: number): Promise<{ body: Body; window: Window }> {
  const due = SUBJECTS.flatMap((subject) => {
    const found: Cycle[] = [];
    const history = [...model.snapshots.values()].filter((s) => s.subject === subject).map((s) => s.cycle);
    let cycle = history.length ? nextCycle(subject, history.at(-1) as Cycle) : (cycles[subject]?.c1 as Cycle);
    while (Date.parse(cycle.end) + GRACE <= instant) {
      found.push(cycle);
      cycle = nextCycle(subject, cycle);
    }
    return found.map((c) => ({ subject, cycle: c }));
  });
  const response = await call('POST', '/v1/test-clock', ADMIN_KEY, { advanceTo: iso(instant) });
  expect(response.status).toBe(200);
  const window = { from: instant, to: clockNow() };
  for (const { subject, cycle } of due) model.close(subject, cycle, window);
  // What each close wrote, as of the close: computed now, compared once downloaded.
  for (const { subject, cycle } of due) closes.push({ subject, cycle, window, report: expectedReport(subject, cycle, window.to, within(window)) });
  for (const cycleStart of new Set(due.map((d) => d.cycle.start))) {
    const reports = closes.filter((c) => c.cycle.start === cycleStart);
    summaries.set(`reports/${cycleStart}/_summary.json`, expectedSummary(cycleStart, reports, within(window)));
  }
  const summary = response.body.closes as { cyclesClosed: unknown[]; summaries: string[] };
  expect([...summary.cyclesClosed].sort((a, b) => cmp(JSON.stringify(a), JSON.stringify(b)))).toEqual(
    due.map(({ subject, cycle }) => ({ subject, cycleStart: cycle.start, report: `reports/${cycle.start}/${subject}.json` })).sort((a, b) => cmp(JSON.stringify(a), JSON.stringify(b))),
  );
  expect([...summary.summaries].sort()).toEqual([...new Set(due.map((d) => `reports/${d.cycle.start}/_summary.json`))].sort());
  return { body: response.body, window };
}

/** GETs an on-demand report, validates it, and compares it with the model as of its `generatedAt`. */
async function expectOnDemandReport(subject: Subject, param: string, cycle: Cycle, key: string): Promise<Body> {
  const before = clockNow();
  const { status, body } = await call('GET', `/v1/workspaces/${subject}/report?cycle=${param}`, key);
  const after = clockNow();
  expect(status).toBe(200);
  expectValid('cycleReport', body);
  const generatedAt = Date.parse(body.generatedAt as string);
  expect(body.cycle).toMatchObject({ start: cycle.start, end: cycle.end });
  expect(body).toEqual(expectedReport(subject, cycle, generatedAt, within({ from: before, to: after })));
  return body;
}

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: CONFIG, onError: () => undefined });
  client = new StackClient(stack);
  s3 = new S3Client({ region: stack.ready.region, endpoint: stack.ready.s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
}, 180_000);

afterAll(async () => {
  s3?.destroy();
  client?.close();
  await stack?.stop();
});

// ---------------------------------------------------------------------------------------------------------

describe('finance reports across two cycle closes on the local stack', () => {
  const late1: Partial<Record<Subject, Ev>> = {};
  const cycle2Events: Partial<Record<Subject, Ev[]>> = {};

  test("cycle 1: events over SQS and the API (copies counted once) and grants; the open cycle's report equals the model", async () => {
    // Arrange
    const now = clockNow();
    const window = openWindow();
    const events: Ev[] = [];
    for (const [n, subject] of SUBJECTS.entries()) {
      const c1 = cycleOf(subject, now);
      cycles[subject] = { c1, c2: nextCycle(subject, c1), c3: nextCycle(subject, nextCycle(subject, c1)) };
      const from = Date.parse(c1.start);
      const to = Math.max(from, now - MINUTE);
      events.push(...fixedEvents(subject, c1, from, to), ...generate(subject, 'c1', [70, 50, 40][n] as number, from, to, 101 + n));
    }
    // Alpha goes well over its token allowance (drawing a top-up and a bonus, the rest uncovered); Beta over its images.
    const total = (subject: Subject, usageType: UsageType) => sumOf(events.filter((e) => e.subject === subject && e.usageType === usageType).map((e) => e.q));
    const bulk = (subject: Subject, usageType: UsageType, q: bigint): Ev => ({
      source: '//reports/fixed',
      id: `${subject}-bulk-${usageType}`,
      subject,
      time: iso(Math.max(Date.parse(cycles[subject].c1.start), now - 2 * MINUTE)),
      usageType,
      q,
      channel: 'api',
    });
    events.push(bulk('ws_alpha', 'tokens', max0(th(26000) - total('ws_alpha', 'tokens')) + th(1234)));
    events.push(bulk('ws_beta', 'images', max0(th(42) - total('ws_beta', 'images')) + th(1)));

    // Act
    await send(events, window);
    const alphaOverflow = Number((total('ws_alpha', 'tokens') - th(20000)) / 1000n);
    const grants = [
      { subject: 'ws_alpha', id: 'alpha-topup', kind: 'topup', usageType: 'tokens', amount: Math.floor(alphaOverflow * 0.4), expiresAt: iso(now + 300 * DAY) },
      { subject: 'ws_alpha', id: 'alpha-bonus', kind: 'bonus', usageType: 'tokens', amount: Math.floor(alphaOverflow * 0.3) },
      { subject: 'ws_beta', id: 'beta-images', kind: 'bonus', usageType: 'images', amount: 5 },
      { subject: 'ws_gamma', id: 'gamma-credits', kind: 'topup', usageType: 'credits', amount: Number(total('ws_gamma', 'credits') + th(1.5)) / 1000 },
    ] as const;
    for (const { subject, ...grant } of grants) {
      const response = await call('POST', `/v1/workspaces/${subject}/grants`, ADMIN_KEY, grant);
      expect(response.status).toBe(201);
      const stored = response.body as { grantedAt: string; expiresAt?: string; amount: string };
      expect(stored.amount).toBe(dec(th(grant.amount)));
      model.grants.push({
        subject,
        id: grant.id,
        kind: grant.kind,
        usageType: grant.usageType,
        amount: th(grant.amount),
        grantedAt: stored.grantedAt,
        ...(stored.expiresAt ? { expiresAt: stored.expiresAt } : {}),
      });
    }
    await window.settled();

    // Assert
    expect(model.ledger.size).toBe(events.length);
    for (const subject of SUBJECTS) await expectOnDemandReport(subject, 'current', cycles[subject].c1, KEYS[subject]);
  });

  test('the test clock moves past every cycle 1 end + grace: each cycle 1 closes, its report and summary written', async () => {
    // Act
    const t1 = Math.max(...SUBJECTS.map((s) => Date.parse(cycles[s].c1.end))) + GRACE + MINUTE;
    const { body } = await advanceTo(t1);

    // Assert: every workspace is in its cycle 2 now; nothing was late yet, so no adjustment
    for (const subject of SUBJECTS) expect(cycleOf(subject, clockNow())).toEqual(cycles[subject].c2);
    expect((body.closes as { adjustments: unknown[] }).adjustments).toEqual([]);
  });

  test('cycle 2: late events and corrections of cycle 1 land in its totals as adjustments, not in its snapshot', async () => {
    // Arrange
    const now = clockNow();
    const first = openWindow();
    const corrections: Ev[] = [];
    const late: Ev[] = [];
    const fresh: Ev[] = [];
    const fixed = (subject: Subject, name: string) => model.ledger.get(identity({ source: '//reports/fixed', id: `${subject}-${name}` })) as Ev;
    for (const [n, subject] of SUBJECTS.entries()) {
      const { c1, c2 } = cycles[subject];
      const [firstUser] = PROFILES[subject].users as [string];
      cycle2Events[subject] = generate(subject, 'c2', 25, Date.parse(c2.start), now - MINUTE, 201 + n);
      fresh.push(...(cycle2Events[subject] ?? []));
      corrections.push(
        { ...fixed(subject, 'tokens-1'), q: fixed(subject, 'tokens-1').q + th(777), channel: 'cli' }, // up, and another channel
        { ...fixed(subject, 'images-1'), q: th(1), feature: 'generate:hd' }, // down, and a priced feature
        { ...fixed(subject, 'tokens-2'), q: fixed(subject, 'tokens-2').q + th(5), userId: 'newcomer' }, // to another user
      );
      if (subject === 'ws_alpha') corrections.push({ ...fixed(subject, 'tokens-3'), time: iso(Date.parse(c2.start) + 90_000) }); // out of cycle 1 into cycle 2
      if (subject === 'ws_beta') corrections.push({ ...fixed(subject, 'credits-1'), usageType: 'tokens', q: th(300), feature: 'reasoning' }); // to another usage type
      if (subject === 'ws_gamma') corrections.push({ ...fixed(subject, 'credits-1'), q: th(2.875) });
      late1[subject] = { source: '//reports/late', id: `${subject}-late-1`, subject, time: iso(Date.parse(c1.end) - 1), usageType: 'tokens', q: th(250), channel: 'api', userId: firstUser };
      late.push(
        late1[subject] as Ev, // the last millisecond of cycle 1
        { source: '//reports/late', id: `${subject}-late-2`, subject, time: c1.start, usageType: 'images', q: th(2), channel: 'ui', feature: 'background_removal' }, // its first
        { source: '//reports/late', id: `${subject}-late-3`, subject, time: iso(Date.parse(c1.start) + DAY + 7 * HOUR), usageType: 'credits', q: th(1.125), groupId: 'green' },
      );
    }

    // Act: cycle 2 traffic with the late events; corrections one message each; a copy of each first late event
    await send([...fresh, ...late], first);
    await sendEach(corrections, first);
    await sendEach(
      SUBJECTS.map((s) => late1[s] as Ev),
      first,
    );
    await first.settled();
    // Then a late event corrected again, and a correction within the open cycle 2
    const second = openWindow();
    await sendEach(
      SUBJECTS.flatMap((subject) => {
        const open = cycle2Events[subject]?.[1] as Ev;
        return [
          { ...(late1[subject] as Ev), q: th(200) },
          { ...open, q: open.q + (open.usageType === 'credits' ? th(0.125) : open.usageType === 'images' ? th(1) : th(10)) },
        ];
      }),
      second,
    );
    await second.settled();

    // Assert: cycle 1 by date (its last local day) is closed with its adjustments; cycle 2 is open and lists them as earlier-cycle adjustments
    for (const subject of SUBJECTS) {
      const { c1, c2 } = cycles[subject];
      const report = await expectOnDemandReport(subject, localDay(subject, Date.parse(c1.end) - 1), c1, KEYS.finance);
      expect((report.usage as { adjustments: { events: unknown[] } }[]).some((u) => u.adjustments.events.length > 0)).toBe(true);
      const current = await expectOnDemandReport(subject, 'current', c2, KEYS[subject]);
      expect((current.earlierCycleAdjustments as unknown[]).length).toBeGreaterThan(0);
    }
  });

  test("the test clock moves past every cycle 2 end: cycle 2 closes, and cycle 1's late changes are recorded as adjustments", async () => {
    // Act
    const t2 = Math.max(...SUBJECTS.map((s) => Date.parse(cycles[s].c2.end))) + GRACE + MINUTE;
    const { body, window } = await advanceTo(t2);

    // Assert: cycle 3 everywhere; the run recorded each closed cycle 1's change since its snapshot, per usage type
    for (const subject of SUBJECTS) expect(cycleOf(subject, clockNow())).toEqual(cycles[subject].c3);
    const expected = SUBJECTS.flatMap((subject) =>
      USAGE_TYPES.flatMap((usageType) => {
        const { c1 } = cycles[subject];
        const total = model.total(subject, c1.start, usageType);
        const delta = total - (model.snapshotOf(subject, c1)?.usage[usageType].used ?? 0n);
        return delta === 0n ? [] : [{ subject, cycleStart: c1.start, usageType, delta: dec(delta), totalAfter: dec(total), detectedAt: within(window) }];
      }),
    );
    const recorded = (body.closes as { adjustments: { subject: string; cycleStart: string; usageType: string; delta: string; totalAfter: string; detectedAt: string }[] }).adjustments;
    const byKey = (a: { subject: string; usageType: string }) => `${a.subject}|${a.usageType}`;
    expect([...recorded].sort((a, b) => cmp(byKey(a), byKey(b)))).toEqual(expected.sort((a, b) => cmp(byKey(a), byKey(b))));
  });

  test('cycle 3: late events into the closed cycle 2 and corrections of cycle 1 are applied during cycle 3', async () => {
    // Arrange
    const now = clockNow();
    const window = openWindow();
    const fresh: Ev[] = [];
    const changes: Ev[] = [];
    const fixed = (subject: Subject, name: string) => model.ledger.get(identity({ source: '//reports/fixed', id: `${subject}-${name}` })) as Ev;
    for (const [n, subject] of SUBJECTS.entries()) {
      const { c2, c3 } = cycles[subject];
      fresh.push(...generate(subject, 'c3', 12, Date.parse(c3.start), now - MINUTE, 301 + n));
      changes.push({ source: '//reports/late', id: `${subject}-late-c2`, subject, time: iso(Date.parse(c2.end) - 1), usageType: 'tokens', q: th(123), feature: 'reasoning', channel: 'ui' });
    }
    const alphaOpen = (cycle2Events.ws_alpha ?? []).find((e, i) => i > 1 && e.usageType === 'tokens' && e.q >= th(20)) as Ev;
    changes.push(
      { ...alphaOpen, q: alphaOpen.q - th(10) }, // a cycle 2 event, lowered after cycle 2 closed
      { ...fixed('ws_gamma', 'images-2'), q: th(5) }, // cycle 1 events, corrected during cycle 3
      { ...fixed('ws_beta', 'credits-2'), q: th(0.125) },
    );

    // Act
    await send(fresh, window);
    await sendEach(changes, window);
    await window.settled();

    // Assert
    for (const subject of SUBJECTS) {
      const current = await expectOnDemandReport(subject, 'current', cycles[subject].c3, KEYS[subject]);
      expect((current.earlierCycleAdjustments as unknown[]).length).toBeGreaterThan(0);
    }
  });

  test('cycle reports and summaries downloaded from S3 are valid and equal the model as of each close', async () => {
    // Act
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: stack.ready.s3.bucket, Prefix: 'reports/' }));
    const keys = (listed.Contents ?? []).map((o) => o.Key ?? '').sort();
    const download = async (key: string) => {
      const object = await s3.send(new GetObjectCommand({ Bucket: stack.ready.s3.bucket, Key: key }));
      return JSON.parse((await object.Body?.transformToString('utf8')) ?? 'null') as Body;
    };

    // Assert: one report per workspace and closed cycle, one summary per cycle start, nothing else
    const reportKeys = closes.map((c) => `reports/${c.cycle.start}/${c.subject}.json`);
    expect(closes.length).toBe(SUBJECTS.length * 2);
    expect(keys).toEqual([...reportKeys, ...summaries.keys()].sort());
    for (const close of closes) {
      const report = await download(`reports/${close.cycle.start}/${close.subject}.json`);
      expectValid('cycleReport', report);
      expect({ subject: close.subject, report }).toEqual({ subject: close.subject, report: close.report });
    }
    for (const [key, summary] of summaries) {
      const written = await download(key);
      expectValid('cycleSummary', written);
      expect({ key, summary: written }).toEqual({ key, summary });
    }
    // The shared cycle start of the two UTC anchor-1 workspaces sums both.
    expect((summaries.get(`reports/${cycles.ws_alpha.c1.start}/_summary.json`) as { subjects: unknown[] }).subjects).toHaveLength(2);

    // The scenario reaches every kind of coverage, money line and adjustment it claims to
    const written = closes.map((c) => c.report);
    const parts = written.flatMap((r) => r.usage.map((u) => u.grantsUsed));
    for (const part of ['plan', 'spillover', 'bonus', 'topup', 'uncovered'] as const) expect({ part, used: parts.some((p) => p[part] !== '0') }).toEqual({ part, used: true });
    expect(written.some((r) => r.usage.some((u) => u.spilloverOut !== '0'))).toBe(true);
    expect(written.some((r) => r.usage.some((u) => u.money.lines.some((l) => l.feature !== null)))).toBe(true);
    expect(written.some((r) => r.earlierCycleAdjustments.some((a) => a.delta.startsWith('-')))).toBe(true);
    expect(written.some((r) => r.usage.some((u) => u.topUsers.length === 10))).toBe(true);
  });

  test("on-demand reports (current, previous, by date) include every late change and correction; another workspace's key is refused", async () => {
    for (const subject of SUBJECTS) {
      const { c1, c2, c3 } = cycles[subject];
      // Assert: cycle 3 (open), cycle 2 (closed, late event since), cycle 1 by its first and last local day
      await expectOnDemandReport(subject, 'current', c3, KEYS[subject]);
      await expectOnDemandReport(subject, 'previous', c2, KEYS.finance);
      await expectOnDemandReport(subject, localDay(subject, Date.parse(c2.start)), c2, ADMIN_KEY);
      await expectOnDemandReport(subject, localDay(subject, Date.parse(c1.start)), c1, KEYS[subject]);
      const closedOnDemand = await expectOnDemandReport(subject, localDay(subject, Date.parse(c1.end) - 1), c1, KEYS.finance);
      // The report written at the close stands as it was: the on-demand one adds what came late
      const atClose = closes.find((c) => c.subject === subject && c.cycle.start === c1.start)?.report;
      const usage = closedOnDemand.usage as { usageType: string; total: string; closedTotal: string; adjustments: { total: string } }[];
      for (const u of usage) {
        const frozen = atClose?.usage.find((w) => w.usageType === u.usageType);
        expect({ usageType: u.usageType, closedTotal: u.closedTotal, total: dec(th(Number(u.closedTotal)) + th(Number(u.adjustments.total))) }).toEqual({
          usageType: u.usageType,
          closedTotal: frozen?.total,
          total: u.total,
        });
      }
      const other = SUBJECTS.find((s) => s !== subject) as Subject;
      expect(await call('GET', `/v1/workspaces/${other}/report?cycle=current`, KEYS[subject])).toMatchObject({ status: 403, body: { error: { code: 'forbidden_workspace' } } });
    }
  });

  const exportIds: Record<string, string> = {};

  async function exportFile(request: Body, key: string): Promise<{ view: Body; text: string; window: Window }> {
    const window = openWindow();
    const posted = await call('POST', '/v1/exports', key, request);
    expect(posted).toEqual({ status: 202, body: { id: expect.stringMatching(/^exp_/), status: 'queued' } });
    const id = posted.body.id as string;
    let view: Body = {};
    for (let i = 0; i < 120; i++) {
      await stack.settle();
      view = (await call('GET', `/v1/exports/${id}`, key)).body;
      if (view.status === 'ready' || view.status === 'failed') break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect({ status: view.status, error: view.error }).toEqual({ status: 'ready', error: null });
    window.to = clockNow();
    // A plain fetch of the presigned URL: no credentials.
    const response = await fetch(view.url as string);
    expect(response.status).toBe(200);
    const text = await response.text();
    return { view, text, window };
  }

  test('an hourly JSON export of every workspace across both cycles equals the model, late events and corrections included', async () => {
    // Arrange: from an hour after the earliest cycle start (so the range cuts), to the end of the current hour
    const from = iso(Math.min(...SUBJECTS.map((s) => Date.parse(cycles[s].c1.start))) + HOUR);
    const to = iso(Math.floor(clockNow() / HOUR) * HOUR + HOUR);

    // Act
    const { view, text, window } = await exportFile({ from, to, granularity: 'hour', format: 'json' }, KEYS.finance);
    exportIds.hour = view.id as string;

    // Assert
    const document = JSON.parse(text) as Body & { buckets: ExportBucket[] };
    expectValid('exportDocument', document);
    const buckets = expectedBuckets(SUBJECTS, 'hour', from, to);
    expect(document).toEqual({ schemaVersion: 1, kind: 'usage-export', id: view.id, generatedAt: within(window), from, to, granularity: 'hour', subjects: SUBJECTS, buckets });
    expect(view).toEqual({
      id: view.id,
      status: 'ready',
      request: { from, to, granularity: 'hour', format: 'json' },
      createdAt: within(window),
      completedAt: within(window),
      bucketCount: buckets.length,
      bytes: Buffer.byteLength(text),
      url: expect.any(String),
      error: null,
    });
    // Every bucket sums back to the ledger: nothing lost, nothing twice
    for (const subject of SUBJECTS) {
      const inRange = [...model.ledger.values()].filter((e) => e.subject === subject && hourOf(e.time) >= from);
      const mine = document.buckets.filter((b) => b.subject === subject);
      expect({ subject, total: dec(sumOf(mine.map((b) => th(Number(b.quantity))))), requests: mine.reduce((n, b) => n + b.requests, 0) }).toEqual({
        subject,
        total: dec(sumOf(inRange.map((e) => e.q))),
        // Each event once: copies and corrections (the same event) add none, an event moved to another hour or usage type counts there alone.
        requests: inRange.length,
      });
    }
    expect(buckets.some((b) => b.requests > 1)).toBe(true);
  });

  test("a daily JSON-lines export with a New York workspace's own key has its local days; its key sees only its own exports", async () => {
    // Arrange: dates mean 00:00 UTC; New York days start at 04:00 or 05:00 UTC, so the first local day is cut
    const from = addDays(cycles.ws_beta.c1.start.slice(0, 10), 1);
    const to = addDays(iso(clockNow()).slice(0, 10), 2);

    // Act
    const { view, text, window } = await exportFile({ from, to, granularity: 'day', format: 'jsonl' }, KEYS.ws_beta);
    exportIds.day = view.id as string;

    // Assert
    expect(text.endsWith('\n')).toBe(true);
    const [header, ...lines] = text
      .slice(0, -1)
      .split('\n')
      .map((line) => JSON.parse(line) as Body);
    expectValid('exportHeaderLine', header);
    for (const line of lines) expectValid('exportBucket', line);
    const fromIso = `${from}T00:00:00.000Z`;
    const toIso = `${to}T00:00:00.000Z`;
    expect(header).toEqual({ schemaVersion: 1, kind: 'usage-export', id: view.id, generatedAt: within(window), from: fromIso, to: toIso, granularity: 'day', subjects: ['ws_beta'] });
    const buckets = expectedBuckets(['ws_beta'], 'day', fromIso, toIso);
    expect(lines).toEqual(buckets);
    expect(buckets.some((b) => !b.start.endsWith('T00:00:00.000Z'))).toBe(true);
    expect(view).toMatchObject({ request: { from: fromIso, to: toIso, granularity: 'day', subjects: ['ws_beta'], format: 'jsonl' }, bucketCount: buckets.length, bytes: Buffer.byteLength(text) });

    // Isolation: another workspace's data, and exports that are not its own
    expect(await call('POST', '/v1/exports', KEYS.ws_beta, { from, to, granularity: 'day', subjects: ['ws_alpha'] })).toMatchObject({ status: 403, body: { error: { code: 'forbidden_workspace' } } });
    expect(await call('POST', '/v1/exports', KEYS.ws_beta, { from, to, granularity: 'day', subjects: ['ws_beta', 'ws_gamma'] })).toMatchObject({
      status: 403,
      body: { error: { code: 'forbidden_workspace' } },
    });
    expect(await call('GET', `/v1/exports/${exportIds.hour}`, KEYS.ws_beta)).toMatchObject({ status: 404, body: { error: { code: 'unknown_export' } } });
    expect(await call('GET', `/v1/exports/${exportIds.day}`, KEYS.ws_alpha)).toMatchObject({ status: 404, body: { error: { code: 'unknown_export' } } });
    expect(await call('GET', `/v1/exports/${exportIds.day}`, KEYS.finance)).toMatchObject({ status: 200, body: { id: exportIds.day, status: 'ready' } });
  });

  // -------------------------------------------------------------------------------------------------------
  // The audit, as an operator runs it: a separate process (async, so the stack in this process keeps serving).

  function audit(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const argv = ['bin/usage-pipeline.js', 'audit', '--endpoint', stack.ready.dynamodb.endpoint, '--s3-endpoint', stack.ready.s3.endpoint, '--config', CONFIG, '--now', iso(clockNow()), ...args];
    return new Promise((resolve) => {
      execFile(process.execPath, argv, { env: { ...process.env, NODE_OPTIONS: '' }, maxBuffer: 32 * 1024 * 1024, timeout: 180_000 }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** The rows the audit must check: every cycle the model knows of, each usage type it has an item for. */
  function expectedAuditScope(subjects: readonly Subject[], only?: (subject: Subject) => Cycle) {
    return subjects.flatMap((subject) =>
      Object.values(cycles[subject])
        .filter((cycle) => !only || only(subject).start === cycle.start)
        .flatMap((cycle) =>
          USAGE_TYPES.filter((u) => model.snapshotOf(subject, cycle) || model.touched.has(`${subject}|${cycle.start}|${u}`)).map((usageType) => ({
            subject,
            cycleStart: cycle.start,
            usageType,
            ledger: dec(model.total(subject, cycle.start, usageType)),
          })),
        ),
    );
  }

  function expectAuditClean(result: { code: number; stdout: string; stderr: string }, scope: ReturnType<typeof expectedAuditScope>, events: number): void {
    // stderr may carry Node's own warnings, never an error of the command
    expect({ code: result.code, error: /usage-pipeline:|Error/.test(result.stderr) ? result.stderr : null }).toEqual({ code: 0, error: null });
    const parsed = JSON.parse(result.stdout) as { rows: AuditRow[]; events: number; differences: number };
    expect({ events: parsed.events, differences: parsed.differences, failing: parsed.rows.filter((r) => !r.ok) }).toEqual({ events, differences: 0, failing: [] });
    const totals = parsed.rows.filter((r) => r.check === 'cycle rollup total').map((r) => ({ subject: r.subject, cycleStart: r.cycleStart, usageType: r.usageType, ledger: r.expected }));
    const key = (r: { subject: string; cycleStart: string; usageType: string }) => `${r.subject}|${r.cycleStart}|${r.usageType}`;
    expect(totals.sort((a, b) => cmp(key(a), key(b)))).toEqual([...scope].sort((a, b) => cmp(key(a), key(b))));
    // Closed cycles also get the snapshot, late-item and written-report checks
    const closedChecks = parsed.rows.filter((r) => r.check.startsWith('written report')).length;
    expect(closedChecks).toBe(3 * scope.filter((s) => model.snapshots.has(`${s.subject}|${s.cycleStart}`)).length);
  }

  test('usage-pipeline audit recomputes everything from the ledger and finds no difference (all, --subject, --cycle)', async () => {
    await stack.settle();

    // Act
    const [table, all, beta, byDate, both] = await Promise.all([
      audit(),
      audit('--json'),
      audit('--json', '--subject', 'ws_beta'),
      audit('--json', '--cycle', localDay('ws_alpha', Date.parse(cycles.ws_alpha.c1.end) - DAY)),
      audit('--json', '--subject', 'ws_gamma', '--cycle', localDay('ws_gamma', Date.parse(cycles.ws_gamma.c2.start))),
    ]);

    // Assert
    expect({ code: table.code, summary: table.stdout.trim().split('\n').at(-1) }).toEqual({ code: 0, summary: expect.stringMatching(/^\d+ events in the ledger, \d+ checks, no difference$/) });
    expect(table.stdout).not.toContain('DIFFERENT');
    const count = (subjects: readonly Subject[]) => [...model.ledger.values()].filter((e) => subjects.includes(e.subject)).length;
    expectAuditClean(all, expectedAuditScope(SUBJECTS), count(SUBJECTS));
    expectAuditClean(beta, expectedAuditScope(['ws_beta']), count(['ws_beta']));
    const day = localDay('ws_alpha', Date.parse(cycles.ws_alpha.c1.end) - DAY);
    expectAuditClean(
      byDate,
      expectedAuditScope(SUBJECTS, (s) => cycleOf(s, Date.parse(dayStart(s, day)))),
      count(SUBJECTS),
    );
    expectAuditClean(
      both,
      expectedAuditScope(['ws_gamma'], () => cycles.ws_gamma.c2),
      count(['ws_gamma']),
    );
  }, 300_000);

  test('a late correction in cycle 3 of an event already corrected during cycle 2: each report lists the change applied in its own cycle', async () => {
    // Arrange: ws_alpha's tokens-1 was raised by 777 during cycle 2 (listed in cycle 2's earlierCycleAdjustments)
    const { c2, c3 } = cycles.ws_alpha;
    const before = await expectOnDemandReport('ws_alpha', 'previous', c2, KEYS.finance);
    const eventKey = { source: '//reports/fixed', id: 'ws_alpha-tokens-1' };
    const listedInCycle2 = (before.earlierCycleAdjustments as { source: string; id: string; delta: string }[]).filter((a) => a.source === eventKey.source && a.id === eventKey.id);
    expect(listedInCycle2.map((a) => a.delta)).toEqual(['777']);
    const original = model.ledger.get(identity(eventKey)) as Ev;
    const window = openWindow();

    // Act: raised by another 100 during cycle 3
    await sendEach([{ ...original, q: original.q + th(100) }], window);
    await window.settled();

    // Assert: cycle 2's report still lists the +777 applied during cycle 2; cycle 3's lists the +100 applied during cycle 3
    const cycle2 = (await call('GET', `/v1/workspaces/ws_alpha/report?cycle=previous`, KEYS.finance)).body;
    const cycle3 = (await call('GET', `/v1/workspaces/ws_alpha/report?cycle=current`, KEYS.finance)).body;
    expectValid('cycleReport', cycle2);
    expectValid('cycleReport', cycle3);
    const of = (report: Body) =>
      (report.earlierCycleAdjustments as { source: string; id: string; delta: string }[]).filter((a) => a.source === eventKey.source && a.id === eventKey.id).map((a) => a.delta);
    expect({ cycle2: of(cycle2), cycle3: of(cycle3), c3: (cycle3.cycle as Cycle).start }).toEqual({ cycle2: ['777'], cycle3: ['100'], c3: c3.start });
  });

  test('the audit fails, naming the workspace and the check, when a cycle rollup no longer matches the ledger', async () => {
    // Arrange: one token more in ws_gamma's cycle 2 tokens item, written behind the pipeline's back
    const { c2 } = cycles.ws_gamma;
    const documents = DynamoDBDocumentClient.from(
      new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
    );
    try {
      await documents.send(
        new UpdateCommand({
          TableName: stack.tables.rollups,
          Key: { pk: 'ws_gamma', sk: `C#${c2.start}#tokens` },
          UpdateExpression: 'ADD #total :one',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeNames: { '#total': 'total' },
          ExpressionAttributeValues: { ':one': 1 },
        }),
      );
    } finally {
      documents.destroy();
    }

    // Act
    const [table, json] = await Promise.all([audit(), audit('--json', '--subject', 'ws_gamma')]);

    // Assert
    const ledger = model.total('ws_gamma', c2.start, 'tokens');
    expect(json.code).toBe(1);
    const parsed = JSON.parse(json.stdout) as { rows: AuditRow[]; differences: number };
    expect({ differences: parsed.differences, failing: parsed.rows.filter((r) => !r.ok) }).toEqual({
      differences: 1,
      failing: [{ subject: 'ws_gamma', cycleStart: c2.start, usageType: 'tokens', check: 'cycle rollup total', expected: dec(ledger), actual: dec(ledger + th(1)), ok: false }],
    });
    expect(table.code).toBe(1);
    const different = table.stdout.split('\n').filter((line) => line.includes('DIFFERENT'));
    expect(different).toHaveLength(1);
    expect(different[0]).toEqual(expect.stringContaining('ws_gamma'));
    expect(different[0]).toEqual(expect.stringContaining('cycle rollup total'));
    expect(table.stdout.trim().split('\n').at(-1)).toMatch(/, 1 difference\(s\)$/);
  }, 300_000);

  test('every report, summary and export was validated against the published schema', () => {
    expect(Object.fromEntries([...schemaCounts].map(([k, v]) => [k, v > 0]))).toEqual({ cycleReport: true, cycleSummary: true, exportDocument: true, exportHeaderLine: true, exportBucket: true });
  });
});
