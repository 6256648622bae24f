import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, NumberValue, PutCommand } from '@aws-sdk/lib-dynamodb';
import { ACTIVITY_MARKER_SK, ACTIVITY_PREFIX, ACTIVITY_ROLLED_SK, activityLanePk } from '../core/metering/activity';
import type { ActivityEvent, ActivityLaneItem, ActivityMarker, ActivityReader, ActivityRolled, ActivityRolledEvent, ActivityWriter } from '../core/metering/metering-ports';
import { batchGet, batchPut } from './batch';
import { mapConcurrently, queryItems, writeMeter } from './dynamodb';

/** Puts in flight at once: activity is best effort and must not crowd out the rollups' transactions. */
const CONCURRENCY = 16;
/** Lane items per Query page a reader asks for (each a few KB at low density). */
const PAGE_ITEMS = 25;
/** Just after every lane item's sort key (`A#…`) and before the marker's (`R`). */
const LANE_ITEMS_END = 'A$';

/**
 * Recent activity in the rollups table (core/metering/activity.ts):
 * - lane items: pk = activity#<lane>, sk = A#<written at>#<shardId>#<first sequence number>[#p<part>], `events` a map
 *   of workspace → list of compact events, `expiresAt` the table's TTL;
 * - the lane's marker: pk = activity#<lane>, sk = R, `through` and `rolledAt`;
 * - rolling items: pk = workspace, sk = A#rolled, `events` (each with its expiry `x`), `through`, `expiresAt`.
 * Every write is a plain PutItem or BatchWriteItem (one write unit per started KB), outside the rollups' transactions.
 */
export class DynamoActivity implements ActivityWriter, ActivityReader {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async putLaneItems(items: readonly ActivityLaneItem[]): Promise<{ failed: ActivityLaneItem[]; error?: unknown }> {
    let error: unknown;
    const failed = await mapConcurrently(items, CONCURRENCY, async (item) => {
      try {
        const response = await this.client.send(
          new PutCommand({
            TableName: this.tableName,
            Item: { pk: activityLanePk(item.lane), sk: item.sk, events: item.events, expiresAt: item.expiresAt },
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

  async markers(lanes: readonly string[]): Promise<Map<string, ActivityMarker>> {
    const found = await batchGet(
      this.client,
      this.tableName,
      lanes.map((lane) => ({ pk: activityLanePk(lane), sk: ACTIVITY_MARKER_SK })),
      { consistentRead: true },
    );
    return new Map(found.map((item) => toMarker(item)).map((marker) => [marker.lane, marker]));
  }

  async marker(lane: string): Promise<ActivityMarker | undefined> {
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { pk: activityLanePk(lane), sk: ACTIVITY_MARKER_SK } }));
    return Item ? toMarker(Item) : undefined;
  }

  claimRoll(lane: string, seen: ActivityMarker | undefined, rolledAt: number): Promise<boolean> {
    return this.putMarker(
      { lane, ...(seen?.through === undefined ? {} : { through: seen.through }), rolledAt },
      seen ? { ConditionExpression: 'rolledAt = :seen', ExpressionAttributeValues: { ':seen': seen.rolledAt } } : { ConditionExpression: 'attribute_not_exists(pk)' },
    );
  }

  finishRoll(marker: ActivityMarker, claimedAt: number): Promise<boolean> {
    return this.putMarker(marker, { ConditionExpression: 'rolledAt = :claimed', ExpressionAttributeValues: { ':claimed': claimedAt } });
  }

  private async putMarker(marker: ActivityMarker, condition: { ConditionExpression: string; ExpressionAttributeValues?: Record<string, unknown> }): Promise<boolean> {
    try {
      const response = await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: activityLanePk(marker.lane), sk: ACTIVITY_MARKER_SK, ...(marker.through === undefined ? {} : { through: marker.through }), rolledAt: marker.rolledAt },
          ...condition,
          ReturnConsumedCapacity: 'TOTAL',
        }),
      );
      writeMeter.record(response.ConsumedCapacity);
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async laneItems(lane: string, after: string | undefined, before: string, max: number): Promise<ActivityLaneItem[]> {
    const items: ActivityLaneItem[] = [];
    const stored = queryItems(this.client, {
      TableName: this.tableName,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
      ExpressionAttributeValues: { ':pk': activityLanePk(lane), ':from': after ?? ACTIVITY_PREFIX, ':to': before },
      ConsistentRead: true,
      Limit: Math.min(max + 1, 100),
    });
    for await (const item of stored) {
      if (items.length >= max) break;
      // BETWEEN includes its bounds: the item at `after` was rolled up already.
      if (item.sk !== after && item.sk !== before) items.push(toLaneItem(lane, item));
    }
    return items;
  }

  async *laneItemsSince(lane: string, from: string): AsyncIterable<ActivityLaneItem> {
    const stored = queryItems(this.client, {
      TableName: this.tableName,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
      ExpressionAttributeValues: { ':pk': activityLanePk(lane), ':from': from, ':to': LANE_ITEMS_END },
      ScanIndexForward: false,
      Limit: PAGE_ITEMS,
    });
    for await (const item of stored) yield toLaneItem(lane, item);
  }

  async rolledMany(subjects: readonly string[]): Promise<Map<string, ActivityRolled>> {
    const found = await batchGet(
      this.client,
      this.tableName,
      subjects.map((subject) => ({ pk: subject, sk: ACTIVITY_ROLLED_SK })),
      { consistentRead: true },
    );
    return new Map(found.map((item) => [String(item.pk), toRolled(item)]));
  }

  async rolled(subject: string): Promise<ActivityRolled | undefined> {
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { pk: subject, sk: ACTIVITY_ROLLED_SK } }));
    return Item ? toRolled(Item) : undefined;
  }

  async putRolled(items: readonly ActivityRolled[]): Promise<{ failed: ActivityRolled[]; error?: unknown }> {
    const rows = items.map((item) => ({ pk: item.subject, sk: ACTIVITY_ROLLED_SK, through: item.through, events: item.events, expiresAt: item.expiresAt }));
    try {
      const { failed } = await batchPut(this.client, this.tableName, ['pk', 'sk'], rows);
      const left = new Set(failed.map((row) => row.pk));
      return { failed: items.filter((item) => left.has(item.subject)) };
    } catch (error) {
      return { failed: [...items], error };
    }
  }
}

