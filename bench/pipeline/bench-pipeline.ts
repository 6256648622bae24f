/**
 * End-to-end pipeline benchmark: this pipeline against the obvious designs, side by side, on
 * DynamoDB Local and the fauxqs SQS stand-in. For each scenario (sparse: 1,000 workspaces; dense: 10)
 * the same messages go to
 *   ours        the real pipeline via local/runtime.ts: SQS → ingest → ledger → stream → aggregate;
 *   baseline A  per event, UpdateItem ADD on its hour, day and cycle counters, no deduplication;
 *   baseline B  the same behind a Powertools-style idempotency record per message;
 * each in a fresh process with its own DynamoDB Local and SQS stand-in (bench/pipeline/pipeline-run.ts). The
 * workspaces come from bench/pipeline/pipeline.config.json (one usage type, a plan whose limit no run reaches, so
 * that no alert is written). Every event counts exactly once in the ground truth
 * (testkit/ground-truth.ts), which each contender's final counters are compared with.
 *
 *   npm run bench -- [--events 100000] [--duplicates 0.1] [--duplicate-spread 5000]
 *                    [--paced-events 1500] [--rate 75] [--warmup-events 30000] [--scenarios sparse,dense]
 *                    [--contenders ours,baseline-a,baseline-b] [--skip-users-groups] [--raw-stream-polling] [--seed 1]
 *
 * The full run takes about half an hour on a 2-vCPU machine, DynamoDB Local being the bottleneck; a quick one,
 * a few minutes: `npm run bench -- --events 10000 --paced-events 500 --skip-users-groups`.
 * BENCH_CPU_PROF=dir profiles each contender's process; BENCH_TIMELINE=dir writes each run's handler
 * invocations (function, start and end in seconds from the consumers' start, batch size) as JSON lines.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../../functions/adapters/app-context';
import { EVENT_SOURCES } from '../../functions/contract/resources';
import { GroundTruth } from '../../testkit/ground-truth';
import { runBenchScript } from '../child-run';
import { type DensityPoint, densityCurve, densityTable } from '../micro/density';
import { check, type DrainRatio, figuresOf, type JudgedRow, judge, type Scenario, TARGETS, type Target } from './figures';
import { CONTENDERS, type Contender, IDLE_STREAM_POLL_MS, type RunPlan, type RunReport } from './pipeline-protocol';
import { PRICES } from './prices';
import { renderChart } from './results-chart';
import { type EventPlan, messages } from './traffic';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUN_SCRIPT = join(ROOT, 'bench', 'pipeline', 'pipeline-run.ts');
const CONFIG_FILE = join(ROOT, 'bench', 'pipeline', 'pipeline.config.json');
const RESULTS_FILE = join(ROOT, 'bench', 'results', 'pipeline.json');
const CHART_FILE = join(ROOT, 'bench', 'results', 'pipeline.svg');

const SCENARIOS: Record<Scenario, number> = { sparse: 1000, dense: 10 };
/** Subjects of the config kept for the warm-up, apart from every scenario's. */
const WARMUP_PREFIX = 'warmup_';

const LABELS: Record<Contender, string> = {
  ours: 'ours',
  'baseline-a': 'A: 3 × UpdateItem',
  'baseline-b': 'B: idempotency + 3',
};

interface Row extends JudgedRow {
  label: string;
  loadAverage: number;
  report?: RunReport;
  crashed?: string;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const scenario of options.scenarios) {
    const plans = scenarioPlans(scenario, false);
    console.log(`\n${scenario}: ${SCENARIOS[scenario].toLocaleString('en-US')} workspaces; working out the ground truth …`);
    const truth = groundTruth(plans);
    for (const contender of options.contenders) rows.push(await runRow(scenario, contender, plans, truth, false));
    if (scenario === 'dense' && !options.skipUsersGroups && options.contenders.includes('ours')) {
      const withMembers = scenarioPlans(scenario, true);
      rows.push(await runRow(scenario, 'ours', withMembers, groundTruth(withMembers), true));
    }
  }
  const { targets, drainRatios } = judge(rows, options.scenarios);
  printTable(rows, targets, drainRatios);
  // Density is what drives the cost: the same aggregate on batches of 1 to 1,000 events per subject.
  console.log('\nwrite units per event against events per subject in one batch of 10,000 records (ledger 1 + rollups, items priced at their size):');
  const density = await densityCurve((line) => console.log(line));
  console.log(densityTable(density));
  await writeResults(rows, targets, density);
  if (targets.some((t) => !t.pass)) process.exitCode = 1;
}

