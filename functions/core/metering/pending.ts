import { type NanoUnits, toDecimalString, toNanoUnits } from '../quantity';
import type { RollupRow } from './metering-ports';
import { checkpointLaneOf, MAX_COUNTERS_PER_UPDATE, type RollupKind, type RollupUpdate, rollupSortKey } from './rollups';

/**
 * Pending deltas: a lane's sparse updates, kept in one item per lane until they are worth folding.
 *
 * At a low rate a batch holds one or two events per workspace, and writing each workspace's day and cycle
 * items for them costs four transactional write units per workspace and batch. Instead a lane's item (one per
 * lane of subjects, `checkpointLaneOf`) holds, beside each shard's checkpoint, the deltas of day and cycle items
 * that are applied but not yet folded into those items. A commit that only adds deltas writes that one item with
 * a plain conditional put (its version must be the one read), so the checkpoint and the deltas move together,
 * exactly once. The lane item holds at most `MAX_PENDING_BYTES` of deltas: an update that does not fit folds at
 * once, as it would without pending deltas. The whole lane is folded into its rollup items (in one transaction with
 * the lane item) once its oldest delta has waited `MAX_PENDING_SECONDS`; and whenever a commit is a transaction
 * anyway (something had to fold at once), every item that has gathered `FOLD_AT_REQUESTS` events folds with it.
 * Readers add a subject's pending deltas to the items they read (`withPending`), so counts are as fresh as if every
 * delta had been folded at once.
 *
 * What is never pending, and folds at once: user, group and late items; a cycle item that admits breakdown values
 * (the store admits them apart first when it can, so that the counts may wait), is closed, or whose cycle starts at
 * or before the latest cycle start closed in the lane (`closedThrough`); and an update whose subject is not in the
 * lane of the records that commit it. A close folds its subject's deltas
 * and raises `closedThrough` in one transaction, so a delta never meets a closed cycle.
 */

/** Events an item gathers before it folds with a commit that is a transaction anyway: past them a fold costs little per event. */
export const FOLD_AT_REQUESTS = 20;
/** A lane's deltas are folded once its oldest has waited this long (a lane without traffic keeps them until its next batch or a close). */
export const MAX_PENDING_SECONDS = 300;
/** A lane item is rewritten with every commit of its lane: its deltas take at most this many bytes; what does not fit folds at once. */
export const MAX_PENDING_BYTES = 6_000;

export interface LaneState {
  /** Grows with every write of the lane item; a write holds only if the version is still the one read. */
  version: number;
  /** Per shard: the padded sequence number of the lane's last record applied (`padSequenceNumber`), and when it was written. */
  checkpoints: Map<string, { sequenceNumber: string; at: string }>;
  /** Applied but not folded, by `pendingKey`. */
  pending: Map<string, RollupUpdate>;
  /** When the oldest pending delta was added (ISO); absent when none is. */
  since?: string;
  /** The latest cycle start a close has marked in this lane: a cycle starting at or before it may be closed. */
  closedThrough?: string;
}

export const emptyLane = (): LaneState => ({ version: 0, checkpoints: new Map(), pending: new Map() });

/** Names an item: its subject and sort key. */
export const pendingKey = (update: Pick<RollupUpdate, 'subject' | 'kind' | 'period' | 'usageType' | 'member'>): string =>
  `${update.subject}\u0000${rollupSortKey(update.kind, update.period, update.usageType, update.member)}`;

/** Whether an update may wait in its lane's item (see the module comment). */
export function mayPend(update: RollupUpdate, lane: string, state: Pick<LaneState, 'closedThrough'>): boolean {
  if (update.kind !== 'day' && update.kind !== 'cycle') return false;
  if (checkpointLaneOf(update.subject) !== lane) return false;
  if (update.kind === 'cycle' && (update.closed === true || update.admit !== undefined)) return false;
  // A cycle item's update only if its cycle cannot be closed; a day item's deltas land in no cycle.
  if (update.kind === 'cycle' && state.closedThrough !== undefined && update.period <= state.closedThrough) return false;
  return true;
}

