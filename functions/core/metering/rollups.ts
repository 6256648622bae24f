import type { EventCredits } from '../billing/credits';
import { type NanoUnits, toNanoUnits } from '../quantity';
import { shardOf } from '../shards';
import type { UsageEvent } from './envelope';

/**
 * Rollup keys and the fold from ledger changes to counter deltas.
 *
 * A chunk touches two items per subject and usage type: the day item (its total, its hour counters
 * and hour × channel counters) and the cycle item (its total, day counters, and channel and feature
 * totals); and, for events that name them, one item per user and per group in the cycle, which the
 * rankings read. Periods are keys, so a new hour, day or cycle starts at zero without any write.
 */

/** Where an event's quantity is counted; computed once at ingest and stored in the ledger item. */
export interface Buckets {
  /** UTC hour, 'YYYY-MM-DDTHH'. */
  hour: string;
  /** Date in the subject's time zone, 'YYYY-MM-DD'. */
  day: string;
  /** UTC ISO instant at which the event's billing cycle starts. */
  cycleStart: string;
}

/** The part of a ledger item that rollups depend on. */
export interface LedgerImage extends Buckets {
  /** The event's identity (`eventKey`: CloudEvents source + id), named by a late event's adjustment item. */
  eventKey: string;
  subject: string;
  usageType: string;
  quantity: string;
  userId?: string;
  groupId?: string;
  channel?: string;
  feature?: string;
  /** What the credit rate card charged for the event, counted under its credits usage type beside the quantity (and under its account's pool). */
  credits?: EventCredits;
  /** The event's time (UTC ISO with milliseconds): what recent activity shows (activity.ts); no rollup reads it. */
  time?: string;
}

/** A ledger item: the event, its buckets, when its message was sent (its version), and when it expires. */
export type LedgerEntry = UsageEvent & Buckets & { sentAt: string; expiresAt: number };

/** One record of the ledger's stream, as the aggregator sees it. */
export interface LedgerChange {
  sequenceNumber: string;
  oldImage?: LedgerImage;
  newImage?: LedgerImage;
  /** A removal by the table's TTL: the event ages out, its counts stay. */
  expired?: boolean;
}

export type RollupKind = 'day' | 'cycle' | 'user' | 'group' | 'late';
/** Items per user or group of a cycle, beside the subject's day and cycle items. */
export type MemberKind = Extract<RollupKind, 'user' | 'group'>;

export interface RollupUpdate {
  subject: string;
  usageType: string;
  kind: RollupKind;
  /** 'YYYY-MM-DD' for a day item; the cycle start instant for the others. */
  period: string;
  /** The user or group id of a user or group item; the event key of a late item. */
  member?: string;
  total: NanoUnits;
  /** How many events the item gains (−1 for an event taken back); a late item counts none. Absent: 0. */
  requests?: bigint;
  /**
   * Of a cycle item: whether the cycle has been closed. A closed cycle's item also adds the change to its
   * `late` counter, beside one late item per event; an open one must still be open when the chunk commits.
   */
  closed?: boolean;
  /** Of a closed cycle item: what to add to its `late` counter when that is not the whole change (a repair's). */
  late?: NanoUnits;
  /**
   * Of a day item: hour counters ('h#YYYY-MM-DDTHH'), hour requests counters ('r#YYYY-MM-DDTHH', events) and hour × channel
   * counters ('ch#YYYY-MM-DDTHH#channel');
   * of a cycle item: day counters ('d#YYYY-MM-DD'), channel totals ('c#channel') and feature totals ('f#feature').
   */
  counters: Map<string, NanoUnits>;
  /**
   * Of a cycle item: breakdown values this chunk admits, and how many the item had admitted when the chunk
   * was planned. The commit adds them to the item's count only if that count is still `expected`.
   */
  admit?: Partial<Record<Breakdown, { expected: number; values: string[] }>>;
}

/**
 * Channel and feature are breakdowns: a cycle keeps at most `BREAKDOWN_LIMITS` distinct values of each apart
 * (per workspace, usage type and cycle), in the order they first arrive; the rest count under OTHER. Features
 * the rate card prices are always kept apart, outside the limit, so that money is priced exactly. A value's
 * place is final: a cycle admits values until it is full, and a full cycle stays full.
 */
