import { createHash } from 'node:crypto';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { ConditionalCheckFailedException, DynamoDBClient, type DynamoDBClientConfig, PutItemCommand, ScanCommand, type ScanCommandInput } from '@aws-sdk/client-dynamodb';
import { NumberValue } from '@aws-sdk/lib-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { LRUCache } from 'lru-cache';
import { eventKey } from '../core/metering/envelope';
import type { Ledger, LedgerVersions, VersionedImage } from '../core/metering/metering-ports';
import type { LedgerChange, LedgerEntry, LedgerImage } from '../core/metering/rollups';
import type { LedgerScanner } from '../core/reporting/reporting-ports';
import { mapConcurrently, writeMeter } from './dynamodb';
import { withoutSdkLogging } from './sdk-clients';

const CONCURRENCY = 32;
/** Identities remembered per instance: about 15 MB at most, and long enough for SQS redeliveries and producer retries. */
const WRITTEN_MEMORY = { entries: 100_000, ttlMs: 10 * 60_000 };

/**
 * The events ledger: one item per event identity. A put lands only if the identity is new, or if
 * its message was sent no earlier than the stored one and says something different. So a
 * duplicate changes nothing (and the stream stays silent), a correction replaces the original,
 * and a stale copy arriving after its correction is ignored. A put the condition refuses still
 * costs one write unit, like the duplicate write it replaces.
 *
 * So that a duplicate costs nothing when it can, each instance remembers the content it last wrote
 * per identity (a warm Lambda container keeps it between invocations). A copy with that same content
 * is not written: the ledger would refuse it. What the memory cannot see is a different version
 * written by another container meanwhile; then the copy is dropped where the ledger, asked, would
 * have let a later-sent copy of the original replace that version (docs/counting.md, "How it counts exactly once").
 */
export class DynamoLedger implements Ledger {
  private readonly written = new LRUCache<string, string>({ max: WRITTEN_MEMORY.entries, ttl: WRITTEN_MEMORY.ttlMs });

  /** `client` is best built by `createLedgerClient`. */
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async putAll(entries: readonly LedgerEntry[]): Promise<{ failed: LedgerEntry[]; knownDuplicates: number }> {
    const items = entries.map((entry) => ({ entry, item: toItem(entry) }));
    const toWrite = items.filter(({ item }) => this.written.get(item.pk) !== item.digest);
    const failed = await mapConcurrently(toWrite, CONCURRENCY, ({ item }) => this.put(item));
    return { failed: failed.map(({ entry }) => entry), knownDuplicates: items.length - toWrite.length };
  }

  /** True once the entry is in the ledger or superseded; false if the write failed (after the SDK's retries). */
  private async put(item: LedgerItem): Promise<boolean> {
    try {
      const response = await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: marshall(item, { removeUndefinedValues: true }),
          ConditionExpression: 'attribute_not_exists(pk) OR (sentAt <= :sentAt AND digest <> :digest)',
          ExpressionAttributeValues: { ':sentAt': { S: item.sentAt }, ':digest': { S: item.digest } },
          ReturnConsumedCapacity: 'TOTAL',
        }),
      );
      writeMeter.record(response.ConsumedCapacity);
      this.written.set(item.pk, item.digest);
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        writeMeter.record({ TableName: this.tableName, CapacityUnits: 1 });
        return true;
      }
      return false;
    }
  }
}

/**
 * The ledger's own client, for ingest's one put per event: the middleware stack is resolved once per command
 * type instead of per request, and the SDK's logger is off (docs/performance.md, "Performance"). A document client cannot
 * cache its middleware. `options` adds to the defaults (an endpoint, credentials).
 */
export function createLedgerClient(options: DynamoDBClientConfig = {}): DynamoDBClient {
  return withoutSdkLogging(new DynamoDBClient({ maxAttempts: 8, ...options, cacheMiddleware: true }));
}

type LedgerItem = ReturnType<typeof toItem>;

