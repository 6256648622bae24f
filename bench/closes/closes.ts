/**
 * A month close of many workspaces, side by side: sequentially in one process (`runDueCloses`, the design
 * before) and fanned out (the scheduler reads the due index and sends one message per workspace; the close
 * function closes each under a claim), each on a fresh local stack (DynamoDB Local, fauxqs for SQS and S3).
 * Every workspace is anchored on the 1st (UTC, New York, Tokyo) and was created on 30 November (local), so the
 * close of 1 December closes exactly one day and one cycle of each: snapshot, report to S3, summary. Every
 * `--usage-every`-th workspace has four events that day (two usage types, folded by the real aggregate).
 *
 * Measured: closes per second locally (first close's start to last close's end), DynamoDB requests, write and
 * read units per close by table (ReturnConsumedCapacity on the handlers' shared client), S3 and SQS requests,
 * and the round trips of one close (measured on the sequential run, where one close runs at a time; the
 * fan-out adds the claim and its release). DynamoDB Local has one SQLite writer, so locally the closes per
 * second stop growing with concurrency; `--sweep` runs the fan-out at other local concurrencies to show where.
 * The design is judged by requests per close and the projection for AWS (bench/closes/projection.ts), not by
 * local speed.
 *
 *   npm run bench:closes [-- --workspaces 20000 --sequential-workspaces 2000 --sweep 1,16 --sweep-workspaces 2000 --usage-every 5 --warm-writes 8000]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DUE_SHARDS, EVENT_SOURCES } from '../../functions/contract/resources';
import { CLOSE_BATCHES_IN_FLIGHT } from '../../local/runtime';
import { runBenchScript } from '../child-run';
import type { RoleUse } from './close-meter';
import type { RunPlan, RunResult } from './closes-protocol';
import { AWS, type CloseCost, inFlightNeeded, type Projection, project } from './projection';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const RUN_SCRIPT = join(ROOT, 'bench/closes/closes-run.ts');
const RESULTS = join(ROOT, 'bench/results/closes.json');

const { values: args } = parseArgs({
  options: {
    workspaces: { type: 'string', default: '20000' },
    'sequential-workspaces': { type: 'string' },
    sweep: { type: 'string', default: '1,16' },
    'sweep-workspaces': { type: 'string' },
    'usage-every': { type: 'string', default: '5' },
    write: { type: 'boolean', default: false },
    'warm-writes': { type: 'string', default: '8000' },
  },
});
const WORKSPACES = Number(args.workspaces);
const SEQUENTIAL = Number(args['sequential-workspaces'] ?? Math.min(WORKSPACES, 2_000));
const SWEEP_WORKSPACES = Number(args['sweep-workspaces'] ?? Math.min(WORKSPACES, 2_000));
const SWEEP = (args.sweep ?? '')
  .split(',')
  .filter(Boolean)
  .map(Number)
  .filter((c) => c !== CLOSE_BATCHES_IN_FLIGHT);
const USAGE_EVERY = Number(args['usage-every']);
/** The deployed shape for a month close of 1,000,000: `closes.warmWritesPerSecond` on the tables a close writes. */
const WARM_WRITES = Number(args['warm-writes']);

/** The target of the issue: a million workspaces closed within 15 minutes of due. */
const TARGET = { workspaces: 1_000_000, minutes: 15 };
const PROJECTED = [100_000, 1_000_000];
/** Ids a page of the keys-only due index holds (about 60 bytes each in a 1 MB page; functions/adapters/subject-store.ts). */
const IDS_PER_INDEX_PAGE = 16_000;
/** SqsCloseQueue: 10 ids per SendMessageBatch, 16 batches in flight (functions/adapters/close-queue.ts). */
const DISPATCH = { idsPerBatch: 10, batchesInFlight: 16, idsPerPage: IDS_PER_INDEX_PAGE };
/** S3Reports.listCycleReports reads 64 reports at a time (functions/adapters/s3.ts). */
const SUMMARY_READS_IN_FLIGHT = 64;

