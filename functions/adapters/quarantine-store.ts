import { type DynamoDBDocumentClient, QueryCommand, type QueryCommandInput, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { QUARANTINE_RETENTION_DAYS, TABLES } from '../contract/resources';
import type { Quarantine, QuarantineRecord, QuarantineReplaySource, ReplayFilter } from '../core/metering/metering-ports';
import { batchDelete, batchPut } from './batch';

const NO_SUBJECT = '-';
/** DynamoDB items stop at 400 KB; a quarantined body is kept whole up to this many UTF-8 bytes (a 1 MiB message is not). */
const MAX_BODY_BYTES = 300_000;

/** The longest start of `text` within `maxBytes` of UTF-8, cut between characters. */
function utf8Prefix(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const { read } = new TextEncoder().encodeInto(text, new Uint8Array(maxBytes));
  return text.slice(0, read);
}

/**
 * Quarantined events: pk = subject (or "-"), sk = sentAt#messageId#index. The key depends only on
 * the message, so a redelivered message rewrites its records instead of adding new ones.
 */
export class DynamoQuarantine implements Quarantine, QuarantineReplaySource {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async putAll(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }> {
    const items = records.map((record) => ({ item: toItem(record), record }));
    const byKey = new Map(items.map(({ item, record }) => [keyText(item), record]));
    const { failed } = await batchPut(
      this.client,
      this.tableName,
      KEY_NAMES,
      items.map((i) => i.item),
    );
    return { failed: failed.map((item) => byKey.get(keyText(item))).filter((r): r is QuarantineRecord => r !== undefined) };
  }

  async list({ subject, limit }: { subject?: string; limit: number }): Promise<QuarantineRecord[]> {
    const items: Record<string, unknown>[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = subject
        ? await this.client.send(
            new QueryCommand({
              TableName: this.tableName,
              KeyConditionExpression: 'pk = :pk',
              ExpressionAttributeValues: { ':pk': subject },
              ScanIndexForward: false,
              Limit: limit - items.length,
              ExclusiveStartKey,
            }),
          )
        : await this.client.send(new ScanCommand({ TableName: this.tableName, ExclusiveStartKey }));
      items.push(...(page.Items ?? []));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey && (!subject || items.length < limit));
    return items
      .map(toRecord)
      .sort((a, b) => (a.sentAt === b.sentAt ? a.messageId.localeCompare(b.messageId) || a.index - b.index : a.sentAt < b.sentAt ? 1 : -1))
      .slice(0, limit);
  }

  async count(filter: ReplayFilter): Promise<number> {
    let total = 0;
    for await (const page of this.pages(filter, { Select: 'COUNT' })) total += page.Count ?? 0;
    return total;
  }

  async *entries(filter: ReplayFilter): AsyncIterable<QuarantineRecord[]> {
    for await (const page of this.pages(filter, {})) yield (page.Items ?? []).map(toRecord);
  }

  async remove(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }> {
    const byKey = new Map(records.map((record) => [keyText(keyOf(record)), record]));
    const { failed } = await batchDelete(
      this.client,
      this.tableName,
      KEY_NAMES,
      [...byKey.keys()].map((text) => keyOf(byKey.get(text) as QuarantineRecord)),
    );
    return { failed: failed.map((key) => byKey.get(keyText(key))).filter((r): r is QuarantineRecord => r !== undefined) };
  }

  /** The filter's pages: a query of the subject's partition, else a scan; the reason as a filter expression. */
  private async *pages(filter: ReplayFilter, extra: Pick<QueryCommandInput, 'Select'>) {
    const reason = filter.reason === undefined ? {} : { FilterExpression: '#reason = :reason', ExpressionAttributeNames: { '#reason': 'reason' } };
    const values = { ...(filter.subject === undefined ? {} : { ':pk': filter.subject }), ...(filter.reason === undefined ? {} : { ':reason': filter.reason }) };
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const input = { TableName: this.tableName, ExclusiveStartKey, ...reason, ...extra, ...(Object.keys(values).length > 0 ? { ExpressionAttributeValues: values } : {}) };
      const page = filter.subject === undefined ? await this.client.send(new ScanCommand(input)) : await this.client.send(new QueryCommand({ ...input, KeyConditionExpression: 'pk = :pk' }));
      yield page;
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
  }
}

const KEY_NAMES = [TABLES.quarantine.partitionKey.name, TABLES.quarantine.sortKey.name];
const keyText = (key: { pk: unknown; sk: unknown }) => `${String(key.pk)}\u0000${String(key.sk)}`;

function keyOf(record: QuarantineRecord): { pk: string; sk: string } {
  const { pk, sk } = toItem(record);
  return { pk, sk };
}

function toItem(record: QuarantineRecord) {
  const body = utf8Prefix(record.body, MAX_BODY_BYTES);
  const truncated = body.length < record.body.length;
  return {
    pk: record.subject ?? NO_SUBJECT,
    sk: `${record.sentAt}#${record.messageId}#${String(record.index).padStart(6, '0')}`,
    reason: record.reason,
    detail: record.detail,
    messageId: record.messageId,
    index: record.index,
    sentAt: record.sentAt,
    receivedAt: record.receivedAt,
    body,
    ...(truncated ? { bodyTruncated: true } : {}),
    expiresAt: Math.floor(Date.parse(record.receivedAt) / 1000) + QUARANTINE_RETENTION_DAYS * 86_400,
  };
}

function toRecord(item: Record<string, unknown>): QuarantineRecord {
  return {
    reason: item.reason as QuarantineRecord['reason'],
    detail: String(item.detail),
    messageId: String(item.messageId),
    index: Number(String(item.index)),
    ...(item.pk !== NO_SUBJECT ? { subject: String(item.pk) } : {}),
    sentAt: String(item.sentAt),
    receivedAt: String(item.receivedAt),
    body: String(item.body),
    ...(item.bodyTruncated === true ? { bodyTruncated: true } : {}),
  };
}
