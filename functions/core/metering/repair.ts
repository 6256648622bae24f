import { type CycleSnapshot, units } from '../billing/balance';
import type { Config } from '../config';
import { type Cycle, cycleContaining, localDate } from '../cycles';
import { type LeaseStore, runExclusive } from '../lease';
import type { Clock, Subject } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import { eventKey } from './envelope';
import type { LedgerStreamReader, LedgerVersions, RepairStore, RollupRange, RollupRow, StreamedChange, VersionedImage } from './metering-ports';
import {
  type BreakdownPolicy,
  CycleItemsChangedError,
  type CycleState,
  changesCounters,
  checkpointLaneOf,
  cycleItemKey,
  cycleStateOf,
  type LedgerChange,
  type LedgerImage,
  laneOf,
  MAX_COUNTER_BYTES_PER_CHUNK,
  MAX_COUNTERS_PER_UPDATE,
  type ParkedRecord,
  padSequenceNumber,
  planChunks,
  type RollupUpdate,
  rollupSortKey,
} from './rollups';

/**
 * Restores a workspace's rollups from the ledger, the source of truth, while events keep flowing.
 *
 * The rollups hold the fold of every ledger stream record up to the checkpoints (one per shard and bucket of
 * subjects), plus whatever went wrong (a parked record, a bug, a hand edit): that error is what a repair
 * removes, and it is found exactly, whatever is in flight:
 * 1. Snapshot: the subject's rollup items, read between two reads of its lane's checkpoints on every shard.
 *    Equal checkpoints mean no commit landed in between, so the items are the fold of the records up to them.
 * 2. Truth: every ledger item of the subject, read strongly consistent, with its version (sent time, digest).
 * 3. In flight: the stream records after the checkpoints, read once the scan is done. Those the scan saw (its
 *    item's version is theirs or later) are in the ledger but not in the rollups: their change is taken back.
 * 4. The difference between that fold and the snapshot, item by item and counter by counter, is added to the
 *    rollups. Additions commute with the aggregator's later commits, so the difference stays right however
 *    long the apply waits; a cycle closed meanwhile (a difference there is a late adjustment) or a breakdown
 *    admitted meanwhile fails its condition and the repair starts again from step 1.
 *
 * Parked records applied nowhere are part of the difference: they are removed first (conditionally, so a
 * concurrent `replay --from parked` and the repair never both count one). One repair per subject at a time
 * holds a lease, checked by every write, so two operators cannot add the difference twice. Cycles older than
 * the ledger's retention are left alone: their events may have aged out while their counts stay.
 */