async function runChild(plan: RunPlan): Promise<RunResult> {
  const { result, code, stderr } = await runBenchScript<RunResult>(RUN_SCRIPT, plan, { cwd: ROOT });
  if (!result) throw new Error(`the ${plan.mode} run failed (exit code ${code}):\n${stderr}`);
  const closed = plan.workspaces;
  if (result.cyclesClosed !== closed || result.daysClosed !== closed) {
    throw new Error(`the ${plan.mode} run closed ${result.cyclesClosed} cycles and ${result.daysClosed} days of ${closed} workspaces (one each expected)`);
  }
  return result;
}

const sum = (values: Record<string, number>) => Object.values(values).reduce((a, b) => a + b, 0);
const per = (values: Record<string, number>, n: number) => Object.fromEntries(Object.entries(values).map(([k, v]) => [shortTable(k), v / n]));
const shortTable = (name: string) => name.replace(/^usage-pipeline-/, '');
const fmt = (value: number, digits = 1) => (Number.isNaN(value) ? '–' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));

interface Row {
  design: string;
  workspaces: number;
  inFlight: string;
  closesPerSecond: number;
  dynamodbPerClose: number;
  writeUnitsPerClose: number;
  readUnitsPerClose: number;
  s3PerClose: number;
  sqsSendsPerClose: number;
  note: string;
}

/** `closes`: the row is of the closes themselves (its closes/s shown); else of work beside them. */
function rowOf(design: string, run: RunResult, roles: string[], inFlight: string, note: string, closes = true): Row {
  const n = run.plan.workspaces;
  const use = roles.map((r) => run.roles[r]).filter((u): u is RoleUse => u !== undefined);
  return {
    design,
    workspaces: n,
    inFlight,
    closesPerSecond: closes ? n / run.closesSeconds : Number.NaN,
    dynamodbPerClose: use.reduce((s, u) => s + u.requests.dynamodb, 0) / n,
    writeUnitsPerClose: use.reduce((s, u) => s + sum(u.writeUnits), 0) / n,
    readUnitsPerClose: use.reduce((s, u) => s + sum(u.readUnits), 0) / n,
    s3PerClose: use.reduce((s, u) => s + u.requests.s3, 0) / n,
    sqsSendsPerClose: roles.includes('scheduler') ? (run.sqs.SendMessageBatchCommand ?? 0) / n : 0,
    note,
  };
}

function printRows(rows: Row[]): void {
  console.log('| design | workspaces | in flight (local) | closes/s (local) | DynamoDB requests/close | WU/close | RU/close | S3 requests/close | SQS sends/close | |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const r of rows) {
    console.log(
      `| ${r.design} | ${r.workspaces.toLocaleString('en-US')} | ${r.inFlight} | ${fmt(r.closesPerSecond)} | ${fmt(r.dynamodbPerClose, 2)} | ${fmt(r.writeUnitsPerClose, 2)} | ${fmt(r.readUnitsPerClose, 2)} | ${fmt(r.s3PerClose, 2)} | ${fmt(r.sqsSendsPerClose, 2)} | ${r.note} |`,
    );
  }
}

function printProjection(projection: Projection): void {
  const minutes = projection.totalSeconds / 60;
  console.log(`  ${projection.workspaces.toLocaleString('en-US')} workspaces: one close ${fmt(projection.closeMs, 0)} ms; bounds (closes/s):`);
  for (const b of [...projection.bounds].sort((x, y) => x.closesPerSecond - y.closesPerSecond)) console.log(`    ${fmt(b.closesPerSecond, 0).padStart(9)}  ${b.name}`);
  console.log(
    `    → ${fmt(projection.binding.closesPerSecond, 0)} closes/s: closed ${fmt(minutes)} min after the scheduler starts (sends ${fmt(projection.dispatchSeconds)} s, under way meanwhile); the summary then reads every report: ${fmt(projection.summarySeconds / 60)} min`,
  );
}

