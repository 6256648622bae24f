import { resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { DynamoApiKeys } from '../functions/adapters/api-key-store';
import { loadConfigFile, useClock, useTestClock } from '../functions/adapters/app-context';
import { createS3Client } from '../functions/adapters/s3';
import { withoutSdkLogging } from '../functions/adapters/sdk-clients';
import { DynamoSubjects } from '../functions/adapters/subject-store';
import type { LedgerStreamEvent, LedgerStreamResponse } from '../functions/aggregate.handler';
import { BUCKETS, CONFIG_FILE_ENV, EVENT_SOURCES, FUNCTIONS, QUEUES, SCHEDULES, TABLES } from '../functions/contract/resources';
import { configuredKey } from '../functions/core/access/api-keys';
import { addClose, type CloseSummary, type SubjectClose } from '../functions/core/billing/closes';
import type { Config } from '../functions/core/config';
import type { SchedulerEvent, SchedulerResult } from '../functions/scheduler.handler';
import { type ApiHandler, startApiServer } from './api-server';
import { createBucket, createQueues, createTables } from './bootstrap';
import { LocalClock, TestClockMoves } from './clock';
import { ensureDashboardBuilt } from './dashboard';
import { lambdaContext } from './lambda-context';
import { SqsPoller, sleep } from './sqs-poller';
import { LOCAL_CREDENTIALS, startDynamoDbLocal, startSesStandIn, startSqsStandIn } from './stand-ins';
import { StreamPoller } from './stream-poller';

/**
 * The whole pipeline on one machine: DynamoDB Local and the SQS stand-in, resources from the
 * shared definitions, and the same handler modules driven by pollers that act like Lambda's
 * event source mappings.
 */

/** Ingest batches in flight at once: Lambda runs several invocations of an SQS source side by side. */
export const INGEST_BATCHES_IN_FLIGHT = 4;
/** Close batches in flight at once (AWS: EVENT_SOURCES.closes.maxConcurrency); DynamoDB Local writes one at a time anyway. */
export const CLOSE_BATCHES_IN_FLIGHT = 4;
/** How long `POST /v1/test-clock` waits for its move before answering 202: well inside the API function's 29 s. */
export const TEST_CLOCK_ANSWER_WITHIN_MS = 20_000;
/** The aggregate's batching window locally, unless `aggregateWindowSeconds` says otherwise (AWS: EVENT_SOURCES). */
export const LOCAL_AGGREGATE_WINDOW_SECONDS = 1;

export const DEFAULT_CONFIG = 'config/example.json';
export const REGION = 'us-east-1';

export interface LocalOptions {
  configPath?: string;
  port?: number;
  persistDir?: string;
  /** Shorter than in AWS so that a redelivery shows within seconds. */
  visibilityTimeoutSeconds?: number;
  /**
   * The aggregate's batching window. Shorter than in AWS (LOCAL_AGGREGATE_WINDOW_SECONDS) so that counts show
   * within a second or two; the bench runs the deployed `EVENT_SOURCES.aggregate.maxBatchingWindowSeconds`.
   */
  aggregateWindowSeconds?: number;
  /** How long `POST /v1/test-clock` waits before answering 202 with the move (default TEST_CLOCK_ANSWER_WITHIN_MS). */
  testClockAnswerWithinMs?: number;
  /** Where the local clock starts (default: the wall clock); from there it runs at the wall clock's pace. */
  clockStart?: Date;
  /** Close batches in flight at once (default CLOSE_BATCHES_IN_FLIGHT); the closes bench runs several. */
  closeBatchesInFlight?: number;
  logLevel?: string;
  /** Wraps each handler invocation; tests inject crashes here. */
  wrapIngest?: (invoke: Invoke<SQSEvent, SQSBatchResponse>) => Invoke<SQSEvent, SQSBatchResponse>;
  wrapCloses?: (invoke: Invoke<SQSEvent, SQSBatchResponse>) => Invoke<SQSEvent, SQSBatchResponse>;
  wrapAggregate?: (invoke: Invoke<LedgerStreamEvent, LedgerStreamResponse>) => Invoke<LedgerStreamEvent, LedgerStreamResponse>;
  wrapNotify?: (invoke: Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse>) => Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse>;
  wrapExport?: (invoke: Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse>) => Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse>;
  onError?: (source: string, error: unknown) => void;
}

export type Invoke<E, R> = (event: E) => Promise<R>;

export interface ReadyInfo {
  api: string;
  region: string;
  sqs: { endpoint: string; queueUrl: string; dlqUrl: string };
  dynamodb: { endpoint: string };
  ses: { endpoint: string; store: string };
  s3: { endpoint: string; bucket: string };
}

export interface LocalStack {
  ready: ReadyInfo;
  config: Config;
  tables: Record<keyof typeof TABLES, string>;
  clock: LocalClock;
  /** Moves the clock forward once the pipeline has settled, then runs the scheduled closes that fell due. */
  advanceClock(instant: Date): Promise<{ now: string; closes: CloseSummary }>;
  /** Resolves once the queue is empty and the stream has been applied, stable for a moment. */
  settle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startLocal(options: LocalOptions = {}): Promise<LocalStack> {
  const configPath = resolve(options.configPath ?? DEFAULT_CONFIG);
  const config = loadConfigFile(configPath); // fails fast, naming the bad key

  const clock = new LocalClock(options.clockStart);
  useClock(clock);
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    stops.length = 0;
  };
  try {
    // The dashboard is built (only when missing or stale) while Java starts; without it the API still runs.
    const [dynamo, sqsStandIn, sesStandIn, dashboard] = await Promise.all([
      startDynamoDbLocal({ persistDir: options.persistDir, region: REGION }),
      startSqsStandIn({ region: REGION }),
      startSesStandIn(),
      ensureDashboardBuilt((line) => console.error(line)).catch((error: unknown) => void console.error(`the dashboard could not be built: ${error instanceof Error ? error.message : String(error)}`)),
    ]);
    stops.push(dynamo.stop, sqsStandIn.stop, sesStandIn.stop);

    // The SDK reads these, so handler modules build their clients against the stand-ins unchanged.
    Object.assign(process.env, {
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB_STREAMS: dynamo.endpoint,
      AWS_ENDPOINT_URL_SQS: sqsStandIn.endpoint,
      AWS_ENDPOINT_URL_SES: sesStandIn.endpoint,
      // fauxqs serves S3 on the same port as SQS (path-style requests).
      AWS_ENDPOINT_URL_S3: sqsStandIn.endpoint,
      [CONFIG_FILE_ENV]: configPath,
      POWERTOOLS_DEV: 'true',
      POWERTOOLS_LOG_LEVEL: options.logLevel ?? process.env.POWERTOOLS_LOG_LEVEL ?? 'ERROR',
    });

    const clientConfig = { region: REGION, credentials: LOCAL_CREDENTIALS };
    const dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: dynamo.endpoint });
    // The pollers' clients stand in for Lambda's event source mappings, whose work is not the functions'; kept lean.
    const sqs = withoutSdkLogging(new SQSClient({ ...clientConfig, endpoint: sqsStandIn.endpoint, cacheMiddleware: true }));
    const streams = withoutSdkLogging(new DynamoDBStreamsClient({ ...clientConfig, endpoint: dynamo.endpoint, cacheMiddleware: true }));
    stops.push(async () => [dynamodb, sqs, streams].forEach((c) => c.destroy()));

    const { names, streamArns } = await createTables(dynamodb);
    for (const [key, name] of Object.entries(names)) process.env[TABLES[key as keyof typeof TABLES].envVar] = name;
    const { queueUrl, dlqUrl, closesUrl, closesDlqUrl } = await createQueues(sqs, options.visibilityTimeoutSeconds ?? 30);
    Object.assign(process.env, {
      [QUEUES.usageEvents.envVar]: queueUrl,
      [QUEUES.deadLetter.envVar]: dlqUrl,
      [QUEUES.closes.envVar]: closesUrl,
      [QUEUES.closesDeadLetter.envVar]: closesDlqUrl,
    });
    const s3 = createS3Client();
    stops.push(async () => s3.destroy());
    const bucket = await createBucket(s3);
    process.env[BUCKETS.reports.envVar] = bucket;
    const documents = DynamoDBDocumentClient.from(dynamodb);
    await seedSubjects(new DynamoSubjects(documents, names.subjects), config, clock.now().toISOString());
    await seedApiKeys(new DynamoApiKeys(documents, names.apiKeys), config, clock.now().toISOString());

    // Imported only now, after the environment names the stand-ins; one at a time (Jest's ESM loader needs it).
    const { handler: ingest } = await import('../functions/ingest.handler');
    const { handler: aggregate } = await import('../functions/aggregate.handler');
    const { handler: api } = await import('../functions/api.handler');
    const { handler: scheduler } = await import('../functions/scheduler.handler');
    const { handler: closes } = await import('../functions/closes.handler');
    const { handler: notify } = await import('../functions/notify.handler');
    const { handler: exportFiles } = await import('../functions/export.handler');
    const onError = options.onError ?? ((source: string, error: unknown) => console.error(`[${source}]`, error instanceof Error ? error.message : error));

    const invokeIngest: Invoke<SQSEvent, SQSBatchResponse> = (event) => ingest(event, lambdaContext('ingest', FUNCTIONS.ingest.timeoutSeconds));
    const invokeAggregate: Invoke<LedgerStreamEvent, LedgerStreamResponse> = (event) => aggregate(event, lambdaContext('aggregate', FUNCTIONS.aggregate.timeoutSeconds));
    const invokeCloses: Invoke<SQSEvent, SQSBatchResponse> = (event) => closes(event, lambdaContext('closes', FUNCTIONS.closes.timeoutSeconds));
    const queueArn = async (url: string) => (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn ?? url;

    const sqsPoller = new SqsPoller({
      sqs,
      queueUrl,
      queueArn: await queueArn(queueUrl),
      batchSize: EVENT_SOURCES.ingest.batchSize,
      maxBatchingWindowMs: EVENT_SOURCES.ingest.maxBatchingWindowSeconds * 1000,
      concurrency: INGEST_BATCHES_IN_FLIGHT,
      invoke: options.wrapIngest ? options.wrapIngest(invokeIngest) : invokeIngest,
      onError: (error) => onError('ingest', error),
    });
    const closesPoller = new SqsPoller({
      sqs,
      queueUrl: closesUrl,
      queueArn: await queueArn(closesUrl),
      batchSize: EVENT_SOURCES.closes.batchSize,
      maxBatchingWindowMs: EVENT_SOURCES.closes.maxBatchingWindowSeconds * 1000,
      concurrency: options.closeBatchesInFlight ?? CLOSE_BATCHES_IN_FLIGHT,
      invoke: options.wrapCloses ? options.wrapCloses(invokeCloses) : invokeCloses,
      onError: (error) => onError('closes', error),
    });
    // Each table stream drives its function like Lambda's event source mapping, with the same numbers (the aggregate's window aside).
    const streamPoller = (
      streamArn: string,
      source: (typeof EVENT_SOURCES)['aggregate' | 'notify' | 'export'],
      name: string,
      invoke: Invoke<LedgerStreamEvent, DynamoDBBatchResponse>,
      windowSeconds: number = source.maxBatchingWindowSeconds,
    ) =>
      new StreamPoller({
        streams,
        streamArn,
        batchSize: source.batchSize,
        maxBatchingWindowMs: windowSeconds * 1000,
        tumblingWindowSeconds: 'tumblingWindowSeconds' in source ? source.tumblingWindowSeconds : 0,
        invoke,
        onError: (error) => onError(name, error),
      });
    const invokeNotify: Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse> = (event) => notify(event, lambdaContext('notify', FUNCTIONS.notify.timeoutSeconds));
    const invokeExport: Invoke<DynamoDBStreamEvent, DynamoDBBatchResponse> = (event) => exportFiles(event, lambdaContext('export', FUNCTIONS.export.timeoutSeconds));
    const ledgerPoller = streamPoller(
      streamArns.ledger,
      EVENT_SOURCES.aggregate,
      'aggregate',
      options.wrapAggregate ? options.wrapAggregate(invokeAggregate) : invokeAggregate,
      options.aggregateWindowSeconds ?? LOCAL_AGGREGATE_WINDOW_SECONDS,
    );
    const alertsPoller = streamPoller(streamArns.alerts, EVENT_SOURCES.notify, 'notify', options.wrapNotify ? options.wrapNotify(invokeNotify) : invokeNotify);
    const exportsPoller = streamPoller(streamArns.exports, EVENT_SOURCES.export, 'export', options.wrapExport ? options.wrapExport(invokeExport) : invokeExport);
    sqsPoller.start();
    closesPoller.start();
    ledgerPoller.start();
    alertsPoller.start();
    exportsPoller.start();
    stops.push(
      () => sqsPoller.stop(),
      () => closesPoller.stop(),
      () => ledgerPoller.stop(),
      () => alertsPoller.stop(),
      () => exportsPoller.stop(),
    );

    // Scheduled jobs run one at a time, on the deployed interval and whenever the test clock moves.
    let jobs: Promise<unknown> = Promise.resolve();
    const runScheduler = (event: SchedulerEvent): Promise<SchedulerResult> => {
      const run = jobs.then(() => scheduler(event, lambdaContext('scheduler', FUNCTIONS.scheduler.timeoutSeconds)) as Promise<SchedulerResult>);
      jobs = run.catch(() => undefined);
      return run;
    };
    const timer = setInterval(() => runScheduler({ job: SCHEDULES.closeDue.job }).catch((error: unknown) => onError('scheduler', error)), SCHEDULES.closeDue.intervalMinutes * 60_000);
    timer.unref();
    stops.push(async () => clearInterval(timer));

    const server = await startApiServer({
      port: options.port ?? 0,
      handler: api as ApiHandler,
      context: () => lambdaContext('api', FUNCTIONS.api.timeoutSeconds),
      ...(dashboard ? { staticRoot: dashboard } : {}),
    });
    stops.push(server.stop);

    const queueDepth = async (url: string) => {
      const { Attributes: a } = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] }),
      );
      return Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) + Number(a?.ApproximateNumberOfMessagesDelayed ?? 0);
    };
    /** Resolves once `quietNow` has held five checks in a row. */
    const quietFor = async (what: string, timeoutMs: number, quietNow: () => Promise<boolean>) => {
      const deadline = Date.now() + timeoutMs;
      let quiet = 0;
      while (quiet < 5) {
        if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
        await sleep(200);
        quiet = (await quietNow()) ? quiet + 1 : 0;
      }
    };

    const settle = (timeoutMs = 120_000) =>
      quietFor('the pipeline did not settle', timeoutMs, async () => sqsPoller.idle && ledgerPoller.idle && alertsPoller.idle && exportsPoller.idle && (await queueDepth(queueUrl)) === 0);
    /** The closes the scheduler sent are done when their queue is empty and no close batch is in flight; the dead-lettered are done too. */
    const closesDone = () => quietFor('the closes did not finish', 24 * 3_600_000, async () => closesPoller.idle && (await queueDepth(closesUrl)) === 0);

    // What the workers closed while the clock moved, for the move's answer.
    let closing: CloseSummary | undefined;
    const advanceClock = async (instant: Date) => {
      clock.refuseBackwards(instant); // a move back is refused at once, not after waiting for the pipeline
      await settle(); // what was sent before the clock moved is counted before anything closes
      clock.advanceTo(instant);
      const summary: CloseSummary = { now: clock.now().toISOString(), cyclesClosed: [], summaries: [], daysClosed: 0, adjustments: [] };
      closing = summary;
      try {
        const first = await runScheduler({ job: SCHEDULES.closeDue.job });
        await closesDone();
        // As the next hourly run would: the summaries of the cycles just closed, and whatever a failed close left due.
        const second = await runScheduler({ job: SCHEDULES.closeDue.job });
        await closesDone();
        summary.summaries = [...new Set([...first.summaries, ...second.summaries])];
      } finally {
        closing = undefined;
      }
      return { now: clock.now().toISOString(), closes: summary };
    };
    const moves = new TestClockMoves(advanceClock);
    useTestClock({
      advance: (instant) => {
        clock.refuseBackwards(instant);
        return moves.start(instant);
      },
      move: (id) => moves.get(id),
      answerWithinMs: options.testClockAnswerWithinMs ?? TEST_CLOCK_ANSWER_WITHIN_MS,
      closed: (close: SubjectClose) => closing && addClose(closing, close),
    });

    return {
      ready: {
        api: server.url,
        region: REGION,
        sqs: { endpoint: sqsStandIn.endpoint, queueUrl, dlqUrl },
        dynamodb: { endpoint: dynamo.endpoint },
        ses: { endpoint: sesStandIn.endpoint, store: sesStandIn.store },
        s3: { endpoint: sqsStandIn.endpoint, bucket },
      },
      config,
      tables: names,
      clock,
      advanceClock,
      settle,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The config's keys (local only) are stored hashed, like keys created with the CLI or the API. */
async function seedApiKeys(keys: DynamoApiKeys, config: Config, createdAt: string): Promise<void> {
  for (const entry of config.apiKeys) await keys.put(configuredKey(entry, createdAt));
}

/** The config's subjects seed the table; a subject already there (changed since) is left alone. */
async function seedSubjects(subjects: DynamoSubjects, config: Config, createdAt: string): Promise<void> {
  for (const subject of config.subjects) await subjects.create({ ...subject, createdAt });
}
