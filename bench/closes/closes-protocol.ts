import type { RoleUse } from './close-meter';

/** What the closes bench hands one run (bench/closes/closes-run.ts) and what the run answers on stdout. */

export { PROGRESS_PREFIX, RESULT_PREFIX } from '../child-run';

export interface RunPlan {
  mode: 'sequential' | 'fanout';
  workspaces: number;
  /** Local close batches in flight (fan-out only). */
  closeBatchesInFlight?: number;
  /** Every `usageEvery`-th workspace has usage on its last day; 0: none. */
  usageEvery: number;
}

export interface RunResult {
  plan: RunPlan;
  seedSeconds: number;
  /** From the first close's start to the last close's end (sequential: the loop over the workspaces). */
  closesSeconds: number;
  /** The whole move: the scheduler's runs, the closes, the summary (sequential: runDueCloses). */
  wallSeconds: number;
  cyclesClosed: number;
  daysClosed: number;
  adjustments: number;
  summaries: number;
  roles: Record<string, RoleUse>;
  sqs: Record<string, number>;
}