export type Breakdown = 'channel' | 'feature';
export const BREAKDOWN_LIMITS: Readonly<Record<Breakdown, number>> = { channel: 20, feature: 100 };
/** Where a cycle's breakdown counts the values past its limit (an event may name it too: it counts there). */
export const OTHER = '(other)';

/** What a cycle item has admitted of one breakdown: the values it keeps apart and how many count toward the limit. */
export interface Admitted {
  values: ReadonlySet<string>;
  count: number;
}
/** What planning needs to know of a cycle item besides its key. */
export interface CycleState {
  closed: boolean;
  channel: Admitted;
  feature: Admitted;
}
export const EMPTY_CYCLE_STATE: CycleState = { closed: false, channel: { values: new Set(), count: 0 }, feature: { values: new Set(), count: 0 } };

/**
 * A cycle state with a commit's admissions added (none: a copy), its value sets its own to grow: how planning
 * clones what it knows before it admits more, and how the aggregate remembers what a commit admitted.
 */
export function withAdmitted(state: CycleState, admit: RollupUpdate['admit'] = {}): CycleState & Record<Breakdown, { values: Set<string>; count: number }> {
  const next = (dimension: Breakdown) => {
    const added = admit[dimension];
    const known = state[dimension];
    return added ? { values: new Set([...known.values, ...added.values]), count: added.expected + added.values.length } : { values: new Set(known.values), count: known.count };
  };
  return { closed: state.closed, channel: next('channel'), feature: next('feature') };
}

/** What a stored cycle item has admitted: the channels and features it keeps counters for, and its admission counts. */
export function cycleStateOf(row: { counters: Readonly<Record<string, string>>; closedAt?: string; admitted?: Readonly<Record<Breakdown, number>> }): CycleState {
  const admitted = (prefix: string, dimension: Breakdown): Admitted => ({
    values: new Set(Object.keys(row.counters).flatMap((name) => (name.startsWith(prefix) && name !== `${prefix}${OTHER}` ? [name.slice(prefix.length)] : []))),
    count: row.admitted?.[dimension] ?? 0,
  });
  return { closed: row.closedAt !== undefined, channel: admitted('c#', 'channel'), feature: admitted('f#', 'feature') };
}

export interface BreakdownPolicy {
  limits: Readonly<Record<Breakdown, number>>;
  /** Features kept apart whatever the limit (the rate card's priced features of the usage type). */
  kept: (usageType: string) => ReadonlySet<string> | undefined;
}
export const DEFAULT_BREAKDOWNS: BreakdownPolicy = { limits: BREAKDOWN_LIMITS, kept: () => undefined };

/** The policy of a rate card: its priced features of each usage type are kept apart whatever the limit. */
export function breakdownPolicy(rateCard: { prices: Record<string, { features: Record<string, unknown> }> } | undefined): BreakdownPolicy {
  const kept = new Map(Object.entries(rateCard?.prices ?? {}).map(([usageType, price]) => [usageType, new Set(Object.keys(price.features))]));
  return { limits: BREAKDOWN_LIMITS, kept: (usageType) => kept.get(usageType) };
}

/**
 * DynamoDB refuses an update expression over 4 KB: at 13 characters per counter ('#c249 :c249, '), 250
 * counters and the SET and ADD clauses stay under 3.5 KB. A chunk's counter names (up to ~280 bytes each)
 * stay under 1 MB, well inside a transaction's 4 MB.
 */
export const MAX_COUNTERS_PER_UPDATE = 250;
export const MAX_COUNTER_BYTES_PER_CHUNK = 1_000_000;
/**
 * One change adds at most 3 counters to a day item (hour, hour requests, hour × channel) and 3 to a cycle item per image, of two images of a usage
 * type (its old and new image; credits count under items of their own usage type).
 */
const MAX_COUNTERS_PER_CHANGE = 6;
/** A change has at most six images: old and new, each with its credits and their account's. */
const MAX_IMAGES_PER_CHANGE = 6;
/** 'ch#YYYY-MM-DDTHH#' and a channel of at most 256 bytes (envelope FIELD_BYTE_LIMITS). */
const MAX_COUNTER_NAME_BYTES = 17 + 256;

