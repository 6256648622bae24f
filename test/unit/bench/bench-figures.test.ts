import { describe, expect, test } from '@jest/globals';
import { type Correctness, check, type Figures, figuresOf, type JudgedRow, judge } from '../../../bench/pipeline/figures';
import type { PhaseReport, RunReport } from '../../../bench/pipeline/pipeline-protocol';
import { PRICES } from '../../../bench/pipeline/prices';
import { usageEvent } from '../../../testkit/events';
import { GroundTruth, type TestEvent } from '../../../testkit/ground-truth';

/**
 * The arithmetic behind the pipeline benchmark's table and targets. Each run here is made up, so that
 * every expected figure can be worked out by hand from it.
 */

const event = (subject: string, id: string, time: string, quantity: number): TestEvent => usageEvent({ subject, id, time, quantity, source: 'bench/test' });

function truth(): GroundTruth {
  const t = new GroundTruth({ ws_a: 1, ws_b: 1 });
  t.accept(event('ws_a', 'a1', '2026-11-24T10:15:00Z', 5));
  t.accept(event('ws_a', 'a2', '2026-11-24T10:45:00Z', 3));
  t.accept(event('ws_a', 'a3', '2026-11-24T11:10:00Z', 2));
  t.accept(event('ws_b', 'b1', '2026-11-24T10:00:00Z', 7));
  return t;
}

const HOUR_10 = '2026-11-24T10:00:00.000Z';
const HOUR_11 = '2026-11-24T11:00:00.000Z';
const DAY = '2026-11-24T00:00:00.000Z';
const CYCLE = '2026-11-01T00:00:00.000Z';

describe('check', () => {
  test('counters that hold every event once are exact', () => {
    // Arrange
    const counted = {
      ws_a: { hour: { [HOUR_10]: 8, [HOUR_11]: 2 }, day: { [DAY]: 10 }, cycle: { [CYCLE]: 10 } },
      ws_b: { hour: { [HOUR_10]: 7 }, day: { [DAY]: 7 }, cycle: { [CYCLE]: 7 } },
    };

    // Act
    const result = check(truth(), counted, ['ws_a', 'ws_b']);

    // Assert
    expect(result).toEqual({ exact: true, mismatchedBuckets: 0, truth: 17, counted: 17, excess: 0, summary: 'exact' });
  });

  test('a duplicate counted twice shows in its hour, day and cycle, and as a share of the truth', () => {
    // Arrange: ws_a's event of 3 at 10:45 counted twice; a bucket with no event in it
    const counted = {
      ws_a: { hour: { [HOUR_10]: 11, [HOUR_11]: 2 }, day: { [DAY]: 13 }, cycle: { [CYCLE]: 13 } },
      ws_b: { hour: { [HOUR_10]: 7, '2026-11-24T12:00:00.000Z': 1 }, day: { [DAY]: 7 }, cycle: { [CYCLE]: 7 } },
    };

    // Act
    const result = check(truth(), counted, ['ws_a', 'ws_b']);

    // Assert: 4 buckets off; over the cycles 20 against 17, +3 = +17.6%
    expect(result).toEqual({ exact: false, mismatchedBuckets: 4, truth: 17, counted: 20, excess: 3, summary: '+17.6% (4 buckets off)' });
  });

  test('a subject with no counters at all is off in every bucket it should have', () => {
    // Act
    const result = check(truth(), { ws_a: { hour: { [HOUR_10]: 8, [HOUR_11]: 2 }, day: { [DAY]: 10 }, cycle: { [CYCLE]: 10 } } }, ['ws_a', 'ws_b']);

    // Assert
    expect(result).toMatchObject({ exact: false, mismatchedBuckets: 3, truth: 17, counted: 10, excess: -7, summary: '-41.2% (3 buckets off)' });
  });
});

function phase(overrides: Partial<PhaseReport>): PhaseReport {
  return {
    messages: 0,
    uniqueEvents: 0,
    tables: {},
    transactions: { transactions: 0, cancelled: 0, items: 0, sizedUnits: 0, minimumUnits: 0 },
    functions: {},
    handlerCpuMs: 0,
    processCpuMs: 0,
    seconds: 0,
    peakRssMb: 0,
    ...overrides,
  };
}

const exact: Correctness = { exact: true, mismatchedBuckets: 0, truth: 1000, counted: 1000, excess: 0, summary: 'exact' };