async function main(): Promise<void> {
  const batchSize = EVENT_SOURCES.closes.batchSize;
  console.log(
    `closes: a month close on one anchor day (3 zones), every ${USAGE_EVERY}th workspace with usage; local close batches of ${batchSize} (EVENT_SOURCES.closes.batchSize), ${CLOSE_BATCHES_IN_FLIGHT} in flight unless swept`,
  );
  console.log(`  sequential, ${SEQUENTIAL.toLocaleString('en-US')} workspaces…`);
  const sequential = await runChild({ mode: 'sequential', workspaces: SEQUENTIAL, usageEvery: USAGE_EVERY });
  console.log(`  fanned out, ${WORKSPACES.toLocaleString('en-US')} workspaces, ${CLOSE_BATCHES_IN_FLIGHT} batches in flight…`);
  const fanout = await runChild({ mode: 'fanout', workspaces: WORKSPACES, closeBatchesInFlight: CLOSE_BATCHES_IN_FLIGHT, usageEvery: USAGE_EVERY });
  const sweep: RunResult[] = [];
  for (const inFlight of SWEEP) {
    console.log(`  fanned out, ${SWEEP_WORKSPACES.toLocaleString('en-US')} workspaces, ${inFlight} batches in flight…`);
    sweep.push(await runChild({ mode: 'fanout', workspaces: SWEEP_WORKSPACES, closeBatchesInFlight: inFlight, usageEvery: USAGE_EVERY }));
  }

  const inFlightOf = (run: RunResult) => `${(run.plan.closeBatchesInFlight ?? 0) * batchSize}`;
  const rows: Row[] = [
    rowOf('sequential (`runDueCloses`)', sequential, ['sequential: list', 'sequential: closes'], '1', 'closes and the table scan'),
    rowOf('sequential: summary', sequential, ['sequential: summary'], '1', 'reads every report', false),
    rowOf('fanned out: closes', fanout, ['closes'], inFlightOf(fanout), 'claim, close, release'),
    rowOf('fanned out: scheduler', fanout, ['scheduler'], '–', 'lease, due index, sends, summary', false),
    ...sweep.map((run) => rowOf('fanned out: closes', run, ['closes'], inFlightOf(run), 'concurrency sweep')),
  ];
  console.log('');
  printRows(rows);
  const fanRow = rows[2] as Row;
  const seqRow = rows[0] as Row;
  const saturation = [fanout, ...sweep].sort((a, b) => (a.plan.closeBatchesInFlight ?? 0) - (b.plan.closeBatchesInFlight ?? 0));
  console.log('');
  console.log(
    `Local closes/s by closes in flight: ${saturation.map((run) => `${inFlightOf(run)} → ${fmt(run.plan.workspaces / run.closesSeconds)}`).join(', ')}; fanned out ÷ sequential: ${fmt(fanRow.closesPerSecond / seqRow.closesPerSecond, 2)}×`,
  );
  console.log('DynamoDB Local applies requests one at a time (one SQLite writer): past a few closes in flight, closes/s stops growing. Judge by the per-close figures below.');

  // One close in AWS: the round trips of one close (the sequential run has one close at a time) and the
  // claim and its release; the units of the fanned-out closes, with the scheduler's share spread over them.
  const closesUse = fanout.roles.closes as RoleUse;
  const schedulerUse = fanout.roles.scheduler;
  const seqUse = sequential.roles['sequential: closes'] as RoleUse;
  const n = fanout.plan.workspaces;
  const claimRoundTrips = 2;
  const cost: CloseCost = {
    dynamodbRoundTrips: seqUse.roundTrips.dynamodb / sequential.plan.workspaces + claimRoundTrips,
    s3RoundTrips: seqUse.roundTrips.s3 / sequential.plan.workspaces,
    writeUnits: per(closesUse.writeUnits, n),
    readUnits: per(closesUse.readUnits, n),
  };
  const inFlight = EVENT_SOURCES.closes.maxConcurrency * batchSize;
  const summaryMarksPerClose = 1; // closeCycle notes the summary once, after its report
  const hotItems = [
    { name: 'summary counters (one per shard)', items: DUE_SHARDS, writesPerClose: summaryMarksPerClose },
    { name: 'due index partitions (dueShard)', items: DUE_SHARDS, writesPerClose: 2 }, // a changed index key: delete and put
  ];
  console.log('');
  console.log(
    `Projection for AWS: one close = ${fmt(cost.dynamodbRoundTrips, 2)} DynamoDB round trips (${fmt(seqUse.roundTrips.dynamodb / sequential.plan.workspaces, 2)} measured + claim and release) × ${AWS.dynamodbRoundTripMs} ms + ${fmt(cost.s3RoundTrips, 2)} S3 × ${AWS.s3RoundTripMs} ms; ${inFlight} closes in flight (maxConcurrency ${EVENT_SOURCES.closes.maxConcurrency} × batchSize ${batchSize}); new on-demand tables ${AWS.newTableWriteUnitsPerSecond} WU/s and ${AWS.newTableReadUnitsPerSecond} RU/s each; ${AWS.partitionWriteUnitsPerSecond} WU/s per partition; SQS ${AWS.sqsRoundTripMs} ms`,
  );
  const projectAt = (aws: typeof AWS) => PROJECTED.map((workspaces) => project({ workspaces, cost, inFlight, hotItems, dispatch: DISPATCH, summaryReadsInFlight: SUMMARY_READS_IN_FLIGHT, aws }));
  console.log('New on-demand tables:');
  const projections = projectAt(AWS);
  for (const p of projections) printProjection(p);
  // Warm throughput raises what the tables take from the start; reads stay at a new table's.
  const warmAws = { ...AWS, newTableWriteUnitsPerSecond: WARM_WRITES };
  console.log(`With closes.warmWritesPerSecond ${WARM_WRITES} (accounts, subjects and rollups warmed; the deployed shape for a month close of this size):`);
  const warmed = projectAt(warmAws);
  for (const p of warmed) printProjection(p);
  const judge = (list: Projection[]) => list.find((p) => p.workspaces === TARGET.workspaces) as Projection;
  const atTarget = judge(warmed);
  const met = atTarget.totalSeconds <= TARGET.minutes * 60;
  const cold = judge(projections);
  console.log('');
  console.log(
    `Target: ${TARGET.workspaces.toLocaleString('en-US')} workspaces closed within ${TARGET.minutes} minutes of due: ${met ? 'met' : 'NOT met'} (${fmt(atTarget.totalSeconds / 60)} min projected with ${WARM_WRITES} warm writes/s; ${fmt(cold.totalSeconds / 60)} min on new tables, ${cold.totalSeconds <= TARGET.minutes * 60 ? 'met' : 'not met'}).`,
  );
  if (!met) {
    const needed = inFlightNeeded(TARGET.workspaces, TARGET.minutes * 60, atTarget.closeMs);
    const rate = TARGET.workspaces / (TARGET.minutes * 60);
    console.log(
      `  To meet it: ${fmt(rate, 0)} closes/s, i.e. ${needed} closes in flight at ${fmt(atTarget.closeMs, 0)} ms each (configured: ${inFlight}${needed <= inFlight ? ', enough' : ''}), and tables warmed to ${Object.entries(
        cost.writeUnits,
      )
        .map(([t, u]) => `${t} ${fmt(rate * u, 0)} WU/s`)
        .join(', ')}.`,
    );
  }
  if (atTarget.summarySeconds > 900)
    console.log(`  The summary of ${TARGET.workspaces.toLocaleString('en-US')} reports (${fmt(atTarget.summarySeconds / 60)} min) outlasts the scheduler's 900 s timeout.`);

  if (args.write) {
    await mkdir(dirname(RESULTS), { recursive: true });
    await writeFile(
      RESULTS,
      `${JSON.stringify({ args, batchSize, maxConcurrency: EVENT_SOURCES.closes.maxConcurrency, aws: AWS, warmWrites: WARM_WRITES, rows, cost, projections, warmed, target: { ...TARGET, met }, runs: { sequential, fanout, sweep } }, null, 2)}\n`,
    );
    console.log(`Written to ${RESULTS}.`);
  }
  if (schedulerUse === undefined) throw new Error('the scheduler sent no request');
}

await main();
