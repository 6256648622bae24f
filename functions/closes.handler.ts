import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { FUNCTIONS } from './contract/resources';
import { closeClaimed } from './core/billing/closes';

/**
 * A claim outlives the function's timeout, so a worker that died frees its workspace before SQS shows the
 * message again (the queue's visibility timeout is six times the function's).
 */
const CLAIM_MS = (FUNCTIONS.closes.timeoutSeconds + 60) * 1000;

/** Closes queue → close each workspace (one per message, the batch's side by side); only failed ones are retried. */
async function closes(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  const deps = {
    config: appContext.config(),
    claims: appContext.subjects(),
    rollups: appContext.rollups(),
    accounts: appContext.accounts(),
    reports: appContext.reports(),
    clock: appContext.clock(),
  };
  const closeOne = async (record: SQSRecord) => {
    const close = await closeClaimed(record.body, `${context.awsRequestId}#${record.messageId}`, CLAIM_MS, deps).catch((error: unknown) => {
      logger.error('close failed; its message is retried', { subject: record.body, error: error as Error });
      throw error;
    });
    if (close === 'held') {
      // Retried after the visibility timeout, by when the claim has ended: the message goes only once its close is done.
      metrics.addMetric('ClosesFoundClaimed', MetricUnit.Count, 1);
      throw new Error(`workspace ${record.body} is being closed by another worker; retried later`);
    }
    metrics.addMetric('CyclesClosed', MetricUnit.Count, close.cyclesClosed.length);
    metrics.addMetric('DaysClosed', MetricUnit.Count, close.daysClosed);
    metrics.addMetric('Adjustments', MetricUnit.Count, close.adjustments.length);
    if (close.cyclesClosed.length + close.daysClosed + close.adjustments.length > 0) logger.info('workspace closed', { ...close });
    appContext.testClock()?.closed(close);
  };
  // A batch whose every workspace failed (or was claimed) is answered like any other: only its messages come back,
  // without counting as a function error; failed closes show as `close failed` lines, the queue's age and its DLQ.
  // A processor per invocation: it keeps the batch's state, and the local runtime runs invocations side by side.
  return processPartialResponse(event, closeOne, new BatchProcessor(EventType.SQS), { context, throwOnFullBatchFailure: false });
}

export const handler = middy(closes).use(injectLambdaContext(logger)).use(logMetrics(metrics));
