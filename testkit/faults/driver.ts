import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type _Record, DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-dynamodb-streams';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { awsClients, useClock } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { createS3Client } from '../../functions/adapters/s3';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import type { LedgerStreamEvent, LedgerStreamResponse } from '../../functions/aggregate.handler';
import { BUCKETS, CONFIG_FILE_ENV, EVENT_SOURCES, FUNCTIONS, QUEUES, SCHEDULES, TABLES } from '../../functions/contract/resources';
import type { SchedulerEvent, SchedulerResult } from '../../functions/scheduler.handler';
import { createBucket, createQueues, createTables } from '../../local/bootstrap';
import { lambdaContext } from '../../local/lambda-context';
import { LOCAL_CREDENTIALS, startDynamoDbLocal, startSesStandIn, startSqsStandIn } from '../../local/stand-ins';
import { toLambdaRecord } from '../../local/stream-poller';
import { Random } from '../random';
import { type FaultInjector } from './injector';
import type { Scenario, ScenarioMessage } from './scenarios';

/**
 * The real handlers on DynamoDB Local, the S3 stand-in (fauxqs) and the SES stand-in, invoked by a seeded
 * driver that keeps Lambda's contracts while doing what Lambda and SQS may do:
 *   SQS → ingest: batches in shuffled order; partial batch failures redelivered; a thrown (or crashed)
 *     invocation redelivers its whole batch; a message redelivered while its first delivery is still being
 *     processed (visibility timeout expired); a processed message delivered again (at-least-once).
 *   ledger stream → aggregate (with `shardId`, as with a tumbling window), alerts stream → notify: per shard
 *     in order; a reported failure retries from that record; a thrown invocation retries its batch bisected;
 *     a batch delivered again later (a replay from an earlier point); an aggregate batch twice at once.
 *   scheduler: run until a run completes; it sends the workspaces due to the closes queue.
 *   closes queue → closes: batches in shuffled order; failed records redelivered, a crashed invocation's whole
 *     batch redelivered, each after the visibility timeout (so any claim it left has expired); the same batch
 *     twice at once; a closed workspace delivered again. Then the scheduler once more (the summaries).
 * After a few failed tries of the same delivery, its invocation runs calm (no injected faults), as an outage ends.
 */

const REGION = 'us-east-1';
const CALM_AFTER = 4;
/** A scheduled run resumes where a crashed one stopped, so it may crash more often before a calm one. */
const SCHEDULER_CALM_AFTER = 16;

type Handler<E, R> = (event: E, context: Context) => Promise<R>;

export interface Handlers {
  ingest: Handler<SQSEvent, SQSBatchResponse>;
  closes: Handler<SQSEvent, SQSBatchResponse>;
  aggregate: Handler<LedgerStreamEvent, LedgerStreamResponse>;
  notify: Handler<DynamoDBStreamEvent, DynamoDBBatchResponse>;
  scheduler: Handler<SchedulerEvent, SchedulerResult>;
}

/** The local notion of now, moved by the scenario; handlers read it through app-context. */
export class ScenarioClock {
  constructor(private at: number) {}
  now(): Date {
    return new Date(this.at);
  }
  advanceTo(at: number): void {
    this.at = Math.max(this.at, at);
  }
}

export interface FaultStack {
  handlers: Handlers;
  clock: ScenarioClock;
  tables: Record<keyof typeof TABLES, string>;
  streamArns: Record<'ledger' | 'alerts', string>;
  streams: DynamoDBStreamsClient;
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  closesQueueUrl: string;
  sesStore: string;
  stop(): Promise<void>;
}

