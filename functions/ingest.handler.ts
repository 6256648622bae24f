import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { ORIGINAL_SENT_AT_ATTRIBUTE } from './adapters/usage-queue';
import { ingestMessages } from './core/metering/ingest';

/** SQS → validate → ledger (or quarantine). Only messages whose writes failed are redelivered. */
async function ingest(event: SQSEvent): Promise<SQSBatchResponse> {
  const result = await ingestMessages(event.Records.map(toQueueMessage), {
    config: appContext.config(),
    subjects: appContext.subjects(),
    ledger: appContext.ledger(),
    quarantine: appContext.quarantine(),
    clock: appContext.clock(),
  });
  metrics.addMetric('EventsAccepted', MetricUnit.Count, result.accepted);
  metrics.addMetric('DuplicatesInBatch', MetricUnit.Count, result.duplicatesInBatch);
  metrics.addMetric('KnownDuplicates', MetricUnit.Count, result.knownDuplicates);
  // The total beside the per-reason counts below: the quarantine-rate alarm divides it by what was received.
  metrics.addMetric('EventsQuarantined', MetricUnit.Count, result.quarantined.length);
  const byReason = new Map<string, number>();
  for (const record of result.quarantined) {
    byReason.set(record.reason, (byReason.get(record.reason) ?? 0) + 1);
    // The reason and where it came from, never the payload.
    logger.warn('event quarantined', { reason: record.reason, messageId: record.messageId, index: record.index });
  }
  for (const [reason, count] of byReason) {
    const metric = metrics.singleMetric();
    metric.addDimension('reason', reason);
    metric.addMetric('EventsQuarantined', MetricUnit.Count, count);
  }
  if (result.failedMessageIds.length > 0) logger.warn('messages left for redelivery', { count: result.failedMessageIds.length });
  return { batchItemFailures: result.failedMessageIds.map((itemIdentifier) => ({ itemIdentifier })) };
}

function toQueueMessage(record: SQSRecord) {
  const sent = Number(record.attributes.SentTimestamp);
  const sentAt = Number.isFinite(sent) ? sent : Date.now();
  // A replayed message keeps the time it was first sent, so the message sent last still wins.
  const original = Date.parse(record.messageAttributes?.[ORIGINAL_SENT_AT_ATTRIBUTE]?.stringValue ?? '');
  return { messageId: record.messageId, body: record.body, sentAt: new Date(original < sentAt ? original : sentAt).toISOString() };
}

export const handler = middy(ingest).use(injectLambdaContext(logger)).use(logMetrics(metrics));