export interface RepairDeps {
  config: Pick<Config, 'ingest'>;
  clock: Clock;
  subjects: { get(id: string): Promise<Subject | undefined> };
  /** What each close froze: a closed cycle's `late` is repaired to the truth beyond it. */
  snapshots: { listCycleSnapshots(subject: string): Promise<CycleSnapshot[]> };
  ledger: LedgerVersions;
  stream: LedgerStreamReader;
  rollups: RepairStore;
  /** One repair per subject at a time (core/lease.ts); every write of the repair holds only while its lease does. */
  leases: LeaseStore;
  breakdowns: BreakdownPolicy;
  /** How long a write takes to show in the stream; records are read this long after the scan (default 1 s). */
  streamLagMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export interface RepairRequest {
  subject: string;
  /** Resolves the cycle to repair; every cycle inside the ledger's retention when absent. */
  cycle?: (subject: Subject) => Cycle;
  dryRun?: boolean;
}

/** One rollup item the repair changed (or would change): its key, and what it added to the total and counters. */
export interface RepairedItem {
  item: string;
  total: string;
  counters: Record<string, string>;
}

export interface RepairResult {
  subject: string;
  dryRun: boolean;
  /** Cycles compared with the ledger, oldest first. */
  cycles: string[];
  /** Cycles left alone: they started before the ledger's retention, so their events may have aged out. */
  tooOld: string[];
  events: number;
  /** Stream records not yet applied that the ledger scan saw, taken back from the truth. */
  inFlight: number;
  items: RepairedItem[];
  /** Parked records whose change the repair applied (and removed). */
  parkedRemoved: number;
  /** Snapshots taken: more than one when commits or a close came between (each is retried from scratch). */
  attempts: number;
}

export class RepairRefusedError extends Error {
  override readonly name = 'RepairRefusedError';
}

const MAX_ATTEMPTS = 20;
const LEASE_MS = 15 * 60_000;
/** Transaction items: 100, one of them the lease check. */
const MAX_ITEMS_PER_REPAIR = 99;
/** Source of the event key a repair's late adjustment is listed under in a closed cycle's report. */
export const REPAIR_SOURCE = 'usage-pipeline/repair';

export async function repairSubject(request: RepairRequest, deps: RepairDeps): Promise<RepairResult> {
  const subject = await deps.subjects.get(request.subject);
  if (!subject) throw new RepairRefusedError(`unknown workspace "${request.subject}"`);
  // An account's items are written in its workspaces' lanes, from their events: no snapshot of its own lane holds them still.
  if (subject.kind === 'account') throw new RepairRefusedError(`"${subject.id}" is an account: its pooled credits come from its workspaces' events; repair is per workspace`);
  const now = deps.clock.now();
  const retentionMs = deps.config.ingest.retentionDays * 86_400_000;
  const repairable = (cycleStart: string) => Date.parse(cycleStart) + retentionMs > now.getTime();
  const only = request.cycle?.(subject);
  if (only && !repairable(only.start))
    throw new RepairRefusedError(`the cycle starting ${only.start} began more than ${deps.config.ingest.retentionDays} days ago: its events may have aged out of the ledger`);
  const lease = { name: `repair#${subject.id}`, holder: `${now.toISOString()}#${Math.random().toString(36).slice(2, 10)}`, durationMs: LEASE_MS };
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const repair = async (): Promise<RepairResult> => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const plan = await planRepair(subject, only, repairable, now, deps, sleep);
      const result: RepairResult = { subject: subject.id, dryRun: request.dryRun === true, ...plan.summary, attempts: attempt };
      if (request.dryRun || (plan.updates.length === 0 && plan.parked.length === 0)) return result;
      if ((await apply(lease, plan, deps.rollups)) === 'committed') return result;
      await sleep(50 * attempt);
    }
    throw new Error(`the rollups of "${subject.id}" kept changing under ${MAX_ATTEMPTS} snapshots; try again`);
  };
  if (request.dryRun) return repair();
  const run = await runExclusive(lease, { leases: deps.leases, clock: deps.clock }, repair);
  if (!run.ran) throw new RepairRefusedError(`another repair of "${subject.id}" is running`);
  return run.value;
}

interface RepairPlan {
  updates: RollupUpdate[];
  parked: ParkedRecord[];
  summary: Pick<RepairResult, 'cycles' | 'tooOld' | 'events' | 'inFlight' | 'items' | 'parkedRemoved'>;
}

