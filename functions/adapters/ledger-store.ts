import { type DynamoDBDocumentClient, NumberValue } from '@aws-sdk/lib-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { eventKey } from '../core/envelope';
import type { Ledger } from '../core/ports';
import type { LedgerEntry, LedgerImage } from '../core/rollups';
import { batchPut } from './batch-write';
import { TABLES } from './resources';

/**
 * The events ledger: one item per event identity. The item holds only what the event says (no
 * arrival time), so an identical redelivery writes identical content and the stream stays silent.
 */
export class DynamoLedger implements Ledger {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async putAll(entries: readonly LedgerEntry[]): Promise<{ failed: LedgerEntry[] }> {
    const items = entries.map((entry) => ({ item: toItem(entry), entry }));
    const byKey = new Map(items.map(({ item, entry }) => [item.pk, entry]));
    const { failed } = await batchPut(this.client, this.tableName, [TABLES.ledger.partitionKey.name], items.map((i) => i.item));
    return { failed: failed.map((item) => byKey.get(item.pk)).filter((e): e is LedgerEntry => e !== undefined) };
  }
}

function toItem(entry: LedgerEntry) {
  return {
    pk: eventKey(entry),
    source: entry.source,
    id: entry.id,
    type: entry.type,
    subject: entry.subject,
    time: entry.time,
    usageType: entry.usageType,
    quantity: NumberValue.from(entry.quantity),
    ...entry.dimensions,
    hour: entry.hour,
    day: entry.day,
    cycleStart: entry.cycleStart,
    expiresAt: entry.expiresAt,
  };
}

/** Reads the fields rollups depend on from a stream image; undefined if the image is not a ledger item. */
export function ledgerImageFromStream(image: Record<string, AttributeValue> | undefined): LedgerImage | undefined {
  if (!image) return undefined;
  const s = (name: string) => image[name]?.S;
  const subject = s('subject');
  const usageType = s('usageType');
  const quantity = image.quantity?.N;
  const hour = s('hour');
  const day = s('day');
  const cycleStart = s('cycleStart');
  if (!subject || !usageType || !quantity || !hour || !day || !cycleStart) return undefined;
  return { subject, usageType, quantity, hour, day, cycleStart };
}
