/**
 * Export memory benchmark. The issue's target: "an export of at least 1,000,000 buckets stays under
 * 256 MB of memory". In one run this
 *   1. starts DynamoDB Local, and the fauxqs S3 stand-in in a process of its own (it keeps stored
 *      files in memory, which must not count against a contender);
 *   2. seeds day rollup items exactly as the aggregator writes them, enough for ≥ 1,000,000 hour buckets;
 *   3. runs each contender in a fresh process, which reports its own peak memory:
 *        streamed json / jsonl      this pipeline: runExport with the export Lambda's adapters;
 *        baseline: buffered json    every bucket in an array, one JSON.stringify, one PutObject;
 *   4. downloads each file and checks it against figures derived from the seeding parameters alone;
 *   5. prints the contenders side by side and writes bench/results/export-memory.json.
 *
 *   npm run bench:export -- [--subjects 500] [--days 28] [--usage-types 3] [--start 2025-02-01]
 *                           [--concurrency 16] [--heap-mb 4096] [--runner bundle|tsx] [--skip-baseline]
 *
 * A quick run: `npm run bench:export -- --subjects 20 --days 7`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { arch, cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteObjectCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BatchWriteCommand, type DynamoDBDocumentClient, NumberValue } from '@aws-sdk/lib-dynamodb';
import { build } from 'esbuild';
import { DateTime } from 'luxon';
import { backoff, createDocumentClient } from '../../functions/adapters/dynamodb';
import { BUCKETS, TABLES } from '../../functions/contract/resources';
import { rollupSortKey } from '../../functions/core/metering/rollups';
import type { Subject } from '../../functions/core/ports';
import { type NanoUnits, toDecimalString, toNanoUnits } from '../../functions/core/quantity';
import type { ExportBucket } from '../../functions/core/reporting/report-schema';
import { createBucket, createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, type StandIn, startDynamoDbLocal } from '../../local/stand-ins';
import { Random } from '../../testkit/random';
import { type Mode, RANGE_ENV, RESULT_PREFIX, type RunReport } from './export-protocol';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RUN_SCRIPT = join(ROOT, 'bench', 'export', 'export-run.ts');
const S3_STAND_IN_SCRIPT = join(ROOT, 'bench', 'export', 's3-stand-in.ts');
const RESULTS_FILE = join(ROOT, 'bench', 'results', 'export-memory.json');
const REGION = 'us-east-1';
const TARGET_MB = 256;
const MB = 1024 * 1024;
const NANO = 1_000_000_000n;
/** As lib/usage-function.ts bundles the Lambda functions: bundled CommonJS dependencies call `require`. */
const REQUIRE_SHIM = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

/** Whole-hour offsets only: with a half-hour zone one UTC hour would straddle two local days' items. */
const ZONES = ['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Tokyo', 'America/Los_Angeles'];
const CHANNELS = ['api', 'mobile', 'web'];
/** The usage types of the example configuration, each with quantities of its own shape (credits have decimals). */
const USAGE_TYPES: { id: string; draw: (random: Random) => NanoUnits }[] = [
  { id: 'tokens', draw: (random) => BigInt(1 + random.int(50_000)) * NANO },
  { id: 'images', draw: (random) => BigInt(1 + random.int(20)) * NANO },
  { id: 'credits', draw: (random) => BigInt(1 + random.int(99_999_999)) * 1000n },
];

interface Contender {
  name: string;
  mode: Mode;
  format: 'json' | 'jsonl';
  /** Held to the 256 MB target; the baseline is there for comparison only. */
  target: boolean;
}

const CONTENDERS: Contender[] = [
  { name: 'streamed json', mode: 'streamed-json', format: 'json', target: true },
  { name: 'streamed jsonl', mode: 'streamed-jsonl', format: 'jsonl', target: true },
  { name: 'baseline: buffered json', mode: 'buffered', format: 'json', target: false },
];