/** `into` plus `update`, as one update of the same item. */
export function addUpdate(into: RollupUpdate | undefined, update: RollupUpdate): RollupUpdate {
  if (!into) return { ...update, counters: new Map(update.counters), ...(update.requests !== undefined ? { requests: update.requests } : {}) };
  const counters = new Map(into.counters);
  for (const [name, delta] of update.counters) counters.set(name, (counters.get(name) ?? 0n) + delta);
  const sum: RollupUpdate = { ...into, total: into.total + update.total, requests: (into.requests ?? 0n) + (update.requests ?? 0n), counters };
  // A chunk's own conditions (admissions, a closed cycle) stay with the item whichever side brings them.
  if (update.admit !== undefined) sum.admit = update.admit;
  if (update.closed !== undefined) sum.closed = update.closed;
  return sum;
}

/** What one lane's commit writes: the updates to fold into rollup items, and the lane item after it. */
export interface LaneCommit {
  fold: RollupUpdate[];
  next: LaneState;
}

export interface PendingLimits {
  foldAtRequests: number;
  maxPendingSeconds: number;
  maxPendingBytes: number;
  /** Rollup items one commit may fold: a transaction's 100 items, less the lane item. */
  maxFoldItems: number;
}
export const PENDING_LIMITS: PendingLimits = { foldAtRequests: FOLD_AT_REQUESTS, maxPendingSeconds: MAX_PENDING_SECONDS, maxPendingBytes: MAX_PENDING_BYTES, maxFoldItems: 99 };
/** No room in any lane item: every commit folds at once, as before pending deltas (what benchmarks compare with). */
export const FOLD_AT_ONCE: PendingLimits = { ...PENDING_LIMITS, maxPendingBytes: 0 };

/**
 * Splits a lane's share of a commit into what waits in the lane item and what is folded now. `shard` names the
 * shard's new checkpoint (undefined: unchanged). Updates that may not pend, or that the lane item has no room for
 * (`maxPendingBytes`), fold at once with whatever of their item was pending; then, in a commit that is a transaction
 * anyway, items that have gathered `foldAtRequests` events, and every item once the lane's oldest delta has waited
 * `maxPendingSeconds`, as far as the transaction has room (the rest fold with a later commit).
 */
