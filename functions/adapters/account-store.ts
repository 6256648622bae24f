import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LRUCache } from 'lru-cache';
import { DUE_SHARDS } from '../contract/resources';
import type { CycleSnapshot, Grant } from '../core/billing/balance';
import type { AccountStore, Adjustment, BalanceRecords, DaySnapshot, SummaryDue } from '../core/billing/billing-ports';
import type { Clock } from '../core/ports';
import { shardOf } from '../core/shards';

/**
 * Grants, snapshots and adjustments, one partition per subject:
 *   G#<grant id>                                 a grant (spillover, bonus, top-up)
 *   C#<cycle start>                              a cycle snapshot, `closing` until its close completed
 *   D#<local day>                                a day snapshot
 *   A#<cycle start>#<usage type>#<detected at>   an adjustment to a closed cycle
 * Snapshots and grants are written only if absent, so a re-run never replaces what a close froze.
 * Partitions `_summaries#<shard>` (no subject id starts with `_`) hold `S#<cycle start>` for each
 * per-cycle summary still to be written: a count of the closes that noted it, in one of SUMMARY_SHARDS
 * partitions per group of subjects, so that a month close of every workspace is not one hot key.
 */

const PREFIX = { grant: 'G#', cycle: 'C#', day: 'D#', adjustment: 'A#', summary: 'S#' } as const;
const SUMMARIES_PK = '_summaries';
const SUMMARY_SHARDS = DUE_SHARDS;
const summaryShards = Array.from({ length: SUMMARY_SHARDS }, (_, shard) => `${SUMMARIES_PK}#${shard}`);
type Item = Record<string, unknown>;

/**
 * How long a live view may answer from the grants and snapshots it read, in the store's clock (a test clock's
 * jump ages them at once). A grant or close made by another function shows within it; one made through this
 * store, at once. At most `subjects` workspaces and `bytes` of their records (as JSON) are kept, whatever
 * their history: past either the least recently read are read again, and a workspace whose records alone
 * pass `bytes` is read on every check.
 */
export const BALANCE_RECORDS_CACHE = { maxAgeMs: 30_000, subjects: 10_000, bytes: 32 * 1024 * 1024 };

interface KeptRecords {
  records: BalanceRecords;
  readAt: number;
  bytes: number;
}

