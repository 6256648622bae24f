import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { FUNCTIONS } from './contract/resources';
import { type CloseSummary, runDueCloses } from './core/billing/closes';
import { runExclusive } from './core/lease';

/** EventBridge Scheduler → close every day and cycle that has become due (after the grace period). */
export interface SchedulerEvent {
  job: 'close-due';
}

/** What a run closed; `skipped` when another run held the lease, and this one closed nothing. */
export type SchedulerResult = CloseSummary & { skipped?: 'another close is running' };

/**
 * A run holds the job's lease for longer than the function may run, so a run that died still frees it in
 * time for the next hourly run. This keeps closes single-flight without reserved concurrency.
 */
const LEASE_MS = (FUNCTIONS.scheduler.timeoutSeconds + 60) * 1000;

async function scheduler(event: SchedulerEvent, context: Context): Promise<SchedulerResult> {
  if (event.job !== 'close-due') throw new Error(`unknown scheduler job "${String(event.job)}"`);
  const clock = appContext.clock();
  const run = await runExclusive({ name: event.job, holder: context.awsRequestId, durationMs: LEASE_MS }, { leases: appContext.leases(), clock }, () =>
    runDueCloses({
      config: appContext.config(),
      subjects: appContext.subjects(),
      rollups: appContext.rollups(),
      accounts: appContext.accounts(),
      reports: appContext.reports(),
      clock,
    }),
  );
  metrics.addMetric('ClosesSkippedAsBusy', MetricUnit.Count, run.ran ? 0 : 1);
  if (!run.ran) {
    // The run under way closes what is due, and the next hourly run whatever falls due meanwhile.
    logger.warn('another close is running; this run closes nothing');
    return { now: clock.now().toISOString(), cyclesClosed: [], summaries: [], daysClosed: 0, adjustments: [], skipped: 'another close is running' };
  }
  const summary = run.value;
  metrics.addMetric('CyclesClosed', MetricUnit.Count, summary.cyclesClosed.length);
  metrics.addMetric('DaysClosed', MetricUnit.Count, summary.daysClosed);
  metrics.addMetric('Adjustments', MetricUnit.Count, summary.adjustments.length);
  logger.info('closes done', { now: summary.now, cyclesClosed: summary.cyclesClosed.length, summaries: summary.summaries, daysClosed: summary.daysClosed, adjustments: summary.adjustments.length });
  return summary;
}

export const handler = middy(scheduler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