/** The records of one lane (see `laneOf`) that a chunk applies: a run of its records, in order. */
export interface LaneRun {
  lane: string;
  firstSequenceNumber: string;
  lastSequenceNumber: string;
}

/**
 * One transaction's worth of records: their folded rollup updates, and per lane the run of its records
 * applied here. The commit moves each lane's checkpoint from before the run's first record to its last.
 */
export interface Chunk {
  updates: RollupUpdate[];
  runs: LaneRun[];
  /** The records folded in, in stream order. */
  sequenceNumbers: string[];
}
/**
 * A commit found cycle items not as the chunk planned them: closed since (their late events must count as
 * adjustments) or with breakdown values admitted by another writer. Nothing was written; the chunk is planned
 * again from the items as they are now.
 */
export class CycleItemsChangedError extends Error {
  override readonly name: string = 'CycleItemsChangedError';
  constructor(
    readonly cycles: readonly string[],
    message = `${cycles.length} cycle item(s) changed since the chunk was planned`,
  ) {
    super(message);
  }
}
/**
 * DynamoDB refused a chunk for a reason no retry changes (a key, an expression or an item over its limit, a
 * value it cannot store): the records that cause it are narrowed down and parked (`ParkedRecord`).
 */
export class ChunkRefusedError extends Error {
  override readonly name = 'ChunkRefusedError';
}

/**
 * A stream record whose change DynamoDB refused on its own: kept aside with its reason, its checkpoint moved
 * past it in the same transaction, so that its shard goes on. `usage-pipeline replay --from parked` applies
 * it once the cause is fixed, and removes it in the same transaction.
 */
export interface ParkedRecord {
  shardId: string;
  sequenceNumber: string;
  reason: string;
  change: LedgerChange;
  parkedAt: string;
}

/** The cycles of a CycleItemsChangedError were closed since the chunk was planned. */
export class CyclesClosedError extends CycleItemsChangedError {
  override readonly name = 'CyclesClosedError';
  constructor(cycles: readonly string[]) {
    super(cycles, `${cycles.length} cycle(s) closed since the chunk was planned`);
  }
}

export const hourCounter = (hour: string) => `h#${hour}`;
/** Events per hour, kept as a counter (1 per event, in the same decimal units as quantities) beside the hour's use. */
export const hourRequestsCounter = (hour: string) => `r#${hour}`;
/**
 * A stored request count as readers show it. Items written before requests were counted start at none, so taking
 * back an event they hold can leave them below zero: shown as 0 until `usage-pipeline repair` writes the ledger's count.
 */
export const requestCount = (stored: string | undefined): number => Math.max(0, Number(stored ?? 0));
/** An hour requests counter's step: one event, so that the stored counter reads as the count. */
export const ONE_REQUEST = toNanoUnits(1) as NanoUnits;
export const dayCounter = (day: string) => `d#${day}`;
export const hourChannelCounter = (hour: string, channel: string) => `ch#${hour}#${channel}`;
export const channelCounter = (channel: string) => `c#${channel}`;
export const featureCounter = (feature: string) => `f#${feature}`;

export const ROLLUP_PREFIX: Record<RollupKind, string> = { day: 'D', cycle: 'C', user: 'U', group: 'G', late: 'L' };
/** D#day#usageType, C#cycleStart#usageType, U#cycleStart#usageType#userId, G#cycleStart#usageType#groupId, L#cycleStart#usageType#… (see the store). */
export const rollupSortKey = (kind: RollupKind, period: string, usageType: string, member?: string) => `${ROLLUP_PREFIX[kind]}#${period}#${usageType}${member === undefined ? '' : `#${member}`}`;

/** Sequence numbers are decimal strings of varying length; padded, they compare as strings. */
export const padSequenceNumber = (sequenceNumber: string) => sequenceNumber.padStart(40, '0');

/**
 * The counter deltas of one change: −old image, +new image; nothing for a TTL expiry. An image with credits
 * counts twice: its quantity under its usage type, and its credits under theirs (`meteredImages`), so that a
 * correction moves both and one transaction applies both.
 */