export class DynamoAccounts implements AccountStore {
  private readonly recent: LRUCache<string, KeptRecords>;
  /** Bumped by each write of a subject's grants or snapshots, so that a read it overtook is not kept. */
  private readonly writes: LRUCache<string, number>;

  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: Clock = { now: () => new Date() },
    private readonly cache: typeof BALANCE_RECORDS_CACHE = BALANCE_RECORDS_CACHE,
  ) {
    this.recent = new LRUCache({ max: cache.subjects, maxSize: cache.bytes, sizeCalculation: (kept) => kept.bytes });
    this.writes = new LRUCache({ max: cache.subjects });
  }

  async listGrants(subject: string): Promise<Grant[]> {
    return (await this.queryPrefix(subject, PREFIX.grant)).map((item) => item.grant as Grant);
  }

  async balanceRecords(subject: string): Promise<BalanceRecords> {
    const now = this.clock.now().getTime();
    const cached = this.recent.get(subject);
    if (cached && now >= cached.readAt && now - cached.readAt < this.cache.maxAgeMs) return structuredClone(cached.records);
    const writesBefore = this.writes.get(subject);
    const [grants, snapshots] = await Promise.all([this.listGrants(subject), this.listCycleSnapshots(subject)]);
    if (this.writes.get(subject) === writesBefore) {
      const records = structuredClone({ grants, snapshots });
      this.recent.set(subject, { records, readAt: now, bytes: Math.max(1, Buffer.byteLength(JSON.stringify(records))) });
    }
    return { grants, snapshots };
  }

  async putGrant(grant: Grant): Promise<'created' | 'exists'> {
    return this.changing(grant.subject, async () => ((await this.putIfAbsent({ pk: grant.subject, sk: `${PREFIX.grant}${grant.id}`, grant })) ? 'created' : 'exists'));
  }

  async listCycleSnapshots(subject: string): Promise<CycleSnapshot[]> {
    return (await this.queryPrefix(subject, PREFIX.cycle)).map(toCycleSnapshot);
  }

  async freezeCycle(snapshot: CycleSnapshot): Promise<CycleSnapshot> {
    return this.changing(snapshot.subject, () => this.freeze(snapshot));
  }

  private async freeze(snapshot: CycleSnapshot): Promise<CycleSnapshot> {
    const key = { pk: snapshot.subject, sk: `${PREFIX.cycle}${snapshot.cycleStart}` };
    const { status, ...frozen } = snapshot;
    if (await this.putIfAbsent({ ...key, status, snapshot: frozen })) return snapshot;
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
    if (!Item) throw new Error(`cycle snapshot ${key.pk} ${key.sk} vanished`);
    return toCycleSnapshot(Item);
  }

  async markCycleClosed(subject: string, cycleStart: string): Promise<void> {
    await this.changing(subject, () => this.markClosed(subject, cycleStart));
  }

  private async markClosed(subject: string, cycleStart: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: subject, sk: `${PREFIX.cycle}${cycleStart}` },
        ConditionExpression: 'attribute_exists(pk)',
        UpdateExpression: 'SET #status = :closed',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':closed': 'closed' },
      }),
    );
  }

  async lastDaySnapshot(subject: string): Promise<DaySnapshot | undefined> {
    const { Items } = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': subject, ':prefix': PREFIX.day },
        ScanIndexForward: false,
        Limit: 1,
        ConsistentRead: true,
      }),
    );
    const item = Items?.[0];
    return item ? (item.snapshot as DaySnapshot) : undefined;
  }

  async freezeDay(snapshot: DaySnapshot): Promise<void> {
    await this.putIfAbsent({ pk: snapshot.subject, sk: `${PREFIX.day}${snapshot.day}`, snapshot });
  }

  async listAdjustments(subject: string): Promise<Adjustment[]> {
    return (await this.queryPrefix(subject, PREFIX.adjustment)).map((item) => item.adjustment as Adjustment);
  }

  async putAdjustment(adjustment: Adjustment): Promise<void> {
    const sk = `${PREFIX.adjustment}${adjustment.cycleStart}#${adjustment.usageType}#${adjustment.detectedAt}`;
    await this.putIfAbsent({ pk: adjustment.subject, sk, adjustment });
  }

  async markSummaryDue(cycleStart: string, subject: string): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: summaryShards[shardOf(subject, SUMMARY_SHARDS)], sk: `${PREFIX.summary}${cycleStart}` },
        UpdateExpression: 'SET cycleStart = :cycleStart ADD marks :one',
        ExpressionAttributeValues: { ':cycleStart': cycleStart, ':one': 1 },
      }),
    );
  }

  async summariesDue(): Promise<SummaryDue[]> {
    const due = new Map<string, SummaryDue>();
    const shards = await Promise.all(summaryShards.map(async (pk) => ({ pk, items: await this.queryPrefix(pk, PREFIX.summary) })));
    for (const { pk, items } of shards) {
      for (const item of items) {
        const cycleStart = String(item.cycleStart);
        const entry = due.get(cycleStart) ?? { cycleStart, marks: {} };
        entry.marks[pk] = Number(item.marks);
        due.set(cycleStart, entry);
      }
    }
    return [...due.values()].sort((a, b) => (a.cycleStart < b.cycleStart ? -1 : a.cycleStart > b.cycleStart ? 1 : 0));
  }

  async clearSummaryDue(due: SummaryDue): Promise<void> {
    for (const [pk, marks] of Object.entries(due.marks)) {
      try {
        await this.client.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { pk, sk: `${PREFIX.summary}${due.cycleStart}` },
            ConditionExpression: 'marks = :marks',
            ExpressionAttributeValues: { ':marks': marks },
          }),
        );
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    }
  }

  private async putIfAbsent(item: Item): Promise<boolean> {
    try {
      await this.client.send(new PutCommand({ TableName: this.tableName, Item: item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /** Runs a write of the subject's grants or snapshots; whatever this store remembered of them is dropped after it. */
  private async changing<T>(subject: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } finally {
      this.recent.delete(subject);
      this.writes.set(subject, (this.writes.get(subject) ?? 0) + 1);
    }
  }

  private async queryPrefix(subject: string, prefix: string): Promise<Item[]> {
    const items: Item[] = [];
    let ExclusiveStartKey: Item | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': subject, ':prefix': prefix },
          ConsistentRead: true,
          ExclusiveStartKey,
        }),
      );
      items.push(...(page.Items ?? []));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return items;
  }
}

function toCycleSnapshot(item: Item): CycleSnapshot {
  return { ...(item.snapshot as Omit<CycleSnapshot, 'status'>), status: item.status === 'closed' ? 'closed' : 'closing' };
}