export function planLaneCommit(
  lane: string,
  state: LaneState,
  updates: readonly RollupUpdate[],
  shard: { shardId: string; sequenceNumber: string } | undefined,
  now: Date,
  limits: PendingLimits = PENDING_LIMITS,
): LaneCommit {
  const pending = new Map(state.pending);
  const bytes = new Map([...pending].map(([key, u]) => [key, deltaBytes(u)]));
  let pendingBytes = [...bytes.values()].reduce((sum, n) => sum + n, 0);
  const fold = new Map<string, RollupUpdate>();
  const foldNow = (key: string, update: RollupUpdate) => {
    const folded = addUpdate(fold.get(key), update);
    const waiting = pending.get(key);
    // What waited folds with it unless together they pass an update's counters: then it keeps waiting.
    if (!waiting || countersOf(folded, waiting) > MAX_COUNTERS_PER_UPDATE) {
      fold.set(key, folded);
      return;
    }
    fold.set(key, addUpdate(folded, waiting));
    pending.delete(key);
    pendingBytes -= bytes.get(key) ?? 0;
    bytes.delete(key);
  };
  let added = false;
  for (const update of updates) {
    const key = pendingKey(update);
    if (fold.has(key) || !mayPend(update, lane, state)) {
      foldNow(key, update);
      continue;
    }
    const waiting = pending.get(key);
    if (waiting && countersOf(waiting, update) > MAX_COUNTERS_PER_UPDATE) {
      // One update expression takes at most MAX_COUNTERS_PER_UPDATE counters: this one folds alone, what waited waits on.
      foldNow(key, update);
      continue;
    }
    const merged = addUpdate(waiting, update);
    const size = deltaBytes(merged);
    const estimate = pendingBytes - (bytes.get(key) ?? 0) + size;
    // A lane without room for it folds it at once (today's cost, no more): the lane item stays small, as it is rewritten
    // with every commit. The estimate writes every name out; only past the limit is the stored text measured.
    if (estimate > HARD_PENDING_BYTES || (estimate > limits.maxPendingBytes && encodePending(new Map(pending).set(key, merged)).length > limits.maxPendingBytes)) {
      foldNow(key, update);
      continue;
    }
    pendingBytes += size - (bytes.get(key) ?? 0);
    pending.set(key, merged);
    bytes.set(key, size);
    added = true;
  }
  const nowIso = now.toISOString();
  const since = state.pending.size > 0 ? (state.since ?? nowIso) : added ? nowIso : undefined;
  const full = since !== undefined && now.getTime() - Date.parse(since) >= limits.maxPendingSeconds * 1000;
  // A commit that folds anything is a transaction, whose lane item bills double: then items that gathered enough
  // events fold too, and they shrink the item. Otherwise the lane waits whole until it is full or aged, so that its
  // commits stay single puts in between.
  const transactional = fold.size > 0;
  // The items with most events first: they are what a fold saves most on.
  const candidates = [...pending]
    .filter(([, u]) => full || (transactional && abs(u.requests ?? 0n) >= BigInt(limits.foldAtRequests)))
    .sort(([, a], [, b]) => (abs(b.requests ?? 0n) > abs(a.requests ?? 0n) ? 1 : -1));
  for (const [key, update] of candidates) {
    if (fold.size >= limits.maxFoldItems) break;
    // An item this commit folds already (what waited, past an update's counters) waits with the rest.
    if (fold.has(key)) continue;
    pending.delete(key);
    pendingBytes -= bytes.get(key) ?? 0;
    fold.set(key, update);
  }
  const checkpoints = new Map(state.checkpoints);
  if (shard) checkpoints.set(shard.shardId, { sequenceNumber: shard.sequenceNumber, at: nowIso });
  const next: LaneState = { version: state.version + 1, checkpoints, pending };
  // A lane folded for its age starts its clock again with what it could not fold yet.
  const nextSince = pending.size === 0 ? undefined : full ? nowIso : since;
  if (nextSince !== undefined) next.since = nextSince;
  if (state.closedThrough !== undefined) next.closedThrough = state.closedThrough;
  return { fold: [...fold.values()].filter(changesItem), next };
}

/** The lane item with only the shard's checkpoint moved (a parked record, a chunk of several lanes): its deltas stay as they are. */
export function withCheckpoint(state: LaneState, shard: { shardId: string; sequenceNumber: string }, now: Date): LaneState {
  const checkpoints = new Map(state.checkpoints).set(shard.shardId, { sequenceNumber: shard.sequenceNumber, at: now.toISOString() });
  return { ...state, version: state.version + 1, checkpoints };
}

/** The lane item's deltas never pass this many bytes (DynamoDB's item limit is 400 KB). */
export const HARD_PENDING_BYTES = 64_000;

/** How many counters two updates of one item name together. */
const countersOf = (a: RollupUpdate, b: RollupUpdate) => a.counters.size + [...b.counters.keys()].filter((name) => !a.counters.has(name)).length;
const abs = (n: bigint) => (n < 0n ? -n : n);
/** An update whose deltas all cancel out writes nothing. */
const changesItem = (u: RollupUpdate) =>
  u.total !== 0n || (u.requests ?? 0n) !== 0n || u.closed === true || u.admit !== undefined || u.kind === 'late' || [...u.counters.values()].some((c) => c !== 0n);

// ── stored form ─────────────────────────────────────────────────────────────────────────────────

/**
 * The deltas as the lane item stores them, rewritten with every commit of the lane: compact JSON in which each
 * subject, sort key and counter name is written once (a lane's workspaces share their hours, days and channels) and
 * each delta names them by index: `{ s: subjects, k: sort keys, c: counter names, d: [[s, k, total, requests, c, value,
 * c, value, …], …] }`, amounts as exact decimal text.
 */
