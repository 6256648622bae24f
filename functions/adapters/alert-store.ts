import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Alert, AlertDelivery, AlertStore } from '../core/alerts/alerts-ports';

/**
 * Alerts: pk = subject, sk = <cycle start>#<usage type>#<threshold, 4 digits>. An alert is put only if
 * absent, so each threshold of a cycle exists once whatever retries and concurrent batches do. `notify`
 * sits at the top level, where the notify function's event filter reads it.
 */

type Key = Pick<Alert, 'subject' | 'usageType' | 'cycleStart' | 'threshold'>;
const prefix = (cycleStart: string, usageType: string) => `${cycleStart}#${usageType}#`;
/** Enough for every subject, usage type and cycle a warm function sees; past it the cache starts over. */
const MAX_KNOWN = 10_000;
const keyOf = (a: Key) => ({ pk: a.subject, sk: `${prefix(a.cycleStart, a.usageType)}${String(a.threshold).padStart(4, '0')}` });

export class DynamoAlerts implements AlertStore {
  /** Thresholds known to be recorded, per subject, usage type and cycle: records are never removed, so this only grows. */
  private readonly known = new Map<string, Set<number>>();

  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async recorded(subject: string, usageType: string, cycleStart: string): Promise<Set<number>> {
    const cacheKey = JSON.stringify([subject, usageType, cycleStart]);
    const cached = this.known.get(cacheKey);
    if (cached) return new Set(cached);
    const { Items = [] } = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': subject, ':prefix': prefix(cycleStart, usageType) },
        ProjectionExpression: 'sk',
        ConsistentRead: true,
      }),
    );
    const thresholds = new Set(Items.map((item) => Number(String(item.sk).split('#').at(-1))));
    if (this.known.size >= MAX_KNOWN) this.known.clear();
    this.known.set(cacheKey, thresholds);
    return new Set(thresholds);
  }

  async record(alert: Alert): Promise<boolean> {
    const cacheKey = JSON.stringify([alert.subject, alert.usageType, alert.cycleStart]);
    let written = true;
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...keyOf(alert), alert, notify: alert.notify, status: alert.notify ? 'pending' : 'passed', sentTo: [], attempted: [] },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      written = false;
    }
    this.known.set(cacheKey, new Set([...(this.known.get(cacheKey) ?? []), alert.threshold]));
    return written;
  }

  async delivery(alert: Key): Promise<AlertDelivery | undefined> {
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: keyOf(alert), ConsistentRead: true }));
    if (!Item) return undefined;
    const status = Item.status === 'sent' || Item.status === 'no_contacts' ? Item.status : 'pending';
    return { alert: Item.alert as Alert, sentTo: strings(Item.sentTo), attempted: strings(Item.attempted), status };
  }

  async markAttempted(alert: Alert, contact: string): Promise<void> {
    await this.append(alert, 'attempted', contact);
  }

  async markSent(alert: Alert, contact: string): Promise<void> {
    await this.append(alert, 'sentTo', contact);
  }

  async markDone(alert: Alert, status: 'sent' | 'no_contacts'): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keyOf(alert),
        UpdateExpression: 'SET #status = :status',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':status': status },
      }),
    );
  }

  private async append(alert: Alert, list: 'attempted' | 'sentTo', contact: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: keyOf(alert),
        UpdateExpression: 'SET #list = list_append(if_not_exists(#list, :empty), :contact)',
        ExpressionAttributeNames: { '#list': list },
        ExpressionAttributeValues: { ':empty': [], ':contact': [contact] },
      }),
    );
  }
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}