export function changeDeltas(change: LedgerChange): { image: LedgerImage; sign: 1n | -1n }[] {
  if (change.expired) return [];
  const deltas: { image: LedgerImage; sign: 1n | -1n }[] = [];
  if (change.oldImage) for (const image of meteredImages(change.oldImage)) deltas.push({ image, sign: -1n });
  if (change.newImage) for (const image of meteredImages(change.newImage)) deltas.push({ image, sign: 1n });
  return deltas;
}

/**
 * What a ledger image counts: itself; for a priced event its credits as an image of the credits usage type;
 * and for a pooled workspace's priced event the same credits under its account, in the account's day and
 * cycle, with its workspace group as the group (an account ranks its workspaces by their own items).
 */
export function meteredImages(image: LedgerImage): LedgerImage[] {
  if (!image.credits) return [image];
  const { credits, ...rest } = image;
  const own: LedgerImage = { ...rest, usageType: credits.usageType, quantity: credits.quantity };
  if (!credits.pool) return [image, own];
  const { pool } = credits;
  // The account's groups are workspace groups, not the event's own group.
  const { groupId: _eventGroup, ...base } = own;
  const pooled: LedgerImage = { ...base, subject: pool.subject, day: pool.day, cycleStart: pool.cycleStart };
  if (pool.group !== undefined) pooled.groupId = pool.group;
  return [image, own, pooled];
}

/** Names one cycle item across subjects, as `closedCycles` holds it. */
export const cycleItemKey = (subject: string, cycleStart: string, usageType: string) => `${subject}\u0000${rollupSortKey('cycle', cycleStart, usageType)}`;
/** The parts of a `cycleItemKey` (a cycle start is an ISO instant: it holds no '#'). */
export function parseCycleItemKey(key: string): { subject: string; cycleStart: string; usageType: string } {
  const [subject = '', sortKey = ''] = key.split('\u0000');
  const cycleStart = sortKey.slice(2, sortKey.indexOf('#', 2));
  return { subject, cycleStart, usageType: sortKey.slice(3 + cycleStart.length) };
}

/**
 * Checkpoints per shard: one per lane, so that a batch over many subjects carries one
 * checkpoint per lane it touches rather than one per subject (docs/counting.md, "How it counts exactly once").
 * Fixed for good: a record is applied under its lane's checkpoint, and a shard whose lanes changed
 * under a retried batch would apply its records again.
 */
export const CHECKPOINT_LANES = 64;

/** The checkpoint lane of a subject (named `bucket-n` in the stored keys, which stay as deployed). */
export function checkpointLaneOf(subject: string): string {
  return `bucket-${shardOf(subject, CHECKPOINT_LANES)}`;
}

/**
 * The checkpoint a record is applied under: its subject's lane, of the new image's subject, else the
 * old image's; a pooled workspace's priced record goes in its account's lane, so that an account's records
 * fold together and its items are written once per batch rather than once per lane of its workspaces. A change
 * that moves an event to another subject touches both, but counts under one: any fixed choice works, since the
 * record is applied once, and the choice is read from the record itself, so a retried batch makes it again.
 */
export const laneOf = (change: LedgerChange): string => {
  const image = change.newImage ?? change.oldImage;
  return checkpointLaneOf(image?.credits?.pool?.subject ?? image?.subject ?? '');
};

/** Whether a change moves any counter; a TTL expiry (or a record without images) never does. */
export const changesCounters = (change: LedgerChange): boolean => !change.expired && (change.oldImage !== undefined || change.newImage !== undefined);

/**
 * Folds changes into chunks of at most `maxItems` transaction items: the rollup items the records touch,
 * plus the lane's item (`laneOf`: a fixed group of subjects; it holds the checkpoint). Records are grouped by lane
 * across the whole batch, one lane per chunk, so that a subject's day and cycle items are written once per batch
 * rather than once per few records, as long as its lane's records fit one chunk; each lane's records keep their
 * stream order, and a lane too big for one chunk continues in the next. Items
 * whose deltas cancel out are dropped. A change to a cycle in `closedCycles` (see `cycleItemKey`) is a
 * late event or a correction: it also counts in its cycle item's `late` total and in one late item per
 * event. One change touches at most 30 rollup items (day, cycle, user, group and late, of its old and its new
 * image, of their credits and of their account's credits) and one checkpoint, so `maxItems` must be at least 31.
 */
