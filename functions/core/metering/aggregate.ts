import type { CommitResult, RollupWriter } from './metering-ports';
import {
  type BreakdownPolicy,
  type Chunk,
  ChunkRefusedError,
  CycleItemsChangedError,
  type CycleState,
  changesCounters,
  cycleItemKey,
  DEFAULT_BREAKDOWNS,
  EMPTY_CYCLE_STATE,
  type LaneRun,
  type LedgerChange,
  laneOf,
  OTHER,
  padSequenceNumber,
  parseCycleItemKey,
  planChunks,
  withAdmitted,
} from './rollups';

/**
 * Fold a batch of ledger stream records into the rollups, exactly once.
 * 1. Drop records at or below their lane's checkpoint (one per shard and lane): a retried batch
 *    skips what it already applied, whichever records that was.
 * 2. Fold the rest, grouped by lane across the batch, into chunks of at most 100 transaction items
 *    (rollup items plus one checkpoint per lane), with each channel and feature placed by what its cycle
 *    item has admitted (read once for a cycle item this process has not met).
 * 3. Commit each chunk with its lane's checkpoint in one write (the store keeps sparse deltas in the lane item,
 *    core/metering/pending.ts). On failure, report the first record not
 *    applied: Lambda redelivers from there, and step 1 skips the later records that were applied.
 *    A commit that finds a cycle item changed since it was planned (closed, or values admitted by another
 *    writer) writes nothing; the item is read again and the rest is planned anew, so that a closed cycle's
 *    late events count as adjustments and no cycle admits past its limits. A chunk DynamoDB refuses for
 *    good is committed record by record, and a record refused alone is parked (`ParkedRecord`).
 */

export const MAX_ITEMS_PER_TRANSACTION = 100;

export interface AggregateDeps {
  rollups: RollupWriter;
  maxItemsPerChunk?: number;
  /** Cycle items known to be closed (`cycleItemKey`); a cycle never reopens, so a process may keep this set across batches. */
  closedCycles?: Set<string>;
  /**
   * What cycle items are known to have admitted of their breakdowns. Admissions only grow, so a process may
   * keep this across batches: a value it does not know yet is planned as new, and a commit that finds the
   * item moved on reads it again.
   */
  cycleStates?: Map<string, CycleState>;
  breakdowns?: BreakdownPolicy;
  /** Observes each commit (tests inject crashes here; the handler counts metrics). */
  onChunk?: (event: { index: number; result: 'committed' | 'already-applied' | 'skipped-empty'; records: number; items: number }) => void | Promise<void>;
}

export interface AggregateResult {
  /** Sequence number of the first record not applied, when a commit failed. */
  failedSequenceNumber?: string;
  error?: unknown;
  applied: number;
  /** Records DynamoDB refused on their own, parked with their reason (`ParkedRecord`). */
  parked: { sequenceNumber: string; subject: string; reason: string }[];
  skipped: number;
  chunks: number;
}

