/**
 * One run of the closes bench, in its own process (each local stack is one per process): a fresh local stack,
 * `workspaces` workspaces on one anchor day created on the last day of their cycle, some with usage, then the
 * month close either sequentially (`runDueCloses`, the design before) or fanned out (`stack.advanceClock`: the
 * scheduler, the closes queue, the close function). Prints one RESULT line of JSON on stdout.
 *
 *   tsx bench/closes/closes-run.ts '{"mode":"fanout","workspaces":500,"closeBatchesInFlight":4,"usageEvery":5}'
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appContext, awsClients } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import { type CloseSummary, runDueCloses } from '../../functions/core/billing/closes';
import { bucketsOf, startOfLocalDay } from '../../functions/core/cycles';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import type { LedgerChange } from '../../functions/core/metering/rollups';
import type { Subject } from '../../functions/core/ports';
import { startLocal } from '../../local/runtime';
import { CloseMeter } from './close-meter';
import { PROGRESS_PREFIX, RESULT_PREFIX, type RunPlan, type RunResult } from './closes-protocol';

/** The month closed: workspaces anchored on the 1st, created on 30 November (local), closed on 1 December. */
const SCENARIO = {
  timeZones: ['UTC', 'America/New_York', 'Asia/Tokyo'],
  lastDay: '2026-11-30',
  clockStart: new Date('2026-11-29T12:00:00.000Z'),
  /** After every zone's 1 December 00:00 plus the hour of grace (New York's is 05:00 UTC), before any 2 December. */
  closeAt: new Date('2026-12-01T06:05:00.000Z'),
  graceMinutes: 60,
} as const;

const CONFIG = {
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'images', unit: 'image' },
  ],
  plans: [
    {
      id: 'pro',
      quotas: {
        tokens: { monthlyLimit: 1_000_000, spillover: { policy: 'capped', cap: 250_000 } },
        images: { monthlyLimit: 1_000, spillover: { policy: 'all' } },
      },
    },
  ],
  subjects: [],
  closes: { graceMinutes: SCENARIO.graceMinutes },
};
const CHANNELS = ['ui', 'api'];
const CREATE_IN_FLIGHT = 16;

const plan = JSON.parse(process.argv[2] ?? '{}') as RunPlan;
const progress = (line: string) => console.log(`${PROGRESS_PREFIX}${line}`);

function workspace(i: number, prefix: string): Subject {
  const timeZone = SCENARIO.timeZones[i % SCENARIO.timeZones.length] as string;
  const createdAt = new Date(Date.parse(startOfLocalDay(SCENARIO.lastDay, timeZone)) + 9 * 3_600_000).toISOString();
  return { id: `${prefix}${String(i).padStart(7, '0')}`, plan: 'pro', billingAnchorDay: 1, timeZone, contacts: [], createdAt };
}

/** A few events on the workspace's last day (two usage types, two channels), as the aggregate folds them. */
function usageOf(subject: Subject, i: number): LedgerChange[] {
  const dayStart = Date.parse(subject.createdAt as string);
  return Array.from({ length: 4 }, (_, e) => {
    const time = new Date(dayStart + (e + 1) * 1_800_000).toISOString();
    return {
      sequenceNumber: String(1_000_000_000 + i * 4 + e),
      newImage: {
        eventKey: JSON.stringify(['bench/closes', `${subject.id}-${e}`]),
        subject: subject.id,
        usageType: e % 2 === 0 ? 'tokens' : 'images',
        quantity: String(e % 2 === 0 ? 1_000 * (e + 1) : e + 1),
        ...bucketsOf(time, subject),
        channel: CHANNELS[e % CHANNELS.length] as string,
      },
    };
  });
}

