import { describe, expect, test } from '@jest/globals';
import { AWS, type CloseCost, closeMs, inFlightNeeded, type ProjectionInput, project } from '../../../bench/closes/projection';

/**
 * The arithmetic behind the closes bench's projection for AWS. The costs here are made up, so that every
 * expected figure can be worked out by hand.
 */

// 20 DynamoDB round trips × 8 ms + 1 S3 round trip × 30 ms = 190 ms a close.
const cost: CloseCost = { dynamodbRoundTrips: 20, s3RoundTrips: 1, writeUnits: { accounts: 8, subjects: 2 }, readUnits: { rollups: 3 } };

const input = (workspaces: number, inFlight: number): ProjectionInput => ({
  workspaces,
  cost,
  inFlight,
  hotItems: [{ name: 'summary counters', items: 16, writesPerClose: 2 }],
  dispatch: { idsPerBatch: 10, batchesInFlight: 16, idsPerPage: 16_000 },
  summaryReadsInFlight: 16,
});

describe('project', () => {
  test('one close takes its round trips at the stated latencies', () => {
    // Act
    const ms = closeMs(cost);

    // Assert
    expect(ms).toBe(20 * AWS.dynamodbRoundTripMs + AWS.s3RoundTripMs);
    expect(ms).toBe(190);
  });

  test('few closes in flight: concurrency binds, and a million workspaces miss 15 minutes', () => {
    // Act: 50 in flight / 0.19 s = 263.2 closes/s, below the write bound 4,000 / 8 = 500
    const p = project(input(1_000_000, 50));

    // Assert
    expect(p.binding.name).toMatch(/^concurrency/);
    expect(p.binding.closesPerSecond).toBeCloseTo(50_000 / 190, 6);
    expect(p.closesSeconds).toBeCloseTo(1_000_000 / (50_000 / 190), 3); // 3,800 s
    expect(p.totalSeconds / 60).toBeGreaterThan(15);
  });

  test('enough closes in flight: the busiest table binds at its new-table write throughput', () => {
    // Act: 500 in flight / 0.19 s = 2,631.6 closes/s; accounts 4,000 / 8 = 500 closes/s binds
    const p = project(input(1_000_000, 500));

    // Assert
    expect(p.binding.name).toMatch(/^accounts writes/);
    expect(p.binding.closesPerSecond).toBe(500);
    expect(p.closesSeconds).toBe(2_000);
  });

  test('at 1,112 closes/s a million workspaces close within 15 minutes; at 1,111 they do not', () => {
    // Arrange: only the concurrency bound (tables warmed far above it)
    const aws = { ...AWS, newTableWriteUnitsPerSecond: 1e9, newTableReadUnitsPerSecond: 1e9, partitionWriteUnitsPerSecond: 1e9 };
    const needed = inFlightNeeded(1_000_000, 900, 190); // ceil(1,111.1 closes/s × 0.19 s) = 212

    // Act
    const at = project({ ...input(1_000_000, needed), aws });
    const below = project({ ...input(1_000_000, needed - 1), aws });

    // Assert
    expect(needed).toBe(212);
    expect(at.totalSeconds).toBeLessThanOrEqual(900);
    expect(below.totalSeconds).toBeGreaterThan(900);
  });

  test('the scheduler sends index pages then batches of ten, sixteen at a time; the summary reads every report', () => {
    // Act
    const p = project(input(1_000_000, 50));

    // Assert: 63 pages × 8 ms + 100,000 batches / 16 × 10 ms = 0.504 + 62.5 s; 1,000,000 / 16 × 30 ms = 1,875 s
    expect(p.dispatchSeconds).toBeCloseTo(63.004, 3);
    expect(p.summarySeconds).toBeCloseTo(1_875, 6);
    expect(p.totalSeconds).toBe(Math.max(p.closesSeconds, p.dispatchSeconds));
  });
});