async function planRepair(
  subject: Subject,
  only: Cycle | undefined,
  repairable: (cycleStart: string) => boolean,
  now: Date,
  deps: RepairDeps,
  sleep: (ms: number) => Promise<void>,
): Promise<RepairPlan> {
  // 1. Snapshot, between two equal reads of the subject's lane checkpoints (and its account's lane: a pooled
  // workspace's priced records are applied there, `laneOf`).
  const lane = checkpointLaneOf(subject.id);
  const lanes = [...new Set([lane, ...(subject.account === undefined ? [] : [checkpointLaneOf(subject.account)])])];
  const range = rangeOf(subject, only, now, deps.config.ingest.retentionDays);
  let rows: RollupRow[] | undefined;
  let checkpoints = new Map<string, string>();
  let shards: string[] = [];
  for (let attempt = 0; rows === undefined; attempt++) {
    if (attempt === MAX_ATTEMPTS) throw new Error(`the checkpoints of "${subject.id}" kept moving under ${MAX_ATTEMPTS} snapshots; try again`);
    if (attempt > 0) await sleep(20 * attempt);
    shards = await deps.stream.shards();
    const before = await readOwnCheckpoints(shards, lanes, deps.rollups);
    const read = await deps.rollups.readSubjectRollups(subject.id, range);
    const after = await readOwnCheckpoints(shards, lanes, deps.rollups);
    if (sameCheckpoints(before, after)) {
      rows = read;
      checkpoints = after;
    }
  }
  // Parked records are read after the snapshot: one parked before it is at or below its checkpoint.
  const parkedRecords = await deps.rollups.parked(subject.id);

  // 2. Truth: the ledger, read after the snapshot.
  const scanned = new Map<string, VersionedImage>();
  for await (const item of deps.ledger.versions(subject.id)) scanned.set(item.image.eventKey, item);

  // 3. In flight: records after the checkpoints, read once the scan's writes have reached the stream.
  await sleep(deps.streamLagMs ?? 1_000);
  // The snapshot holds the subject's checkpoints on the stream's shards. Another lane's (a correction that
  // moved an event between workspaces) or a shard's the stream no longer lists (a parked record outlives its
  // shard's 24 hours) are read once when first needed.
  const listed = new Set(shards);
  const otherCheckpoints = new Map<string, Map<string, string>>();
  const checkpointOf = async (shardId: string, recordLane: string): Promise<string | undefined> => {
    if (lanes.includes(recordLane) && listed.has(shardId)) return checkpoints.get(laneCheckpointKey(shardId, recordLane));
    let known = otherCheckpoints.get(shardId);
    if (!known) otherCheckpoints.set(shardId, (known = new Map()));
    if (!known.has(recordLane)) known.set(recordLane, (await deps.rollups.readCheckpoints(shardId, [recordLane])).get(recordLane) ?? '');
    return known.get(recordLane) || undefined;
  };
  const isApplied = async (shardId: string, change: LedgerChange) => {
    const checkpoint = await checkpointOf(shardId, laneOf(change));
    return checkpoint !== undefined && padSequenceNumber(change.sequenceNumber) <= checkpoint;
  };
  const pending = new Map<string, StreamedChange[]>();
  for (const shardId of shards) {
    // From the lowest of the lanes' checkpoints: records above any of them may be in flight.
    const from = lanes.map((l) => checkpoints.get(laneCheckpointKey(shardId, l)));
    const lowest = from.includes(undefined) ? undefined : (from as string[]).sort()[0];
    for await (const streamed of deps.stream.changesAfter(shardId, unpad(lowest))) {
      const { change } = streamed;
      if (!changesCounters(change) || ![change.oldImage, change.newImage].some((i) => i?.subject === subject.id)) continue;
      if (await isApplied(shardId, change)) continue;
      const own = pending.get(streamed.eventKey);
      if (own) own.push(streamed);
      else pending.set(streamed.eventKey, [streamed]);
    }
  }
  const seen = seenInFlight(pending, scanned);

  // Which cycles: the one asked for, or every cycle the ledger or the rollups know.
  const cycleStarts = only ? [only.start] : [...new Set([...[...scanned.values()].map((s) => s.image.cycleStart), ...rows.filter((r) => r.kind === 'cycle').map((r) => r.period)])].sort();
  const cycles = cycleStarts.filter(repairable);
  const tooOld = cycleStarts.filter((c) => !repairable(c));
  const target = new Set(cycles);
  const inTarget = (image: LedgerImage) => image.subject === subject.id && target.has(image.cycleStart);
  const mine = (image: LedgerImage | undefined): image is LedgerImage => image !== undefined && inTarget(image);

  // Parked records at or below their checkpoint were applied nowhere: the difference applies them.
  const parked: ParkedRecord[] = [];
  for (const record of parkedRecords) {
    const images = [record.change.oldImage, record.change.newImage].filter((i): i is LedgerImage => i !== undefined && i.subject === subject.id);
    if (!images.some(mine) || !(await isApplied(record.shardId, record.change))) continue;
    const elsewhere = images.find((i) => !inTarget(i));
    if (elsewhere)
      throw new RepairRefusedError(
        `parked record ${record.shardId}#${record.sequenceNumber} also changes the cycle starting ${elsewhere.cycleStart}: repair that cycle with it (omit --cycle) or replay the record first`,
      );
    parked.push(record);
  }

  // 4. The fold the rollups should hold, against what they hold.
  const signed: { image: LedgerImage; sign: 1 | -1 }[] = [];
  for (const { image } of scanned.values()) if (mine(image)) signed.push({ image, sign: 1 });
  for (const { change } of seen) {
    if (mine(change.newImage)) signed.push({ image: change.newImage, sign: -1 });
    if (mine(change.oldImage)) signed.push({ image: change.oldImage, sign: 1 });
  }
  const days = cycles.map((c) => daysOf(c, subject));
  const held = rows.filter((r) => r.kind !== 'late' && belongsTo(r, days, target));
  const states = new Map(held.filter((r) => r.kind === 'cycle').map((r) => [cycleItemKey(subject.id, r.period, r.usageType), cycleStateOf(r)]));
  const expected = fold(subject.id, signed, states, deps.breakdowns);
  const frozen = new Map((await deps.snapshots.listCycleSnapshots(subject.id)).map((s) => [s.cycleStart, s]));
  const used = (cycleStart: string, usageType: string) => {
    const snapshot = frozen.get(cycleStart);
    return snapshot ? units(snapshot.usage[usageType]?.used ?? '0') : undefined;
  };
  const updates = difference(subject.id, expected, held, { states, used }, eventKey({ source: REPAIR_SOURCE, id: now.toISOString() }));
  return {
    updates,
    parked,
    summary: {
      cycles,
      tooOld,
      events: [...scanned.values()].filter((s) => mine(s.image)).length,
      inFlight: seen.length,
      items: updates.filter((u) => u.kind !== 'late').map(describe),
      parkedRemoved: parked.length,
    },
  };
}

