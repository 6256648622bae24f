/**
 * The pipeline benchmark's arithmetic, apart from running it (bench/pipeline/bench-pipeline.ts): each contender's counters
 * against the ground truth, the figures of one run (rates, units and requests per event, CPU, cost per
 * million events at list prices), and the targets of docs/performance.md "Performance".
 */
import type { Granularity, GroundTruth } from '../../testkit/ground-truth';
import type { Contender, CountedBuckets, PhaseReport, RunReport } from './pipeline-protocol';
import { PRICES } from './prices';

export type Scenario = 'sparse' | 'dense';

/** What a target is judged on: a scenario's throughput phase, or the low rate (the sparse scenario's paced phase). */
export type TargetScenario = Scenario | 'low rate';

/** The targets: write units per unique event, and how this pipeline compares with the baselines. */
export const TARGETS = {
  writeUnitsPerEvent: { dense: 1.1, sparse: 2.0 } as Record<Scenario, number>,
  /** At the paced rate (75 events/s by default) over the sparse scenario's 1,000 workspaces, duplicates included. */
  lowRateWriteUnitsPerEvent: 2.0,
  fewerWriteUnitsThanA: 1.5,
  fasterThanB: 3,
};

// ── figures ─────────────────────────────────────────────────────────────────────────────────────

export interface Correctness {
  exact: boolean;
  /** Hour, day and cycle buckets whose count differs from the ground truth. */
  mismatchedBuckets: number;
  truth: number;
  counted: number;
  /** Counted minus truth over the cycle buckets; positive is an over-count. */
  excess: number;
  summary: string;
}

export function check(truth: GroundTruth, counted: CountedBuckets, subjects: readonly string[]): Correctness {
  let mismatchedBuckets = 0;
  let expectedTotal = 0;
  let countedTotal = 0;
  for (const subject of subjects) {
    for (const granularity of ['hour', 'day', 'cycle'] as Granularity[]) {
      const expected = new Map(truth.buckets(subject, granularity).map((b) => [b.start, b.quantity]));
      const got = counted[subject]?.[granularity] ?? {};
      for (const start of new Set([...expected.keys(), ...Object.keys(got)])) {
        if ((expected.get(start) ?? 0) !== (got[start] ?? 0)) mismatchedBuckets += 1;
        if (granularity === 'cycle') {
          expectedTotal += expected.get(start) ?? 0;
          countedTotal += got[start] ?? 0;
        }
      }
    }
  }
  const excess = countedTotal - expectedTotal;
  const share = expectedTotal === 0 ? 0 : (100 * excess) / expectedTotal;
  const summary = mismatchedBuckets === 0 ? 'exact' : `${excess >= 0 ? '+' : ''}${share.toFixed(1)}% (${mismatchedBuckets} buckets off)`;
  return { exact: mismatchedBuckets === 0, mismatchedBuckets, truth: expectedTotal, counted: countedTotal, excess, summary };
}

interface PhaseFigures {
  writeUnitsPerEvent: number;
  /** Transactions at 2 units per item, as if every rollup item were under 1 KB. */
  writeUnitsPerEventMinimum: number;
  writeRequestsPerEvent: number;
  readUnitsPerEvent: number;
  handlerCpuMsPer1k: number;
  processCpuMsPer1k: number;
  /** DynamoDB Local's own CPU: the emulator's share of the machine, where it could be read. */
  emulatorCpuMsPer1k?: number;
  lambdaGbSecondsPerEvent: number;
  lambdaInvocationsPerEvent: number;
}

export interface Figures extends PhaseFigures {
  /** Sustained: unique events per second between 10% and 90% visible; the drain rate where a run is too short to tell (`sustained` false). */
  eventsPerSecond: number;
  sustained: boolean;
  /** From the consumers' start until every counter holds every event: the rate, ramp-up and last batch included. */
  drain: { seconds: number; eventsPerSecond: number };
  latency: { p50Ms: number; p99Ms: number; maxMs: number; samples: number; unseen: number };
  paced: PhaseFigures & { costPerMillionEvents: Cost };
  peakRssMb: number;
  costPerMillionEvents: Cost;
  correctness: Correctness;
}

/** List-price cost of a million unique events, by service. */
export interface Cost {
  dynamodbWrites: number;
  dynamodbReads: number;
  lambda: number;
  sqs: number;
  total: number;
}

function phaseFigures(phase: PhaseReport): PhaseFigures {
  const per = (value: number) => value / phase.uniqueEvents;
  const tables = Object.values(phase.tables);
  const sum = (pick: (t: (typeof tables)[number]) => number) => tables.reduce((total, t) => total + pick(t), 0);
  const functions = Object.values(phase.functions);
  return {
    writeUnitsPerEvent: per(sum((t) => t.writeUnits) + phase.transactions.sizedUnits),
    writeUnitsPerEventMinimum: per(sum((t) => t.writeUnits) + phase.transactions.minimumUnits),
    writeRequestsPerEvent: per(sum((t) => t.writeRequests) + phase.transactions.transactions),
    readUnitsPerEvent: per(sum((t) => t.readUnits)),
    handlerCpuMsPer1k: per(phase.handlerCpuMs) * 1000,
    processCpuMsPer1k: per(phase.processCpuMs) * 1000,
    ...(phase.emulatorCpuMs === undefined ? {} : { emulatorCpuMsPer1k: per(phase.emulatorCpuMs) * 1000 }),
    lambdaGbSecondsPerEvent: per(functions.reduce((total, f) => total + (f.durationMs / 1000) * (f.memoryMb / 1024), 0)),
    lambdaInvocationsPerEvent: per(functions.reduce((total, f) => total + f.invocations, 0)),
  };
}

