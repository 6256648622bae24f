/**
 * A bounded load test of the real local pipeline (local/runtime.ts, in process: SQS → ingest → ledger →
 * stream → aggregate, the deployed batch sizes): at least 100,000 events from a paced producer, with poison
 * among them — malformed bodies, an oversize event, and messages whose delivery fails every time. It checks
 *   throughput  events applied per window stays steady: the mean of the last quarter of windows is at least
 *               1/STEADY_FACTOR of the first quarter's;
 *   memory      heap and RSS do not grow: the last quarter's median is at most MEMORY_FACTOR × the first's;
 *   poison      cannot stall the queue or the shard: every good event is counted exactly, the malformed ones
 *               are quarantined with their reason, the failing ones end in the DLQ.
 * Prints a table and writes bench/results/load.json; exits 1 if a check fails.
 *
 *   npm run load -- [--events 100000] [--rate 400] [--window 10] [--seed 1]
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { ScanCommand, type ScanCommandOutput } from '@aws-sdk/lib-dynamodb';
import { slowIdlePollsOfOtherStreams } from '../../bench/pipeline/ours';
import { messages } from '../../bench/pipeline/traffic';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { TABLES } from '../../functions/contract/resources';
import { localTableName } from '../../local/bootstrap';
import { progressBar } from '../../local/progress';
import { startLocal } from '../../local/runtime';
import { sleep } from '../../local/sqs-poller';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '100000' }, rate: { type: 'string', default: '400' }, window: { type: 'string', default: '10' }, seed: { type: 'string', default: '1' } },
});
const EVENTS = Number(values.events);
const RATE = Number(values.rate);
const WINDOW_MS = Number(values.window) * 1000;
const STEADY_FACTOR = 2;
const MEMORY_FACTOR = 1.5;
const POISON_EVERY = 2000;
const FAILING_MARKER = 'load-poison-fails-every-time';
const CONFIG = 'bench/pipeline/pipeline.config.json';

interface Sample {
  at: number;
  applied: number;
  heapMb: number;
  rssMb: number;
}

async function main(): Promise<number> {
  slowIdlePollsOfOtherStreams(localTableName(TABLES.ledger));
  let applied = 0;
  const stack = await startLocal({
    configPath: CONFIG,
    visibilityTimeoutSeconds: 5,
    onError: () => undefined,
    // A message that fails on every delivery (as a handler bug would): reported failed, so only it comes back.
    wrapIngest: (invoke) => async (event) => {
      const failing = event.Records.filter((r) => r.body.includes(FAILING_MARKER));
      const response = await invoke({ Records: event.Records.filter((r) => !failing.includes(r)) });
      return { batchItemFailures: [...response.batchItemFailures, ...failing.map((r) => ({ itemIdentifier: r.messageId }))] };
    },
    wrapAggregate: (invoke) => async (event) => {
      const response = await invoke(event);
      const failed = response.batchItemFailures[0]?.itemIdentifier;
      const index = failed ? event.Records.findIndex((r) => r.dynamodb?.SequenceNumber === failed) : -1;
      applied += index >= 0 ? index : event.Records.length;
      return response;
    },
  });
  const sqs = new SQSClient({ region: stack.ready.region, endpoint: stack.ready.sqs.endpoint, credentials: { accessKeyId: 'load', secretAccessKey: 'load' } });
  const subjects = stack.config.subjects.slice(0, 100).map((s) => s.id);
  const expected = new Map<string, bigint>();
  const poison = { notJson: 0, oversize: 0, failing: 0 };
  const samples: Sample[] = [];
  const started = Date.now();
  const sampler = setInterval(() => {
    const memory = process.memoryUsage();
    samples.push({ at: Date.now() - started, applied, heapMb: memory.heapUsed / 2 ** 20, rssMb: memory.rss / 2 ** 20 });
  }, 1000);
  const bar = progressBar('load', EVENTS);
  try {
    // Paced: the producer keeps RATE events/s, so the test measures the pipeline and not a queue of 100,000.
    let sent = 0;
    let batch: string[] = [];
    const flush = async () => {
      for (let i = 0; i < batch.length; i += 10) {
        const { Failed } = await sqs.send(
          new SendMessageBatchCommand({ QueueUrl: stack.ready.sqs.queueUrl, Entries: batch.slice(i, i + 10).map((MessageBody, j) => ({ Id: String(j), MessageBody })) }),
        );
        if (Failed?.length) throw new Error(`SendMessageBatch failed: ${JSON.stringify(Failed)}`);
      }
      batch = [];
    };
    const plan = { count: EVENTS, duplicateRate: 0.05, duplicateSpread: 500, subjects, now: Date.now(), idPrefix: 'load', usersAndGroups: false, seed: Number(values.seed) };
    for (const message of messages(plan)) {
      if (!message.duplicate) {
        const key = message.event.subject;
        expected.set(key, (expected.get(key) ?? 0n) + BigInt(message.event.data.quantity));
        sent += 1;
      }
      batch.push(message.body);
      if (sent % POISON_EVERY === 0 && !message.duplicate) {
        const kind = (sent / POISON_EVERY) % 3;
        if (kind === 0) {
          batch.push('{"specversion":"1.0", "id": oops');
          poison.notJson += 1;
        } else if (kind === 1) {
          batch.push(JSON.stringify({ ...message.event, id: `${message.event.id}-big`, data: { ...message.event.data, feature: 'x'.repeat(200_000) } }));
          poison.oversize += 1;
        } else {
          batch.push(JSON.stringify({ ...message.event, id: `${message.event.id}-${FAILING_MARKER}` }));
          poison.failing += 1;
        }
      }
      if (batch.length >= 10) await flush();
      bar.tick(sent);
      const ahead = sent / RATE - (Date.now() - started) / 1000;
      if (ahead > 0) await sleep(ahead * 1000);
    }
    await flush();
    bar.end();
    await stack.settle(900_000);
    clearInterval(sampler);
    const elapsed = (Date.now() - started) / 1000;

    // What landed: the cycle rollups' totals per workspace, the quarantine, the DLQ.
    const documents = createDocumentClient(new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 'load', secretAccessKey: 'load' } }));
    const counted = new Map<string, bigint>();
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await documents.send(new ScanCommand({ TableName: stack.tables.rollups, FilterExpression: 'begins_with(sk, :c)', ExpressionAttributeValues: { ':c': 'C#' }, ExclusiveStartKey }));
      for (const item of page.Items ?? []) counted.set(String(item.pk), (counted.get(String(item.pk)) ?? 0n) + BigInt(String(item.total)));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    const wrong = [...new Set([...expected.keys(), ...counted.keys()])].filter((s) => (expected.get(s) ?? 0n) !== (counted.get(s) ?? 0n));
    const quarantined: Record<string, number> = {};
    ExclusiveStartKey = undefined;
    do {
      const page: ScanCommandOutput = await documents.send(new ScanCommand({ TableName: stack.tables.quarantine, ExclusiveStartKey }));
      for (const item of page.Items ?? []) quarantined[String(item.reason)] = (quarantined[String(item.reason)] ?? 0) + 1;
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: stack.ready.sqs.dlqUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
    const inDlq = Number(Attributes?.ApproximateNumberOfMessages ?? 0);
    const dlqSample = await sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.ready.sqs.dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 1 }));
    const dlqOnlyPoison = (dlqSample.Messages ?? []).every((m) => m.Body?.includes(FAILING_MARKER));

    // Windows while the producer ran (the tail is the drain): applied events per second, memory.
    const sendEnd = (EVENTS / RATE) * 1000;
    const windows: { start: number; eventsPerSecond: number; heapMb: number; rssMb: number }[] = [];
    for (let start = WINDOW_MS; start + WINDOW_MS <= sendEnd; start += WINDOW_MS) {
      const inside = samples.filter((s) => s.at >= start && s.at < start + WINDOW_MS);
      const first = inside[0];
      const last = inside.at(-1);
      if (!first || !last || last.at === first.at) continue;
      windows.push({
        start: start / 1000,
        eventsPerSecond: ((last.applied - first.applied) * 1000) / (last.at - first.at),
        heapMb: median(inside.map((s) => s.heapMb)),
        rssMb: median(inside.map((s) => s.rssMb)),
      });
    }
    const quarter = Math.max(1, Math.floor(windows.length / 4));
    const head = windows.slice(0, quarter);
    const tail = windows.slice(-quarter);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const figures = {
      throughputFirst: mean(head.map((w) => w.eventsPerSecond)),
      throughputLast: mean(tail.map((w) => w.eventsPerSecond)),
      heapFirst: median(head.map((w) => w.heapMb)),
      heapLast: median(tail.map((w) => w.heapMb)),
      rssFirst: median(head.map((w) => w.rssMb)),
      rssLast: median(tail.map((w) => w.rssMb)),
    };
    const checks = [
      {
        check: `throughput steady (last quarter ≥ first / ${STEADY_FACTOR})`,
        value: `${figures.throughputFirst.toFixed(0)} → ${figures.throughputLast.toFixed(0)} events/s`,
        ok: figures.throughputFirst > 0 && figures.throughputLast * STEADY_FACTOR >= figures.throughputFirst,
      },
      {
        check: `heap does not grow (last quarter ≤ first × ${MEMORY_FACTOR})`,
        value: `${figures.heapFirst.toFixed(0)} → ${figures.heapLast.toFixed(0)} MiB`,
        ok: figures.heapLast <= figures.heapFirst * MEMORY_FACTOR,
      },
      {
        check: `RSS does not grow (last quarter ≤ first × ${MEMORY_FACTOR})`,
        value: `${figures.rssFirst.toFixed(0)} → ${figures.rssLast.toFixed(0)} MiB`,
        ok: figures.rssLast <= figures.rssFirst * MEMORY_FACTOR,
      },
      { check: 'every good event counted once (cycle rollups = sent)', value: `${subjects.length - wrong.length}/${subjects.length} workspaces exact`, ok: wrong.length === 0 },
      {
        check: 'malformed quarantined with their reason',
        value: `not_json ${quarantined.not_json ?? 0}/${poison.notJson}, invalid_dimension ${quarantined.invalid_dimension ?? 0}/${poison.oversize}`,
        ok: quarantined.not_json === poison.notJson && quarantined.invalid_dimension === poison.oversize,
      },
      { check: 'failing messages in the DLQ, nothing else', value: `${inDlq}/${poison.failing}`, ok: inDlq === poison.failing && dlqOnlyPoison },
    ];
    console.log(`\n${EVENTS.toLocaleString('en-US')} events (+5% duplicates, ${poison.notJson + poison.oversize + poison.failing} poison) at ${RATE}/s; done in ${elapsed.toFixed(0)} s\n`);
    console.log(
      table(
        ['window (s)', 'events/s', 'heap MiB', 'RSS MiB'],
        windows.map((w) => [String(w.start), w.eventsPerSecond.toFixed(0), w.heapMb.toFixed(0), w.rssMb.toFixed(0)]),
      ),
    );
    console.log(
      `\n${table(
        ['check', 'measured', ''],
        checks.map((c) => [c.check, c.value, c.ok ? 'PASS' : 'FAIL']),
      )}`,
    );
    writeFileSync(
      'bench/results/load.json',
      `${JSON.stringify({ events: EVENTS, rate: RATE, windowSeconds: WINDOW_MS / 1000, elapsedSeconds: elapsed, poison, quarantined, inDlq, figures, windows, checks }, null, 2)}\n`,
    );
    return checks.every((c) => c.ok) ? 0 : 1;
  } finally {
    clearInterval(sampler);
    sqs.destroy();
    await stack.stop();
  }
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