/** Starts the stand-ins, creates the resources, seeds the scenario's workspaces and loads the handlers. */
export async function startFaultStack(scenario: Scenario, injector: FaultInjector): Promise<FaultStack> {
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const [dynamo, sqsAndS3, ses] = await Promise.all([startDynamoDbLocal({ region: REGION }), startSqsStandIn({ region: REGION }), startSesStandIn()]);
    stops.push(dynamo.stop, sqsAndS3.stop, ses.stop);
    const configPath = join(mkdtempSync(join(tmpdir(), 'faults-')), 'config.json');
    writeFileSync(configPath, JSON.stringify(scenario.config));
    Object.assign(process.env, {
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SES: ses.endpoint,
      AWS_ENDPOINT_URL_S3: sqsAndS3.endpoint,
      AWS_ENDPOINT_URL_SQS: sqsAndS3.endpoint,
      [CONFIG_FILE_ENV]: configPath,
      POWERTOOLS_DEV: 'true',
      POWERTOOLS_LOG_LEVEL: 'SILENT',
      POWERTOOLS_METRICS_DISABLED: 'true',
    });
    const dynamodb = new DynamoDBClient({ region: REGION, credentials: LOCAL_CREDENTIALS, endpoint: dynamo.endpoint });
    const streams = new DynamoDBStreamsClient({ region: REGION, credentials: LOCAL_CREDENTIALS, endpoint: dynamo.endpoint });
    const sqs = new SQSClient({ region: REGION, credentials: LOCAL_CREDENTIALS, endpoint: sqsAndS3.endpoint });
    stops.push(async () => [dynamodb, streams, sqs].forEach((c) => c.destroy()));
    const { names, streamArns } = await createTables(dynamodb);
    for (const [key, name] of Object.entries(names)) process.env[TABLES[key as keyof typeof TABLES].envVar] = name;
    const { closesUrl } = await createQueues(sqs, 30);
    process.env[QUEUES.closes.envVar] = closesUrl;
    const s3 = createS3Client();
    process.env[BUCKETS.reports.envVar] = await createBucket(s3);
    s3.destroy();
    const clock = new ScenarioClock(scenario.now);
    useClock(clock);
    const subjects = new DynamoSubjects(createDocumentClient(dynamodb), names.subjects);
    const createdAt = new Date(scenario.now).toISOString();
    for (const subject of scenario.subjects) await subjects.put({ ...subject, createdAt });

    // One at a time, after the environment names the stand-ins (Jest's ESM loader needs it).
    const { handler: ingest } = await import('../../functions/ingest.handler');
    const { handler: aggregate } = await import('../../functions/aggregate.handler');
    const { handler: notify } = await import('../../functions/notify.handler');
    const { handler: scheduler } = await import('../../functions/scheduler.handler');
    const { handler: closes } = await import('../../functions/closes.handler');
    stops.push(async () => [awsClients.dynamodb(), awsClients.ledger(), awsClients.ses(), awsClients.s3()].forEach((c) => c.destroy()));
    injector.attach(awsClients.dynamodb().middlewareStack, 'dynamodb');
    injector.attach(awsClients.ledger().middlewareStack, 'dynamodb');
    injector.attach(awsClients.ses().middlewareStack, 'ses');
    injector.attach(awsClients.s3().middlewareStack, 's3');
    return {
      handlers: { ingest, aggregate, notify, scheduler, closes } as unknown as Handlers,
      clock,
      tables: names,
      streamArns,
      streams,
      dynamodb,
      sqs,
      closesQueueUrl: closesUrl,
      sesStore: ses.store,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface DriverOptions {
  seed: number;
  /** Largest SQS batch; smaller ones make more invocations. */
  maxIngestBatch: number;
  maxStreamBatch: number;
  /** Share of deliveries that are duplicated, overlapped or replayed. */
  anomalyRate: number;
}

export interface DeliveryStats {
  invocations: Record<string, number>;
  failedInvocations: Record<string, number>;
  anomalies: Record<string, number>;
}

/** Delivers messages and stream records to the handlers as Lambda would, with the anomalies Lambda and SQS allow. */
export class LambdaDriver {
  readonly stats: DeliveryStats = { invocations: {}, failedInvocations: {}, anomalies: {} };
  private readonly random: Random;
  /** For what the driver itself does to the tables (a claim expiring), outside any invocation. */
  private readonly documents: DynamoDBDocumentClient;
  private readonly positions = new Map<string, string>();
  private readonly delivered = new Map<string, _Record[]>();
  private sent = 0;

  constructor(
    private readonly stack: FaultStack,
    private readonly injector: FaultInjector,
    private readonly options: DriverOptions,
  ) {
    this.random = new Random(options.seed ^ 0x5eed);
    this.documents = createDocumentClient(stack.dynamodb);
  }

  /** Sends a phase round by round (each later round sent later), then delivers them all in shuffled batches. */
  async ingest(rounds: readonly ScenarioMessage[][]): Promise<void> {
    const base = this.stack.clock.now().getTime();
    const queue = rounds.flatMap((round, r) => round.map((m) => ({ message: m, sentAt: base + r * 10_000 + (this.sent++ % 5000), receives: 0 })));
    while (queue.length > 0) {
      shuffle(queue, this.random);
      const batch = queue.slice(0, 1 + this.random.int(this.options.maxIngestBatch));
      for (const item of batch) item.receives += 1;
      const calm = batch.some((item) => item.receives > CALM_AFTER);
      const event = (items: typeof batch): SQSEvent => ({ Records: items.map((i) => sqsRecord(i.message, i.sentAt, i.receives)) });
      const overlap = this.anomaly('ingest: redelivered while still in flight (visibility timeout)') ? batch.filter(() => this.random.int(2) === 0) : [];
      this.injector.begin('ingest', calm);
      const calls = [this.invoke('ingest', () => this.stack.handlers.ingest(event(batch), lambdaContext('ingest', FUNCTIONS.ingest.timeoutSeconds)))];
      if (overlap.length > 0) calls.push(this.invoke('ingest', () => this.stack.handlers.ingest(event(overlap), lambdaContext('ingest', FUNCTIONS.ingest.timeoutSeconds))));
      const [response] = await Promise.all(calls);
      const crashed = this.injector.end();
      if (crashed || !response) continue; // the whole batch comes back
      const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
      for (const item of batch) {
        if (failed.has(item.message.key)) continue;
        queue.splice(queue.indexOf(item), 1);
        // At-least-once: now and then a processed message is delivered again.
        if (this.anomaly('ingest: a processed message delivered again')) queue.push({ ...item, receives: 0 });
      }
    }
  }

  /** Delivers every new ledger record to aggregate and every new alert record to notify, until both streams are quiet. */
  async drain(): Promise<void> {
    for (;;) {
      const ledger = await this.read(this.stack.streamArns.ledger);
      for (const [shardId, records] of ledger) await this.deliverStream('aggregate', shardId, records, this.stack.streamArns.ledger);
      const alerts = await this.read(this.stack.streamArns.alerts);
      for (const [shardId, records] of alerts) await this.deliverStream('notify', shardId, records, this.stack.streamArns.alerts);
      if (ledger.size === 0 && alerts.size === 0) return;
    }
  }

  /**
   * A close as the hourly schedule runs it: the scheduler until a run completes, then the closes it sent; and again,
   * as the next hourly run, which writes the summaries of the cycles closed (and sends whatever is still due).
   */
  async schedule(): Promise<void> {
    for (let run = 0; run < 2; run++) {
      await this.runScheduler();
      await this.deliverCloses(await this.receiveCloses());
    }
  }

  /** Every workspace delivered to the close function once more, without faults: what a redelivery of each would do. */
  async closeAllAgain(ids: readonly string[]): Promise<number> {
    let failed = 0;
    for (let i = 0; i < ids.length; i += EVENT_SOURCES.closes.batchSize) {
      const response = await this.stack.handlers.closes(closesEvent(ids.slice(i, i + EVENT_SOURCES.closes.batchSize), 1), lambdaContext('closes', FUNCTIONS.closes.timeoutSeconds));
      failed += response.batchItemFailures.length;
    }
    return failed;
  }

  private async runScheduler(): Promise<SchedulerResult> {
    // Each attempt is a retry of one asynchronous invocation, under its request id, which holds the run's lease.
    const context = lambdaContext('scheduler', FUNCTIONS.scheduler.timeoutSeconds);
    for (let attempt = 0; ; attempt++) {
      this.injector.begin('scheduler', attempt >= SCHEDULER_CALM_AFTER);
      const result = await this.invoke('scheduler', () => this.stack.handlers.scheduler({ job: SCHEDULES.closeDue.job }, context));
      if (!this.injector.end() && result) return result;
    }
  }

  /** Takes every message off the closes queue: the driver delivers them itself, as Lambda's poller would. */
  private async receiveCloses(): Promise<string[]> {
    const ids: string[] = [];
    for (;;) {
      const { Messages = [] } = await this.stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: this.stack.closesQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
      if (Messages.length === 0) return ids;
      ids.push(...Messages.map((m) => m.Body ?? ''));
      await this.stack.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: this.stack.closesQueueUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) }));
    }
  }

  private async deliverCloses(ids: readonly string[]): Promise<void> {
    const queue = ids.map((id) => ({ id, receives: 0 }));
    while (queue.length > 0) {
      shuffle(queue, this.random);
      const batch = queue.slice(0, 1 + this.random.int(EVENT_SOURCES.closes.batchSize));
      for (const item of batch) item.receives += 1;
      const calm = batch.some((item) => item.receives > SCHEDULER_CALM_AFTER);
      const twice = this.anomaly('closes: the same batch twice at once');
      const event = closesEvent(
        batch.map((b) => b.id),
        batch[0]?.receives ?? 1,
      );
      this.injector.begin('closes', calm);
      const invoke = () => this.invoke('closes', () => this.stack.handlers.closes(event, lambdaContext('closes', FUNCTIONS.closes.timeoutSeconds)));
      const [response, other] = await Promise.all([invoke(), ...(twice ? [invoke()] : [])]);
      const crashed = this.injector.end();
      // Both invocations of a doubled batch answer for the same messages: a message goes only if both let it go.
      const failed = new Set([response, other].flatMap((r) => r?.batchItemFailures.map((f) => f.itemIdentifier) ?? []));
      const gone = crashed || !response || (twice && !other) ? [] : batch.filter((item) => !failed.has(item.id));
      for (const item of gone) {
        queue.splice(queue.indexOf(item), 1);
        if (this.anomaly('closes: a closed workspace delivered again')) queue.push({ ...item, receives: 0 });
      }
      // What comes back is shown again after the visibility timeout, by when every claim it left has expired.
      for (const item of batch.filter((b) => !gone.includes(b))) await this.expireClaim(item.id);
    }
  }

  private async expireClaim(id: string): Promise<void> {
    await this.documents.send(new UpdateCommand({ TableName: this.stack.tables.subjects, Key: { id }, UpdateExpression: 'REMOVE closeHolder, closeUntil' }));
  }

  private async deliverStream(name: 'aggregate' | 'notify', shardId: string, records: _Record[], streamArn: string): Promise<void> {
    const key = `${streamArn}|${shardId}`;
    const history = this.delivered.get(key) ?? [];
    this.delivered.set(key, history);
    const limit = name === 'aggregate' ? this.options.maxStreamBatch : EVENT_SOURCES.notify.batchSize;
    let pending = records;
    let size = 1 + this.random.int(limit);
    let attempt = 0;
    while (pending.length > 0) {
      // A replay from an earlier point of the shard: records already applied arrive again, after later ones.
      if (history.length > 0 && this.anomaly(`${name}: an earlier batch delivered again`)) {
        const from = this.random.int(history.length);
        this.injector.begin(name);
        await this.invokeStream(name, shardId, history.slice(from, from + 1 + this.random.int(limit)), streamArn);
        this.injector.end(); // the records were applied before: whatever this try does, nothing may change
      }
      const batch = pending.slice(0, size);
      // Two invocations of one shard at once: the aggregator must hold (its checkpoint guards the commit). Notify
      // is not asked to: Lambda runs one batch per shard at a time, and stops a timed-out one before its retry.
      const twice = name === 'aggregate' && this.anomaly(`${name}: the same batch twice at once`);
      this.injector.begin(name, attempt >= CALM_AFTER);
      const [response] = await Promise.all([this.invokeStream(name, shardId, batch, streamArn), ...(twice ? [this.invokeStream(name, shardId, batch, streamArn)] : [])]);
      if (this.injector.end() || !response) {
        size = Math.max(1, Math.floor(size / 2)); // bisect on error
        attempt += 1;
        continue;
      }
      const failed = response.batchItemFailures[0]?.itemIdentifier;
      const failedAt = failed === undefined ? -1 : batch.findIndex((r) => r.dynamodb?.SequenceNumber === failed);
      if (failedAt >= 0) {
        history.push(...batch.slice(0, failedAt));
        pending = pending.slice(failedAt);
        attempt += 1;
        continue;
      }
      history.push(...batch);
      pending = pending.slice(batch.length);
      size = 1 + this.random.int(limit);
      attempt = 0;
    }
  }

  /** One stream invocation (inside the caller's injector scope, which overlapping invocations share); undefined when it threw. */
  private invokeStream(name: 'aggregate' | 'notify', shardId: string, batch: _Record[], streamArn: string): Promise<DynamoDBBatchResponse | undefined> {
    const Records = batch.map((r) => toLambdaRecord(r, streamArn));
    return name === 'aggregate'
      ? this.invoke(name, () => this.stack.handlers.aggregate({ Records, shardId, state: {} }, lambdaContext('aggregate', FUNCTIONS.aggregate.timeoutSeconds)))
      : this.invoke(name, () => this.stack.handlers.notify({ Records }, lambdaContext('notify', FUNCTIONS.notify.timeoutSeconds)));
  }

  private async invoke<T>(name: string, call: () => Promise<T>): Promise<T | undefined> {
    this.stats.invocations[name] = (this.stats.invocations[name] ?? 0) + 1;
    try {
      return await call();
    } catch {
      this.stats.failedInvocations[name] = (this.stats.failedInvocations[name] ?? 0) + 1;
      return undefined;
    }
  }

  private anomaly(kind: string): boolean {
    if (this.random.int(1_000_000) >= this.options.anomalyRate * 1_000_000) return false;
    this.stats.anomalies[kind] = (this.stats.anomalies[kind] ?? 0) + 1;
    return true;
  }

  /** New records of every shard of a stream since the last read, parents before children. */
  private async read(streamArn: string): Promise<Map<string, _Record[]>> {
    const { StreamDescription } = await this.stack.streams.send(new DescribeStreamCommand({ StreamArn: streamArn }));
    const out = new Map<string, _Record[]>();
    for (const shard of StreamDescription?.Shards ?? []) {
      const shardId = shard.ShardId ?? '';
      const key = `${streamArn}|${shardId}`;
      const after = this.positions.get(key);
      let { ShardIterator: iterator } = await this.stack.streams.send(
        new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: after ? 'AFTER_SEQUENCE_NUMBER' : 'TRIM_HORIZON', ...(after ? { SequenceNumber: after } : {}) }),
      );
      const records: _Record[] = [];
      while (iterator) {
        const page = await this.stack.streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1000 }));
        records.push(...(page.Records ?? []));
        if ((page.Records ?? []).length === 0) break;
        iterator = page.NextShardIterator;
      }
      const last = records.at(-1)?.dynamodb?.SequenceNumber;
      if (last) {
        this.positions.set(key, last);
        out.set(shardId, records);
      }
    }
    return out;
  }
}

function sqsRecord(message: ScenarioMessage, sentAt: number, receives: number): SQSRecord {
  return {
    messageId: message.key,
    receiptHandle: `${message.key}#${receives}`,
    body: message.body,
    attributes: { ApproximateReceiveCount: String(receives), SentTimestamp: String(sentAt), SenderId: 'faults', ApproximateFirstReceiveTimestamp: String(sentAt) },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:usage-events',
    awsRegion: REGION,
  };
}

/** Closes messages as Lambda delivers them: one workspace id each, its id the message id. */
function closesEvent(ids: readonly string[], receives: number): SQSEvent {
  return {
    Records: ids.map((id) => ({
      messageId: id,
      receiptHandle: `${id}#${receives}`,
      body: id,
      attributes: { ApproximateReceiveCount: String(receives), SentTimestamp: '0', SenderId: 'faults', ApproximateFirstReceiveTimestamp: '0' },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:closes',
      awsRegion: REGION,
    })),
  };
}

function shuffle<T>(items: T[], random: Random): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
}
