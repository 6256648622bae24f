import { type AggregateDeps, aggregateChanges } from '../../../functions/core/metering/aggregate';
import type { LedgerChange } from '../../../functions/core/metering/rollups';
import { checkpointOf, InMemoryRollupWriter, pad40 } from '../../support/fakes';
import { generateChanges, laneOfChange, modelTotals, sorted } from './rollup-model';

const SHARD = 'shardId-00000001700000000000-abcdef01';
const CHUNK = 12; // small chunks: a batch of 60 records makes many of them

class Crash extends Error {
  override readonly name = 'Crash';
}

/** Applies the changes that the rollups must reflect and returns the independent model. */
const expectedTotals = (changes: readonly LedgerChange[]) => sorted(modelTotals(changes));

/** Each lane's checkpoint after `applied`: the padded sequence number of its last record that moves a counter. */
function expectedCheckpoints(applied: readonly LedgerChange[]): [string, string][] {
  const last = new Map<string, string>();
  for (const change of applied) if (!change.expired) last.set(checkpointOf(SHARD, laneOfChange(change)), pad40(change.sequenceNumber));
  return [...last].sort();
}

/** The records the committed chunks applied. */
const committedRecords = (rollups: InMemoryRollupWriter) => new Set(rollups.attempts.filter((a) => a.result === 'committed').flatMap((a) => a.sequenceNumbers));

