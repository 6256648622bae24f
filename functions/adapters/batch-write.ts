import { BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { backoff, mapConcurrently, writeMeter } from './dynamodb';

const MAX_BATCH = 25;
const MAX_ATTEMPTS = 8;

/**
 * Puts items with BatchWriteItem, 25 at a time, retrying unprocessed items with backoff.
 * Returns the items that still failed, so callers can redeliver just their messages.
 */
export async function batchPut<T extends Record<string, unknown>>(
  client: DynamoDBDocumentClient,
  tableName: string,
  keyNames: readonly string[],
  items: readonly T[],
  concurrency = 8,
): Promise<{ failed: T[] }> {
  const groups: T[][] = [];
  for (let i = 0; i < items.length; i += MAX_BATCH) groups.push(items.slice(i, i + MAX_BATCH));
  const failed: T[] = [];
  await mapConcurrently(groups, concurrency, async (group) => {
    failed.push(...(await putGroup(client, tableName, keyNames, group)));
    return true;
  });
  return { failed };
}

async function putGroup<T extends Record<string, unknown>>(client: DynamoDBDocumentClient, tableName: string, keyNames: readonly string[], group: T[]): Promise<T[]> {
  const keyOf = (item: Record<string, unknown>) => keyNames.map((name) => String(item[name])).join('\u0000');
  let pending = group;
  for (let attempt = 0; attempt < MAX_ATTEMPTS && pending.length > 0; attempt++) {
    if (attempt > 0) await backoff(attempt);
    try {
      const response = await client.send(
        new BatchWriteCommand({
          RequestItems: { [tableName]: pending.map((Item) => ({ PutRequest: { Item } })) },
          ReturnConsumedCapacity: 'TOTAL',
        }),
      );
      writeMeter.record(response.ConsumedCapacity);
      const unprocessed = response.UnprocessedItems?.[tableName] ?? [];
      const left = new Set(unprocessed.map((r) => keyOf(r.PutRequest?.Item ?? {})));
      pending = pending.filter((item) => left.has(keyOf(item)));
    } catch (error) {
      if (!isRetryable(error) || attempt === MAX_ATTEMPTS - 1) return pending;
    }
  }
  return pending;
}

function isRetryable(error: unknown): boolean {
  const e = error as { name?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (e.$retryable) return true;
  if (['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded', 'InternalServerError', 'ServiceUnavailable'].includes(e.name ?? '')) return true;
  return (e.$metadata?.httpStatusCode ?? 0) >= 500;
}
