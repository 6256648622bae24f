import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { EXPORT_RETENTION_DAYS } from '../contract/resources';
import type { ExportJob, ExportStore } from '../core/reporting/exports';

/** Export jobs by id; each expires (TTL) with its file. A new item's stream record starts the export function. */
export class DynamoExports implements ExportStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async create(job: ExportJob): Promise<void> {
    const expiresAt = Math.floor(Date.parse(job.createdAt) / 1000) + EXPORT_RETENTION_DAYS * 86_400;
    await this.client.send(new PutCommand({ TableName: this.tableName, Item: { ...job, expiresAt }, ConditionExpression: 'attribute_not_exists(id)' }));
  }

  async get(id: string): Promise<ExportJob | undefined> {
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { id }, ConsistentRead: true }));
    if (!Item) return undefined;
    const { expiresAt: _expiresAt, bucketCount, bytes, ...job } = Item;
    return { ...(job as ExportJob), ...(bucketCount !== undefined ? { bucketCount: Number(String(bucketCount)) } : {}), ...(bytes !== undefined ? { bytes: Number(String(bytes)) } : {}) };
  }

  async start(id: string, at: string): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { id },
          // A retried invocation finds the job running and starts it over; a finished one is left alone.
          UpdateExpression: 'SET #status = :running, startedAt = :at',
          ConditionExpression: '#status IN (:queued, :running)',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':running': 'running', ':queued': 'queued', ':at': at },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async finish(id: string, result: Required<Pick<ExportJob, 'key' | 'bucketCount' | 'bytes' | 'completedAt'>>): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { id },
        UpdateExpression: 'SET #status = :ready, #key = :key, bucketCount = :count, #bytes = :bytes, completedAt = :at',
        ExpressionAttributeNames: { '#status': 'status', '#key': 'key', '#bytes': 'bytes' },
        ExpressionAttributeValues: { ':ready': 'ready', ':key': result.key, ':count': result.bucketCount, ':bytes': result.bytes, ':at': result.completedAt },
      }),
    );
  }

  async fail(id: string, error: { code: string; message: string }, at: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { id },
        UpdateExpression: 'SET #status = :failed, #error = :error, completedAt = :at',
        ExpressionAttributeNames: { '#status': 'status', '#error': 'error' },
        ExpressionAttributeValues: { ':failed': 'failed', ':error': error, ':at': at },
      }),
    );
  }
}
