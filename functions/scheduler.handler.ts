import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { logger, metrics } from './adapters/observability';
import { FUNCTIONS } from './contract/resources';
import { dispatchDueCloses } from './core/billing/closes';
import { runExclusive } from './core/lease';

/** EventBridge Scheduler → send every workspace with a day or cycle due (after the grace period) to the close function. */
export interface SchedulerEvent {
  job: 'close-due';
}

/** What a run did: the workspaces it sent to be closed and the cycle summaries it wrote; `skipped` when another run held the lease. */
export interface SchedulerResult {
  now: string;
  dispatched: number;
  summaries: string[];
  skipped?: 'another run is under way';
}

/**
 * A run holds the job's lease for longer than the function may run, so a run that died still frees it in
 * time for the next hourly run. Two runs at once would only send the same workspaces twice (each is closed
 * under its own claim); the lease keeps that from happening.
 */
const LEASE_MS = (FUNCTIONS.scheduler.timeoutSeconds + 60) * 1000;

async function scheduler(event: SchedulerEvent, context: Context): Promise<SchedulerResult> {
  if (event.job !== 'close-due') throw new Error(`unknown scheduler job "${String(event.job)}"`);
  const clock = appContext.clock();
  const run = await runExclusive({ name: event.job, holder: context.awsRequestId, durationMs: LEASE_MS }, { leases: appContext.leases(), clock }, () =>
    dispatchDueCloses({
      config: appContext.config(),
      claims: appContext.subjects(),
      queue: appContext.closeQueue(),
      accounts: appContext.accounts(),
      reports: appContext.reports(),
      clock,
    }),
  );
  metrics.addMetric('ClosesSkippedAsBusy', MetricUnit.Count, run.ran ? 0 : 1);
  if (!run.ran) {
    logger.warn('another scheduler run is under way; this one sends nothing');
    return { now: clock.now().toISOString(), dispatched: 0, summaries: [], skipped: 'another run is under way' };
  }
  metrics.addMetric('WorkspacesDispatched', MetricUnit.Count, run.value.dispatched);
  logger.info('closes dispatched', { ...run.value });
  return run.value;
}

export const handler = middy(scheduler).use(injectLambdaContext(logger)).use(logMetrics(metrics));
