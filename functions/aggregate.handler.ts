import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { type LedgerStreamRecord, ledgerChangeFromRecord } from './adapters/ledger-store';
import { logger, metrics } from './adapters/observability';
import { evaluateThresholds, touchedCycles } from './core/alerts/alerts';
import type { Config } from './core/config';
import { recordActivity } from './core/metering/activity';
import { aggregateChanges } from './core/metering/aggregate';
import { type BreakdownPolicy, breakdownPolicy, type CycleState, type LedgerChange, meteredImages } from './core/metering/rollups';

/** With a tumbling window, Lambda adds the shard id and expects a `state` in every response. */
export type LedgerStreamEvent = DynamoDBStreamEvent & { shardId?: string; state?: Record<string, string> };
export type LedgerStreamResponse = DynamoDBBatchResponse & { state: Record<string, string> };

/** Closed cycle items this process has met; a close is final, so the set stays true for the process's life. */
const closedCycles = new Set<string>();
/** Breakdown values cycle items have admitted; admissions only grow (see AggregateDeps). */
const cycleStates = new Map<string, CycleState>();

/** The rate card's priced features of each usage type are kept apart whatever the breakdown limit (one policy per config). */
const policies = new WeakMap<Config, BreakdownPolicy>();
const breakdowns = (config: Config): BreakdownPolicy => {
  let policy = policies.get(config);
  if (!policy) {
    policy = breakdownPolicy(config.rateCard);
    policies.set(config, policy);
  }
  return policy;
};

/**
 * Ledger stream → fold into rollups, exactly once per shard through the checkpoint; then record the
 * thresholds the touched cycles have crossed. Alerts are evaluated from current totals for every record
 * of the batch, applied now or by an earlier try, so a retry after a crash still records them.
 */
async function aggregate(event: LedgerStreamEvent): Promise<LedgerStreamResponse> {
  if (!event.shardId) throw new Error('stream event has no shardId: the event source mapping needs a tumbling window');
  const changes = event.Records.flatMap(toChange);
  const result = await aggregateChanges(event.shardId, changes, { rollups: appContext.rollups(), closedCycles, cycleStates, breakdowns: breakdowns(appContext.config()) });
  metrics.addMetric('RecordsApplied', MetricUnit.Count, result.applied);
  metrics.addMetric('RecordsSkippedAsApplied', MetricUnit.Count, result.skipped);
  metrics.addMetric('RollupTransactions', MetricUnit.Count, result.chunks);
  metrics.addMetric('RecordsParked', MetricUnit.Count, result.parked.length);
  for (const parked of result.parked) logger.error('a ledger record was refused by DynamoDB and parked; the shard goes on', { ...parked, shardId: event.shardId });
  metrics.addMetric('RollupCommitFailures', MetricUnit.Count, result.failedSequenceNumber ? 1 : 0);
  if (result.failedSequenceNumber) {
    logger.error('rollup commit failed; the batch resumes from the failed chunk', { error: result.error as Error, sequenceNumber: result.failedSequenceNumber });
  }
  const applied = result.failedSequenceNumber
    ? changes.slice(
        0,
        changes.findIndex((c) => c.sequenceNumber === result.failedSequenceNumber),
      )
    : changes;
  // Recent activity is informational: written beside the thresholds' evaluation, it never fails the batch.
  const activity = writeActivity(event.shardId, applied, result.parked);
  let failedAt = result.failedSequenceNumber;
  try {
    // A priced event moves its credits too: their cycle is touched as well.
    const alerts = await evaluateThresholds(touchedCycles(applied.flatMap((c) => (c.newImage ? meteredImages(c.newImage) : []))), {
      config: appContext.config(),
      subjects: appContext.subjects(),
      rollups: appContext.rollups(),
      accounts: appContext.accounts(),
      alerts: appContext.alerts(),
      clock: appContext.clock(),
    });
    metrics.addMetric('ThresholdsCrossed', MetricUnit.Count, alerts.length);
    metrics.addMetric('ThresholdEvaluationFailures', MetricUnit.Count, 0);
  } catch (error) {
    // Retry the batch: its commits are skipped by the checkpoint, the evaluation runs again. Counted, because
    // Lambda's Errors metric never sees a batch answered with batchItemFailures.
    logger.error('threshold evaluation failed; the batch is retried', { error: error as Error });
    metrics.addMetric('ThresholdEvaluationFailures', MetricUnit.Count, 1);
    failedAt = changes[0]?.sequenceNumber;
  }
  await activity;
  return { state: {}, batchItemFailures: failedAt ? [{ itemIdentifier: failedAt }] : [] };
}

/**
 * Writes the batch's recent activity (lane items, and the roll-ups that fall due: core/metering/activity.ts) from the
 * records applied, parked ones aside. Best effort: a failure is logged as a warning and the batch goes on; a retried
 * batch writes the same events again, which readers show once.
 */
async function writeActivity(shardId: string, applied: readonly LedgerChange[], parked: readonly { sequenceNumber: string }[]): Promise<void> {
  try {
    const refused = new Set(parked.map((p) => p.sequenceNumber));
    const written = await recordActivity(
      shardId,
      applied.filter((c) => !refused.has(c.sequenceNumber)),
      { activity: appContext.activity(), clock: appContext.clock() },
    );
    if (written.failedLaneItems > 0 || written.failedRolls.length > 0) {
      logger.warn('recent activity was not fully written; the batch goes on', {
        error: written.error as Error,
        failedLaneItems: written.failedLaneItems,
        laneItems: written.laneItems,
        failedRolls: written.failedRolls,
      });
    }
  } catch (error) {
    logger.warn('recent activity was not written; the batch goes on', { error: error as Error });
  }
}

function toChange(record: DynamoDBRecord): LedgerChange[] {
  const change = ledgerChangeFromRecord(record as LedgerStreamRecord);
  return change ? [change] : [];
}

export const handler = middy(aggregate).use(injectLambdaContext(logger)).use(logMetrics(metrics));