describe('aggregateChanges', () => {
  test('applies every record exactly once and moves each lane’s checkpoint to its last record', async () => {
    // Arrange
    const changes = generateChanges(60, 11);
    const rollups = new InMemoryRollupWriter();

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

    // Assert
    expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    expect(result).toMatchObject({ applied: 60, skipped: 0 });
    expect(result.failedSequenceNumber).toBeUndefined();
    expect(result.chunks).toBeGreaterThan(5);
    expect([...rollups.checkpoints].sort()).toEqual(expectedCheckpoints(changes));
  });

  test('with the default chunk size a small batch is one transaction per lane it touches, each with all of that lane’s records', async () => {
    // Arrange: the records that move counters, grouped by lane in the order each lane's first record arrives
    const changes = generateChanges(10, 12);
    const byLane = new Map<string, string[]>();
    for (const change of changes.filter((c) => !c.expired)) byLane.set(laneOfChange(change), [...(byLane.get(laneOfChange(change)) ?? []), change.sequenceNumber]);
    expect(byLane.size).toBeGreaterThan(1); // the batch spans several lanes
    const rollups = new InMemoryRollupWriter();

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups });

    // Assert: one committed transaction per lane, holding that lane's records in stream order
    expect(rollups.attempts.map((a) => [a.sequenceNumbers, a.result])).toEqual([...byLane.values()].map((records) => [records, 'committed']));
    expect(result).toMatchObject({ applied: 10, skipped: 0, chunks: byLane.size });
    expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    expect([...rollups.checkpoints].sort()).toEqual(expectedCheckpoints(changes));
  });

  test('a retried identical batch applies nothing more', async () => {
    // Arrange
    const changes = generateChanges(60, 13);
    const rollups = new InMemoryRollupWriter();
    await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });
    const commitsBefore = rollups.attempts.length;

    // Act
    const retry = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

    // Assert
    expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    // TTL expiries need no commit: they count as applied on every delivery.
    const expired = changes.filter((c) => c.expired).length;
    expect(retry).toMatchObject({ applied: expired, skipped: 60 - expired, chunks: 0 });
    expect(rollups.attempts).toHaveLength(commitsBefore);
  });

  test('checkpoints are per shard: another shard at a later sequence number skips nothing here', async () => {
    // Arrange
    const changes = generateChanges(20, 14);
    const rollups = new InMemoryRollupWriter();
    for (const lane of new Set(changes.map(laneOfChange))) rollups.checkpoints.set(checkpointOf('shardId-other', lane), pad40('99999999'));

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

    // Assert
    expect(result).toMatchObject({ applied: 20, skipped: 0 });
    expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
  });

  test('a batch of TTL expiries and cancelling changes writes nothing and still succeeds', async () => {
    // Arrange
    const image = { eventKey: '["test","e1"]', subject: 'ws_a', usageType: 'tokens', quantity: '5', hour: '2026-11-22T10', day: '2026-11-22', cycleStart: '2026-11-15T00:00:00.000Z' };
    const changes: LedgerChange[] = [
      { sequenceNumber: '5', oldImage: image, expired: true },
      { sequenceNumber: '6', newImage: image },
      { sequenceNumber: '7', oldImage: image },
    ];
    const rollups = new InMemoryRollupWriter();
    const seen: string[] = [];

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups, onChunk: (e) => void seen.push(e.result) });

    // Assert
    expect(rollups.attempts).toEqual([]);
    expect(rollups.totals.size).toBe(0);
    expect(seen).toEqual(['skipped-empty']);
    expect(result).toMatchObject({ applied: 3, skipped: 0 });
    expect(result.failedSequenceNumber).toBeUndefined();
  });

  describe('after a crash thrown from onChunk once chunk k has committed', () => {
    const changes = generateChanges(60, 21);
    const CRASH_AFTER = 3; // chunk index

    /** Runs the batch until it crashes after chunk CRASH_AFTER; returns the writer and the records it applied. */
    async function crashedRun(batch: readonly LedgerChange[] = changes) {
      const rollups = new InMemoryRollupWriter();
      const onChunk: AggregateDeps['onChunk'] = (event) => {
        if (event.index === CRASH_AFTER) throw new Crash('Lambda timed out');
      };
      await expect(aggregateChanges(SHARD, batch, { rollups, maxItemsPerChunk: CHUNK, onChunk })).rejects.toThrow(Crash);
      const applied = committedRecords(rollups);
      return { rollups, applied, appliedChanges: changes.filter((c) => applied.has(c.sequenceNumber)) };
    }

    test('the crashed run applied exactly the records of chunks 0..k, and each lane’s checkpoint is at its last of them', async () => {
      // Act
      const { rollups, applied, appliedChanges } = await crashedRun();

      // Assert
      expect(rollups.attempts.filter((a) => a.result === 'committed')).toHaveLength(CRASH_AFTER + 1);
      expect(applied.size).toBeGreaterThan(0);
      expect(applied.size).toBeLessThan(changes.length);
      expect(sorted(rollups.totals)).toEqual(expectedTotals(appliedChanges));
      expect([...rollups.checkpoints].sort()).toEqual(expectedCheckpoints(appliedChanges));
    });

    test('a retry with the same records gives the model totals', async () => {
      // Arrange
      const { rollups, applied } = await crashedRun();
      const expired = changes.filter((c) => c.expired).length;

      // Act
      const retry = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
      expect(retry).toMatchObject({ skipped: applied.size, applied: changes.length - applied.size });
      expect(expired).toBeGreaterThan(0); // expiries count as applied without a commit
    });

    test('a retry with more records appended gives the model totals of all of them', async () => {
      // Arrange
      const firstBatch = changes.slice(0, 40);
      const { rollups } = await crashedRun(firstBatch);

      // Act
      await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });

    test('a retry with a different chunk size gives the model totals', async () => {
      // Arrange
      const { rollups } = await crashedRun();

      // Act
      await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: 17 });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });

    test.each([
      ['from the first record not applied', 0],
      ['from a few records before it', -3],
    ])('a retry starting %s gives the model totals', async (_label, shift) => {
      // Arrange: Lambda redelivers from the record the handler reports, the first one not applied.
      const { rollups, applied } = await crashedRun();
      const firstNotApplied = changes.findIndex((c) => !c.expired && !applied.has(c.sequenceNumber));
      expect(firstNotApplied).toBeGreaterThan(3);
      const retryBatch = changes.slice(firstNotApplied + shift);

      // Act
      await aggregateChanges(SHARD, retryBatch, { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });

    test('a retry bisected into two halves gives the model totals', async () => {
      // Arrange
      const { rollups } = await crashedRun();

      // Act
      await aggregateChanges(SHARD, changes.slice(0, 30), { rollups, maxItemsPerChunk: CHUNK });
      await aggregateChanges(SHARD, changes.slice(30), { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });
  });

  describe('when a commit fails', () => {
    const changes = generateChanges(60, 31);
    const FAILING_COMMIT = 3;

    async function failingRun() {
      const rollups = new InMemoryRollupWriter();
      const failure = new Error('TransactionCanceledException: ThrottlingError');
      rollups.beforeCommit = (_shard, _chunk, attempt) => {
        if (attempt === FAILING_COMMIT) throw failure;
      };
      const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });
      return { rollups, result, failure };
    }

    test('reports the first record not applied, and applies nothing after the failing chunk', async () => {
      // Act
      const { rollups, result, failure } = await failingRun();

      // Assert
      expect(rollups.attempts).toHaveLength(FAILING_COMMIT + 1);
      expect(rollups.attempts[FAILING_COMMIT]?.result).toBe('threw');
      expect(result.error).toBe(failure);
      const applied = committedRecords(rollups);
      const firstNotApplied = changes.find((c) => !c.expired && !applied.has(c.sequenceNumber));
      expect(result.failedSequenceNumber).toBe(firstNotApplied?.sequenceNumber);
      const appliedChanges = changes.filter((c) => applied.has(c.sequenceNumber));
      expect(sorted(rollups.totals)).toEqual(expectedTotals(appliedChanges));
      expect([...rollups.checkpoints].sort()).toEqual(expectedCheckpoints(appliedChanges));
    });

    test('redelivery from the reported record completes the totals', async () => {
      // Arrange
      const { rollups, result } = await failingRun();
      rollups.beforeCommit = undefined;
      const failedAt = changes.findIndex((c) => c.sequenceNumber === result.failedSequenceNumber);

      // Act
      const retry = await aggregateChanges(SHARD, changes.slice(failedAt), { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(retry.failedSequenceNumber).toBeUndefined();
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });
  });

  describe('when a concurrent invocation of the same shard moves checkpoints mid-way', () => {
    const changes = generateChanges(60, 41);

    test.each([
      ['through the last record of the next chunk', 0],
      ['a few records further', 9],
      ['to the end of the batch', 1000],
    ])('re-reads the checkpoints and still applies every record once (%s)', async (_label, extra) => {
      // Arrange: before our second commit, "another invocation" applies a prefix of the batch with its own chunking.
      const rollups = new InMemoryRollupWriter();
      const results: string[] = [];
      let interfered = false;
      rollups.beforeCommit = async (shard, chunk, attempt) => {
        if (interfered || attempt !== 1) return;
        interfered = true;
        const through = Math.max(...chunk.sequenceNumbers.map((n) => changes.findIndex((c) => c.sequenceNumber === n))) + 1 + extra;
        const other = await aggregateChanges(shard, changes.slice(0, through), { rollups, maxItemsPerChunk: 17 });
        expect(other.failedSequenceNumber).toBeUndefined();
      };

      // Act
      const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK, onChunk: (e) => void results.push(e.result) });

      // Assert
      expect(interfered).toBe(true);
      expect(results).toContain('already-applied');
      expect(result.failedSequenceNumber).toBeUndefined();
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
      expect([...rollups.checkpoints].sort()).toEqual(expectedCheckpoints(changes));
    });
  });
});
