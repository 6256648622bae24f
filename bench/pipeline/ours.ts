import { DynamoDBStreamsClient, GetRecordsCommand, type GetRecordsCommandOutput } from '@aws-sdk/client-dynamodb-streams';
import { awsClients } from '../../functions/adapters/app-context';
import type { LedgerStreamEvent, LedgerStreamResponse } from '../../functions/aggregate.handler';
import { EVENT_SOURCES, FUNCTIONS, QUEUES, TABLES } from '../../functions/contract/resources';
import { localTableName } from '../../local/bootstrap';
import { startLocal } from '../../local/runtime';
import { sleep } from '../../local/sqs-poller';
import type { ContenderStack, Hooks } from './harness';
import { IDLE_STREAM_POLL_MS } from './pipeline-protocol';

/**
 * This pipeline, exactly as `usage-pipeline local` runs it (local/runtime.ts): SQS → ingest → ledger →
 * stream → aggregate, with the deployed batch sizes and windows. The harness only wraps each handler
 * invocation: ingest waits for the gate, both are timed, and an aggregate invocation that resolves
 * makes the events of its applied records visible.
 */
export async function startOurs(configPath: string, hooks: Hooks, options: { slowIdleStreams: boolean }): Promise<ContenderStack> {
  if (options.slowIdleStreams) slowIdlePollsOfOtherStreams(localTableName(TABLES.ledger));
  const stack = await startLocal({
    configPath,
    // As deployed (not the local 30 s): messages held at the gate while the queue loads must not come back.
    visibilityTimeoutSeconds: QUEUES.usageEvents.visibilityTimeoutSeconds,
    // As deployed (not the local 1 s): the window decides how full the aggregate's batches get.
    aggregateWindowSeconds: EVENT_SOURCES.aggregate.maxBatchingWindowSeconds,
    wrapIngest: (invoke) => async (event) => {
      await hooks.gate.opened;
      return hooks.clock.time('ingest', FUNCTIONS.ingest.memoryMb, event.Records.length, () => invoke(event));
    },
    wrapAggregate: (invoke) => async (event) => {
      const response = await hooks.clock.time('aggregate', FUNCTIONS.aggregate.memoryMb, event.Records.length, () => invoke(event));
      markVisible(event, response, hooks);
      return response;
    },
    onError: (source, error) => hooks.onError(`${source}: ${error instanceof Error ? error.message : String(error)}`),
  });
  // The handlers' DynamoDB clients, one per process; the ledger's caches its middleware, so it is metered before its first put (ingest waits at the gate).
  hooks.meter.attach(awsClients.dynamodb().middlewareStack);
  hooks.meter.attach(awsClients.ledger().middlewareStack);
  return {
    sqs: { endpoint: stack.ready.sqs.endpoint, queueUrl: stack.ready.sqs.queueUrl },
    dynamodb: stack.ready.dynamodb,
    counters: { table: stack.tables.rollups, layout: 'rollups' },
    settle: () => stack.settle(600_000),
    stop: stack.stop,
  };
}

/** Records before the first reported failure are committed; each names its event by the ledger key `["source","id"]`. */
function markVisible(event: LedgerStreamEvent, response: LedgerStreamResponse, hooks: Hooks): void {
  const failed = response.batchItemFailures[0]?.itemIdentifier;
  const keys: string[] = [];
  for (const record of event.Records) {
    if (failed !== undefined && record.dynamodb?.SequenceNumber === failed) break;
    const key = record.dynamodb?.NewImage?.pk?.S;
    if (key) keys.push(key);
  }
  hooks.visibility.visible(keys);
}

/**
 * The local runtime polls every stream shard every 100 ms (local/stream-poller.ts). DynamoDB Local answers
 * a GetRecords that finds nothing by scanning every stream record of the instance (~1.5 ms per 1,000
 * records), so once the ledger stream holds 100,000 records the polls of the idle alerts and exports
 * streams occupy its single SQLite thread and ingest and aggregate crawl: an emulator cost AWS does not
 * have. The benchmark writes no alerts and no exports; here an empty GetRecords on any stream but the
 * ledger's answers only after IDLE_STREAM_POLL_MS. The ledger's own polls are untouched. Must run before
 * startLocal builds its streams client.
 */
export function slowIdlePollsOfOtherStreams(ledgerTable: string): void {
  // DynamoDB Local's shard iterators begin with their stream's ARN: arn:…:table/NAME/stream/…|…
  const ledgerStream = `:table/${ledgerTable}/stream/`;
  const send = DynamoDBStreamsClient.prototype.send as (this: DynamoDBStreamsClient, command: unknown) => Promise<unknown>;
  DynamoDBStreamsClient.prototype.send = async function (this: DynamoDBStreamsClient, command: unknown) {
    const output = await send.call(this, command);
    if (command instanceof GetRecordsCommand && !command.input.ShardIterator?.includes(ledgerStream) && ((output as GetRecordsCommandOutput).Records?.length ?? 0) === 0) {
      await sleep(IDLE_STREAM_POLL_MS);
    }
    return output;
  } as typeof DynamoDBStreamsClient.prototype.send;
}