// ── plans ───────────────────────────────────────────────────────────────────────────────────────

interface Options {
  events: number;
  duplicates: number;
  duplicateSpread: number;
  pacedEvents: number;
  rate: number;
  warmupEvents: number;
  scenarios: Scenario[];
  contenders: Contender[];
  skipUsersGroups: boolean;
  rawStreamPolling: boolean;
  seed: number;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '100000' },
      duplicates: { type: 'string', default: '0.1' },
      'duplicate-spread': { type: 'string', default: '5000' },
      'paced-events': { type: 'string', default: '1500' },
      rate: { type: 'string', default: '75' },
      'warmup-events': { type: 'string', default: '30000' },
      scenarios: { type: 'string', default: 'sparse,dense' },
      contenders: { type: 'string', default: CONTENDERS.join(',') },
      'skip-users-groups': { type: 'boolean', default: false },
      'raw-stream-polling': { type: 'boolean', default: false },
      seed: { type: 'string', default: '1' },
    },
  });
  const number = (name: keyof typeof values, min: number, max: number, integer = true) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max)
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
    return value;
  };
  const list = <T extends string>(name: 'scenarios' | 'contenders', allowed: readonly T[]) => {
    const items = values[name].split(',').map((s) => s.trim());
    const bad = items.find((s) => !allowed.includes(s as T));
    if (bad !== undefined) throw new Error(`--${name}: "${bad}" is not one of ${allowed.join(', ')}`);
    return items as T[];
  };
  return {
    events: number('events', 100, 10_000_000),
    duplicates: number('duplicates', 0, 1, false),
    duplicateSpread: number('duplicate-spread', 1, 1_000_000),
    pacedEvents: number('paced-events', 10, 1_000_000),
    rate: number('rate', 1, 100_000, false),
    warmupEvents: number('warmup-events', 0, 10_000_000),
    scenarios: list('scenarios', Object.keys(SCENARIOS) as Scenario[]),
    contenders: list('contenders', CONTENDERS),
    skipUsersGroups: values['skip-users-groups'],
    rawStreamPolling: values['raw-stream-polling'],
    seed: number('seed', 0, 2 ** 31),
  };
}

/** One scenario's traffic, the same for every contender: fixed seed, fixed `now`. */
function scenarioPlans(scenario: Scenario, usersAndGroups: boolean): Pick<RunPlan, 'warmup' | 'throughput' | 'paced'> {
  const subjects = config.subjects
    .filter((s) => !s.id.startsWith(WARMUP_PREFIX))
    .slice(0, SCENARIOS[scenario])
    .map((s) => s.id);
  const warmupSubjects = config.subjects.filter((s) => s.id.startsWith(WARMUP_PREFIX)).map((s) => s.id);
  const common = { duplicateRate: options.duplicates, duplicateSpread: options.duplicateSpread, subjects, now: Date.now(), usersAndGroups };
  return {
    warmup: { ...common, subjects: warmupSubjects, duplicateRate: 0, count: options.warmupEvents, idPrefix: 'warmup', seed: options.seed + 2 },
    throughput: { ...common, count: options.events, idPrefix: 'e', seed: options.seed },
    paced: { ...common, count: options.pacedEvents, idPrefix: 'paced', seed: options.seed + 1, ratePerSecond: options.rate },
  };
}

function groundTruth(plans: Pick<RunPlan, 'throughput' | 'paced'>): GroundTruth {
  const truth = new GroundTruth(Object.fromEntries(config.subjects.map((s) => [s.id, s.billingAnchorDay])));
  for (const plan of [plans.throughput, plans.paced] as EventPlan[]) for (const { event, duplicate } of messages(plan)) if (!duplicate) truth.accept(event);
  return truth;
}

// ── runs ────────────────────────────────────────────────────────────────────────────────────────

