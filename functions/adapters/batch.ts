import { BatchGetCommand, BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { backoff, mapConcurrently, writeMeter } from './dynamodb';

const MAX_WRITE_BATCH = 25;
const MAX_GET_BATCH = 100;
const MAX_ATTEMPTS = 8;

type Item = Record<string, unknown>;
type WriteRequest = { PutRequest: { Item: Item } } | { DeleteRequest: { Key: Item } };

/**
 * Puts items with BatchWriteItem, 25 at a time, retrying unprocessed items with backoff.
 * Returns the items that still failed, so callers can redeliver just their messages.
 */
export function batchPut<T extends Item>(client: DynamoDBDocumentClient, tableName: string, keyNames: readonly string[], items: readonly T[], concurrency = 8): Promise<{ failed: T[] }> {
  return batchWrite(client, tableName, keyNames, items, (item) => ({ PutRequest: { Item: item } }), concurrency);
}

/** Deletes items by key with BatchWriteItem, like `batchPut`; returns the keys that could not be deleted. */
export function batchDelete<T extends Item>(client: DynamoDBDocumentClient, tableName: string, keyNames: readonly string[], keys: readonly T[], concurrency = 8): Promise<{ failed: T[] }> {
  return batchWrite(client, tableName, keyNames, keys, (key) => ({ DeleteRequest: { Key: key } }), concurrency);
}

/**
 * Gets items by key with BatchGetItem, 100 at a time, retrying unprocessed keys with backoff; items that
 * do not exist are simply absent from the result. Throws when keys stay unprocessed.
 */
export async function batchGet(client: DynamoDBDocumentClient, tableName: string, keys: readonly Item[], options: { consistentRead?: boolean } = {}): Promise<Item[]> {
  const groups: Item[][] = [];
  for (let i = 0; i < keys.length; i += MAX_GET_BATCH) groups.push(keys.slice(i, i + MAX_GET_BATCH));
  const found: Item[] = [];
  await mapConcurrently(groups, 8, async (group) => {
    let pending: Item[] = group;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`${pending.length} keys of ${tableName} stayed unprocessed after ${attempt} attempts`);
      if (attempt > 0) await backoff(attempt);
      const response = await client.send(new BatchGetCommand({ RequestItems: { [tableName]: { Keys: pending, ConsistentRead: options.consistentRead } } }));
      found.push(...(response.Responses?.[tableName] ?? []));
      pending = response.UnprocessedKeys?.[tableName]?.Keys ?? [];
    }
    return true;
  });
  return found;
}

async function batchWrite<T extends Item>(
  client: DynamoDBDocumentClient,
  tableName: string,
  keyNames: readonly string[],
  items: readonly T[],
  request: (item: T) => WriteRequest,
  concurrency: number,
): Promise<{ failed: T[] }> {
  const groups: T[][] = [];
  for (let i = 0; i < items.length; i += MAX_WRITE_BATCH) groups.push(items.slice(i, i + MAX_WRITE_BATCH));
  const failed: T[] = [];
  await mapConcurrently(groups, concurrency, async (group) => {
    failed.push(...(await writeGroup(client, tableName, keyNames, group, request)));
    return true;
  });
  return { failed };
}

async function writeGroup<T extends Item>(client: DynamoDBDocumentClient, tableName: string, keyNames: readonly string[], group: T[], request: (item: T) => WriteRequest): Promise<T[]> {
  const keyOf = (item: Item) => keyNames.map((name) => String(item[name])).join('\u0000');
  let pending = group;
  for (let attempt = 0; attempt < MAX_ATTEMPTS && pending.length > 0; attempt++) {
    if (attempt > 0) await backoff(attempt);
    try {
      const response = await client.send(new BatchWriteCommand({ RequestItems: { [tableName]: pending.map(request) }, ReturnConsumedCapacity: 'TOTAL' }));
      writeMeter.record(response.ConsumedCapacity);
      const unprocessed = response.UnprocessedItems?.[tableName] ?? [];
      const left = new Set(unprocessed.map((r) => keyOf(r.PutRequest?.Item ?? r.DeleteRequest?.Key ?? {})));
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
