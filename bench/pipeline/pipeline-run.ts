/**
 * One contender of bench/pipeline/bench-pipeline.ts on one scenario, alone in a fresh process with its own DynamoDB
 * Local and SQS stand-in. Usage: pipeline-run '<RunPlan as JSON>'. In order:
 *   1. start the contender, its handlers held at a gate, and warm it up (unmeasured) on subjects of its own;
 *   2. throughput: put every message on the queue, open the gate, and poll the cycle counters until
 *      each equals what the contender must count (the exact totals; every message for baseline A);
 *   3. latency: send the paced messages at a steady rate and note when each event becomes visible;
 *   4. read every counter back and price the transactions from the final item sizes.
 * Prints `PROGRESS …` lines, then one `RESULT {json}` line (RunReport).
 */

import { writeFileSync } from 'node:fs';
import { type AttributeValue, BatchGetItemCommand, type BatchGetItemCommandOutput, DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { loadConfigFile } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { eventKey } from '../../functions/core/metering/envelope';
import { sleep } from '../../local/sqs-poller';
import { LOCAL_CREDENTIALS } from '../../local/stand-ins';
import { utcCycleStart } from '../../testkit/ground-truth';
import { startBaseline } from './baselines';
import { DynamoMeter } from './capacity-meter';
import { type ContenderStack, emulatorCpu, Gate, HandlerClock, type Hooks, type Invocation, RssSampler, Visibility } from './harness';
import { startOurs } from './ours';
import { type CountedBuckets, type PhaseReport, PROGRESS_PREFIX, RESULT_PREFIX, type RunPlan, type RunReport } from './pipeline-protocol';
import { type EventPlan, type Message, messages, USAGE_TYPE } from './traffic';

const REGION = 'us-east-1';
const MB = 1024 * 1024;
const SENDS_IN_FLIGHT = 16;
/**
 * Reading 1,000 cycle items (10 BatchGetItem requests) costs DynamoDB Local ~100 ms of the SQLite thread
 * every contender's writes wait for. So the counters are read every READ_MS once the contender reports
 * every event applied, and every IDLE_READ_MS before that (progress, and a contender that under-reports).
 */
const READ_MS = 100;
const IDLE_READ_MS = 5_000;
const REPORT_CHECK_MS = 50;
const PACED_TIMEOUT_MS = 180_000;

async function run(): Promise<RunReport> {
  // 0. Warm-up, unmeasured: DynamoDB Local's JIT takes tens of thousands of requests to settle, and a
  //    contender making fewer requests per event would otherwise carry more of that cost per event.
  if (plan.warmup.count > 0) {
    progress(`warming up with ${plan.warmup.count.toLocaleString('en-US')} events on subjects of their own`);
    hooks.meter.startPhase('warmup');
    const warmup = await preload(plan.warmup);
    hooks.gate.open();
    await untilCounted(mustCount(warmup), performance.now());
    await stack.settle();
    hooks.gate.close();
    hooks.clock.take();
  }

  // 1–2. Throughput on a pre-loaded queue.
  progress(`loading ${plan.throughput.count.toLocaleString('en-US')} events and their duplicates onto the queue`);
  const loadStarted = performance.now();
  const load = await preload(plan.throughput);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  progress(`loaded ${load.messages.toLocaleString('en-US')} messages in ${loadSeconds.toFixed(1)} s; consuming`);
  hooks.meter.startPhase('throughput');
  rss.reset();
  const cpu = process.cpuUsage();
  const emulatorStart = emulatorCpuMs?.();
  const started = performance.now();
  const must = mustCount(load);
  hooks.visibility.track(must.reports);
  hooks.gate.open();
  await untilCounted(must, started);
  const seconds = (performance.now() - started) / 1000;
  const sustained = hooks.visibility.sustained();
  progress(`every event visible after ${seconds.toFixed(1)} s; settling`);
  await stack.settle(); // duplicates still queued are processed, and their writes counted, before the phase closes
  const handlers = hooks.clock.take();
  if (plan.timelineFile) writeTimeline(plan.timelineFile, handlers.invocations, started);
  const throughput = phaseReport('throughput', load, seconds, process.cpuUsage(cpu), emulatorStart, handlers);

  // 3. Latency at a steady rate.
  const rate = plan.paced.ratePerSecond;
  progress(`latency: ${plan.paced.count.toLocaleString('en-US')} events at ${rate}/s`);
  hooks.meter.startPhase('paced');
  const pacedCpu = process.cpuUsage();
  const pacedEmulatorStart = emulatorCpuMs?.();
  const paced = await sendPaced(plan.paced, rate);
  const deadline = Date.now() + PACED_TIMEOUT_MS;
  while (hooks.visibility.pending > 0 && Date.now() < deadline) await sleep(50);
  const pacedSeconds = Math.max(0, hooks.visibility.lastVisibleAt - paced.firstSentAt) / 1000;
  await stack.settle();
  const pacedReport = phaseReport('paced', paced, pacedSeconds, process.cpuUsage(pacedCpu), pacedEmulatorStart, hooks.clock.take());

  // 4. Final state.
  progress('reading the counters back');
  const counted = await readBuckets(plan.throughput.subjects);
  const transactions = await hooks.meter.transactionUnits(dynamodb);
  const none = { transactions: 0, cancelled: 0, items: 0, sizedUnits: 0, minimumUnits: 0 };
  return {
    contender: plan.contender,
    scenario: plan.scenario,
    loadSeconds,
    throughput: { ...throughput, transactions: transactions.get('throughput') ?? none, ...(sustained ? { sustained: { ...sustained, reportsPerUniqueEvent: must.reports / load.unique } } : {}) },
    paced: { ...pacedReport, transactions: transactions.get('paced') ?? none, ratePerSecond: rate, latencyMs: hooks.visibility.latenciesMs(), unseen: hooks.visibility.pending },
    counted,
    maxRssMb: (process.resourceUsage().maxRSS * 1024) / MB,
    errors,
  };
}

function phaseReport(
  phase: string,
  sent: Sent,
  seconds: number,
  cpu: NodeJS.CpuUsage,
  emulatorStart: number | undefined,
  { functions, handlerCpuMs }: ReturnType<HandlerClock['take']>,
): Omit<PhaseReport, 'transactions'> {
  return {
    messages: sent.messages,
    uniqueEvents: sent.unique,
    tables: hooks.meter.tables(phase),
    functions,
    handlerCpuMs,
    processCpuMs: (cpu.user + cpu.system) / 1000,
    ...(emulatorStart !== undefined && emulatorCpuMs ? { emulatorCpuMs: emulatorCpuMs() - emulatorStart } : {}),
    seconds,
    peakRssMb: rss.reset(),
  };
}

/** One line per handler invocation of the throughput phase, in seconds from the consumers' start. */
function writeTimeline(file: string, invocations: readonly Invocation[], origin: number): void {
  const seconds = (ms: number) => Math.round(ms - origin) / 1000;
  const lines = invocations.map((i) => JSON.stringify({ function: i.function, start: seconds(i.startMs), end: seconds(i.endMs), records: i.records }));
  writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
}

interface Sent {
  messages: number;
  unique: number;
}

const cycleKey = (subject: string, cycleStart: string) => `${subject}\u0000${cycleStart}`;

/**
 * Puts every message of the plan on the queue, ten per SendMessageBatch, and adds up what the cycle
 * counters must hold afterwards: the exact totals (each event once) and every message's (baseline A).
 */
async function preload(eventPlan: EventPlan): Promise<Sent & { exact: Map<string, number>; everyMessage: Map<string, number> }> {
  const exact = new Map<string, number>();
  const everyMessage = new Map<string, number>();
  const sent = { messages: 0, unique: 0 };
  const batches = tens(messages(eventPlan));
  // The workers share one generator; each takes the next ten messages as soon as its send is done.
  const worker = async () => {
    for (let next = batches.next(); !next.done; next = batches.next()) {
      for (const { event, duplicate } of next.value) {
        const key = cycleKey(event.subject, utcCycleStart(new Date(event.time), anchors.get(event.subject) ?? 1).toISOString());
        everyMessage.set(key, (everyMessage.get(key) ?? 0) + event.data.quantity);
        if (!duplicate) exact.set(key, (exact.get(key) ?? 0) + event.data.quantity);
        sent.messages += 1;
        sent.unique += duplicate ? 0 : 1;
      }
      await send(next.value);
    }
  };
  await Promise.all(Array.from({ length: SENDS_IN_FLIGHT }, worker));
  return { ...sent, exact, everyMessage };
}

/** Sends the plan's messages in tens at `rate` messages a second, noting when each event was first sent. */
async function sendPaced(eventPlan: EventPlan, rate: number): Promise<Sent & { firstSentAt: number }> {
  const sent = { messages: 0, unique: 0, firstSentAt: Date.now() };
  let batch = 0;
  for (const ten of tens(messages(eventPlan))) {
    await sleep(sent.firstSentAt + (batch++ * 10_000) / rate - Date.now());
    const at = Date.now();
    for (const { event, duplicate } of ten) {
      hooks.visibility.sent(eventKey(event), at);
      sent.messages += 1;
      sent.unique += duplicate ? 0 : 1;
    }
    await send(ten);
  }
  return sent;
}

function* tens(all: Iterable<Message>): Generator<Message[]> {
  let batch: Message[] = [];
  for (const message of all) {
    batch.push(message);
    if (batch.length === 10) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

async function send(batch: Message[]): Promise<void> {
  const { Failed = [] } = await sqs.send(new SendMessageBatchCommand({ QueueUrl: stack.sqs.queueUrl, Entries: batch.map((m, i) => ({ Id: String(i), MessageBody: m.body })) }));
  if (Failed.length > 0) throw new Error(`SendMessageBatch failed: ${JSON.stringify(Failed)}`);
}

/** What the contender's counters must reach: the exact totals, or every message's for baseline A, which does not deduplicate. */
function mustCount(sent: Sent & { exact: Map<string, number>; everyMessage: Map<string, number> }): { targets: Map<string, number>; reports: number } {
  return plan.contender === 'baseline-a' ? { targets: sent.everyMessage, reports: sent.messages } : { targets: sent.exact, reports: sent.unique };
}

/**
 * Reads the cycle counters until each holds at least its target; counters only grow, so one that has
 * reached it is not read again. The counters decide; the contender's reports (`Visibility.reported`)
 * only say when to read them often. Fails if nothing moves for two minutes.
 */
async function untilCounted({ targets, reports }: { targets: Map<string, number>; reports: number }, started: number): Promise<void> {
  const remaining = new Map(targets);
  const total = [...targets.values()].reduce((a, b) => a + b, 0);
  const reportedBefore = hooks.visibility.reported;
  let reached = 0; // the targets of the counters already complete
  let lastCounted = -1;
  let lastChange = Date.now();
  let lastProgress = Date.now();
  let lastRead = 0;
  while (remaining.size > 0) {
    const reportedAll = hooks.visibility.reported - reportedBefore >= reports;
    if (!reportedAll && Date.now() - lastRead < IDLE_READ_MS) {
      await sleep(REPORT_CHECK_MS);
      continue;
    }
    lastRead = Date.now();
    const counts = await cycleTotals([...remaining.keys()]);
    let partial = 0;
    for (const [key, target] of remaining) {
      const count = counts.get(key) ?? 0;
      if (count >= target) {
        remaining.delete(key);
        reached += target;
      } else partial += count;
    }
    const counted = reached + partial;
    if (counted !== lastCounted) [lastCounted, lastChange] = [counted, Date.now()];
    if (Date.now() - lastChange > 120_000) throw new Error(`counters stalled at ${counted} of ${total} for two minutes`);
    if (Date.now() - lastProgress > 10_000) {
      lastProgress = Date.now();
      progress(`${((100 * counted) / total).toFixed(0)}% counted after ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
    if (remaining.size > 0 && reportedAll) await sleep(READ_MS);
  }
}

/** The `total` of cycle items, both layouts keying them `C#cycleStart#usageType`; ours' read as its API reads them, pending deltas included. */
async function cycleTotals(keys: string[]): Promise<Map<string, number>> {
  const totals = new Map<string, number>();
  if (stack.counters.layout === 'rollups') {
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100).map((key) => {
        const [subject = '', cycleStart = ''] = key.split('\u0000');
        return { subject, cycleStart, usageType: USAGE_TYPE };
      });
      for (const row of (await rollups().cycleItems(batch)).entries()) {
        const [id, item] = row;
        totals.set(cycleKey(id.split('\u0000')[0] ?? '', item.period), Number(item.total));
      }
    }
    return totals;
  }
  const table = stack.counters.table;
  for (let i = 0; i < keys.length; i += 100) {
    let request: Record<string, AttributeValue>[] | undefined = keys.slice(i, i + 100).map((key) => {
      const [subject = '', cycleStart = ''] = key.split('\u0000');
      return { pk: { S: subject }, sk: { S: `C#${cycleStart}#${USAGE_TYPE}` } };
    });
    while (request && request.length > 0) {
      const response: BatchGetItemCommandOutput = await dynamodb.send(
        new BatchGetItemCommand({ RequestItems: { [table]: { Keys: request, ProjectionExpression: 'pk, sk, #total', ExpressionAttributeNames: { '#total': 'total' } } } }),
      );
      for (const item of response.Responses?.[table] ?? []) {
        const cycleStart = item.sk?.S?.split('#')[1] ?? '';
        totals.set(cycleKey(item.pk?.S ?? '', cycleStart), Number(item.total?.N ?? 0));
      }
      request = response.UnprocessedKeys?.[table]?.Keys;
    }
  }
  return totals;
}

/** Every hour, day and cycle total of the subjects, from either layout, keyed by bucket start as the ground truth keys them. */
async function readBuckets(subjects: readonly string[]): Promise<CountedBuckets> {
  const counted: CountedBuckets = {};
  const queue = [...subjects];
  const worker = async () => {
    for (let subject = queue.shift(); subject !== undefined; subject = queue.shift()) {
      const buckets = (counted[subject] = { hour: {}, day: {}, cycle: {} } as CountedBuckets[string]);
      if (stack.counters.layout === 'rollups') {
        // Ours through its own reader: the items plus the deltas still pending in their lane (core/metering/pending.ts).
        const [days, cycles] = await Promise.all([rollups().query(subject, 'day', '0', '9'), rollups().query(subject, 'cycle', '0', '9')]);
        for (const row of cycles) buckets.cycle[row.period] = Number(row.total);
        for (const row of days) {
          buckets.day[`${row.period}T00:00:00.000Z`] = Number(row.total);
          for (const [name, value] of Object.entries(row.counters)) if (name.startsWith('h#')) buckets.hour[`${name.slice(2)}:00:00.000Z`] = Number(value);
        }
        continue;
      }
      let ExclusiveStartKey: Record<string, AttributeValue> | undefined;
      do {
        const page = await dynamodb.send(
          new QueryCommand({ TableName: stack.counters.table, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: subject } }, ExclusiveStartKey }),
        );
        for (const item of page.Items ?? []) addBuckets(buckets, item);
        ExclusiveStartKey = page.LastEvaluatedKey;
      } while (ExclusiveStartKey);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return counted;
}

function addBuckets(buckets: CountedBuckets[string], item: Record<string, AttributeValue>): void {
  const [kind, period = ''] = (item.sk?.S ?? '').split('#');
  const total = Number(item.total?.N ?? 0);
  if (kind === 'C') buckets.cycle[period] = total;
  if (kind === 'D') buckets.day[`${period}T00:00:00.000Z`] = total;
  if (kind === 'H') buckets.hour[`${period}:00:00.000Z`] = total;
}

// ── run (last, so that every declaration above is initialized) ─────────────────────────────────

const plan = JSON.parse(process.argv[2] ?? '') as RunPlan;
const config = loadConfigFile(plan.configPath);
const anchors = new Map(config.subjects.map((s) => [s.id, s.billingAnchorDay]));
const progress = (line: string) => process.stdout.write(`${PROGRESS_PREFIX}${line}\n`);

const errors: string[] = [];
const hooks: Hooks = {
  gate: new Gate(),
  clock: new HandlerClock(),
  visibility: new Visibility(),
  meter: new DynamoMeter(),
  onError: (message) => {
    if (errors.length < 20) errors.push(message);
  },
};
const rss = new RssSampler();
const stack: ContenderStack =
  plan.contender === 'ours' ? await startOurs(plan.configPath, hooks, { slowIdleStreams: plan.slowIdleStreams }) : await startBaseline(plan.contender, plan.configPath, hooks);
const emulatorCpuMs = emulatorCpu(stack.dynamodb.endpoint);
const clientConfig = { region: REGION, credentials: LOCAL_CREDENTIALS };
const sqs = new SQSClient({ ...clientConfig, endpoint: stack.sqs.endpoint });
// The harness's own client: what it reads is not metered against the contender.
const dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: stack.dynamodb.endpoint, maxAttempts: 8 });
let ownReader: DynamoRollups | undefined;
const rollups = () => (ownReader ??= new DynamoRollups(createDocumentClient(dynamodb), stack.counters.table));

try {
  const report = await run();
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);
} finally {
  rss.stop();
  sqs.destroy();
  dynamodb.destroy();
  await stack.stop();
}