function toItem(entry: LedgerEntry) {
  const content = {
    source: entry.source,
    id: entry.id,
    type: entry.type,
    subject: entry.subject,
    time: entry.time,
    usageType: entry.usageType,
    quantity: entry.quantity,
    ...entry.dimensions,
    ...(entry.credits ? { creditsUsageType: entry.credits.usageType, credits: entry.credits.quantity } : {}),
    ...(entry.credits?.pool
      ? {
          poolSubject: entry.credits.pool.subject,
          poolDay: entry.credits.pool.day,
          poolCycleStart: entry.credits.pool.cycleStart,
          ...(entry.credits.pool.group ? { poolGroup: entry.credits.pool.group } : {}),
        }
      : {}),
  };
  return {
    pk: eventKey(entry),
    ...content,
    quantity: NumberValue.from(entry.quantity),
    ...(entry.credits ? { credits: NumberValue.from(entry.credits.quantity) } : {}),
    digest: createHash('sha256').update(JSON.stringify(content)).digest('base64url'),
    sentAt: entry.sentAt,
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
  const eventKey = s('pk');
  if (!eventKey || !subject || !usageType || !quantity || !hour || !day || !cycleStart) return undefined;
  const dimensions: Pick<LedgerImage, 'userId' | 'groupId' | 'channel' | 'feature' | 'time'> = {};
  for (const name of ['userId', 'groupId', 'channel', 'feature'] as const) {
    const value = s(name);
    if (value !== undefined) dimensions[name] = value;
  }
  // The event's time: no rollup reads it; recent activity shows it.
  const time = s('time');
  if (time !== undefined) dimensions.time = time;
  const creditsUsageType = s('creditsUsageType');
  const credits = image.credits?.N;
  if (!creditsUsageType || !credits) return { eventKey, subject, usageType, quantity, hour, day, cycleStart, ...dimensions };
  const [poolSubject, poolDay, poolCycleStart, poolGroup] = [s('poolSubject'), s('poolDay'), s('poolCycleStart'), s('poolGroup')];
  const pool = poolSubject && poolDay && poolCycleStart ? { pool: { subject: poolSubject, day: poolDay, cycleStart: poolCycleStart, ...(poolGroup ? { group: poolGroup } : {}) } } : {};
  return { eventKey, subject, usageType, quantity, hour, day, cycleStart, ...dimensions, credits: { usageType: creditsUsageType, quantity: credits, ...pool } };
}

/** A ledger item's version: its message's sent time and content digest, both changed by every write. */
export function ledgerVersionFromStream(image: Record<string, AttributeValue> | undefined): string | undefined {
  const sentAt = image?.sentAt?.S;
  const digest = image?.digest?.S;
  return sentAt === undefined || digest === undefined ? undefined : `${sentAt}#${digest}`;
}

/** The part of a DynamoDB stream record (Lambda's event or the Streams API) the ledger's changes are read from. */
export interface LedgerStreamRecord {
  eventName?: string;
  userIdentity?: { type?: string; principalId?: string };
  dynamodb?: { SequenceNumber?: string; OldImage?: Record<string, AttributeValue>; NewImage?: Record<string, AttributeValue> };
}

/** A stream record as the change it makes to the rollups; undefined for a record without a sequence number. */
export function ledgerChangeFromRecord(record: LedgerStreamRecord): LedgerChange | undefined {
  const sequenceNumber = record.dynamodb?.SequenceNumber;
  if (!sequenceNumber) return undefined;
  const oldImage = ledgerImageFromStream(record.dynamodb?.OldImage);
  const newImage = ledgerImageFromStream(record.dynamodb?.NewImage);
  // TTL deletions are made by the DynamoDB service principal; the event ages out, its counts stay.
  const expired = record.eventName === 'REMOVE' && record.userIdentity?.type === 'Service' && record.userIdentity?.principalId === 'dynamodb.amazonaws.com';
  return { sequenceNumber, ...(oldImage ? { oldImage } : {}), ...(newImage ? { newImage } : {}), ...(expired ? { expired } : {}) };
}

/** Parallel segments of a full scan: the audit reads the whole ledger, and one segment at a time would take long. */
const SCAN_SEGMENTS = 4;

/** Reads every ledger item back as the image rollups are built from; the source of truth of the audit and of repairs. */
export class DynamoLedgerScanner implements LedgerScanner, LedgerVersions {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async *scan(subject?: string): AsyncIterable<LedgerImage> {
    for await (const items of this.items(subject, false)) yield* items.flatMap((item) => ledgerImageFromStream(item) ?? []);
  }

  /** Strongly consistent: a repair must not read an item older than a change already applied to the rollups. */
  async *versions(subject: string): AsyncIterable<VersionedImage> {
    for await (const items of this.items(subject, true)) {
      for (const item of items) {
        const image = ledgerImageFromStream(item);
        const version = ledgerVersionFromStream(item);
        if (image && version) yield { image, version };
      }
    }
  }

  private async *items(subject: string | undefined, consistent: boolean): AsyncIterable<Record<string, AttributeValue>[]> {
    const filter = {
      // An account's events are its pooled workspaces': their credits count under it (`poolSubject`).
      ...(subject === undefined
        ? {}
        : {
            FilterExpression: '#subject = :subject OR #pool = :subject',
            ExpressionAttributeNames: { '#subject': 'subject', '#pool': 'poolSubject' },
            ExpressionAttributeValues: { ':subject': { S: subject } },
          }),
      ...(consistent ? { ConsistentRead: true } : {}),
    };
    // Segments run together; their pages are yielded as they come, one page in memory per segment.
    const segments = Array.from({ length: SCAN_SEGMENTS }, (_, segment) => this.segment(segment, filter)[Symbol.asyncIterator]());
    const pending = new Map(segments.map((iterator, i) => [i, iterator.next().then((result) => ({ i, result }))]));
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(i);
        continue;
      }
      pending.set(
        i,
        (segments[i] as AsyncIterator<Record<string, AttributeValue>[]>).next().then((next) => ({ i, result: next })),
      );
      yield result.value;
    }
  }

  private async *segment(segment: number, filter: Partial<ScanCommandInput>): AsyncIterable<Record<string, AttributeValue>[]> {
    let ExclusiveStartKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await this.client.send(new ScanCommand({ TableName: this.tableName, Segment: segment, TotalSegments: SCAN_SEGMENTS, ExclusiveStartKey, ...filter }));
      yield page.Items ?? [];
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
  }
}
