/**
 * How long a month close of many workspaces takes in AWS, from what one close costs as measured locally:
 * its sequential round trips (DynamoDB and S3) at a stated round-trip time, divided among the closes in
 * flight; and the write throughput a new on-demand table takes. The slower bound decides.
 */

export interface AwsFigures {
  dynamodbRoundTripMs: number;
  s3RoundTripMs: number;
  sqsRoundTripMs: number;
  newTableWriteUnitsPerSecond: number;
  newTableReadUnitsPerSecond: number;
  partitionWriteUnitsPerSecond: number;
}

/** Assumed AWS figures; each names where it comes from. */
export const AWS: Readonly<AwsFigures> = {
  /**
   * One in-region DynamoDB request from Lambda through the SDK. AWS states "single-digit millisecond" latency
   * (DynamoDB Developer Guide, "DynamoDB on-demand capacity mode"); 8 ms is our assumption for the SDK round
   * trip at the median, toward the top of that range.
   */
  dynamodbRoundTripMs: 8,
  /**
   * One small S3 PUT or GET (a report is a few KB). AWS: for requests under 512 KB "median latencies are often
   * in the tens of milliseconds range" (whitepaper "Best Practices Design Patterns: Optimizing Amazon S3
   * Performance", "Timeouts and Retries for Latency-Sensitive Applications"); we take 30 ms.
   */
  s3RoundTripMs: 30,
  /** One SendMessageBatch from Lambda in-region; our assumption (SQS documents no latency figure). */
  sqsRoundTripMs: 10,
  /**
   * "New on-demand tables will be able to sustain up to 4,000 writes per second and 12,000 reads per second"
   * (DynamoDB Developer Guide, "Pre-warming a table for on-demand capacity mode" and "Initial throughput and
   * scaling properties"); per table, for items up to 1 KB: write units per second. Past it, pre-warm (warm throughput).
   */
  newTableWriteUnitsPerSecond: 4_000,
  newTableReadUnitsPerSecond: 12_000,
  /**
   * "each individual partition is limited to 1,000 write units per second and 3,000 read units per second"
   * (DynamoDB Developer Guide, "Understanding DynamoDB warm throughput in different scenarios").
   */
  partitionWriteUnitsPerSecond: 1_000,
};

/** What one close costs, from the measured run. */
export interface CloseCost {
  /** Requests that waited for the one before them (parallel ones count once), per close. */
  dynamodbRoundTrips: number;
  s3RoundTrips: number;
  /** Write and read units per close, by table. */
  writeUnits: Record<string, number>;
  readUnits: Record<string, number>;
}

export interface ProjectionInput {
  workspaces: number;
  cost: CloseCost;
  /** Closes in flight at once: the event source's maxConcurrency × its batch size (a batch's records side by side). */
  inFlight: number;
  /** Writes per close that land on a few hot items (the summary counters, the due index), each with its item count. */
  hotItems: { name: string; items: number; writesPerClose: number }[];
  /** Workspace ids per SendMessageBatch, batches in flight, ids per index page. */
  dispatch: { idsPerBatch: number; batchesInFlight: number; idsPerPage: number };
  /** Report reads in flight while the summary is written (it reads every report of the cycle). */
  summaryReadsInFlight: number;
  aws?: AwsFigures;
}

export interface Bound {
  name: string;
  closesPerSecond: number;
}

export interface Projection {
  workspaces: number;
  /** One close's time in AWS: its round trips at the stated latencies. */
  closeMs: number;
  bounds: Bound[];
  /** The slowest bound. */
  binding: Bound;
  closesSeconds: number;
  /** The scheduler's sends (index pages, then SendMessageBatch calls in flight); closes run while it sends. */
  dispatchSeconds: number;
  /** Workspaces closed this long after the scheduler started: the later of the sends and the closes. */
  totalSeconds: number;
  /** The summary of the cycle: read every report, written once the closes are done (the scheduler's next run). */
  summarySeconds: number;
}

export function closeMs(cost: CloseCost, aws: AwsFigures = AWS): number {
  return cost.dynamodbRoundTrips * aws.dynamodbRoundTripMs + cost.s3RoundTrips * aws.s3RoundTripMs;
}

export function project(input: ProjectionInput): Projection {
  const aws = input.aws ?? AWS;
  const ms = closeMs(input.cost, aws);
  const bounds: Bound[] = [{ name: `concurrency: ${input.inFlight} in flight × 1000 / ${round(ms)} ms`, closesPerSecond: (input.inFlight * 1000) / ms }];
  for (const [table, units] of Object.entries(input.cost.writeUnits)) {
    if (units > 0) bounds.push({ name: `${table} writes: ${aws.newTableWriteUnitsPerSecond} WU/s / ${round(units)} WU per close`, closesPerSecond: aws.newTableWriteUnitsPerSecond / units });
  }
  for (const [table, units] of Object.entries(input.cost.readUnits)) {
    if (units > 0) bounds.push({ name: `${table} reads: ${aws.newTableReadUnitsPerSecond} RU/s / ${round(units)} RU per close`, closesPerSecond: aws.newTableReadUnitsPerSecond / units });
  }
  for (const hot of input.hotItems) {
    bounds.push({
      name: `${hot.name}: ${hot.items} items × ${aws.partitionWriteUnitsPerSecond} WU/s / ${round(hot.writesPerClose)} per close`,
      closesPerSecond: (hot.items * aws.partitionWriteUnitsPerSecond) / hot.writesPerClose,
    });
  }
  const binding = bounds.reduce((slowest, b) => (b.closesPerSecond < slowest.closesPerSecond ? b : slowest));
  const closesSeconds = input.workspaces / binding.closesPerSecond;
  const { idsPerBatch, batchesInFlight, idsPerPage } = input.dispatch;
  const dispatchSeconds = (Math.ceil(input.workspaces / idsPerPage) * aws.dynamodbRoundTripMs + (Math.ceil(input.workspaces / idsPerBatch) / batchesInFlight) * aws.sqsRoundTripMs) / 1000;
  const summarySeconds = (input.workspaces / input.summaryReadsInFlight) * (aws.s3RoundTripMs / 1000);
  return { workspaces: input.workspaces, closeMs: ms, bounds, binding, closesSeconds, dispatchSeconds, totalSeconds: Math.max(closesSeconds, dispatchSeconds), summarySeconds };
}

/** Closes in flight needed to close `workspaces` within `seconds` at one close's time, if no throughput bound binds first. */
export function inFlightNeeded(workspaces: number, seconds: number, closeMillis: number): number {
  return Math.ceil(((workspaces / seconds) * closeMillis) / 1000);
}

const round = (value: number) => (Math.round(value * 100) / 100).toString();