export function encodePending(pending: ReadonlyMap<string, RollupUpdate>): string {
  const tables = { s: new Map<string, number>(), k: new Map<string, number>(), c: new Map<string, number>() };
  const index = (table: Map<string, number>, text: string) => {
    let at = table.get(text);
    if (at === undefined) table.set(text, (at = table.size));
    return at;
  };
  const deltas = [...pending.values()].map((u) => [
    index(tables.s, u.subject),
    index(tables.k, rollupSortKey(u.kind, u.period, u.usageType)),
    toDecimalString(u.total),
    (u.requests ?? 0n).toString(),
    ...[...u.counters].filter(([, v]) => v !== 0n).flatMap(([name, v]) => [index(tables.c, name), toDecimalString(v)]),
  ]);
  return JSON.stringify({ s: [...tables.s.keys()], k: [...tables.k.keys()], c: [...tables.c.keys()], d: deltas });
}

/** What one delta takes in the stored text at most (its names written out, as if shared with no other). */
const deltaBytes = (u: RollupUpdate) =>
  Buffer.byteLength(
    JSON.stringify([
      u.subject,
      rollupSortKey(u.kind, u.period, u.usageType),
      toDecimalString(u.total),
      String(u.requests ?? 0n),
      ...[...u.counters].flatMap(([name, v]) => [name, toDecimalString(v)]),
    ]),
    'utf8',
  ) + 8;

const KIND_OF_PREFIX: Record<string, RollupKind> = { D: 'day', C: 'cycle' };

export function decodePending(text: string | undefined): Map<string, RollupUpdate> {
  const pending = new Map<string, RollupUpdate>();
  if (!text) return pending;
  const { s: subjects, k: sortKeys, c: names, d: deltas } = JSON.parse(text) as { s: string[]; k: string[]; c: string[]; d: (string | number)[][] };
  for (const [subjectAt, sortKeyAt, total, requests, ...counters] of deltas) {
    const sk = sortKeys[Number(sortKeyAt)] ?? '';
    // D#period#usageType or C#period#usageType: a period holds no '#'.
    const kind = KIND_OF_PREFIX[sk.slice(0, 1)];
    const second = sk.indexOf('#', 2);
    if (!kind || second < 0) throw new Error(`a lane item holds a pending delta of an unknown item "${sk}"`);
    const update: RollupUpdate = {
      subject: subjects[Number(subjectAt)] ?? '',
      kind,
      period: sk.slice(2, second),
      usageType: sk.slice(second + 1),
      total: units(String(total)),
      requests: BigInt(String(requests)),
      counters: new Map(),
    };
    for (let i = 0; i + 1 < counters.length; i += 2) update.counters.set(names[Number(counters[i])] ?? '', units(String(counters[i + 1])));
    pending.set(pendingKey(update), update);
  }
  return pending;
}

function units(text: string): NanoUnits {
  const value = toNanoUnits(text);
  if (value === undefined) throw new Error(`a lane item holds an invalid amount "${text}"`);
  return value;
}

// ── readers ─────────────────────────────────────────────────────────────────────────────────────

/** The pending updates of one subject. */
export const pendingOf = (state: Pick<LaneState, 'pending'>, subject: string): RollupUpdate[] => [...state.pending.values()].filter((u) => u.subject === subject);

/**
 * Rows as they will be once `updates` are folded: each update adds to its row (made when the item is not stored
 * yet), exactly as the fold's ADD would. Rows keep sort-key order.
 */
export function withPending(rows: readonly RollupRow[], updates: readonly RollupUpdate[]): RollupRow[] {
  if (updates.length === 0) return [...rows];
  const bySortKey = new Map(rows.map((row) => [rollupSortKey(row.kind, row.period, row.usageType, row.member), row]));
  for (const update of updates) {
    const sk = rollupSortKey(update.kind, update.period, update.usageType, update.member);
    const row = bySortKey.get(sk) ?? { usageType: update.usageType, kind: update.kind, period: update.period, total: '0', counters: {} };
    const counters = { ...row.counters };
    for (const [name, delta] of update.counters) counters[name] = toDecimalString(units(counters[name] ?? '0') + delta);
    const merged: RollupRow = { ...row, total: toDecimalString(units(row.total) + update.total), counters };
    if (update.requests !== undefined && (row.requests !== undefined || update.requests !== 0n)) merged.requests = (BigInt(row.requests ?? '0') + update.requests).toString();
    bySortKey.set(sk, merged);
  }
  return [...bySortKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
}
