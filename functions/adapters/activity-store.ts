import { type DynamoDBDocumentClient, NumberValue, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ACTIVITY_PREFIX } from '../core/metering/activity';
import type { ActivityEvent, ActivityItem, ActivityReader, ActivityWriter } from '../core/metering/metering-ports';
import { mapConcurrently, writeMeter } from './dynamodb';

/** Puts in flight at once: activity is best effort and must not crowd out the rollups' transactions. */
const CONCURRENCY = 16;
/** Items per Query page: a default answer (20 events) usually needs one or two. */
const PAGE_ITEMS = 10;

/**
 * Recent activity in the rollups table: pk = workspace, sk = A#<newest event time>#<shardId>#<first sequence
 * number> (core/metering/activity.ts), `events` a list of compact events, `expiresAt` the table's TTL. Each item
 * is written with one plain PutItem (one write unit per started KB), outside the rollups' transactions.
 */
export class DynamoActivity implements ActivityWriter, ActivityReader {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async putAll(items: readonly ActivityItem[]): Promise<{ failed: ActivityItem[]; error?: unknown }> {
    let error: unknown;
    const failed = await mapConcurrently(items, CONCURRENCY, async (item) => {
      try {
        const response = await this.client.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { pk: item.subject, sk: item.sk, events: item.events, expiresAt: item.expiresAt },
            ReturnConsumedCapacity: 'TOTAL',
          }),
        );
        writeMeter.record(response.ConsumedCapacity);
        return true;
      } catch (caught) {
        error ??= caught;
        return false;
      }
    });
    return { failed, ...(error === undefined ? {} : { error }) };
  }

  async *newest(subject: string): AsyncIterable<ActivityItem> {
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': subject, ':prefix': ACTIVITY_PREFIX },
          ScanIndexForward: false,
          Limit: PAGE_ITEMS,
          ExclusiveStartKey,
        }),
      );
      for (const item of page.Items ?? []) yield toItem(subject, item);
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
  }
}

function toItem(subject: string, item: Record<string, unknown>): ActivityItem {
  const events = Array.isArray(item.events) ? item.events.flatMap(toEvent) : [];
  const expiresAt = item.expiresAt instanceof NumberValue ? Number(item.expiresAt.value) : Number(item.expiresAt);
  return { subject, sk: String(item.sk), events, expiresAt: Number.isFinite(expiresAt) ? expiresAt : 0 };
}

/** A stored event; one that is not (a hand-written item's) is left out. */
function toEvent(raw: unknown): ActivityEvent[] {
  if (!raw || typeof raw !== 'object') return [];
  const { t, u, f, q, c, k } = raw as Record<string, unknown>;
  if (typeof t !== 'string' || typeof u !== 'string' || typeof q !== 'string' || typeof k !== 'string') return [];
  return [{ t, u, ...(typeof f === 'string' ? { f } : {}), q, ...(typeof c === 'string' ? { c } : {}), k }];
}