async function main(): Promise<void> {
  const [dynamo, s3StandIn] = await Promise.all([startDynamoDbLocal({ region: REGION }), startS3StandIn()]);
  stops.push(dynamo.stop, s3StandIn.stop);
  const clientConfig = { region: REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 8 };
  const dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: dynamo.endpoint });
  const documents = createDocumentClient(dynamodb);
  const s3 = new S3Client({ ...clientConfig, endpoint: s3StandIn.endpoint, forcePathStyle: true });
  stops.push(async () => [dynamodb, s3].forEach((client) => client.destroy()));
  const { names } = await createTables(dynamodb);
  const bucket = await createBucket(s3);

  const seeding = await seed(documents, names.subjects, names.rollups);
  if (seeding.hourCounters !== plan.expectedBuckets) throw new Error(`seeded ${seeding.hourCounters} hour counters, planned ${plan.expectedBuckets}`);

  const runner = options.runner === 'bundle' ? await bundleRunner() : undefined;
  if (runner) stops.push(() => rm(dirname(runner), { recursive: true, force: true }));
  const childEnv = {
    PATH: process.env.PATH ?? '',
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ENDPOINT_URL_S3: s3StandIn.endpoint,
    ...Object.fromEntries(Object.entries(TABLES).map(([key, table]) => [table.envVar, names[key as keyof typeof TABLES]])),
    [BUCKETS.reports.envVar]: bucket,
    [RANGE_ENV.from]: plan.from,
    [RANGE_ENV.to]: plan.to,
  };

  const results: Result[] = [];
  for (const contender of CONTENDERS.filter((c) => !options.skipBaseline || c.target)) {
    console.log(`running ${contender.name} …`);
    const report = await runContender(contender.mode, runner, childEnv);
    const check = 'crashed' in report || !report.ok || !report.key ? undefined : await verify(s3, bucket, contender, report, seeding.quantity);
    // The stand-in holds every file in memory; each is dropped once checked.
    if ('key' in report && report.key) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: report.key }));
    const result = judge(contender, report, check);
    results.push(result);
    const figures = 'crashed' in report ? '' : ` in ${report.seconds.toFixed(1)} s, peak ${(result.peakMb ?? 0).toFixed(1)} MB`;
    console.log(`  ${result.verdict}${figures}${result.problem ? `: ${result.problem}` : ''}`);
  }

  printTable(results);
  await writeResults(seeding, results);
  if (results.some((r) => r.contender.target && r.verdict !== 'PASS')) process.exitCode = 1;
}

// ── plan ────────────────────────────────────────────────────────────────────────────────────────

interface Options {
  subjects: number;
  days: number;
  usageTypes: number;
  start: string;
  concurrency: number;
  heapMb: number;
  runner: 'bundle' | 'tsx';
  skipBaseline: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      subjects: { type: 'string', default: '500' },
      days: { type: 'string', default: '28' },
      'usage-types': { type: 'string', default: String(USAGE_TYPES.length) },
      start: { type: 'string', default: '2025-02-01' },
      concurrency: { type: 'string', default: '16' },
      'heap-mb': { type: 'string', default: '4096' },
      runner: { type: 'string', default: 'bundle' },
      'skip-baseline': { type: 'boolean', default: false },
    },
  });
  const int = (name: keyof typeof values, min: number, max: number) => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < min || value > max) throw new Error(`--${name} must be an integer from ${min} to ${max}`);
    return value;
  };
  if (!/^\d{4}-\d{2}-\d{2}$/.test(values.start)) throw new Error('--start must be a date, YYYY-MM-DD');
  if (values.runner !== 'bundle' && values.runner !== 'tsx') throw new Error('--runner must be bundle or tsx');
  return {
    subjects: int('subjects', 1, 100_000),
    days: int('days', 1, 366),
    usageTypes: int('usage-types', 1, USAGE_TYPES.length),
    start: values.start,
    concurrency: int('concurrency', 1, 256),
    heapMb: int('heap-mb', 64, 65_536),
    runner: values.runner,
    skipBaseline: values['skip-baseline'],
  };
}

/**
 * Who, which days, and what the export must then hold. Expected figures come from luxon's calendar,
 * not from the project's own time-zone code, so that the check is independent of what it checks.
 */
function planFor(options: Options) {
  const subjects: Subject[] = Array.from({ length: options.subjects }, (_, i) => ({
    id: `ws_${String(i).padStart(6, '0')}`,
    plan: 'pro',
    billingAnchorDay: 1 + (i % 28),
    timeZone: ZONES[i % ZONES.length] ?? 'UTC',
    contacts: [`billing+${i}@example.com`],
    createdAt: `${options.start}T00:00:00.000Z`,
  }));
  const first = DateTime.fromISO(options.start, { zone: 'UTC' });
  const days = Array.from({ length: options.days }, (_, i) => first.plus({ days: i }).toISODate() ?? '');
  const usageTypes = USAGE_TYPES.slice(0, options.usageTypes);
  const zones = [...new Set(subjects.map((s) => s.timeZone))];
  // From the earliest local midnight to the latest: every seeded hour is inside, whatever the zone.
  const from = zones.map((zone) => localMidnight(days[0] ?? '', zone)).sort()[0] ?? '';
  const to =
    zones
      .map((zone) => localMidnight(nextDay(days.at(-1) ?? ''), zone))
      .sort()
      .at(-1) ?? '';
  let expectedBuckets = 0;
  for (const subject of subjects) for (const day of days) expectedBuckets += utcHoursOf(day, subject.timeZone).length * usageTypes.length;
  return { subjects, days, usageTypes, from, to, expectedBuckets };
}

