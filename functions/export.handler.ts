import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { BUCKETS } from './contract/resources';
import { runExport } from './core/reporting/exports';

/** Time kept back from the function's timeout to abort the upload and mark the job failed. */
const STOP_BEFORE_TIMEOUT_MS = 30_000;

/** New export jobs (the Exports table's stream) → one file each in S3. A job that fails is marked failed with its reason. */
async function exportJobs(event: DynamoDBStreamEvent, context: Context): Promise<DynamoDBBatchResponse> {
  metrics.addMetric('ExportRecordsReceived', MetricUnit.Count, event.Records.length);
  for (const record of event.Records) {
    // The mapping passes only inserts; the function's own status updates never come back here.
    const id = record.dynamodb?.Keys?.id?.S;
    if (record.eventName !== 'INSERT' || !id) continue;
    try {
      const job = await runExport(id, {
        exports: appContext.exports(),
        subjects: appContext.subjects(),
        rollups: appContext.rollups(),
        files: appContext.exportFiles(),
        clock: appContext.clock(),
        prefix: BUCKETS.reports.exportsPrefix,
        deadline: Date.now() + context.getRemainingTimeInMillis() - STOP_BEFORE_TIMEOUT_MS,
      });
      metrics.addMetric(job?.status === 'ready' ? 'ExportsWritten' : 'ExportsFailed', MetricUnit.Count, 1);
      if (job?.status === 'ready') metrics.addMetric('ExportBuckets', MetricUnit.Count, job.bucketCount ?? 0);
      if (job?.status === 'failed') logger.error('export failed', { exportId: id, error: job.error });
    } catch (error) {
      // Not even marked failed (the table was unreachable): the mapping retries from this job.
      logger.error('export could not run; retrying', { exportId: id, error: error as Error });
      return { batchItemFailures: [{ itemIdentifier: record.dynamodb?.SequenceNumber ?? '' }] };
    }
  }
  return { batchItemFailures: [] };
}

export const handler = middy(exportJobs).use(injectLambdaContext(logger)).use(logMetrics(metrics));