/** 1,100 messages, 1,000 unique events: 1,000 ledger puts, 10 transactions of 300 items, 2 ingest and 1 aggregate invocations. */
function report(sustained?: RunReport['throughput']['sustained']): RunReport {
  return {
    contender: 'ours',
    scenario: 'sparse',
    loadSeconds: 1,
    throughput: {
      ...phase({
        messages: 1100,
        uniqueEvents: 1000,
        tables: {
          ledger: { writeUnits: 1000, writeRequests: 1000, readUnits: 0, readRequests: 0, conditionalFailures: 0 },
          rollups: { writeUnits: 0, writeRequests: 0, readUnits: 200, readRequests: 10, conditionalFailures: 0 },
        },
        transactions: { transactions: 10, cancelled: 0, items: 300, sizedUnits: 600, minimumUnits: 600 },
        functions: { ingest: { invocations: 2, durationMs: 4000, memoryMb: 1024 }, aggregate: { invocations: 1, durationMs: 2000, memoryMb: 1024 } },
        handlerCpuMs: 800,
        processCpuMs: 1000,
        emulatorCpuMs: 900,
        seconds: 4,
        peakRssMb: 500,
      }),
      ...(sustained ? { sustained } : {}),
    },
    // Latencies of 10, 20, …, 1,000 ms
    // 110 messages, 100 unique events: 100 ledger puts, 2 transactions priced at 300 units, 20 read units
    paced: {
      ...phase({
        messages: 110,
        uniqueEvents: 100,
        tables: {
          ledger: { writeUnits: 100, writeRequests: 100, readUnits: 0, readRequests: 0, conditionalFailures: 0 },
          rollups: { writeUnits: 0, writeRequests: 0, readUnits: 20, readRequests: 2, conditionalFailures: 0 },
        },
        transactions: { transactions: 2, cancelled: 0, items: 150, sizedUnits: 300, minimumUnits: 300 },
      }),
      ratePerSecond: 75,
      latencyMs: Array.from({ length: 100 }, (_, i) => 1000 - i * 10),
      unseen: 0,
    },
    counted: {},
    maxRssMb: 600,
    errors: [],
  };
}

describe('figuresOf', () => {
  test('works out rates, units and requests per unique event, CPU per 1,000, latency percentiles and cost per million', () => {
    // Act
    const f = figuresOf(report({ reports: 800, seconds: 2, reportsPerUniqueEvent: 1 }), exact);

    // Assert
    expect(f.eventsPerSecond).toBeCloseTo(400, 9); // 800 events between the marks, 2 s apart
    expect(f.sustained).toBe(true);
    expect(f.drain).toEqual({ seconds: 4, eventsPerSecond: 250 });
    expect(f.writeUnitsPerEvent).toBeCloseTo(1.6, 12); // (1,000 puts + 600 transactional units) / 1,000
    expect(f.writeUnitsPerEventMinimum).toBeCloseTo(1.6, 12);
    expect(f.writeRequestsPerEvent).toBeCloseTo(1.01, 12); // 1,000 puts + 10 transactions
    expect(f.readUnitsPerEvent).toBeCloseTo(0.2, 12);
    expect(f.handlerCpuMsPer1k).toBeCloseTo(800, 9);
    expect(f.processCpuMsPer1k).toBeCloseTo(1000, 9);
    expect(f.emulatorCpuMsPer1k).toBeCloseTo(900, 9);
    expect(f.lambdaGbSecondsPerEvent).toBeCloseTo(0.006, 12); // 6 s at 1 GB over 1,000 events
    expect(f.lambdaInvocationsPerEvent).toBeCloseTo(0.003, 12);
    expect(f.latency).toEqual({ p50Ms: 500, p99Ms: 990, maxMs: 1000, samples: 100, unseen: 0 });
    expect(f.peakRssMb).toBe(500);
    // A million events: 1.6 M write units, 0.2 M read units, 6,000 GB-s and 3,000 invocations, 1.1 M messages at 3 requests per 10
    const cost = f.costPerMillionEvents;
    expect(cost.dynamodbWrites).toBeCloseTo(1.6 * PRICES.dynamodb.perMillionWriteRequestUnits, 12);
    expect(cost.dynamodbReads).toBeCloseTo(0.2 * PRICES.dynamodb.perMillionReadRequestUnits, 12);
    expect(cost.lambda).toBeCloseTo(6000 * PRICES.lambda.perGbSecondArm + 0.003 * PRICES.lambda.perMillionRequests, 12);
    expect(cost.sqs).toBeCloseTo(0.33 * PRICES.sqs.perMillionRequests, 12);
    const total =
      1.6 * PRICES.dynamodb.perMillionWriteRequestUnits +
      0.2 * PRICES.dynamodb.perMillionReadRequestUnits +
      6000 * PRICES.lambda.perGbSecondArm +
      0.003 * PRICES.lambda.perMillionRequests +
      0.33 * PRICES.sqs.perMillionRequests;
    expect(cost.total).toBeCloseTo(total, 12);
  });

  test('works out the paced phase (the low rate) on its own: units, requests and cost per unique event of that phase', () => {
    // Act
    const f = figuresOf(report(), exact);

    // Assert: (100 puts + 300 transactional units) / 100 events; 100 puts + 2 transactions; 20 read units / 100
    expect(f.paced.writeUnitsPerEvent).toBeCloseTo(4, 12);
    expect(f.paced.writeRequestsPerEvent).toBeCloseTo(1.02, 12);
    expect(f.paced.readUnitsPerEvent).toBeCloseTo(0.2, 12);
    // A million such events: 4 M write units, 0.2 M read units, no Lambda time, 1.1 M messages at 3 requests per 10
    expect(f.paced.costPerMillionEvents.total).toBeCloseTo(
      4 * PRICES.dynamodb.perMillionWriteRequestUnits + 0.2 * PRICES.dynamodb.perMillionReadRequestUnits + 0.33 * PRICES.sqs.perMillionRequests,
      12,
    );
    // The throughput phase's figures are not moved by it
    expect(f.writeUnitsPerEvent).toBeCloseTo(1.6, 12);
  });

  test('counts reports per unique event when a report is a message (baseline A)', () => {
    // Act: 880 messages reported between the marks, 1.1 messages per unique event, 2 s apart
    const f = figuresOf(report({ reports: 880, seconds: 2, reportsPerUniqueEvent: 1.1 }), exact);

    // Assert
    expect(f.eventsPerSecond).toBeCloseTo(400, 9);
  });

  test('falls back to the drain rate, marked, when a run is too short for a sustained rate', () => {
    // Act
    const f = figuresOf(report(), exact);

    // Assert
    expect(f.sustained).toBe(false);
    expect(f.eventsPerSecond).toBeCloseTo(250, 9);
  });
});