const numberOf = (value: unknown) => {
  const n = value instanceof NumberValue ? Number(value.value) : Number(value);
  return Number.isFinite(n) ? n : 0;
};

function toMarker(item: Record<string, unknown>): ActivityMarker {
  const lane = String(item.pk).slice(activityLanePk('').length);
  return { lane, ...(typeof item.through === 'string' ? { through: item.through } : {}), rolledAt: numberOf(item.rolledAt) };
}

function toLaneItem(lane: string, item: Record<string, unknown>): ActivityLaneItem {
  const stored = item.events && typeof item.events === 'object' ? (item.events as Record<string, unknown>) : {};
  const events: Record<string, ActivityEvent[]> = Object.fromEntries(Object.entries(stored).flatMap(([subject, list]) => (Array.isArray(list) ? [[subject, list.flatMap(toEvent)]] : [])));
  return { lane, sk: String(item.sk), events, expiresAt: numberOf(item.expiresAt) };
}

function toRolled(item: Record<string, unknown>): ActivityRolled {
  const events: ActivityRolledEvent[] = Array.isArray(item.events) ? item.events.flatMap((raw) => toEvent(raw).map((event) => ({ ...event, x: numberOf((raw as Record<string, unknown>).x) }))) : [];
  return { subject: String(item.pk), through: typeof item.through === 'string' ? item.through : '', events, expiresAt: numberOf(item.expiresAt) };
}

/** A stored event; one that is not (a hand-written item's) is left out. */
function toEvent(raw: unknown): ActivityEvent[] {
  if (!raw || typeof raw !== 'object') return [];
  const { t, u, f, q, c, k } = raw as Record<string, unknown>;
  if (typeof t !== 'string' || typeof u !== 'string' || typeof q !== 'string' || typeof k !== 'string') return [];
  return [{ t, u, ...(typeof f === 'string' ? { f } : {}), q, ...(typeof c === 'string' ? { c } : {}), k }];
}