export async function aggregateChanges(shardId: string, changes: readonly LedgerChange[], deps: AggregateDeps): Promise<AggregateResult> {
  // TTL expiries move no counter: there is nothing to apply, once or again.
  let remaining = changes.filter(changesCounters);
  const result: AggregateResult = { applied: changes.length - remaining.length, parked: [], skipped: 0, chunks: 0 };
  let index = 0;
  const closedCycles = deps.closedCycles ?? new Set<string>();
  let replans = 0;
  const cycleStates = deps.cycleStates ?? new Map<string, CycleState>();
  const breakdowns = deps.breakdowns ?? DEFAULT_BREAKDOWNS;
  const learn = async (keys: readonly string[]) => {
    if (cycleStates.size + keys.length > MAX_KNOWN_CYCLES) cycleStates.clear();
    const states = await deps.rollups.readCycleStates(keys.map(parseCycleItemKey));
    for (const key of keys) {
      const state = states.get(key);
      // An item not stored yet has admitted nothing; it is not remembered, as another writer may create it.
      if (state) cycleStates.set(key, state);
      if (state?.closed) closedCycles.add(key);
    }
  };
  // A committed chunk's admissions are known from now on: the next batch plans with them.
  const remember = (chunk: Chunk) => {
    for (const update of chunk.updates) {
      if (!update.admit) continue;
      const key = cycleItemKey(update.subject, update.period, update.usageType);
      cycleStates.set(key, withAdmitted(cycleStates.get(key) ?? EMPTY_CYCLE_STATE, update.admit));
    }
  };
  const maxItems = deps.maxItemsPerChunk ?? MAX_ITEMS_PER_TRANSACTION;
  /**
   * A refused chunk is narrowed to the records that cause it: each of its records is committed alone, in
   * order, and one that is refused alone is parked. Undefined when the batch goes on (planned anew).
   */
  const narrow = async (chunk: Chunk): Promise<AggregateResult | undefined> => {
    const bySequence = new Map(remaining.map((c) => [c.sequenceNumber, c]));
    for (const sequenceNumber of chunk.sequenceNumbers) {
      const change = bySequence.get(sequenceNumber) as LedgerChange;
      const [alone] = planChunks([change], maxItems, closedCycles, cycleStates, breakdowns);
      if (alone && alone.updates.length > 0) {
        try {
          if ((await deps.rollups.commitChunk(shardId, alone)) === 'already-applied') return undefined;
          remember(alone);
          result.applied += 1;
        } catch (error) {
          if (error instanceof CycleItemsChangedError && ++replans <= MAX_REPLANS) {
            await learn(error.cycles);
            return undefined;
          }
          if (!(error instanceof ChunkRefusedError)) return { ...result, failedSequenceNumber: remaining[0]?.sequenceNumber, error };
          if ((await deps.rollups.park(shardId, alone.runs[0] as LaneRun, change, error.message)) === 'already-applied') return undefined;
          result.parked.push({ sequenceNumber, subject: (change.newImage ?? change.oldImage)?.subject ?? '', reason: error.message });
        }
      } else {
        result.applied += 1;
      }
      remaining = remaining.filter((c) => c.sequenceNumber !== sequenceNumber);
    }
    return undefined;
  };
  // Each pass starts from the stored checkpoints. A commit that finds one moved (another invocation of
  // this shard got there first) starts a new pass, so no record is skipped or applied twice.
  replan: while (remaining.length > 0) {
    const checkpoints = await deps.rollups.readCheckpoints(shardId, [...new Set(remaining.map(laneOf))]);
    const pending = remaining.filter((c) => {
      const checkpoint = checkpoints.get(laneOf(c));
      return checkpoint === undefined || padSequenceNumber(c.sequenceNumber) > checkpoint;
    });
    result.skipped += remaining.length - pending.length;
    remaining = pending;
    const unknown = cyclesToLearn(pending, cycleStates, breakdowns);
    if (unknown.length > 0) await learn(unknown);
    for (const chunk of planChunks(pending, maxItems, closedCycles, cycleStates, breakdowns)) {
      result.chunks += 1;
      let outcome: CommitResult | 'skipped-empty' = 'skipped-empty';
      try {
        if (chunk.updates.length > 0) outcome = await deps.rollups.commitChunk(shardId, chunk);
      } catch (error) {
        // Each replan learns what changed; items that keep changing under it (a hot cycle on many shards) end
        // the batch as a failure, retried from its first record not applied.
        if (error instanceof CycleItemsChangedError && ++replans <= MAX_REPLANS) {
          await learn(error.cycles);
          result.chunks -= 1;
          continue replan;
        }
        if (error instanceof ChunkRefusedError && chunk.sequenceNumbers.length > 0) {
          const failed = await narrow(chunk);
          if (failed) return failed;
          continue replan;
        }
        // `remaining` keeps stream order: its head is the first record not applied.
        return { ...result, failedSequenceNumber: remaining[0]?.sequenceNumber, error };
      }
      await deps.onChunk?.({ index: index++, result: outcome, records: chunk.sequenceNumbers.length, items: chunk.updates.length });
      if (outcome === 'already-applied') continue replan;
      remember(chunk);
      result.applied += chunk.sequenceNumbers.length;
      const done = new Set(chunk.sequenceNumbers);
      remaining = remaining.filter((c) => !done.has(c.sequenceNumber));
    }
  }
  return result;
}

const MAX_REPLANS = 20;
/** A process remembers this many cycle items' breakdown states at most (each up to a few KB). */
const MAX_KNOWN_CYCLES = 10_000;

/** Cycle items whose breakdown values a batch names, of which nothing is known yet: read once, before planning. */
function cyclesToLearn(changes: readonly LedgerChange[], known: ReadonlyMap<string, CycleState>, breakdowns: BreakdownPolicy): string[] {
  const keys = new Set<string>();
  for (const change of changes) {
    for (const image of [change.oldImage, change.newImage]) {
      if (!image) continue;
      const channel = image.channel !== undefined && image.channel !== OTHER;
      const feature = image.feature !== undefined && image.feature !== OTHER && breakdowns.kept(image.usageType)?.has(image.feature) !== true;
      if (!channel && !feature) continue;
      const key = cycleItemKey(image.subject, image.cycleStart, image.usageType);
      if (!known.has(key)) keys.add(key);
    }
  }
  return [...keys];
}