/** Removes the parked records first, then adds the difference, each transaction under the lease. */
async function apply(lease: { name: string; holder: string }, plan: RepairPlan, rollups: RepairStore): Promise<'committed' | 'stale'> {
  try {
    for (let i = 0; i < plan.parked.length; i += MAX_ITEMS_PER_REPAIR) {
      if ((await rollups.applyRepair(lease, { removeParked: plan.parked.slice(i, i + MAX_ITEMS_PER_REPAIR) })) === 'stale') return 'stale';
    }
    for (const updates of packTransactions(plan.updates)) {
      if ((await rollups.applyRepair(lease, { updates })) === 'stale') return 'stale';
    }
    return 'committed';
  } catch (error) {
    if (error instanceof CycleItemsChangedError) return 'stale';
    throw error;
  }
}

/** The stream records in flight that the scan saw, per item: those up to the one whose version the scan read. */
function seenInFlight(pending: ReadonlyMap<string, StreamedChange[]>, scanned: ReadonlyMap<string, VersionedImage>): StreamedChange[] {
  const seen: StreamedChange[] = [];
  for (const [key, records] of pending) {
    records.sort((a, b) => (padSequenceNumber(a.change.sequenceNumber) < padSequenceNumber(b.change.sequenceNumber) ? -1 : 1));
    const found = scanned.get(key);
    // An item the scan did not find was removed after its last record, or written after the scan.
    const upTo = found ? records.findLastIndex((r) => r.newVersion === found.version) : records.at(-1)?.change.newImage === undefined ? records.length - 1 : -1;
    seen.push(...records.slice(0, upTo + 1));
  }
  return seen;
}

