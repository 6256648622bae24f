import { type ConsumedCapacity, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, QueryCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import { withoutSdkLogging } from './sdk-clients';

/**
 * One DynamoDB client per process. The endpoint comes from the SDK's own AWS_ENDPOINT_URL_DYNAMODB
 * (set by the local runtime), so the same code talks to AWS or to DynamoDB Local.
 */
export function createDocumentClient(client = withoutSdkLogging(new DynamoDBClient({ maxAttempts: 8 }))): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
    unmarshallOptions: { wrapNumbers: true },
  });
}

/**
 * Write units and requests this process consumed, per table. Standard writes use what
 * ReturnConsumedCapacity reports. Transactions are counted as AWS bills them, two units per item
 * (every rollup item stays under 1 KB), because DynamoDB Local reports 2 per transaction
 * whatever its size.
 */
export const writeMeter = {
  tables: new Map<string, { units: number; requests: number; transactional: boolean }>(),
  record(consumed: ConsumedCapacity[] | ConsumedCapacity | undefined): void {
    for (const c of [consumed ?? []].flat()) this.add(c.TableName ?? '?', c.WriteCapacityUnits ?? c.CapacityUnits ?? 0, false);
  },
  recordTransaction(tableName: string, items: number): void {
    this.add(tableName, 2 * items, true);
  },
  add(tableName: string, units: number, transactional: boolean): void {
    const entry = this.tables.get(tableName) ?? { units: 0, requests: 0, transactional };
    entry.units += units;
    entry.requests += 1;
    this.tables.set(tableName, entry);
  },
  totalUnits(): number {
    return [...this.tables.values()].reduce((sum, t) => sum + t.units, 0);
  },
  reset(): void {
    this.tables.clear();
  },
};

/** Runs `work` over `items` with at most `concurrency` in flight; returns the items whose work returned false. */
export async function mapConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<boolean>): Promise<T[]> {
  const failed: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      if (!(await work(item))) failed.push(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return failed;
}

/** Full-jitter exponential backoff. */
export function backoff(attempt: number, baseMs = 25, capMs = 2000): Promise<void> {
  const ms = Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} environment variable is not set`);
  return value;
}

/** A Query's items, read page by page as they are asked for: a caller that stops early reads no further page. */
export async function* queryItems(client: DynamoDBDocumentClient, input: QueryCommandInput): AsyncGenerator<Record<string, unknown>> {
  let ExclusiveStartKey = input.ExclusiveStartKey;
  do {
    const page = await client.send(new QueryCommand({ ...input, ExclusiveStartKey }));
    yield* page.Items ?? [];
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
}
