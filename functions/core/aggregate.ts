import type { CommitResult, RollupWriter } from './ports';
import { CyclesClosedError, type LedgerChange, padSequenceNumber, planChunks } from './rollups';

/**
 * Fold a batch of ledger stream records into the rollups, exactly once.
 * 1. Drop records at or below the shard's checkpoint: a retried batch skips what it already applied.
 * 2. Fold the rest into chunks of at most 99 rollup items (+1 checkpoint item = the 100-item transaction limit).
 * 3. Commit each chunk with its checkpoint in one transaction; on failure, report the chunk's first record.
 *    A commit that finds a cycle closed since it was planned writes nothing; the cycle joins `closedCycles`
 *    and the rest is planned again, so that the cycle's late events are counted as adjustments.
 */

export const MAX_ROLLUP_ITEMS_PER_CHUNK = 99;

export interface AggregateDeps {
  rollups: RollupWriter;
  maxItemsPerChunk?: number;
  /** Cycle items known to be closed (`cycleItemKey`); a cycle never reopens, so a process may keep this set across batches. */
  closedCycles?: Set<string>;
  /** Observes each commit (tests inject crashes here; the handler counts metrics). */
  onChunk?: (event: { index: number; result: 'committed' | 'already-applied' | 'skipped-empty'; records: number; items: number }) => void | Promise<void>;
}

export interface AggregateResult {
  /** Sequence number of the first record not applied, when a commit failed. */
  failedSequenceNumber?: string;
  error?: unknown;
  applied: number;
  skipped: number;
  chunks: number;
}

export async function aggregateChanges(shardId: string, changes: readonly LedgerChange[], deps: AggregateDeps): Promise<AggregateResult> {
  const result: AggregateResult = { applied: 0, skipped: 0, chunks: 0 };
  let remaining = [...changes];
  let index = 0;
  const closedCycles = deps.closedCycles ?? new Set<string>();
  // Each pass starts from the stored checkpoint. A commit that finds the checkpoint moved (another
  // invocation of this shard got there first) starts a new pass, so no record is skipped or applied twice.
  replan: while (remaining.length > 0) {
    const checkpoint = await deps.rollups.readCheckpoint(shardId);
    const pending = checkpoint === undefined ? remaining : remaining.filter((c) => padSequenceNumber(c.sequenceNumber) > checkpoint);
    result.skipped += remaining.length - pending.length;
    remaining = pending;
    for (const chunk of planChunks(pending, deps.maxItemsPerChunk ?? MAX_ROLLUP_ITEMS_PER_CHUNK, closedCycles)) {
      result.chunks += 1;
      let outcome: CommitResult | 'skipped-empty' = 'skipped-empty';
      try {
        if (chunk.updates.length > 0) outcome = await deps.rollups.commitChunk(shardId, chunk);
      } catch (error) {
        if (error instanceof CyclesClosedError) {
          for (const cycle of error.cycles) closedCycles.add(cycle);
          result.chunks -= 1;
          continue replan;
        }
        return { ...result, failedSequenceNumber: chunk.firstSequenceNumber, error };
      }
      await deps.onChunk?.({ index: index++, result: outcome, records: chunk.records, items: chunk.updates.length });
      if (outcome === 'already-applied') continue replan;
      result.applied += chunk.records;
      remaining = remaining.slice(chunk.records);
    }
  }
  return result;
}