async function runRow(scenario: Scenario, contender: Contender, plans: Pick<RunPlan, 'warmup' | 'throughput' | 'paced'>, truth: GroundTruth, usersAndGroups: boolean): Promise<Row> {
  const label = `${LABELS[contender]}${usersAndGroups ? ', with users and groups' : ''}`;
  const row: Row = { scenario, contender, label, usersAndGroups, loadAverage: loadavg()[0] ?? 0 };
  console.log(`  ${label} (load average ${row.loadAverage.toFixed(2)}) …`);
  const started = performance.now();
  const timelineFile = await timelinePath(scenario, contender, usersAndGroups);
  const outcome = await runChild({ contender, scenario, configPath: CONFIG_FILE, ...plans, slowIdleStreams: !options.rawStreamPolling, ...(timelineFile ? { timelineFile } : {}) });
  if ('crashed' in outcome) {
    console.log(`    crashed: ${outcome.crashed}`);
    return { ...row, crashed: outcome.crashed };
  }
  const figures = figuresOf(outcome, check(truth, outcome.counted, plans.throughput.subjects));
  console.log(
    `    done in ${((performance.now() - started) / 1000).toFixed(0)} s: ${fmt(figures.eventsPerSecond, 0)} events/s, ${fmt(figures.writeUnitsPerEvent, 3)} WU/event, ${figures.correctness.summary}`,
  );
  for (const error of outcome.errors) console.log(`    error: ${error}`);
  return { ...row, report: outcome, figures };
}

/** BENCH_TIMELINE=dir: each run's handler invocations go to dir/SCENARIO-CONTENDER.jsonl (docs/performance.md, "Performance"). */
async function timelinePath(scenario: Scenario, contender: Contender, usersAndGroups: boolean): Promise<string | undefined> {
  const dir = process.env.BENCH_TIMELINE;
  if (!dir) return undefined;
  await mkdir(resolve(dir), { recursive: true });
  return join(resolve(dir), `${scenario}-${contender}${usersAndGroups ? '-users-groups' : ''}.jsonl`);
}

/** One contender in a fresh process; its progress lines are shown as they come, its stderr only if it fails. */
async function runChild(plan: RunPlan): Promise<RunReport | { crashed: string }> {
  // BENCH_CPU_PROF=dir: a V8 CPU profile of each contender's process (docs/performance.md, "Performance").
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const { result, code, stderr } = await runBenchScript<RunReport>(RUN_SCRIPT, plan, { cwd: ROOT, nodeArgs: profile });
  if (result) return result;
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return { crashed: `exit code ${code}: ${lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.at(-1) ?? 'no output'}` };
}

// ── report ──────────────────────────────────────────────────────────────────────────────────────