const localMidnight = (day: string, zone: string) => DateTime.fromISO(day, { zone }).toUTC().toISO() ?? '';
const nextDay = (day: string) => DateTime.fromISO(day, { zone: 'UTC' }).plus({ days: 1 }).toISODate() ?? '';

const hoursCache = new Map<string, string[]>();
/** The UTC hours ('YYYY-MM-DDTHH') of a local day: 24, or 23 / 25 across a daylight-saving change. */
function utcHoursOf(day: string, zone: string): string[] {
  const cacheKey = `${zone} ${day}`;
  let hours = hoursCache.get(cacheKey);
  if (!hours) {
    const start = DateTime.fromISO(day, { zone });
    const end = start.plus({ days: 1 });
    if (!start.isValid || start.offset % 60 !== 0 || end.offset % 60 !== 0) throw new Error(`${zone}: only whole-hour offsets are supported`);
    hours = [];
    for (let t = start; t < end; t = t.plus({ hours: 1 })) hours.push(t.toUTC().toFormat("yyyy-MM-dd'T'HH"));
    hoursCache.set(cacheKey, hours);
  }
  return hours;
}

// ── seeding ─────────────────────────────────────────────────────────────────────────────────────

interface Seeding {
  subjects: number;
  dayItems: number;
  hourCounters: number;
  /** Sum of every hour counter, in nano-units: what each export's quantities must add up to. */
  quantity: NanoUnits;
  seconds: number;
  itemsPerSecond: number;
}

async function seed(documents: DynamoDBDocumentClient, subjectsTable: string, rollupsTable: string): Promise<Seeding> {
  const started = performance.now();
  await putAll(
    documents,
    subjectsTable,
    plan.subjects.map((subject) => ({ ...subject })),
    () => undefined,
  );
  const total = plan.subjects.length * plan.days.length * plan.usageTypes.length;
  const tally = { hourCounters: 0, quantity: 0n };
  let written = 0;
  const progress = () => {
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `  seeded ${written.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} day items (${((100 * written) / total).toFixed(0)}%), ${(written / seconds).toFixed(0)} items/s, ${seconds.toFixed(1)} s`,
    );
  };
  const ticker = setInterval(progress, 5000);
  try {
    await putAll(documents, rollupsTable, dayItems(new Random(1), tally), (n) => (written += n));
  } finally {
    clearInterval(ticker);
  }
  progress();
  const seconds = (performance.now() - started) / 1000;
  return { subjects: plan.subjects.length, dayItems: written, hourCounters: tally.hourCounters, quantity: tally.quantity, seconds, itemsPerSecond: written / seconds };
}

/**
 * Day items as the aggregator leaves them (see DynamoRollups' toUpdate): usageType, period, total, and
 * counters h#hour and ch#hour#channel, all DynamoDB numbers written from exact decimal text. Every event
 * names a channel, so an hour is the sum of its channels and the total the sum of its hours.
 * Generated lazily: the whole table never sits in this process.
 */
function* dayItems(random: Random, tally: { hourCounters: number; quantity: NanoUnits }): Generator<Record<string, unknown>> {
  for (const subject of plan.subjects) {
    for (const day of plan.days) {
      for (const usageType of plan.usageTypes) {
        const item: Record<string, unknown> = { pk: subject.id, sk: rollupSortKey('day', day, usageType.id), usageType: usageType.id, period: day };
        let total = 0n;
        for (const hour of utcHoursOf(day, subject.timeZone)) {
          let hourTotal = 0n;
          const channels = 1 + random.int(CHANNELS.length);
          const firstChannel = random.int(CHANNELS.length);
          for (let c = 0; c < channels; c++) {
            const quantity = usageType.draw(random);
            item[`ch#${hour}#${CHANNELS[(firstChannel + c) % CHANNELS.length]}`] = dynamoNumber(quantity);
            hourTotal += quantity;
          }
          item[`h#${hour}`] = dynamoNumber(hourTotal);
          total += hourTotal;
          tally.hourCounters += 1;
        }
        item.total = dynamoNumber(total);
        tally.quantity += total;
        yield item;
      }
    }
  }
}

