import { QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { runAudit } from '../../functions/core/reporting/audit';
import { lambdaContext } from '../../local/lambda-context';
import { suiteClockStart } from '../clock-start';
import { type DeliveryStats, type FaultStack, LambdaDriver, startFaultStack } from './driver';
import { FaultInjector, type FaultRates } from './injector';
import { type CheckReport, checkInvariants, type Observer } from './invariants';
import { Expected, makeScenario, type Scenario, type ScenarioOptions } from './scenarios';

/**
 * One seeded fault run, in process: the scenario's first phase through ingest, aggregate and notify under
 * faults; the clock past every current cycle's end and the scheduler until it completes; a second run of it
 * that must change nothing; the late phase; the clock a day on, closes again; then every invariant.
 */

export interface RunOptions {
  seed: number;
  /** Unique events of the first phase (the second adds a third as many). */
  events: number;
  rates: FaultRates;
  scenario?: ScenarioOptions;
  maxIngestBatch?: number;
  maxStreamBatch?: number;
  anomalyRate?: number;
  onProgress?: (step: string, done: number, of: number) => void;
  /** Called with the stack before it stops, to inspect a failed run. */
  inspect?: (stack: FaultStack) => Promise<void>;
}

export interface RunResult {
  scenario: Scenario;
  faults: ReturnType<FaultInjector['summary']>;
  duplicateWindows: number;
  delivery: DeliveryStats;
  /**
   * Right after each completed close: the scheduler again (it must send nothing, and find no summary due) and
   * every workspace delivered to the close function again (none may fail).
   */
  reruns: { dispatched: number; summaries: number; failed: number }[];
  /** Whether the accounts table was the same before and after each re-run. */
  rerunsChangedNothing: boolean;
  checks: CheckReport;
}

export const DEFAULT_RATES: FaultRates = { ingest: 0.2, aggregate: 0.3, notify: 0.3, scheduler: 0.1, closes: 0.1 };

/** Powertools warns on every invocation that failed before adding a metric; under injected faults that is most of them. */
export function quietEmptyMetricsWarnings(): void {
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith('No application metrics to publish')) return;
    warn(...args);
  };
}

export async function runFaultScenario(options: RunOptions): Promise<RunResult> {
  const scenario = makeScenario(options.seed, options.events, suiteClockStart().getTime(), options.scenario);
  const injector = new FaultInjector(options.seed, options.rates);
  const stack = await startFaultStack(scenario, injector);
  try {
    injector.tableNames = Object.fromEntries(Object.entries(stack.tables).map(([k, v]) => [v, k]));
    const driver = new LambdaDriver(stack, injector, {
      seed: options.seed,
      maxIngestBatch: options.maxIngestBatch ?? 25,
      maxStreamBatch: options.maxStreamBatch ?? 200,
      anomalyRate: options.anomalyRate ?? 0.05,
    });
    const reruns: RunResult['reruns'] = [];
    let unchanged = true;
    const steps = scenario.phases.length * 3;
    let done = 0;
    const progress = (step: string) => options.onProgress?.(step, ++done, steps);
    for (const phase of scenario.phases) {
      await driver.ingest(phase.rounds);
      progress(`${phase.name}: ingest`);
      await driver.drain();
      progress(`${phase.name}: aggregate and notify`);
      stack.clock.advanceTo(phase.advanceTo);
      await driver.schedule();
      await driver.drain();
      // Closes are idempotent: a run right after a completed one finds nothing to do and writes nothing.
      const before = await dumpAccounts(stack);
      const rerun = await stack.handlers.scheduler({ job: 'close-due' }, lambdaContext('scheduler', 900));
      const failed = await driver.closeAllAgain(scenario.subjects.map((subject) => subject.id));
      reruns.push({ dispatched: rerun.dispatched, summaries: rerun.summaries.length, failed });
      unchanged &&= before === (await dumpAccounts(stack));
      progress(`${phase.name}: closes`);
    }
    // Adjustment records are written by a close that closes a day: late events of the last phase are recorded by
    // the close of the day after it.
    stack.clock.advanceTo((scenario.phases.at(-1)?.advanceTo ?? scenario.now) + 86_400_000);
    await driver.schedule();

    await options.inspect?.(stack);
    const checks = await checkInvariants(
      new Expected(scenario, scenario.phases.length),
      { phases: scenario.phases.length, beforeClose: new Expected(scenario, 1), adjustmentsDue: true },
      inProcessObserver(stack),
      injector.windows,
    );
    return { scenario, faults: injector.summary(), duplicateWindows: injector.windows.length, delivery: driver.stats, reruns, rerunsChangedNothing: unchanged, checks };
  } finally {
    await stack.stop();
  }
}

async function dumpAccounts(stack: FaultStack): Promise<string> {
  const documents = createDocumentClient(stack.dynamodb);
  const items: unknown[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const page = await documents.send(new ScanCommand({ TableName: stack.tables.accounts, ExclusiveStartKey, ConsistentRead: true }));
    items.push(...(page.Items ?? []));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return JSON.stringify(items);
}

/** Reads the results through the adapters, on the same clients (no fault is injected outside an invocation). */
function inProcessObserver(stack: FaultStack): Observer {
  const documents = createDocumentClient(stack.dynamodb);
  const rollups = appContext.rollups();
  return {
    rollups: (subject, kind) => rollups.query(subject, kind, '0', '9'),
    members: (subject, kind, cycleStart, usageType) => rollups.members(subject, kind, cycleStart, usageType),
    quarantine: async () => (await appContext.quarantine().list({ limit: 1_000_000 })).map((r) => `${r.messageId}#${r.index} ${r.reason}`),
    quarantineIdentity: (q) => `${q.key}#${q.index} ${q.reason}`,
    alerts: async (subject) => {
      const { Items = [] } = await documents.send(
        new QueryCommand({ TableName: stack.tables.alerts, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': subject }, ConsistentRead: true }),
      );
      return Items.map((i) => ({ sk: String(i.sk), notify: i.notify === true }));
    },
    emails: async () => {
      const { emails } = (await (await fetch(stack.sesStore)).json()) as { emails: { destination: { to: string[] }; subject: string; body: { text?: string } }[] };
      return emails.map((e) => ({ to: e.destination.to.join(','), subject: e.subject, text: e.body.text ?? '' }));
    },
    snapshots: (subject) => appContext.accounts().listCycleSnapshots(subject),
    grants: (subject) => appContext.accounts().listGrants(subject),
    adjustments: (subject) => appContext.accounts().listAdjustments(subject),
    audit: () =>
      runAudit({}, { config: appContext.config(), subjects: appContext.subjects(), ledger: appContext.ledgerScanner(), rollups, accounts: appContext.accounts(), reports: appContext.reports() }),
  };
}