const fmt = (value: number | undefined, digits: number) =>
  value === undefined || !Number.isFinite(value) ? '–' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function printTable(rows: Row[], targets: Target[], drainRatios: DrainRatio[]): void {
  const header = [
    'scenario',
    'contender',
    'events/s',
    'drain s',
    'p50 ms',
    'p99 ms',
    'WU/event',
    'writes/event',
    'RU/event',
    'CPU ms/1k',
    'DDB CPU ms/1k',
    'peak RSS MB',
    'counted vs truth',
    '$/M events',
  ];
  const cells = rows.map(({ scenario, label, figures: f, crashed }) =>
    !f
      ? [scenario, label, `crashed: ${crashed ?? '?'}`]
      : [
          scenario,
          label,
          `${fmt(f.eventsPerSecond, 0)}${f.sustained ? '' : '*'}`,
          fmt(f.drain.seconds, 1),
          fmt(f.latency.p50Ms, 0),
          fmt(f.latency.p99Ms, 0),
          fmt(f.writeUnitsPerEvent, 3),
          fmt(f.writeRequestsPerEvent, 3),
          fmt(f.readUnitsPerEvent, 3),
          fmt(f.handlerCpuMsPer1k, 0),
          fmt(f.emulatorCpuMsPer1k, 0),
          fmt(f.peakRssMb, 0),
          f.correctness.summary,
          fmt(f.costPerMillionEvents.total, 2),
        ],
  );
  // The low rate: the sparse scenario's paced phase, the same events for every contender, its own units per event.
  for (const { label, figures: f } of rows.filter((r) => r.scenario === 'sparse' && !r.usersAndGroups && r.figures)) {
    if (!f) continue;
    cells.push([
      'low rate',
      label,
      `${fmt(options.rate, 0)} sent`,
      '–',
      fmt(f.latency.p50Ms, 0),
      fmt(f.latency.p99Ms, 0),
      fmt(f.paced.writeUnitsPerEvent, 3),
      fmt(f.paced.writeRequestsPerEvent, 3),
      fmt(f.paced.readUnitsPerEvent, 3),
      fmt(f.paced.handlerCpuMsPer1k, 0),
      fmt(f.paced.emulatorCpuMsPer1k, 0),
      '–',
      f.correctness.summary,
      fmt(f.paced.costPerMillionEvents.total, 2),
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r.length === header.length ? (r[i] ?? '').length : 0))));
  const line = (r: string[]) => r.map((c, i) => (i < 2 || i === 12 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(`\n${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('  ')}`);
  for (const r of cells) console.log(line(r));

  console.log(
    [
      '',
      `${fmt(options.events, 0)} events per scenario + ${fmt(Math.floor(options.events * options.duplicates), 0)} duplicates (resent 1–${fmt(options.duplicateSpread, 0)} messages later), ` +
        `pre-loaded on the queue after an unmeasured warm-up of ${fmt(options.warmupEvents, 0)} events on subjects of their own. ` +
        `events/s: unique events per second the contender sustains, between 10% and 90% of them reported visible (ours: by the aggregate invocations applying them; baselines: by their last UpdateItem); ` +
        `drain s: from the consumers' start until every counter holds every event, as read from DynamoDB (the first events' way through and, for ours, the last batch's window included). ` +
        `* the drain rate: 10% and 90% came in one report (one aggregate batch), too short a run to tell a sustained rate.`,
      `Latency: ${fmt(options.pacedEvents, 0)} further events sent at ${options.rate}/s, from send to the end of the commit that makes the event visible ` +
        `(ours: the aggregate invocation applying it; baselines: its last UpdateItem).`,
      `low rate: those ${fmt(options.pacedEvents, 0)} events (+${(options.duplicates * 100).toFixed(0)}% duplicates) at ${options.rate}/s over the sparse scenario's ` +
        `${fmt(SCENARIOS.sparse, 0)} workspaces; its units, CPU and cost are of that phase alone (its latency is the sparse row's).`,
      `WU/event, writes/event, RU/event: DynamoDB write units, write requests and read units per unique event in the throughput phase. Standard writes and reads as ` +
        `ReturnConsumedCapacity reports them, a refused conditional write as 1; ours' transactions at 2 units per item per started KB of the item's final size, ` +
        `an upper bound since items only grow (at 2 per item, the lower bound, see the JSON).`,
      `CPU ms/1k: process CPU while any handler ran (overlapping invocations counted once; the in-process SQS stand-in and pollers included), per 1,000 unique events. DDB CPU ms/1k: the DynamoDB Local (Java) process's CPU over the throughput phase, per 1,000 unique events. ` +
        `Peak RSS: the contender's whole process, SQS stand-in with its queue included, during the throughput phase.`,
      `$/M events: ${PRICES.region} on-demand list prices of ${PRICES.lookedUp} (bench/pipeline/prices.ts): DynamoDB writes and reads as measured, Lambda arm64 at the measured ` +
        `handler durations (1,024 MB, as deployed; durations against an emulator), SQS at 3 requests per 10 messages. DynamoDB Streams reads by Lambda are free.`,
      `Baseline B writes its idempotency record once; Powertools also updates it to COMPLETED after the handler (one more write unit per event).`,
      `Aggregate stream batches: up to ${fmt(EVENT_SOURCES.aggregate.batchSize, 0)} records, ${EVENT_SOURCES.aggregate.maxBatchingWindowSeconds} s window (functions/contract/resources.ts).`,
      options.rawStreamPolling
        ? 'Ours ran with the local runtime polling its idle alerts and exports streams every 100 ms (--raw-stream-polling).'
        : `Ours: the local runtime's polls of its idle alerts and exports streams were answered after ${IDLE_STREAM_POLL_MS / 1000} s (bench/pipeline/ours.ts): ` +
          'DynamoDB Local scans every stream record to answer an empty GetRecords, which AWS does not. --raw-stream-polling runs them as they are.',
    ].join('\n'),
  );
  for (const { scenario, label, contender, figures, report } of rows) {
    if (contender !== 'ours' || !figures || !report) continue;
    const { uniqueEvents, functions, transactions } = report.throughput;
    console.log(
      `${scenario}, ${label}: on average ${fmt(uniqueEvents / (functions.aggregate?.invocations ?? Number.NaN), 0)} events per aggregate batch, ` +
        `${fmt(uniqueEvents / transactions.transactions, 0)} events and ${fmt(transactions.items / transactions.transactions, 0)} items per transaction; ` +
        `at ${options.rate} events/s, ${fmt(figures.paced.writeUnitsPerEvent, 3)} WU/event.`,
    );
  }

  console.log('\nTargets');
  for (const t of targets) console.log(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.scenario.padEnd(8)}  ${t.name}: ${fmt(t.value, t.digits)} (${t.goal})`);
  if (drainRatios.length > 0) console.log(`  (over the whole drain, ours ÷ baseline B: ${drainRatios.map((d) => `${d.scenario}: ${fmt(d.ratio, 2)}`).join(', ')})`);
}

async function writeResults(rows: Row[], targets: Target[], density: DensityPoint[]): Promise<void> {
  const cpu = cpus();
  const document = {
    benchmark: 'pipeline',
    date: new Date().toISOString(),
    machine: { platform: platform(), release: release(), arch: arch(), cpus: cpu.length, cpuModel: cpu[0]?.model ?? 'unknown', totalMemoryMb: Math.round(totalmem() / 1024 / 1024) },
    node: process.version,
    parameters: {
      events: options.events,
      duplicateRate: options.duplicates,
      duplicateSpread: options.duplicateSpread,
      warmupEvents: options.warmupEvents,
      pacedEvents: options.pacedEvents,
      pacedRatePerSecond: options.rate,
      scenarios: Object.fromEntries(options.scenarios.map((s) => [s, { workspaces: SCENARIOS[s] }])),
      usageTypes: config.usageTypes.map((u) => u.id),
      seed: options.seed,
      eventSources: EVENT_SOURCES,
      oursIdleStreamPollMs: options.rawStreamPolling ? null : IDLE_STREAM_POLL_MS,
      prices: PRICES,
    },
    targets,
    densityCurve: density,
    results: rows.map(({ scenario, contender, label, usersAndGroups, loadAverage, figures, crashed, report }) => ({
      scenario,
      contender,
      label,
      usersAndGroups,
      loadAverageAtStart: loadAverage,
      crashed,
      figures,
      // Everything measured, less the raw latencies and counters (summarized in figures).
      report: report && { ...report, paced: { ...report.paced, latencyMs: undefined }, counted: undefined },
    })),
  };
  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(document, null, 2)}\n`);
  const bars = rows.flatMap((r) =>
    r.figures ? [{ scenario: r.scenario, label: r.label, ours: r.contender === 'ours', writeUnitsPerEvent: r.figures.writeUnitsPerEvent, eventsPerSecond: r.figures.eventsPerSecond }] : [],
  );
  await writeFile(
    CHART_FILE,
    renderChart(
      bars,
      options.scenarios.map((scenario) => ({ scenario, value: TARGETS.writeUnitsPerEvent[scenario] })),
    ),
  );
  console.log(`\nresults written to ${RESULTS_FILE.slice(ROOT.length + 1)} and ${CHART_FILE.slice(ROOT.length + 1)}`);
}

// ── run (last, so that every declaration above is initialized) ─────────────────────────────────

const options = parseOptions();
const config = loadConfigFile(CONFIG_FILE);
console.log(
  `pipeline benchmark: ${options.contenders.join(', ')} on ${options.scenarios.join(' and ')}; ` +
    `${options.events.toLocaleString('en-US')} events + ${(options.duplicates * 100).toFixed(0)}% duplicates per scenario, then ${options.pacedEvents.toLocaleString('en-US')} at ${options.rate}/s`,
);
await main();