const dynamoNumber = (units: NanoUnits) => NumberValue.from(toDecimalString(units));

const BATCH_ITEMS = 25;
const MAX_BATCH_ATTEMPTS = 10;

/** BatchWriteItem, 25 items a request, `concurrency` requests in flight, unprocessed items retried with backoff. */
async function putAll(documents: DynamoDBDocumentClient, table: string, items: Iterable<Record<string, unknown>>, onWritten: (count: number) => void): Promise<void> {
  const iterator = items[Symbol.iterator]();
  // Workers share the one iterator; each takes the next 25 items as soon as its request is done.
  const nextBatch = () => {
    const batch: Record<string, unknown>[] = [];
    for (let next = iterator.next(); !next.done; next = iterator.next()) if (batch.push(next.value) === BATCH_ITEMS) break;
    return batch;
  };
  const worker = async () => {
    for (let batch = nextBatch(); batch.length > 0; batch = nextBatch()) {
      let pending = batch.map((Item) => ({ PutRequest: { Item } }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt === MAX_BATCH_ATTEMPTS) throw new Error(`${pending.length} items of ${table} still unprocessed after ${attempt} attempts`);
        if (attempt > 0) await backoff(attempt);
        const { UnprocessedItems } = await documents.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
        pending = (UnprocessedItems?.[table] ?? []).map((request) => ({ PutRequest: { Item: request.PutRequest?.Item ?? {} } }));
      }
      onWritten(batch.length);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
}

// ── processes ───────────────────────────────────────────────────────────────────────────────────

/** The S3 stand-in in its own process; it prints its endpoint once listening and exits when its stdin closes. */
async function startS3StandIn(): Promise<StandIn> {
  const child = spawn(process.execPath, ['--import', 'tsx', S3_STAND_IN_SCRIPT], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', AWS_REGION: REGION }, stdio: ['pipe', 'pipe', 'inherit'] });
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const endpoint = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve((JSON.parse(line) as { endpoint: string }).endpoint));
    child.once('exit', (code) => reject(new Error(`the S3 stand-in exited (code ${code}) before listening`)));
  });
  return {
    endpoint,
    stop: async () => {
      process.removeListener('exit', kill);
      if (child.exitCode !== null) return;
      child.stdin.end();
      if (!(await exited(child, 3000))) kill();
    },
  };
}

const exited = (child: ChildProcess, ms: number) =>
  Promise.race([new Promise<boolean>((resolve) => child.once('exit', () => resolve(true))), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]);

/**
 * The contender script bundled as the export Lambda is (esbuild, ESM, minified; lib/usage-function.ts),
 * so the measured process is plain Node running one file: no TypeScript loader thread in its RSS.
 */
async function bundleRunner(): Promise<string> {
  const outfile = join(await mkdtemp(join(tmpdir(), 'export-bench-')), 'export-run.mjs');
  await build({
    entryPoints: [RUN_SCRIPT],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    mainFields: ['module', 'main'],
    banner: { js: REQUIRE_SHIM },
    logLevel: 'error',
  });
  return outfile;
}

type Crash = { mode: Mode; crashed: string };

/** One contender in a fresh process, with the same heap limit for all, so that the baseline can finish. */
async function runContender(mode: Mode, bundle: string | undefined, env: Record<string, string>): Promise<RunReport | Crash> {
  const script = bundle ? [bundle] : ['--import', 'tsx', RUN_SCRIPT];
  const child = spawn(process.execPath, [`--max-old-space-size=${options.heapMb}`, ...script, mode], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
  const { code, signal } = await new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
  if (!line) {
    // V8's "FATAL ERROR: … heap out of memory", or an uncaught error's first line, rather than the native stack under it.
    const lines = stderr
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const reason = lines.find((l) => l.startsWith('FATAL ERROR')) ?? lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.at(-1) ?? 'no output';
    return { mode, crashed: `${signal ?? `exit code ${code}`}: ${reason}` };
  }
  return JSON.parse(line.slice(RESULT_PREFIX.length)) as RunReport;
}

// ── verification ────────────────────────────────────────────────────────────────────────────────

interface Check {
  /** Buckets found in the downloaded file. */
  buckets: number;
  /** Bytes downloaded, and what S3 says the object holds. */
  downloadedBytes: number;
  contentLength: number;
  /** Line-by-line files only: their quantities add up to what was seeded, and buckets come in order, none twice. */
  quantityMatches?: boolean;
  ordered?: boolean;
  wellFormed?: boolean;
}

/**
 * Reads the stored file as a stream. The streamed files hold one bucket per line, so each line is
 * parsed; the baseline's document is one line of the whole file, so its buckets are counted by their
 * opening `{"subject":` instead.
 */
async function verify(s3: S3Client, bucket: string, contender: Contender, report: RunReport, seededQuantity: NanoUnits): Promise<Check> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: report.key }));
  const body = object.Body as Readable;
  const contentLength = object.ContentLength ?? -1;
  return contender.mode === 'buffered' ? { ...(await countMarkers(body)), contentLength } : { ...(await readLines(body, contender.format, seededQuantity)), contentLength };
}

