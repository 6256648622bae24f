import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ApiKeyRecord, ApiKeyStore } from '../core/access/access-ports';

/** How long a process trusts a key it has looked up: a revocation reaches every API instance within this. */
export const KEY_CACHE_TTL_MS = 30_000;
const MAX_CACHED_KEYS = 1000;

/**
 * API keys by id (pk `id`), holding the key's hash and scope. Keys found are cached briefly per
 * process, so a busy client costs one read per half minute; keys not found are never cached.
 */
export class DynamoApiKeys implements ApiKeyStore {
  private readonly cache = new Map<string, { record: ApiKeyRecord; until: number }>();

  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const cached = this.cache.get(id);
    if (cached && cached.until > Date.now()) return cached.record;
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { id } }));
    if (!Item) return undefined;
    const record = toRecord(Item);
    if (this.cache.size >= MAX_CACHED_KEYS) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(id, { record, until: Date.now() + KEY_CACHE_TTL_MS });
    return record;
  }

  async put(record: ApiKeyRecord): Promise<void> {
    try {
      await this.client.send(new PutCommand({ TableName: this.tableName, Item: { ...record }, ConditionExpression: 'attribute_not_exists(id)' }));
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  async list(): Promise<ApiKeyRecord[]> {
    const records: ApiKeyRecord[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(new ScanCommand({ TableName: this.tableName, ExclusiveStartKey }));
      records.push(...(page.Items ?? []).map(toRecord));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return records;
  }

  async revoke(id: string, revokedAt: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { id },
        UpdateExpression: 'SET revokedAt = if_not_exists(revokedAt, :at)',
        ConditionExpression: 'attribute_exists(id)',
        ExpressionAttributeValues: { ':at': revokedAt },
      }),
    );
    this.cache.delete(id);
  }
}

function toRecord(item: Record<string, unknown>): ApiKeyRecord {
  const scope = String(item.scope);
  return {
    id: String(item.id),
    hash: String(item.hash),
    scope: scope === 'admin' || scope === 'finance' ? scope : 'workspace',
    ...(typeof item.subject === 'string' ? { subject: item.subject } : {}),
    ...(typeof item.name === 'string' ? { name: item.name } : {}),
    createdAt: String(item.createdAt),
    ...(typeof item.revokedAt === 'string' ? { revokedAt: item.revokedAt } : {}),
  };
}
