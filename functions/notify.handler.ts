import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import middy from '@middy/core';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import type { Alert } from './core/alerts/alerts-ports';
import { deliverAlert } from './core/alerts/notify';

/** Alert records (their stream) → one threshold email per contact. A failed alert retries from itself. */
async function notify(event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> {
  const deps = {
    config: appContext.config(),
    subjects: appContext.subjects(),
    rollups: appContext.rollups(),
    accounts: appContext.accounts(),
    alerts: appContext.alerts(),
    email: appContext.email(),
    clock: appContext.clock(),
  };
  metrics.addMetric('AlertRecordsReceived', MetricUnit.Count, event.Records.length);
  for (const record of event.Records) {
    const image = record.dynamodb?.NewImage;
    // The mapping's filter passes only new alerts that notify; marks (MODIFY) and passed thresholds are ignored here too.
    if (record.eventName !== 'INSERT' || !image) continue;
    const item = unmarshall(image as Record<string, AttributeValue>) as { alert: Alert; notify?: boolean };
    if (!item.notify) continue;
    try {
      const result = await deliverAlert(item.alert, deps);
      metrics.addMetric('ThresholdEmailsSent', MetricUnit.Count, result.sent);
      if (result.noContacts) metrics.addMetric('ThresholdAlertsWithoutContacts', MetricUnit.Count, 1);
      // A send started by an earlier try that never got its mark: it may have gone out, and now goes again.
      if (result.possibleDuplicates > 0) metrics.addMetric('ThresholdEmailsPossiblyDuplicated', MetricUnit.Count, result.possibleDuplicates);
    } catch (error) {
      // Never the addresses or the content: which alert, and why.
      logger.error('threshold email failed; retrying from this alert', { error: error as Error, threshold: item.alert.threshold, usageType: item.alert.usageType });
      return { batchItemFailures: [{ itemIdentifier: record.dynamodb?.SequenceNumber ?? '' }] };
    }
  }
  return { batchItemFailures: [] };
}

export const handler = middy(notify).use(injectLambdaContext(logger)).use(logMetrics(metrics));