async function readLines(body: Readable, format: 'json' | 'jsonl', seededQuantity: NanoUnits) {
  let downloadedBytes = 0;
  body.on('data', (chunk: Buffer) => (downloadedBytes += chunk.length));
  let buckets = 0;
  let quantity = 0n;
  let ordered = true;
  let previous = '';
  let first: string | undefined;
  let last = '';
  for await (const line of createInterface({ input: body, crlfDelay: Infinity })) {
    if (first === undefined) first = line;
    else if (line.startsWith('{"subject":')) {
      const b = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as ExportBucket;
      buckets += 1;
      quantity += toNanoUnits(b.quantity) ?? 0n;
      // Subjects in id order, then time, then usage type: a strictly increasing key, so no bucket twice.
      const key = `${b.subject}\u0000${b.start}\u0000${b.usageType}`;
      if (key <= previous) ordered = false;
      previous = key;
    }
    if (line !== '') last = line;
  }
  const header = JSON.parse(format === 'json' ? `${first?.slice(0, -',"buckets":['.length)}}` : (first ?? '{}')) as { kind?: string };
  const wellFormed = header.kind === 'usage-export' && (format === 'jsonl' || (first?.endsWith(',"buckets":[') === true && last === ']}'));
  return { buckets, downloadedBytes, quantityMatches: quantity === seededQuantity, ordered, wellFormed };
}

async function countMarkers(body: Readable) {
  const marker = '{"subject":';
  let downloadedBytes = 0;
  let buckets = 0;
  let carry = '';
  for await (const chunk of body as AsyncIterable<Buffer>) {
    downloadedBytes += chunk.length;
    // latin1: one character per byte, and the marker is ASCII; the carry catches a marker split across chunks.
    const text = carry + chunk.toString('latin1');
    for (let i = text.indexOf(marker); i !== -1; i = text.indexOf(marker, i + marker.length)) buckets += 1;
    carry = text.slice(-(marker.length - 1));
  }
  return { buckets, downloadedBytes };
}

// ── report ──────────────────────────────────────────────────────────────────────────────────────

interface Result {
  contender: Contender;
  report: RunReport | Crash;
  check?: Check;
  /** Where the file disagrees with the plan or with the contender's own report. */
  mismatches: string[];
  /** The higher of the sampled peak and the kernel's high-water mark. */
  peakMb?: number;
  /** PASS / FAIL for the streamed contenders (file correct and peak under the target); the baseline only runs. */
  verdict: 'PASS' | 'FAIL' | 'baseline' | 'crashed' | 'failed';
  problem?: string;
}

function judge(contender: Contender, report: RunReport | Crash, check: Check | undefined): Result {
  if ('crashed' in report) return { contender, report, mismatches: [], verdict: 'crashed', problem: report.crashed };
  if (!report.ok || !check) return { contender, report, mismatches: [], verdict: 'failed', problem: report.error ?? 'no file' };
  const expected = plan.expectedBuckets;
  const mismatches = [
    report.bucketCount !== expected && `reported ${report.bucketCount} buckets, expected ${expected}`,
    check.buckets !== expected && `file holds ${check.buckets} buckets, expected ${expected}`,
    (check.downloadedBytes !== report.bytes || check.contentLength !== report.bytes) && `reported ${report.bytes} bytes, stored ${check.contentLength}, downloaded ${check.downloadedBytes}`,
    check.quantityMatches === false && 'quantities do not add up to what was seeded',
    check.ordered === false && 'buckets out of order or repeated',
    check.wellFormed === false && 'header or closing line malformed',
  ].filter((m): m is string => typeof m === 'string');
  const peakMb = Math.max(report.peakRssSampledMb, report.maxRssMb);
  const overTarget = contender.target && peakMb >= TARGET_MB;
  const verdict = !contender.target ? 'baseline' : mismatches.length > 0 || overTarget ? 'FAIL' : 'PASS';
  const problems = [...mismatches, ...(overTarget ? [`peak ${peakMb.toFixed(1)} MB is not under ${TARGET_MB} MB`] : [])];
  return { contender, report, check, mismatches, peakMb, verdict, ...(problems.length > 0 ? { problem: problems.join('; ') } : {}) };
}