/** SQS requests per message: one SendMessageBatch, one ReceiveMessage and one DeleteMessageBatch per ten, for every contender alike. */
const SQS_REQUESTS_PER_MESSAGE = 3 / 10;

function costOf(phase: PhaseFigures, report: PhaseReport): Cost {
  const cost = {
    dynamodbWrites: phase.writeUnitsPerEvent * PRICES.dynamodb.perMillionWriteRequestUnits,
    dynamodbReads: phase.readUnitsPerEvent * PRICES.dynamodb.perMillionReadRequestUnits,
    lambda: phase.lambdaGbSecondsPerEvent * 1_000_000 * PRICES.lambda.perGbSecondArm + phase.lambdaInvocationsPerEvent * PRICES.lambda.perMillionRequests,
    sqs: (report.messages / report.uniqueEvents) * SQS_REQUESTS_PER_MESSAGE * PRICES.sqs.perMillionRequests,
  };
  return { ...cost, total: cost.dynamodbWrites + cost.dynamodbReads + cost.lambda + cost.sqs };
}

export function figuresOf(report: RunReport, correctness: Correctness): Figures {
  const { throughput, paced } = report;
  const { sustained } = throughput;
  const phase = phaseFigures(throughput);
  const pacedPhase = phaseFigures(paced);
  const latencies = [...paced.latencyMs].sort((a, b) => a - b);
  const percentile = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? Number.NaN;
  return {
    ...phase,
    eventsPerSecond: sustained ? sustained.reports / sustained.reportsPerUniqueEvent / sustained.seconds : throughput.uniqueEvents / throughput.seconds,
    sustained: sustained !== undefined,
    drain: { seconds: throughput.seconds, eventsPerSecond: throughput.uniqueEvents / throughput.seconds },
    latency: { p50Ms: percentile(50), p99Ms: percentile(99), maxMs: latencies.at(-1) ?? Number.NaN, samples: latencies.length, unseen: paced.unseen },
    paced: { ...pacedPhase, costPerMillionEvents: costOf(pacedPhase, paced) },
    peakRssMb: throughput.peakRssMb,
    costPerMillionEvents: costOf(phase, throughput),
    correctness,
  };
}

// ── targets ─────────────────────────────────────────────────────────────────────────────────────

export interface Target {
  scenario: TargetScenario;
  name: string;
  value: number;
  digits: number;
  goal: string;
  pass: boolean;
}

/** What judging needs of a row of the table. */
export interface JudgedRow {
  scenario: Scenario;
  contender: Contender;
  usersAndGroups: boolean;
  figures?: Figures;
}

/** Ours ÷ B in events/s over the whole drain: printed beside the targets, not judged. */
export interface DrainRatio {
  scenario: Scenario;
  ratio: number;
}

/** The targets of each scenario that has a row for ours (with users and groups aside), and the drain ratios. */
export function judge(rows: readonly JudgedRow[], scenarios: readonly Scenario[]): { targets: Target[]; drainRatios: DrainRatio[] } {
  const targets: Target[] = [];
  const drainRatios: DrainRatio[] = [];
  for (const scenario of scenarios) {
    const find = (contender: Contender) => rows.find((r) => r.scenario === scenario && r.contender === contender && !r.usersAndGroups)?.figures;
    const [ours, a, b] = [find('ours'), find('baseline-a'), find('baseline-b')];
    if (!ours) continue;
    const limit = TARGETS.writeUnitsPerEvent[scenario];
    targets.push({ scenario, name: 'ours: write units per unique event', value: ours.writeUnitsPerEvent, digits: 3, goal: `≤ ${limit}`, pass: ours.writeUnitsPerEvent <= limit });
    targets.push({ scenario, name: 'ours: buckets that differ from the ground truth', value: ours.correctness.mismatchedBuckets, digits: 0, goal: '= 0', pass: ours.correctness.exact });
    if (scenario === 'sparse') {
      const lowRate = ours.paced.writeUnitsPerEvent;
      targets.push({
        scenario: 'low rate',
        name: 'ours: write units per unique event',
        value: lowRate,
        digits: 3,
        goal: `≤ ${TARGETS.lowRateWriteUnitsPerEvent}`,
        pass: lowRate <= TARGETS.lowRateWriteUnitsPerEvent,
      });
    }
    if (a) {
      const ratio = a.writeUnitsPerEvent / ours.writeUnitsPerEvent;
      targets.push({ scenario, name: 'write units: baseline A ÷ ours', value: ratio, digits: 2, goal: `≥ ${TARGETS.fewerWriteUnitsThanA}`, pass: ratio >= TARGETS.fewerWriteUnitsThanA });
    }
    if (b) {
      const ratio = ours.eventsPerSecond / b.eventsPerSecond;
      targets.push({ scenario, name: 'events/s sustained: ours ÷ baseline B', value: ratio, digits: 2, goal: `≥ ${TARGETS.fasterThanB}`, pass: ratio >= TARGETS.fasterThanB });
      drainRatios.push({ scenario, ratio: ours.drain.eventsPerSecond / b.drain.eventsPerSecond });
    }
  }
  return { targets, drainRatios };
}
