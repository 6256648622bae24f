import { type AggregateDeps, aggregateChanges } from '../../functions/core/aggregate';
import type { LedgerChange } from '../../functions/core/rollups';
import { InMemoryRollupWriter, pad40 } from '../support/fakes';
import { generateChanges, modelTotals, sorted } from './rollup-model';

const SHARD = 'shardId-00000001700000000000-abcdef01';
const CHUNK = 4; // small chunks: a batch of 60 records makes many of them

class Crash extends Error {
  override readonly name = 'Crash';
}

/** Applies the changes that the rollups must reflect and returns the independent model. */
const expectedTotals = (changes: readonly LedgerChange[]) => sorted(modelTotals(changes));

describe('aggregateChanges', () => {
  test('applies every record exactly once and moves the checkpoint to the last record', async () => {
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
    expect(rollups.checkpoints.get(SHARD)).toBe(pad40(changes.at(-1)?.sequenceNumber ?? ''));
  });

  test('with the default chunk size a small batch is one transaction', async () => {
    // Arrange
    const changes = generateChanges(10, 12);
    const rollups = new InMemoryRollupWriter();

    // Act
    const result = await aggregateChanges(SHARD, changes, { rollups });

    // Assert
    expect(rollups.attempts).toHaveLength(1);
    expect(result).toMatchObject({ applied: 10, skipped: 0, chunks: 1 });
    expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
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
    expect(retry).toMatchObject({ applied: 0, skipped: 60, chunks: 0 });
    expect(rollups.attempts).toHaveLength(commitsBefore);
  });

  test('checkpoints are per shard: another shard at a later sequence number skips nothing here', async () => {
    // Arrange
    const changes = generateChanges(20, 14);
    const rollups = new InMemoryRollupWriter();
    rollups.checkpoints.set('shardId-other', pad40('99999999'));

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

    /** Runs the batch until it crashes after chunk CRASH_AFTER; returns the writer and how many records were applied. */
    async function crashedRun(batch: readonly LedgerChange[] = changes) {
      const rollups = new InMemoryRollupWriter();
      let appliedRecords = 0;
      const onChunk: AggregateDeps['onChunk'] = (event) => {
        appliedRecords += event.records;
        if (event.index === CRASH_AFTER) throw new Crash('Lambda timed out');
      };
      await expect(aggregateChanges(SHARD, batch, { rollups, maxItemsPerChunk: CHUNK, onChunk })).rejects.toThrow(Crash);
      return { rollups, appliedRecords };
    }

    test('the crashed run applied exactly the records of chunks 0..k', async () => {
      // Act
      const { rollups, appliedRecords } = await crashedRun();

      // Assert
      expect(appliedRecords).toBeGreaterThan(0);
      expect(appliedRecords).toBeLessThan(changes.length);
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes.slice(0, appliedRecords)));
      expect(rollups.checkpoints.get(SHARD)).toBe(pad40(changes[appliedRecords - 1]?.sequenceNumber ?? ''));
    });

    test('a retry with the same records gives the model totals', async () => {
      // Arrange
      const { rollups, appliedRecords } = await crashedRun();

      // Act
      const retry = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
      expect(retry).toMatchObject({ skipped: appliedRecords, applied: changes.length - appliedRecords });
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
      await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: 7 });

      // Assert
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
    });

    test.each([
      ['from the middle of the last committed chunk', -2],
      ['from the first record not applied', 0],
    ])('a retry starting %s gives the model totals', async (_label, shift) => {
      // Arrange
      const { rollups, appliedRecords } = await crashedRun();
      const retryBatch = changes.slice(appliedRecords + shift);

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
    const FAILING_COMMIT = 3; // a chunk of several records, so its first and last records differ

    async function failingRun() {
      const rollups = new InMemoryRollupWriter();
      const failure = new Error('TransactionCanceledException: ThrottlingError');
      rollups.beforeCommit = (_shard, _chunk, attempt) => {
        if (attempt === FAILING_COMMIT) throw failure;
      };
      const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK });
      return { rollups, result, failure };
    }

    test('reports the failing chunk’s first record and applies nothing from there on', async () => {
      // Act
      const { rollups, result, failure } = await failingRun();

      // Assert
      const failedChunk = rollups.attempts[FAILING_COMMIT];
      expect(rollups.attempts).toHaveLength(FAILING_COMMIT + 1);
      expect(failedChunk?.result).toBe('threw');
      expect(failedChunk?.firstSequenceNumber).not.toBe(failedChunk?.lastSequenceNumber);
      expect(result.failedSequenceNumber).toBe(failedChunk?.firstSequenceNumber);
      expect(result.error).toBe(failure);
      const failedAt = changes.findIndex((c) => c.sequenceNumber === result.failedSequenceNumber);
      expect(failedAt).toBeGreaterThan(0);
      expect(result.applied).toBe(failedAt);
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes.slice(0, failedAt)));
      expect(rollups.checkpoints.get(SHARD)).toBe(pad40(changes[failedAt - 1]?.sequenceNumber ?? ''));
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

  describe('when a concurrent invocation of the same shard advances the checkpoint mid-way', () => {
    const changes = generateChanges(60, 41);

    test.each([
      ['exactly to the end of the next chunk', 0],
      ['into the middle of a later chunk', 9],
      ['to the end of the batch', 1000],
    ])('re-reads the checkpoint and still applies every record once (%s)', async (_label, extra) => {
      // Arrange: before our second commit, "another invocation" applies a prefix of the batch with its own chunking.
      const rollups = new InMemoryRollupWriter();
      const results: string[] = [];
      let interfered = false;
      rollups.beforeCommit = async (shard, chunk, attempt) => {
        if (interfered || attempt !== 1) return;
        interfered = true;
        const through = changes.findIndex((c) => c.sequenceNumber === chunk.lastSequenceNumber) + 1 + extra;
        const other = await aggregateChanges(shard, changes.slice(0, through), { rollups, maxItemsPerChunk: 6 });
        expect(other.failedSequenceNumber).toBeUndefined();
      };

      // Act
      const result = await aggregateChanges(SHARD, changes, { rollups, maxItemsPerChunk: CHUNK, onChunk: (e) => void results.push(e.result) });

      // Assert
      expect(interfered).toBe(true);
      expect(results).toContain('already-applied');
      expect(result.failedSequenceNumber).toBeUndefined();
      expect(sorted(rollups.totals)).toEqual(expectedTotals(changes));
      expect(rollups.checkpoints.get(SHARD)).toBe(pad40(changes.at(-1)?.sequenceNumber ?? ''));
    });
  });
});
