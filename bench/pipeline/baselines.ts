/**
 * The obvious designs the pipeline is measured against, each an SQS consumer run like ours' ingest
 * (local/sqs-poller.ts, same batch size, window and number of concurrent batches):
 *   A  for each event, three UpdateItem ADDs: its hour, day and cycle counter items; no deduplication.
 *   B  the same, preceded per message by a Powertools-style idempotency record: a conditional PutItem
 *      keyed by the event's identity (source + id) that a duplicate finds taken, and is skipped.
 * Both parse, validate, look up the subject and place the event in its hour, day and cycle with the
 * project's own code, so that only the writing differs from ours.
 */

import { createHash } from 'node:crypto';
import { CreateTableCommand, type CreateTableCommandInput, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BatchWriteCommand, type DynamoDBDocumentClient, NumberValue, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { loadConfigFile } from '../../functions/adapters/app-context';
import { createDocumentClient, mapConcurrently } from '../../functions/adapters/dynamodb';
import { withoutSdkLogging } from '../../functions/adapters/sdk-clients';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import { EVENT_SOURCES, FUNCTIONS, QUEUES } from '../../functions/contract/resources';
import type { Config } from '../../functions/core/config';
import { cycleContaining, localDate, utcHour } from '../../functions/core/cycles';
import { envelopeRules, eventKey, parseMessageBody, type UsageEvent, validateEvent } from '../../functions/core/metering/envelope';
import { createQueues } from '../../local/bootstrap';
import { INGEST_BATCHES_IN_FLIGHT } from '../../local/runtime';
import { SqsPoller, sleep } from '../../local/sqs-poller';
import { LOCAL_CREDENTIALS, startDynamoDbLocal, startSqsStandIn } from '../../local/stand-ins';
import type { ContenderStack, Hooks } from './harness';

export type BaselineKind = 'baseline-a' | 'baseline-b';

const REGION = 'us-east-1';
const TABLE = { subjects: 'baseline-subjects', counters: 'baseline-counters', idempotency: 'baseline-idempotency' };
/** Messages in flight within a batch, as many as ours' ledger writes (functions/adapters/ledger-store.ts). */
const CONCURRENT_MESSAGES = 32;
/** As long as ours may take to settle (bench/pipeline/ours.ts). */
const SETTLE_TIMEOUT_MS = 600_000;
/** Powertools' defaults: a record expires after an hour; an in-progress one after the function's timeout. */
const IDEMPOTENCY_EXPIRY_SECONDS = 3600;

export async function startBaseline(kind: BaselineKind, configPath: string, hooks: Hooks): Promise<ContenderStack> {
  const config = loadConfigFile(configPath);
  const stops: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const [dynamo, sqsStandIn] = await Promise.all([startDynamoDbLocal({ region: REGION }), startSqsStandIn({ region: REGION })]);
    stops.push(dynamo.stop, sqsStandIn.stop);
    const clientConfig = { region: REGION, credentials: LOCAL_CREDENTIALS };
    const dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: dynamo.endpoint, maxAttempts: 8 });
    const sqs = withoutSdkLogging(new SQSClient({ ...clientConfig, endpoint: sqsStandIn.endpoint, cacheMiddleware: true })); // as ours' poller (local/runtime.ts)
    stops.push(async () => [dynamodb, sqs].forEach((client) => client.destroy()));
    await createBaselineTables(dynamodb);
    const documents = createDocumentClient(dynamodb);
    await seedSubjects(documents, config);
    hooks.meter.attach(dynamodb.middlewareStack);

    const { queueUrl } = await createQueues(sqs, QUEUES.usageEvents.visibilityTimeoutSeconds);
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
    const consume = baselineHandler(kind, config, documents, hooks);
    const poller = new SqsPoller({
      sqs,
      queueUrl,
      queueArn: Attributes?.QueueArn ?? queueUrl,
      batchSize: EVENT_SOURCES.ingest.batchSize,
      maxBatchingWindowMs: EVENT_SOURCES.ingest.maxBatchingWindowSeconds * 1000,
      concurrency: INGEST_BATCHES_IN_FLIGHT, // as ours (local/runtime.ts)
      invoke: async (event) => {
        await hooks.gate.opened;
        return hooks.clock.time(kind, FUNCTIONS.ingest.memoryMb, event.Records.length, () => consume(event));
      },
      onError: (error) => hooks.onError(`${kind}: ${(error as Error).message}`),
    });
    poller.start();
    stops.push(() => poller.stop());

    const queueDepth = async () => {
      const { Attributes: a } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
      return Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0);
    };
    return {
      sqs: { endpoint: sqsStandIn.endpoint, queueUrl },
      dynamodb: { endpoint: dynamo.endpoint },
      counters: { table: TABLE.counters, layout: 'counters' },
      // Like the local runtime's settle: quiet for a second in a row.
      settle: async () => {
        const deadline = Date.now() + SETTLE_TIMEOUT_MS;
        for (let quiet = 0; quiet < 5; quiet = poller.idle && (await queueDepth()) === 0 ? quiet + 1 : 0) {
          if (Date.now() > deadline) throw new Error(`${kind} did not settle within ${SETTLE_TIMEOUT_MS / 1000} s`);
          await sleep(200);
        }
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** One invocation: a batch of queue messages; only messages whose writes failed are reported for redelivery. */
function baselineHandler(kind: BaselineKind, config: Config, documents: DynamoDBDocumentClient, hooks: Hooks) {
  const subjects = new DynamoSubjects(documents, TABLE.subjects);
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const rules = envelopeRules(config, new Date());
    // Invalid events are dropped: the benchmark sends none, and the baselines have no quarantine.
    const valid = event.Records.flatMap((record) => {
      const parsed = parseMessageBody(record.body);
      if (!parsed.ok) return [];
      return parsed.events.flatMap((raw) => {
        const result = validateEvent(raw, rules);
        return result.ok ? [{ messageId: record.messageId, event: result.event }] : [];
      });
    });
    const known = await subjects.getMany([...new Set(valid.map((v) => v.event.subject))]);
    const failed = await mapConcurrently(valid, CONCURRENT_MESSAGES, async ({ event: usage }) => {
      const subject = known.get(usage.subject);
      if (!subject) return true;
      try {
        if (kind === 'baseline-b' && !(await claim(documents, usage))) return true; // a duplicate: already counted
        const quantity = NumberValue.from(usage.quantity);
        const cycleStart = cycleContaining(usage.time, subject).start;
        await Promise.all([`H#${utcHour(usage.time)}`, `D#${localDate(usage.time, subject.timeZone)}`, `C#${cycleStart}`].map((period) => add(documents, usage, period, quantity)));
        hooks.visibility.visible([eventKey(usage)]);
        return true;
      } catch (error) {
        hooks.onError(`${kind}: ${(error as Error).message}`);
        return false;
      }
    });
    const failedIds = new Set(failed.map((f) => f.messageId));
    return { batchItemFailures: [...failedIds].map((itemIdentifier) => ({ itemIdentifier })) };
  };
}

/** The counter item of one period: pk subject, sk `H#hour#type`, `D#day#type` or `C#cycleStart#type`. */
async function add(documents: DynamoDBDocumentClient, usage: UsageEvent, period: string, quantity: NumberValue): Promise<void> {
  await documents.send(
    new UpdateCommand({
      TableName: TABLE.counters,
      Key: { pk: usage.subject, sk: `${period}#${usage.usageType}` },
      UpdateExpression: 'ADD #total :quantity',
      ExpressionAttributeNames: { '#total': 'total' },
      ExpressionAttributeValues: { ':quantity': quantity },
      ReturnConsumedCapacity: 'TOTAL',
    }),
  );
}

/**
 * The idempotency record, as Powertools' DynamoDBPersistenceLayer writes it before running the handler:
 * `id` (here the hashed event identity), `status`, `expiration` and `in_progress_expiration`, put only if
 * absent, expired, or left in progress past its expiry. False when the record exists: a duplicate.
 * Powertools then updates the record to COMPLETED, one more write per event that B leaves out.
 */
async function claim(documents: DynamoDBDocumentClient, usage: UsageEvent): Promise<boolean> {
  const now = Date.now();
  try {
    await documents.send(
      new PutCommand({
        TableName: TABLE.idempotency,
        Item: {
          id: `baseline-b#${createHash('md5').update(eventKey(usage)).digest('hex')}`,
          status: 'INPROGRESS',
          expiration: Math.floor(now / 1000) + IDEMPOTENCY_EXPIRY_SECONDS,
          in_progress_expiration: now + FUNCTIONS.ingest.timeoutSeconds * 1000,
        },
        ConditionExpression: 'attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)',
        ExpressionAttributeNames: { '#id': 'id', '#expiry': 'expiration', '#status': 'status', '#in_progress_expiry': 'in_progress_expiration' },
        ExpressionAttributeValues: { ':now': now / 1000, ':now_in_millis': now, ':inprogress': 'INPROGRESS' },
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        ReturnConsumedCapacity: 'TOTAL',
      }),
    );
    return true;
  } catch (error) {
    if ((error as Error).name === 'ConditionalCheckFailedException') return false;
    throw error;
  }
}

async function createBaselineTables(client: DynamoDBClient): Promise<void> {
  const table = (TableName: string, keys: string[]): CreateTableCommandInput => ({
    TableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: keys.map((AttributeName) => ({ AttributeName, AttributeType: 'S' })),
    KeySchema: keys.map((AttributeName, i) => ({ AttributeName, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
  });
  await client.send(new CreateTableCommand(table(TABLE.subjects, ['id'])));
  await client.send(new CreateTableCommand(table(TABLE.counters, ['pk', 'sk'])));
  await client.send(new CreateTableCommand(table(TABLE.idempotency, ['id'])));
}

/** The config's subjects, as the local runtime seeds them for ours (not metered: the meter is attached after). */
async function seedSubjects(documents: DynamoDBDocumentClient, config: Config): Promise<void> {
  const createdAt = new Date().toISOString();
  for (let i = 0; i < config.subjects.length; i += 25) {
    const requests = config.subjects.slice(i, i + 25).map((subject) => ({ PutRequest: { Item: { ...subject, createdAt } } }));
    const { UnprocessedItems } = await documents.send(new BatchWriteCommand({ RequestItems: { [TABLE.subjects]: requests } }));
    if (Object.keys(UnprocessedItems ?? {}).length > 0) throw new Error('DynamoDB Local left subjects unprocessed');
  }
}