async function inParallel<T>(items: readonly T[], inFlight: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, items.length) }, worker));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-closes-'));
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(CONFIG));
  const firstClose = { at: Number.POSITIVE_INFINITY };
  const lastClose = { at: 0 };
  const meter = new CloseMeter();
  const stack = await startLocal({
    configPath,
    clockStart: SCENARIO.clockStart,
    ...(plan.closeBatchesInFlight ? { closeBatchesInFlight: plan.closeBatchesInFlight } : {}),
    // As deployed: a close batch held up by the emulator must not come back while it runs.
    visibilityTimeoutSeconds: 6 * 300,
    wrapCloses: (invoke) => (event) =>
      meter.run('closes', async () => {
        firstClose.at = Math.min(firstClose.at, performance.now());
        try {
          return await invoke(event);
        } finally {
          lastClose.at = performance.now();
        }
      }),
  });
  try {
    // The handlers' shared clients, metered before their first request (the stack has not used them yet).
    meter.attach('dynamodb', awsClients.dynamodb().middlewareStack, 'scheduler');
    meter.attach('s3', awsClients.s3().middlewareStack, 'scheduler');
    meter.countSqs();

    const seedStarted = performance.now();
    const documents = createDocumentClient(awsClients.dynamodb());
    const subjects = Array.from({ length: plan.workspaces }, (_, i) => workspace(i, 'ws_'));
    const store = new DynamoSubjects(documents, stack.tables.subjects);
    await meter.run('seed', () => inParallel(subjects, CREATE_IN_FLIGHT, (s) => store.create(s)));
    const changes = plan.usageEvery > 0 ? subjects.flatMap((s, i) => (i % plan.usageEvery === 0 ? usageOf(s, i) : [])) : [];
    const rollups = new DynamoRollups(documents, stack.tables.rollups, stack.clock);
    const chunks: LedgerChange[][] = [];
    for (let i = 0; i < changes.length; i += 2_000) chunks.push(changes.slice(i, i + 2_000));
    await meter.run('seed', () =>
      inParallel(chunks, 4, async (chunk) => {
        const result = await aggregateChanges(`shardId-bench-${chunk[0]?.sequenceNumber}`, chunk, { rollups });
        if (result.failedSequenceNumber !== undefined) throw new Error(`seeding usage failed: ${String(result.error)}`);
      }),
    );
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    progress(`${plan.mode}: ${plan.workspaces} workspaces (${changes.length} usage events) seeded in ${seedSeconds.toFixed(1)} s`);

    const started = performance.now();
    let summary: CloseSummary;
    if (plan.mode === 'sequential') {
      stack.clock.advanceTo(SCENARIO.closeAt); // the clock alone: no scheduler runs
      const subjectStore = appContext.subjects();
      const accounts = appContext.accounts();
      const list = subjectStore.list.bind(subjectStore);
      const summariesDue = accounts.summariesDue.bind(accounts);
      summary = await meter.run('sequential: list', () =>
        runDueCloses({
          config: appContext.config(),
          rollups: appContext.rollups(),
          accounts: Object.assign(Object.create(accounts) as typeof accounts, {
            summariesDue: () => {
              lastClose.at = performance.now();
              meter.switchRole('sequential: summary');
              return summariesDue();
            },
          }),
          reports: appContext.reports(),
          clock: appContext.clock(),
          subjects: {
            list: async () => {
              const all = await list();
              firstClose.at = performance.now();
              meter.switchRole('sequential: closes');
              return all;
            },
          },
        }),
      );
    } else {
      summary = (await stack.advanceClock(SCENARIO.closeAt)).closes;
    }
    const wallSeconds = (performance.now() - started) / 1000;
    const result: RunResult = {
      plan,
      seedSeconds,
      closesSeconds: (lastClose.at - firstClose.at) / 1000,
      wallSeconds,
      cyclesClosed: summary.cyclesClosed.length,
      daysClosed: summary.daysClosed,
      adjustments: summary.adjustments.length,
      summaries: summary.summaries.length,
      roles: meter.roles(),
      sqs: meter.sqs,
    };
    console.log(`${RESULT_PREFIX}${JSON.stringify(result)}`);
  } finally {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