function printTable(results: Result[]): void {
  const header = ['contender', 'buckets', 'MB out', 'seconds', 'start RSS', 'peak RSS', 'maxRSS', 'peak heap', 'file check', `< ${TARGET_MB} MB`];
  const n = (value: number | undefined, digits = 1) => (value === undefined ? '–' : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
  const rows = results.map(({ contender, report, check, mismatches, verdict }) =>
    'crashed' in report
      ? [contender.name, '–', '–', '–', '–', '–', '–', '–', '–', 'crashed']
      : [
          contender.name,
          n(report.bucketCount, 0),
          n(report.bytes === undefined ? undefined : report.bytes / MB),
          n(report.seconds),
          n(report.startRssMb),
          n(report.peakRssSampledMb),
          n(report.maxRssMb),
          n(report.peakHeapUsedMb),
          !check ? '–' : mismatches.length > 0 ? 'MISMATCH' : `ok (${n(check.buckets, 0)})`,
          verdict === 'baseline' ? '(baseline)' : verdict,
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const format = (cells: string[]) => cells.map((c, i) => (i === 0 || i >= 8 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(`\n${format(header)}\n${widths.map((w) => '─'.repeat(w)).join('  ')}`);
  for (const row of rows) console.log(format(row));
  console.log(
    `\nMB are MiB. start RSS: before the export (Node, SDK, modules); peak RSS: sampled every 50 ms; maxRSS: the kernel's high-water mark; ` +
      `each contender ran alone in a fresh process with --max-old-space-size=${options.heapMb}. Expected buckets: ${plan.expectedBuckets.toLocaleString('en-US')}.`,
  );
  for (const { contender, problem } of results) if (problem) console.log(`${contender.name}: ${problem}`);
}

async function writeResults(seeding: Seeding, results: Result[]): Promise<void> {
  const cpu = cpus();
  const document = {
    benchmark: 'export-memory',
    date: new Date().toISOString(),
    machine: { platform: platform(), release: release(), arch: arch(), cpus: cpu.length, cpuModel: cpu[0]?.model ?? 'unknown', totalMemoryMb: Math.round(totalmem() / MB) },
    node: process.version,
    parameters: {
      subjects: plan.subjects.length,
      days: plan.days.length,
      firstDay: plan.days[0],
      usageTypes: plan.usageTypes.map((t) => t.id),
      channelsPerHour: `1–${CHANNELS.length}`,
      timeZones: ZONES,
      granularity: 'hour',
      from: plan.from,
      to: plan.to,
      expectedBuckets: plan.expectedBuckets,
      heapLimitMb: options.heapMb,
      runner: options.runner,
      targetMb: TARGET_MB,
    },
    seeding: { ...seeding, quantity: toDecimalString(seeding.quantity) },
    results: results.map(({ contender, report, check, peakMb, verdict, problem }) => ({
      contender: contender.name,
      mode: contender.mode,
      target: contender.target,
      verdict,
      problem,
      peakMb,
      report,
      check,
    })),
  };
  await mkdir(dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(document, null, 2)}\n`);
  console.log(`\nresults written to ${RESULTS_FILE.slice(ROOT.length + 1)}`);
}

// ── run (last, so that every declaration above is initialized) ─────────────────────────────────

const options = parseOptions();
const plan = planFor(options);
console.log(
  `export memory benchmark: ${plan.subjects.length} subjects × ${plan.usageTypes.length} usage types × ${plan.days.length} days (${plan.days[0]} … ${plan.days.at(-1)}), ` +
    `hour granularity → ${plan.expectedBuckets.toLocaleString('en-US')} buckets expected; range ${plan.from} … ${plan.to}`,
);

const stops: (() => Promise<unknown>)[] = [];
try {
  await main();
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
}
