import { type ConsumedCapacity, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * One DynamoDB client per process. The endpoint comes from the SDK's own AWS_ENDPOINT_URL_DYNAMODB
 * (set by the local runtime), so the same code talks to AWS or to DynamoDB Local.
 */
export function createDocumentClient(client = new DynamoDBClient({ maxAttempts: 8 })): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
    unmarshallOptions: { wrapNumbers: true },
  });
}

/** Write units and requests consumed by this process, from ReturnConsumedCapacity. */
export const writeMeter = {
  writeUnits: 0,
  requests: 0,
  record(consumed: ConsumedCapacity[] | ConsumedCapacity | undefined): void {
    this.requests += 1;
    for (const c of [consumed ?? []].flat()) this.writeUnits += c.WriteCapacityUnits ?? c.CapacityUnits ?? 0;
  },
  reset(): void {
    this.writeUnits = 0;
    this.requests = 0;
  },
};

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