/** The rollup items a set of signed images folds into, by `itemKeyOf`, breakdowns placed by what the cycles admitted. */
function fold(subject: string, signed: readonly { image: LedgerImage; sign: 1 | -1 }[], states: ReadonlyMap<string, CycleState>, breakdowns: BreakdownPolicy): Map<string, RollupUpdate> {
  const changes: LedgerChange[] = signed.map(({ image, sign }, i) => ({ sequenceNumber: String(i + 1), ...(sign === 1 ? { newImage: image } : { oldImage: image }) }));
  const items = new Map<string, RollupUpdate>();
  for (const chunk of planChunks(changes, Number.MAX_SAFE_INTEGER, new Set(), states, breakdowns)) {
    for (const update of chunk.updates) {
      // A pooled workspace's credits count under its account too: those items are not the workspace's to repair.
      if (update.subject !== subject) continue;
      const key = itemKeyOf(update.kind, update.period, update.usageType, update.member);
      const into = items.get(key);
      if (!into) {
        items.set(key, { ...update, counters: new Map(update.counters) });
        continue;
      }
      into.total += update.total;
      if (update.requests !== undefined) into.requests = (into.requests ?? 0n) + update.requests;
      for (const [name, delta] of update.counters) into.counters.set(name, (into.counters.get(name) ?? 0n) + delta);
      for (const dimension of ['channel', 'feature'] as const) {
        const admit = update.admit?.[dimension];
        if (!admit) continue;
        into.admit ??= {};
        const known = into.admit[dimension];
        into.admit[dimension] = known ? { expected: known.expected, values: [...known.values, ...admit.values] } : admit;
      }
    }
  }
  return items;
}

/**
 * What to add to each item so that it holds the expected fold: total and counters, the breakdown values newly
 * kept apart (only those with a count), and for a closed cycle the same change as a late adjustment.
 */
function difference(
  subject: string,
  expected: ReadonlyMap<string, RollupUpdate>,
  held: readonly RollupRow[],
  cycles: { states: ReadonlyMap<string, CycleState>; used: (cycleStart: string, usageType: string) => NanoUnits | undefined },
  repairKey: string,
): RollupUpdate[] {
  const { states } = cycles;
  const actual = new Map(held.map((r) => [itemKeyOf(r.kind, r.period, r.usageType, r.member), r]));
  const updates: RollupUpdate[] = [];
  for (const key of [...new Set([...expected.keys(), ...actual.keys()])].sort()) {
    const want = expected.get(key);
    const have = actual.get(key);
    const shape = (want ?? have) as RollupUpdate | RollupRow;
    const counters = new Map<string, NanoUnits>();
    for (const name of new Set([...(want?.counters.keys() ?? []), ...Object.keys(have?.counters ?? {})])) {
      const delta = (want?.counters.get(name) ?? 0n) - units(have?.counters[name] ?? '0');
      if (delta !== 0n) counters.set(name, delta);
    }
    const update: RollupUpdate = { subject, usageType: shape.usageType, kind: shape.kind, period: shape.period, total: (want?.total ?? 0n) - units(have?.total ?? '0'), counters };
    if (shape.member !== undefined) update.member = shape.member;
    // Items written before events were counted have no count: the repair writes the ledger's.
    const requests = (want?.requests ?? 0n) - BigInt(have?.requests ?? '0');
    if (requests !== 0n) update.requests = requests;
    for (const dimension of ['channel', 'feature'] as const) {
      const prefix = dimension === 'channel' ? 'c#' : 'f#';
      const values = want?.admit?.[dimension]?.values.filter((v) => counters.has(`${prefix}${v}`)) ?? [];
      if (values.length > 0) (update.admit ??= {})[dimension] = { expected: states.get(cycleItemKey(subject, update.period, update.usageType))?.[dimension].count ?? 0, values };
    }
    if (update.kind === 'cycle' && have?.closedAt !== undefined) {
      // What the close froze stays as billed: `late` becomes what the truth holds beyond it. A cycle whose
      // snapshot is not written yet counts the whole change as late (the close leaves `late` out of `used`).
      const used = cycles.used(update.period, update.usageType);
      const late = used === undefined ? update.total : (want?.total ?? 0n) - used - units(have.late ?? '0');
      if (update.total === 0n && requests === 0n && late === 0n && counters.size === 0 && !update.admit) continue;
      update.closed = true;
      update.late = late;
      if (late !== 0n) updates.push({ subject, usageType: update.usageType, kind: 'late', period: update.period, member: repairKey, total: late, counters: new Map() });
    } else if (update.total === 0n && requests === 0n && counters.size === 0 && !update.admit) {
      continue;
    }
    updates.push(update);
  }
  return updates;
}

