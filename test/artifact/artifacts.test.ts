import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AttributeValue, DynamoDBClient, GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, GetQueueAttributesCommand, type Message, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { DynamoApiKeys } from '../../functions/adapters/api-key-store';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { cycleSummaryKey } from '../../functions/adapters/s3';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import { BUCKETS, QUEUES, TABLES, type TableDefinition } from '../../functions/contract/resources';
import { configuredKey } from '../../functions/core/access/api-keys';
import { createBucket, createQueues, createTables, localTableName } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, type StandIn, startDynamoDbLocal, startSesStandIn, startSqsStandIn } from '../../local/stand-ins';
import {
  type CloudAssembly,
  cdkSynth,
  type Invocation,
  invokeFunction,
  LAMBDA_TASK_ROOT,
  lambdaEnvironment,
  layOutTaskRoot,
  type ResourceRef,
  readCloudAssembly,
  resolveValue,
  type SynthesizedFunction,
} from '../../testkit/cloud-assembly';
import { node22 } from '../../testkit/node22';

/**
 * The code that deploys, on the runtime it deploys to: `cdk synth` as docs/operations.md runs it, then every
 * Lambda function of the templates imported from its cdk.out asset (copied alone to a task root, as
 * Lambda unpacks it) and invoked on Node.js 22 with events shaped like AWS's documented samples
 * (fixtures/), with exactly the environment variables of its template, against DynamoDB Local and the
 * SQS/S3 and SES stand-ins. Each step checks what the function did to them.
 */

const REGION = 'us-east-1';
const DAY_MS = 86_400_000;
const ADMIN_KEY = 'artifact-admin-key-0000000000';
const WORKSPACE = 'ws_artifact';
const CLOSED_WORKSPACE = 'ws_closed';
const CONTACT = 'owner@artifact.example.com';
/** The plan's monthly limit in fixtures/config.json, and what the test uses of it: past 80%, short of 100%. */
const LIMIT = 100;
const USED = 90;
/** fixtures/config.json sets no `closes`, so a day is closed this long after it ends (the default of closes.graceMinutes). */
const GRACE_MINUTES = 60;
/** The Node.js functions the stacks must define; one more makes the first test fail until it is tested here. */
const EXPECTED_FUNCTIONS = ['Aggregate', 'Api', 'Closes', 'Export', 'Ingest', 'Notify', 'Scheduler'];

const fixturePath = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
/** A fixture's documented sample event, deep-copied so each use starts from the page's shape. */
const sample = <T>(name: string): T => (JSON.parse(readFileSync(fixturePath(name), 'utf8')) as { source: string; event: T }).event;

type Json = Record<string, unknown>;
interface Deployed {
  fn: SynthesizedFunction;
  root: string;
  env: Record<string, string>;
}

let node: string;
let work: string;
let assembly: CloudAssembly;
const standIns: StandIn[] = [];
let dynamodb: DynamoDBClient;
let sqs: SQSClient;
let s3: S3Client;
let sesStore: string;
let tables: Record<keyof typeof TABLES, string>;
let streamArns: Record<'ledger' | 'alerts' | 'exports', string>;
let queueUrl: string;
let queueArn: string;
/** The closes queue, which the Stateless stack owns; the stand-in's queue of the same definition (local/bootstrap) plays it. */
let closesUrl: string;
let closesArn: string;
let bucket: string;
const deployed = new Map<string, Deployed>();
/** The instant the test's events happen at, and the UTC day that holds it. */
const eventTime = new Date(Date.now() - 60_000);
const dayStart = new Date(Math.floor(eventTime.getTime() / DAY_MS) * DAY_MS);
/** An anchor 13–15 days away from today's date, so that the event's cycle is the current one on any date. */
const anchorDay = ((new Date().getUTCDate() + 13) % 28) + 1;

