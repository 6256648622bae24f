import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { type CloseSummary, runDueCloses } from './core/closes';

/** EventBridge Scheduler → close every day and cycle that has become due (after the grace period). */
export interface SchedulerEvent {
  job: 'close-due';
}

async function scheduler(event: SchedulerEvent): Promise<CloseSummary> {
  if (event.job !== 'close-due') throw new Error(`unknown scheduler job "${String(event.job)}"`);
  const summary = await runDueCloses({
    config: appContext.config(),
    subjects: appContext.subjects(),
    rollups: appContext.rollups(),
    accounts: appContext.accounts(),
    reports: appContext.reports(),
    clock: appContext.clock(),
  });
  metrics.addMetric('CyclesClosed', MetricUnit.Count, summary.cyclesClosed.length);
  metrics.addMetric('DaysClosed', MetricUnit.Count, summary.daysClosed);
  metrics.addMetric('Adjustments', MetricUnit.Count, summary.adjustments.length);
  logger.info('closes done', { now: summary.now, cyclesClosed: summary.cyclesClosed.length, summaries: summary.summaries, daysClosed: summary.daysClosed, adjustments: summary.adjustments.length });
  return summary;
}

export const handler = middy(scheduler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
