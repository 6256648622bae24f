import type { EventPlan } from './traffic';

/** What bench/pipeline/bench-pipeline.ts and its child bench/pipeline/pipeline-run.ts agree on: the plan of one run and its report. */

export const CONTENDERS = ['ours', 'baseline-a', 'baseline-b'] as const;
export type Contender = (typeof CONTENDERS)[number];

/** The child's one argument, as JSON. */
export interface RunPlan {
  contender: Contender;
  scenario: string;
  configPath: string;
  /** Run through first on subjects of their own, unmeasured, so that DynamoDB Local's JIT is warm for every contender alike. */
  warmup: EventPlan;
  /** Pre-loaded on the queue, then consumed as fast as the contender goes. */
  throughput: EventPlan;
  /** Sent at a steady rate, for event-to-visible latency. */
  paced: EventPlan & { ratePerSecond: number };
  /** Ours only: poll the idle alerts and exports streams slowly (see bench/pipeline/ours.ts). */
  slowIdleStreams: boolean;
  /** BENCH_TIMELINE: where to write the throughput phase's handler invocations, one JSON line each. */
  timelineFile?: string;
}

/** Ours, unless --raw-stream-polling: how long an empty poll of a stream other than the ledger's takes (bench/pipeline/ours.ts). */
export const IDLE_STREAM_POLL_MS = 5000;

/** The child prints `PROGRESS …` lines as it goes and one `RESULT {json}` line at the end. */
export { PROGRESS_PREFIX, RESULT_PREFIX } from '../child-run';

/** DynamoDB use of one table, as ReturnConsumedCapacity reports it (transactions apart: see TransactionUnits). */
export interface TableUse {
  writeUnits: number;
  writeRequests: number;
  readUnits: number;
  readRequests: number;
  /** Conditional writes refused; each is billed one write unit (the items here are under 1 KB) and is in writeUnits. */
  conditionalFailures: number;
}

/** Transactional writes, billed as AWS does: 2 units per item per started KB. */
export interface TransactionUnits {
  transactions: number;
  cancelled: number;
  items: number;
  /** Each item at the size it has at the end of the run: an upper bound, since items only grow. */
  sizedUnits: number;
  /** Each item at under 1 KB: a lower bound. */
  minimumUnits: number;
}

export interface FunctionUse {
  invocations: number;
  /** Summed wall time of the invocations: what Lambda bills. */
  durationMs: number;
  memoryMb: number;
}

export interface PhaseReport {
  messages: number;
  uniqueEvents: number;
  tables: Record<string, TableUse>;
  transactions: TransactionUnits;
  functions: Record<string, FunctionUse>;
  /** Process CPU while at least one handler invocation was running (overlapping invocations counted once). */
  handlerCpuMs: number;
  /** Process CPU over the whole phase: handlers, pollers, the in-process SQS stand-in, the harness. */
  processCpuMs: number;
  /** CPU of the contender's DynamoDB Local (Java) process over the phase, where it can be read. */
  emulatorCpuMs?: number;
  /** From the consumers' start to every event being visible (throughput), or from first send to last visible (paced). */
  seconds: number;
  /** Highest RSS sampled during the phase. */
  peakRssMb: number;
}

/** Per subject, bucket start → quantity, as the contender's counters hold them at the end. */
export type CountedBuckets = Record<string, { hour: Record<string, number>; day: Record<string, number>; cycle: Record<string, number> }>;

export interface RunReport {
  contender: Contender;
  scenario: string;
  /** Time to put the throughput phase's messages on the queue (not measured against the contender). */
  loadSeconds: number;
  /** `sustained`: the reports (Visibility) between 10% and 90% of the expected, and the seconds between them; reports are messages for baseline A, unique events otherwise. */
  throughput: PhaseReport & { sustained?: { reports: number; seconds: number; reportsPerUniqueEvent: number } };
  paced: PhaseReport & { ratePerSecond: number; latencyMs: number[]; unseen: number };
  counted: CountedBuckets;
  /** The kernel's high-water mark for the whole process, loading included. */
  maxRssMb: number;
  errors: string[];
}