export function planChunks(
  changes: readonly LedgerChange[],
  maxItems: number,
  closedCycles: ReadonlySet<string> = new Set(),
  cycleStates: ReadonlyMap<string, CycleState> = new Map(),
  breakdowns: BreakdownPolicy = DEFAULT_BREAKDOWNS,
): Chunk[] {
  // Most batches know no closed cycle: skip building the key then.
  const isClosed = closedCycles.size === 0 ? () => false : (image: LedgerImage) => closedCycles.has(cycleItemKey(image.subject, image.cycleStart, image.usageType));
  const byLane = new Map<string, LedgerChange[]>();
  for (const change of changes) {
    const lane = laneOf(change);
    const own = byLane.get(lane);
    if (own) own.push(change);
    else byLane.set(lane, [change]);
  }

  const chunks: Chunk[] = [];
  let current: Map<string, RollupUpdate> = new Map();
  let runs: Map<string, LaneRun> = new Map();
  let sequenceNumbers: string[] = [];
  let counterBytes = 0;
  // What each cycle item has admitted, as the chunks planned so far leave it (they commit in order).
  const working = new Map<string, ReturnType<typeof withAdmitted>>();
  const placeOf = (cycleKey: string, dimension: Breakdown, value: string, kept: ReadonlySet<string> | undefined): string => {
    if (value === OTHER || kept?.has(value) === true) return value;
    let state = working.get(cycleKey);
    if (!state) {
      state = withAdmitted(cycleStates.get(cycleKey) ?? EMPTY_CYCLE_STATE);
      working.set(cycleKey, state);
    }
    const admitted = state[dimension];
    if (admitted.values.has(value)) return value;
    if (admitted.count >= breakdowns.limits[dimension]) return OTHER;
    const cycle = current.get(cycleKey) as RollupUpdate;
    cycle.admit ??= {};
    const admit = (cycle.admit[dimension] ??= { expected: admitted.count, values: [] });
    admit.values.push(value);
    admitted.values.add(value);
    admitted.count += 1;
    return value;
  };
  const bump = (item: RollupUpdate, counter: string, delta: NanoUnits) => {
    const before = item.counters.get(counter);
    if (before === undefined) counterBytes += Buffer.byteLength(counter, 'utf8');
    item.counters.set(counter, (before ?? 0n) + delta);
  };
  // A change whose counters might not fit its day or cycle item's update expression, or the chunk's bytes, starts a new chunk.
  const overflows = (keys: readonly string[]) =>
    counterBytes + MAX_COUNTERS_PER_CHANGE * MAX_IMAGES_PER_CHANGE * MAX_COUNTER_NAME_BYTES > MAX_COUNTER_BYTES_PER_CHUNK ||
    keys.some((key) => (current.get(key)?.counters.size ?? 0) + MAX_COUNTERS_PER_CHANGE > MAX_COUNTERS_PER_UPDATE);

  const flush = () => {
    if (sequenceNumbers.length === 0) return;
    counterBytes = 0;
    // A closed cycle's item stays even when its deltas cancel out: its commit must still find the cycle closed. So
    // does a late item: a correction that moves an event to another channel or feature changes the closed cycle too.
    // So does a cycle item that admits breakdown values: later chunks were planned with them admitted.
    const updates = [...current.values()].filter(
      (u) => u.total !== 0n || (u.requests ?? 0n) !== 0n || u.closed === true || u.kind === 'late' || u.admit !== undefined || [...u.counters.values()].some((c) => c !== 0n),
    );
    chunks.push({ updates, runs: [...runs.values()], sequenceNumbers });
    current = new Map();
    runs = new Map();
    sequenceNumbers = [];
  };

  const counted: string[] = [];
  for (const [lane, own] of byLane) {
    // Each image's item keys are built once: they decide whether the lane and each change fit, then where they land.
    const planned = own.map((change) => ({
      change,
      deltas: changeDeltas(change).map(({ image, sign }) => {
        const closed = isClosed(image);
        return { image, sign, closed, keys: itemKeys(image, closed) };
      }),
    }));
    // Each lane starts a chunk of its own: its commit writes its lane item once, and may only add to its pending deltas
    // (core/metering/pending.ts) when nothing else rides in the transaction.
    flush();
    for (const { change, deltas } of planned) {
      counted.length = 0;
      for (const { keys } of deltas) for (const key of keys) if (!current.has(key) && !counted.includes(key)) counted.push(key);
      const newRun = runs.has(lane) ? 0 : 1;
      if (current.size + runs.size + counted.length + newRun > maxItems || overflows(deltas.flatMap(({ keys }) => keys.slice(0, 2)))) flush();
      const run = runs.get(lane);
      if (run) run.lastSequenceNumber = change.sequenceNumber;
      else runs.set(lane, { lane, firstSequenceNumber: change.sequenceNumber, lastSequenceNumber: change.sequenceNumber });
      sequenceNumbers.push(change.sequenceNumber);
      for (const { image, sign, closed, keys } of deltas) {
        const quantity = quantityOf(image.quantity);
        const delta = sign === 1n ? quantity : -quantity;
        // keys: day, cycle, then late, user and group as the image has them (itemKeys).
        let next = 2;
        const day = add(current, keys[0] as string, image, 'day', image.day, delta, sign);
        const cycle = add(current, keys[1] as string, image, 'cycle', image.cycleStart, delta, sign);
        const channel = image.channel === undefined ? undefined : placeOf(keys[1] as string, 'channel', image.channel, undefined);
        const feature = image.feature === undefined ? undefined : placeOf(keys[1] as string, 'feature', image.feature, breakdowns.kept(image.usageType));
        bump(day, hourCounter(image.hour), delta);
        bump(day, hourRequestsCounter(image.hour), sign * ONE_REQUEST);
        if (channel !== undefined) bump(day, hourChannelCounter(image.hour, channel), delta);
        if (closed) {
          cycle.closed = true;
          add(current, keys[next++] as string, image, 'late', image.cycleStart, delta, 0n, image.eventKey);
        }
        bump(cycle, dayCounter(image.day), delta);
        if (channel !== undefined) bump(cycle, channelCounter(channel), delta);
        if (feature !== undefined) bump(cycle, featureCounter(feature), delta);
        if (image.userId !== undefined) add(current, keys[next++] as string, image, 'user', image.cycleStart, delta, sign, image.userId);
        if (image.groupId !== undefined) add(current, keys[next] as string, image, 'group', image.cycleStart, delta, sign, image.groupId);
      }
    }
  }
  flush();
  return chunks;
}