describe('judge', () => {
  const figures = (writeUnitsPerEvent: number, eventsPerSecond: number, drainPerSecond: number, correctness = exact, pacedWriteUnitsPerEvent = 1.5) =>
    ({ writeUnitsPerEvent, eventsPerSecond, drain: { seconds: 1, eventsPerSecond: drainPerSecond }, correctness, paced: { writeUnitsPerEvent: pacedWriteUnitsPerEvent } }) as Figures;
  const row = (scenario: 'sparse' | 'dense', contender: JudgedRow['contender'], f: Figures, usersAndGroups = false): JudgedRow => ({ scenario, contender, usersAndGroups, figures: f });

  test('checks each target against its limit, boundaries included, and gives the drain ratio beside them', () => {
    // Arrange
    const rows = [
      row('sparse', 'ours', figures(1.6, 900, 800, exact, 2.0)),
      row('sparse', 'baseline-a', figures(3.3, 450, 440)),
      row('sparse', 'baseline-b', figures(4.1, 300, 320)),
      row('dense', 'ours', figures(1.2, 1000, 900)),
      row('dense', 'baseline-b', figures(4.1, 400, 400)),
      // Not judged: the users-and-groups row would pass where ours fails
      row('dense', 'ours', figures(1.0, 5000, 5000), true),
    ];

    // Act
    const { targets, drainRatios } = judge(rows, ['sparse', 'dense']);

    // Assert
    expect(targets.map((t) => [t.scenario, t.name, t.value, t.pass])).toEqual([
      ['sparse', 'ours: write units per unique event', 1.6, true],
      ['sparse', 'ours: buckets that differ from the ground truth', 0, true],
      ['low rate', 'ours: write units per unique event', 2.0, true],
      ['sparse', 'write units: baseline A ÷ ours', 3.3 / 1.6, true],
      ['sparse', 'events/s sustained: ours ÷ baseline B', 3, true],
      ['dense', 'ours: write units per unique event', 1.2, false],
      ['dense', 'ours: buckets that differ from the ground truth', 0, true],
      ['dense', 'events/s sustained: ours ÷ baseline B', 2.5, false],
    ]);
    expect(drainRatios).toEqual([
      { scenario: 'sparse', ratio: 2.5 },
      { scenario: 'dense', ratio: 2.25 },
    ]);
  });

  test('an inexact count fails its target, the low rate past 2.0 fails its own, and a scenario without ours has none', () => {
    // Arrange
    const offByOne: Correctness = { ...exact, exact: false, mismatchedBuckets: 1, counted: 1001, excess: 1, summary: '+0.1% (1 buckets off)' };
    const rows = [row('sparse', 'ours', figures(1.5, 900, 900, offByOne, 2.001)), row('dense', 'baseline-b', figures(4.1, 400, 400))];

    // Act
    const { targets, drainRatios } = judge(rows, ['sparse', 'dense']);

    // Assert
    expect(targets.map((t) => [t.scenario, t.name, t.value, t.pass])).toEqual([
      ['sparse', 'ours: write units per unique event', 1.5, true],
      ['sparse', 'ours: buckets that differ from the ground truth', 1, false],
      ['low rate', 'ours: write units per unique event', 2.001, false],
    ]);
    expect(drainRatios).toEqual([]);
  });
});