beforeAll(async () => {
  node = node22();
  work = mkdtempSync(join(tmpdir(), 'artifacts-'));
  const outdir = join(work, 'cdk.out');
  // Synth (esbuild for six functions) while Java starts.
  const synth = cdkSynth(outdir, fixturePath('config.json'));
  synth.catch(() => undefined); // awaited below; a failure must not go unhandled while the stand-ins start
  const [dynamo, sqsStandIn, ses] = await Promise.all([startDynamoDbLocal({ region: REGION }), startSqsStandIn({ region: REGION }), startSesStandIn()]);
  standIns.push(dynamo, sqsStandIn, ses);
  sesStore = ses.store;
  const clientConfig = { region: REGION, credentials: LOCAL_CREDENTIALS };
  dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: dynamo.endpoint });
  sqs = new SQSClient({ ...clientConfig, endpoint: sqsStandIn.endpoint });
  s3 = new S3Client({ ...clientConfig, endpoint: sqsStandIn.endpoint, forcePathStyle: true });
  ({ names: tables, streamArns } = await createTables(dynamodb));
  ({ queueUrl, closesUrl } = await createQueues(sqs, 30));
  const arnOf = async (url: string) => (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn ?? '';
  queueArn = await arnOf(queueUrl);
  closesArn = await arnOf(closesUrl);
  bucket = await createBucket(s3);
  await new DynamoApiKeys(createDocumentClient(dynamodb), tables.apiKeys).put(configuredKey({ key: ADMIN_KEY, scope: 'admin' }, new Date().toISOString()));

  await synth;
  assembly = readCloudAssembly(outdir);
  const endpoints = {
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_SESSION_TOKEN: 'local',
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ENDPOINT_URL_SQS: sqsStandIn.endpoint,
    AWS_ENDPOINT_URL_S3: sqsStandIn.endpoint,
    AWS_ENDPOINT_URL_SES: ses.endpoint,
  };
  for (const fn of assembly.functions.filter((f) => f.runtime.startsWith('nodejs'))) {
    const root = layOutTaskRoot(fn, work);
    const variables = Object.entries(fn.environment).map(([name, value]) => {
      const resolved = resolveValue(assembly, fn.stack, value, physicalId);
      // The one path into Lambda's file system a template names: the bundle's own directory.
      return [name, resolved.startsWith(`${LAMBDA_TASK_ROOT}/`) ? join(root, resolved.slice(LAMBDA_TASK_ROOT.length)) : resolved];
    });
    deployed.set(fn.constructId, { fn, root, env: { ...lambdaEnvironment(fn, REGION), ...Object.fromEntries(variables), ...endpoints } });
  }
}, 300_000);