/**
 * Transactions of at most 99 items (the lease check is the 100th), 250 counters per update and 1 MB of counter
 * names. An item with more counters is split across transactions (one item appears once per transaction); its
 * first part carries its total, its admissions and the counters of the values it admits. A closed cycle's
 * late item goes with the part that carries the cycle's total.
 */
function packTransactions(updates: readonly RollupUpdate[]): RollupUpdate[][] {
  const lates = new Map(updates.filter((u) => u.kind === 'late').map((u) => [itemKeyOf('cycle', u.period, u.usageType), u]));
  const groups: RollupUpdate[][] = [];
  for (const update of updates) {
    if (update.kind === 'late') continue;
    const admitted = new Set(Object.entries(update.admit ?? {}).flatMap(([dimension, a]) => a.values.map((v) => `${dimension === 'channel' ? 'c#' : 'f#'}${v}`)));
    const names = [...update.counters.keys()].sort((a, b) => Number(admitted.has(b)) - Number(admitted.has(a)));
    for (let i = 0; i === 0 || i < names.length; i += MAX_COUNTERS_PER_UPDATE) {
      const part: RollupUpdate = { ...update, counters: new Map(names.slice(i, i + MAX_COUNTERS_PER_UPDATE).map((n) => [n, update.counters.get(n) as NanoUnits])) };
      if (i > 0) {
        part.total = 0n;
        delete part.requests;
        if (part.late !== undefined) part.late = 0n;
        delete part.admit;
      }
      const late = i === 0 && update.kind === 'cycle' ? lates.get(itemKeyOf('cycle', update.period, update.usageType)) : undefined;
      groups.push(late ? [part, late] : [part]);
    }
  }
  const transactions: RollupUpdate[][] = [];
  let current: RollupUpdate[] = [];
  let keys = new Set<string>();
  let bytes = 0;
  for (const group of groups) {
    const groupBytes = group.reduce((sum, u) => sum + [...u.counters.keys()].reduce((s, n) => s + Buffer.byteLength(n, 'utf8'), 0), 0);
    const clash = group.some((u) => keys.has(itemKeyOf(u.kind, u.period, u.usageType, u.member)));
    if (current.length > 0 && (clash || current.length + group.length > MAX_ITEMS_PER_REPAIR || bytes + groupBytes > MAX_COUNTER_BYTES_PER_CHUNK)) {
      transactions.push(current);
      current = [];
      keys = new Set();
      bytes = 0;
    }
    current.push(...group);
    for (const u of group) keys.add(itemKeyOf(u.kind, u.period, u.usageType, u.member));
    bytes += groupBytes;
  }
  if (current.length > 0) transactions.push(current);
  return transactions;
}

function describe(update: RollupUpdate): RepairedItem {
  return {
    item: rollupSortKey(update.kind, update.period, update.usageType, update.member),
    total: toDecimalString(update.total),
    counters: Object.fromEntries([...update.counters].map(([name, delta]) => [name, toDecimalString(delta)])),
  };
}