// Ledger quantities repeat (1, 10, 1500, …); parsing each again was a good part of the fold's time.
const MAX_CACHED_QUANTITIES = 10_000;
const quantities = new Map<string, NanoUnits>();

function quantityOf(text: string): NanoUnits {
  let quantity = quantities.get(text);
  if (quantity === undefined) {
    quantity = toNanoUnits(text);
    if (quantity === undefined) throw new Error(`ledger item holds an invalid quantity "${text}"`);
    if (quantities.size >= MAX_CACHED_QUANTITIES) quantities.clear();
    quantities.set(text, quantity);
  }
  return quantity;
}

/** Keys of the items an image touches, in the order the fold visits them: day, cycle, then late, user, group. */
function itemKeys(image: LedgerImage, closed: boolean): string[] {
  const keys = [itemKey(image, 'day', image.day), itemKey(image, 'cycle', image.cycleStart)];
  if (closed) keys.push(itemKey(image, 'late', image.cycleStart, image.eventKey));
  if (image.userId !== undefined) keys.push(itemKey(image, 'user', image.cycleStart, image.userId));
  if (image.groupId !== undefined) keys.push(itemKey(image, 'group', image.cycleStart, image.groupId));
  return keys;
}

function itemKey(image: LedgerImage, kind: RollupKind, period: string, member?: string): string {
  return `${image.subject}\u0000${rollupSortKey(kind, period, image.usageType, member)}`;
}

function add(items: Map<string, RollupUpdate>, key: string, image: LedgerImage, kind: RollupKind, period: string, delta: NanoUnits, requests: bigint, member?: string): RollupUpdate {
  let item = items.get(key);
  if (!item) {
    item = { subject: image.subject, usageType: image.usageType, kind, period, total: 0n, counters: new Map() };
    if (kind !== 'late') item.requests = 0n;
    if (member !== undefined) item.member = member;
    items.set(key, item);
  }
  item.total += delta;
  if (item.requests !== undefined) item.requests += requests;
  return item;
}