afterAll(async () => {
  dynamodb?.destroy();
  sqs?.destroy();
  s3?.destroy();
  for (const standIn of standIns.reverse()) await standIn.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The stand-in's name for a resource the functions are told of: table names, queue URLs, bucket as local/bootstrap made them. */
function physicalId(resource: ResourceRef): string {
  if (resource.type === 'AWS::DynamoDB::Table') {
    const definition = (Object.values(TABLES) as TableDefinition[]).find((t) => t.name === resource.constructId);
    if (definition) return localTableName(definition);
  }
  if (resource.type === 'AWS::SQS::Queue' && resource.constructId === QUEUES.usageEvents.name) return queueUrl;
  if (resource.type === 'AWS::SQS::Queue' && resource.constructId === `${QUEUES.closes.name}Queue`) return closesUrl;
  if (resource.type === 'AWS::S3::Bucket' && resource.constructId === BUCKETS.reports.name) return bucket;
  throw new Error(`no local stand-in for ${resource.type} ${resource.stack}/${resource.logicalId}`);
}

async function invoke(constructId: string, event: unknown): Promise<Invocation> {
  const target = deployed.get(constructId);
  if (!target) throw new Error(`the assembly has no Node.js function ${constructId}`);
  const invocation = await invokeFunction(node, target.fn, target.root, target.env, event);
  if (invocation.initError || invocation.error) throw new Error(`${constructId} failed: ${JSON.stringify(invocation.initError ?? invocation.error)}\n${invocation.logs.slice(-4000)}`);
  return invocation;
}

/** An HTTP API (payload 2.0) request for one of the API's routes, from the documented sample. */
function httpEvent(method: string, route: string, path: string, options: { query?: Record<string, string>; body?: unknown } = {}): Json {
  const event = sample<Json & { requestContext: Json & { http: Json } }>('http-api-v2-event.json');
  const query = new URLSearchParams(options.query ?? {});
  // The API has no authorizer and no mutual TLS, so API Gateway sends neither; nor cookies or stage variables here.
  delete event.requestContext.authorizer;
  delete event.requestContext.authentication;
  delete event.cookies;
  delete event.stageVariables;
  const pathParameters = pathParametersOf(route, path);
  return {
    ...event,
    routeKey: `${method} ${route}`,
    rawPath: path,
    rawQueryString: query.toString(),
    headers: { authorization: `Bearer ${ADMIN_KEY}`, host: 'id.execute-api.us-east-1.amazonaws.com', 'content-type': 'application/json', 'user-agent': 'agent' },
    queryStringParameters: options.query,
    pathParameters,
    requestContext: { ...event.requestContext, routeKey: `${method} ${route}`, http: { ...event.requestContext.http, method, path } },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    isBase64Encoded: false,
  };
}

function pathParametersOf(route: string, path: string): Record<string, string> | undefined {
  const names = route.split('/');
  const values = path.split('/');
  const entries = names.flatMap((name, i) => (name.startsWith('{') ? [[name.slice(1, -1), values[i] ?? '']] : []));
  return entries.length ? Object.fromEntries(entries) : undefined;
}

async function api(method: string, route: string, path: string, options: { query?: Record<string, string>; body?: unknown } = {}): Promise<{ status: number; body: Json }> {
  const response = (await invoke('Api', httpEvent(method, route, path, options))).result as { statusCode: number; body: string };
  return { status: response.statusCode, body: JSON.parse(response.body) as Json };
}

async function scan(table: string): Promise<Record<string, AttributeValue>[]> {
  return (await dynamodb.send(new ScanCommand({ TableName: table }))).Items ?? [];
}

/** A DynamoDB Streams record of `item`'s insert, from a documented sample record. */
function insertRecord(template: Json, item: Record<string, AttributeValue>, keyNames: string[], streamArn: string, sequenceNumber: string): Json {
  const record = structuredClone(template) as Json & { dynamodb: Json };
  return {
    ...record,
    eventName: 'INSERT',
    awsRegion: REGION,
    eventSourceARN: streamArn,
    dynamodb: {
      ...record.dynamodb,
      ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
      Keys: Object.fromEntries(keyNames.map((k) => [k, item[k]])),
      NewImage: item,
      SequenceNumber: sequenceNumber,
      SizeBytes: JSON.stringify(item).length,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}

async function dayUsage(): Promise<unknown> {
  const { status, body } = await api('GET', '/v1/workspaces/{id}/usage', `/v1/workspaces/${WORKSPACE}/usage`, {
    query: { granularity: 'day', from: dayStart.toISOString(), to: new Date(dayStart.getTime() + DAY_MS).toISOString() },
  });
  expect(status).toBe(200);
  return body.buckets;
}

describe('the synthesized functions on Node.js 22', () => {
  test('the stacks define exactly the tested Node.js functions, all on nodejs22.x, and each bundle loads from its own files alone', async () => {
    const functions = assembly.functions.filter((f) => f.runtime.startsWith('nodejs'));
    expect(functions.map((f) => f.constructId).sort()).toEqual(EXPECTED_FUNCTIONS);
    expect(new Set(functions.map((f) => f.runtime))).toEqual(new Set(['nodejs22.x']));
    expect(execFileSync(node, ['--version'], { encoding: 'utf8' })).toMatch(/^v22\./);
    for (const fn of functions) {
      const loaded = await invokeFunction(node, fn, deployed.get(fn.constructId)?.root ?? '', deployed.get(fn.constructId)?.env ?? {});
      expect({ fn: fn.constructId, initError: loaded.initError }).toEqual({ fn: fn.constructId, initError: undefined });
    }
  });

  test('api: an admin creates the workspace (PUT) and lists the usage types of the bundled config', async () => {
    const body = { plan: 'std', billingAnchorDay: anchorDay, timeZone: 'UTC', contacts: [CONTACT], name: 'Artifact' };
    const created = await api('PUT', '/v1/workspaces/{id}', `/v1/workspaces/${WORKSPACE}`, { body });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: WORKSPACE, ...body });
    const types = await api('GET', '/v1/usage-types', '/v1/usage-types');
    expect(types).toEqual({ status: 200, body: { usageTypes: [{ id: 'tokens', unit: 'token', allowFractions: false }] } });
  });

  test('ingest: an SQS batch writes its valid event to the ledger and quarantines the invalid one', async () => {
    const event = (id: string, usageType: string) =>
      JSON.stringify({ specversion: '1.0', id, source: '//artifact-test', type: 'com.example.usage', subject: WORKSPACE, time: eventTime.toISOString(), data: { usageType, quantity: USED } });
    const bodies = [event('artifact-1', 'tokens'), event('artifact-2', 'no_such_type')];
    const sqsEvent = sample<{ Records: (Json & { attributes: Json })[] }>('sqs-event.json');
    const sent = String(Date.now());
    sqsEvent.Records = sqsEvent.Records.map((record, i) => ({
      ...record,
      body: bodies[i],
      md5OfBody: createHash('md5')
        .update(bodies[i] ?? '')
        .digest('hex'),
      attributes: { ...record.attributes, SentTimestamp: sent, ApproximateFirstReceiveTimestamp: sent },
      eventSourceARN: queueArn,
      awsRegion: REGION,
    }));

    expect((await invoke('Ingest', sqsEvent)).result).toEqual({ batchItemFailures: [] });

    const ledger = (await scan(tables.ledger)).map((item) => unmarshall(item));
    expect(ledger).toHaveLength(1);
    expect(ledger[0]).toMatchObject({ subject: WORKSPACE, usageType: 'tokens', time: eventTime.toISOString() });
    expect(JSON.stringify(ledger[0])).toContain('artifact-1');
    const quarantined = (await scan(tables.quarantine)).map((item) => unmarshall(item));
    expect(quarantined.map((q) => q.reason)).toEqual(['unknown_usage_type']);
  });

  test('aggregate: a tumbling-window batch of the ledger insert updates the rollups and records the 80% alert; a retry and the final invoke change nothing', async () => {
    const [item] = await scan(tables.ledger);
    if (!item) throw new Error('the ledger is empty');
    const windowEvent = sample<Json & { Records: Json[] }>('dynamodb-window-event.json');
    const windowSeconds = tumblingWindowSeconds();
    const windowStart = Math.floor(Date.now() / (windowSeconds * 1000)) * windowSeconds * 1000;
    const batch = {
      ...windowEvent,
      Records: [insertRecord(windowEvent.Records[0] as Json, item, ['pk'], streamArns.ledger, '100000000000000000001')],
      window: { start: new Date(windowStart).toISOString(), end: new Date(windowStart + windowSeconds * 1000).toISOString() },
      state: {},
      shardId: 'shardId-00000001700000000000-0a1b2c3d',
      eventSourceARN: streamArns.ledger,
      isFinalInvokeForWindow: false,
      isWindowTerminatedEarly: false,
    };

    const first = (await invoke('Aggregate', batch)).result as { state?: unknown; batchItemFailures: unknown[] };
    expect(first.batchItemFailures).toEqual([]);
    expect(typeof first.state).toBe('object');
    // The one valid event the ingest test sent: its quantity, and one request (a retried batch must not add another).
    const expected = [{ start: dayStart.toISOString(), usageType: 'tokens', quantity: USED, requests: 1 }];
    expect(await dayUsage()).toEqual(expected);
    const alerts = (await scan(tables.alerts)).map((a) => unmarshall(a));
    expect(alerts.map((a) => [a.pk, String(a.sk).split('#').at(-1), a.notify])).toEqual([[WORKSPACE, '0080', true]]);

    // Lambda retries a batch whole; the checkpoint makes the second application a no-op.
    expect(((await invoke('Aggregate', { ...batch, state: first.state })).result as { batchItemFailures: unknown[] }).batchItemFailures).toEqual([]);
    const final = (await invoke('Aggregate', { ...batch, Records: [], state: first.state, isFinalInvokeForWindow: true })).result as { state?: unknown; batchItemFailures: unknown[] };
    expect(final.batchItemFailures).toEqual([]);
    expect(typeof final.state).toBe('object');
    expect(await dayUsage()).toEqual(expected);
    expect(await scan(tables.alerts)).toHaveLength(1);
  });

  test('notify: the alert insert sends one threshold email, which the SES stand-in records', async () => {
    const [alert] = await scan(tables.alerts);
    if (!alert) throw new Error('no alert was recorded');
    const streamEvent = sample<{ Records: Json[] }>('dynamodb-stream-event.json');
    const event = { Records: [insertRecord(streamEvent.Records[0] as Json, alert, ['pk', 'sk'], streamArns.alerts, '200000000000000000001')] };

    expect((await invoke('Notify', event)).result).toEqual({ batchItemFailures: [] });

    const { emails } = (await (await fetch(sesStore)).json()) as { emails: { destination: { to: string[] }; subject: string; body: { text?: string } }[] };
    expect(emails.map((e) => [e.destination.to, e.subject])).toEqual([[[CONTACT], 'You have used 80% of your monthly tokens']]);
    expect(emails[0]?.body.text).toContain(`allowance: ${USED} of ${LIMIT} tokens`);
  });

  test('export: a job the api queued is written to S3 by the export function, and the api then answers it ready', async () => {
    const request = { from: dayStart.toISOString(), to: new Date(dayStart.getTime() + DAY_MS).toISOString(), granularity: 'day', subjects: [WORKSPACE], format: 'json' };
    const queued = await api('POST', '/v1/exports', '/v1/exports', { body: request });
    expect(queued.status).toBe(202);
    const id = String(queued.body.id);
    const { Item: job } = await dynamodb.send(new GetItemCommand({ TableName: tables.exports, Key: marshall({ id }) }));
    if (!job) throw new Error(`export job ${id} is not in the table`);
    const streamEvent = sample<{ Records: Json[] }>('dynamodb-stream-event.json');

    expect((await invoke('Export', { Records: [insertRecord(streamEvent.Records[0] as Json, job, ['id'], streamArns.exports, '300000000000000000001')] })).result).toEqual({ batchItemFailures: [] });

    const { Contents } = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: BUCKETS.reports.exportsPrefix }));
    expect((Contents ?? []).map((o) => o.Key)).toEqual([`${BUCKETS.reports.exportsPrefix}${id}.json`]);
    const file = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `${BUCKETS.reports.exportsPrefix}${id}.json` }))).Body?.transformToString();
    const dayEnd = new Date(dayStart.getTime() + DAY_MS).toISOString();
    expect((JSON.parse(file ?? 'null') as { buckets: unknown }).buckets).toEqual([
      { subject: WORKSPACE, usageType: 'tokens', start: dayStart.toISOString(), end: dayEnd, day: dayStart.toISOString().slice(0, 10), quantity: String(USED), requests: 1, byChannel: {} },
    ]);
    const answered = await api('GET', '/v1/exports/{exportId}', `/v1/exports/${id}`);
    expect(answered).toMatchObject({ status: 200, body: { id, status: 'ready' } });
  });

  test("scheduler: the schedule's input sends each workspace due, from the due index, to the closes queue", async () => {
    const schedule = Object.values(assembly.templates['UsagePipeline-Stateless']?.Resources ?? {}).find((r) => r.Type === 'AWS::Scheduler::Schedule');
    const input = JSON.parse(String((schedule?.Properties?.Target as { Input?: string } | undefined)?.Input)) as unknown;
    expect(input).toEqual(sample('scheduler-input.json'));
    // A workspace created on the 1st two months ago, anchored on the 1st: its first cycle ended at least a month ago.
    // Added as the API adds one: due at once, in its shard of the due index.
    await new DynamoSubjects(createDocumentClient(dynamodb), tables.subjects).create({
      id: CLOSED_WORKSPACE,
      plan: 'std',
      billingAnchorDay: 1,
      timeZone: 'UTC',
      contacts: [],
      createdAt: closedCycleStart().toISOString(),
    });

    const run = (await invoke('Scheduler', input)).result as { dispatched: number; summaries: string[] };

    // Both workspaces are due (neither was ever closed); nothing was closed yet, so no summary is due.
    expect(run).toMatchObject({ dispatched: 2, summaries: [] });
    const sent = await receiveAll(closesUrl, 2);
    expect(sent.map((m) => m.Body).sort()).toEqual([CLOSED_WORKSPACE, WORKSPACE].sort());
    dispatched.push(...sent);
  });

  test('closes: an SQS batch of the workspace ids closes the finished cycle (report in S3), freezes the ended days and moves each next-due instant forward', async () => {
    const sqsEvent = sample<{ Records: (Json & { attributes: Json })[] }>('sqs-event.json');
    const [template] = sqsEvent.Records;
    if (!template || dispatched.length === 0) throw new Error('the scheduler sent nothing to close');
    const event = {
      Records: dispatched.map((message) => ({
        ...template,
        messageId: message.MessageId,
        receiptHandle: message.ReceiptHandle,
        body: message.Body,
        md5OfBody: message.MD5OfBody,
        messageAttributes: {},
        attributes: { ...template.attributes, SentTimestamp: String(Date.now()), ApproximateFirstReceiveTimestamp: String(Date.now()) },
        eventSourceARN: closesArn,
        awsRegion: REGION,
      })),
    };

    expect((await invoke('Closes', event)).result).toEqual({ batchItemFailures: [] });
    // What the event source mapping does with a batch that succeeded.
    for (const message of dispatched) await sqs.send(new DeleteMessageCommand({ QueueUrl: closesUrl, ReceiptHandle: message.ReceiptHandle }));

    const now = new Date();
    const cycleStart = closedCycleStart();
    const key = `${BUCKETS.reports.reportsPrefix}${cycleStart.toISOString()}/${CLOSED_WORKSPACE}.json`;
    const report = JSON.parse((await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString()) ?? 'null') as Json;
    const cycleEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
    expect(report).toMatchObject({ kind: 'cycle-report', subject: { id: CLOSED_WORKSPACE, plan: 'std' }, cycle: { start: cycleStart.toISOString(), end: cycleEnd.toISOString(), status: 'closed' } });
    // Every UTC day from its creation to the last one whose grace period has passed is frozen: yesterday, or in the
    // first hour of a day the one before it.
    const due = new Date(now.getTime() - GRACE_MINUTES * 60_000);
    const lastClosed = new Date(Date.UTC(due.getUTCFullYear(), due.getUTCMonth(), due.getUTCDate() - 1)).toISOString().slice(0, 10);
    const days = (await scan(tables.accounts))
      .map((item) => unmarshall(item))
      .filter((item) => item.pk === CLOSED_WORKSPACE && String(item.sk).startsWith('D#'))
      .map((item) => String(item.sk).slice(2))
      .sort();
    expect([days[0], days.at(-1)]).toEqual([cycleStart.toISOString().slice(0, 10), lastClosed]);
    // CLOSED_WORKSPACE is next due when its first open day ends; neither workspace is due any more, and both claims are released.
    const subjectItem = async (id: string) => unmarshall((await dynamodb.send(new GetItemCommand({ TableName: tables.subjects, Key: marshall({ id }) }))).Item ?? {});
    expect((await subjectItem(CLOSED_WORKSPACE)).nextDueAt).toBe(new Date(Date.UTC(due.getUTCFullYear(), due.getUTCMonth(), due.getUTCDate() + 1)).toISOString());
    for (const id of [CLOSED_WORKSPACE, WORKSPACE]) {
      const subject = await subjectItem(id);
      expect([id, String(subject.nextDueAt) > due.toISOString(), subject.closeHolder]).toEqual([id, true, undefined]);
    }
  });

  test('scheduler: the next run writes the summary of the closed cycle and sends no workspace (none is due)', async () => {
    const run = (await invoke('Scheduler', sample('scheduler-input.json'))).result as { dispatched: number; summaries: string[] };

    const summaryKey = cycleSummaryKey(closedCycleStart().toISOString());
    expect(run.summaries).toContain(summaryKey);
    expect(run.dispatched).toBe(0);
    const summary = JSON.parse((await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: summaryKey }))).Body?.transformToString()) ?? 'null') as unknown;
    expect(JSON.stringify(summary)).toContain(CLOSED_WORKSPACE);
    expect(await receiveAll(closesUrl, 0)).toEqual([]);
  });

  test('dashboard: the CloudFront function sends page paths to /index.html and leaves files alone', () => {
    const resource = Object.values(assembly.templates['UsagePipeline-Dashboard']?.Resources ?? {}).find((r) => r.Type === 'AWS::CloudFront::Function');
    const code = String(resource?.Properties?.FunctionCode);
    const event = sample<Json & { request: Json }>('cloudfront-viewer-request-event.json');
    // CloudFront's JavaScript runtime is its own, not Node's; the code is plain ES5.1 and runs in a bare vm context.
    const run = (uri: string) =>
      JSON.parse(
        execFileSync(
          node,
          [
            '-e',
            "const vm = require('node:vm'); const { code, event } = JSON.parse(require('node:fs').readFileSync(0, 'utf8')); process.stdout.write(JSON.stringify(vm.runInNewContext(code + '; handler(event)', { event })));",
          ],
          {
            input: JSON.stringify({ code, event: { ...event, request: { ...event.request, uri } } }),
            encoding: 'utf8',
          },
        ),
      ) as { uri: string; method: string };
    expect(run('/workspaces/ws_acme')).toMatchObject({ uri: '/index.html', method: 'GET' });
    expect(run('/assets/index-abc123.js').uri).toBe('/assets/index-abc123.js');
  });
});

/** The messages the scheduler sent to the closes queue, received (as the event source mapping would) for the closes test. */
const dispatched: Message[] = [];

/** The start of the cycle CLOSED_WORKSPACE closes: the 1st of the month two months ago, when it was created. */
function closedCycleStart(): Date {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1));
}

/** Receives from `url` until `count` messages have come, or (for none expected) one empty long poll. */
async function receiveAll(url: string, count: number): Promise<Message[]> {
  const received: Message[] = [];
  for (let attempt = 0; attempt < 10 && (received.length < count || attempt === 0); attempt++) {
    const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    received.push(...Messages);
  }
  return received;
}

/** The aggregate mapping's tumbling window, as synthesized. */
function tumblingWindowSeconds(): number {
  const mappings = Object.values(assembly.templates['UsagePipeline-Stateless']?.Resources ?? {}).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
  const windowed = mappings.map((m) => Number(m.Properties?.TumblingWindowInSeconds ?? 0)).filter((s) => s > 0);
  if (windowed.length !== 1) throw new Error(`expected one mapping with a tumbling window, found ${windowed.length}`);
  return windowed[0] as number;
}