const itemKeyOf = (kind: RollupUpdate['kind'], period: string, usageType: string, member?: string) => rollupSortKey(kind, period, usageType, member);

/** Whether a rollup row is of a target cycle: a day item by its local date (cycles start at local midnight), the others by their cycle start. */
function belongsTo(row: RollupRow, days: readonly { from: string; to: string }[], cycles: ReadonlySet<string>): boolean {
  return row.kind === 'day' ? days.some((d) => d.from <= row.period && row.period <= d.to) : cycles.has(row.period);
}

function daysOf(cycleStart: string, subject: Subject): { from: string; to: string } {
  const cycle = cycleContaining(cycleStart, subject);
  return { from: localDate(cycle.start, subject.timeZone), to: localDate(new Date(Date.parse(cycle.end) - 1), subject.timeZone) };
}

/** The rollup items a repair reads: the one cycle's, or those of every cycle that may still be in the ledger. */
function rangeOf(subject: Subject, only: Cycle | undefined, now: Date, retentionDays: number): RollupRange {
  if (only) {
    const days = daysOf(only.start, subject);
    return { fromDay: days.from, toDay: days.to, fromCycle: only.start, toCycle: only.start };
  }
  // A cycle lasts at most 31 days; one that started a little before the retention may hold its last events.
  const from = new Date(now.getTime() - (retentionDays + 32) * 86_400_000);
  return { fromDay: localDate(from, subject.timeZone), toDay: '\uffff', fromCycle: from.toISOString(), toCycle: '\uffff' };
}

/** The key of one lane's checkpoint on one shard in a snapshot's map. */
const laneCheckpointKey = (shardId: string, lane: string) => `${shardId}\u0000${lane}`;

async function readOwnCheckpoints(shards: readonly string[], lanes: readonly string[], rollups: Pick<RepairStore, 'readCheckpoints'>): Promise<Map<string, string>> {
  // Every shard's at once: the fewer round trips between the two reads, the likelier they agree.
  const read = await Promise.all(
    shards.map(async (shardId) => {
      const stored = await rollups.readCheckpoints(shardId, lanes);
      return lanes.map((lane) => [laneCheckpointKey(shardId, lane), stored.get(lane)] as const);
    }),
  );
  return new Map(read.flat().filter((entry): entry is readonly [string, string] => entry[1] !== undefined));
}

function sameCheckpoints(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  return a.size === b.size && [...a].every(([shard, sequence]) => b.get(shard) === sequence);
}

/** Checkpoints are stored padded (`padSequenceNumber`); the stream takes a number of 21 to 40 digits. */
const unpad = (sequenceNumber: string | undefined) => (sequenceNumber === undefined ? undefined : sequenceNumber.replace(/^0+/, '').padStart(21, '0'));

/** The result as an operator reads it: what was compared, then one line per item changed. */
export function repairTable(result: RepairResult): string {
  const verb = result.dryRun ? 'would change' : 'changed';
  const lines = [
    `repair of ${result.subject}: ${result.events} events in the ledger over ${result.cycles.length} cycle(s) (${result.cycles.join(', ') || 'none'}), ${result.inFlight} in flight; ${result.items.length} item(s) ${verb}, ${result.parkedRemoved} parked record(s) applied${result.dryRun ? ' (dry run: nothing changed)' : ''}`,
    ...(result.tooOld.length > 0 ? [`left alone, older than the ledger's retention: ${result.tooOld.join(', ')}`] : []),
    ...result.items.map(
      (i) =>
        `${i.item.padEnd(48)}  total ${i.total.startsWith('-') ? i.total : `+${i.total}`}  ${Object.entries(i.counters)
          .map(([n, d]) => `${n} ${d.startsWith('-') ? d : `+${d}`}`)
          .join(', ')}`,
    ),
  ];
  return lines.join('\n');
}
