import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DUE_SHARDS, TABLES } from '../contract/resources';
import type { CloseClaims } from '../core/billing/closes';
import type { Subject, SubjectStore } from '../core/ports';
import { shardOf } from '../core/shards';
import { batchGet } from './batch';

const CACHE_TTL_MS = 60_000;

const DUE_INDEX = TABLES.subjects.indexes[0].name;
const ACCOUNT_INDEX = TABLES.subjects.indexes[1].name;
/** A new workspace is due at once: the next run works out what of it is due, and when it is next. */
const DUE_AT_ONCE = '1970-01-01T00:00:00.000Z';
/** The workspace's own attributes; the rest of its item is the closes' (`dueShard`, `nextDueAt`, the claim). */
const FIELDS = ['plan', 'billingAnchorDay', 'timeZone', 'contacts', 'name', 'createdAt', 'kind', 'account', 'workspaceGroup'] as const satisfies readonly (keyof Subject)[];

/**
 * Subjects (workspaces). Known subjects are cached for a minute per process, since every ingest
 * batch asks; unknown ones are not cached, so a subject added a moment ago is found at once.
 * The same items carry the due index of the closes (`CloseClaims`): when each workspace's next day ends,
 * in DUE_SHARDS partitions of a keys-only index, and the claim of the worker closing it.
 */
export class DynamoSubjects implements SubjectStore, CloseClaims {
  private readonly cache = new Map<string, { subject: Subject; until: number }>();

  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(id: string): Promise<Subject | undefined> {
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { id } }));
    return Item ? toSubject(Item) : undefined;
  }

  async getMany(ids: readonly string[]): Promise<Map<string, Subject>> {
    const now = Date.now();
    const found = new Map<string, Subject>();
    const missing: string[] = [];
    for (const id of ids) {
      const cached = this.cache.get(id);
      if (cached && cached.until > now) found.set(id, cached.subject);
      else missing.push(id);
    }
    for (const item of await batchGet(
      this.client,
      this.tableName,
      missing.map((id) => ({ id })),
    )) {
      const subject = toSubject(item);
      found.set(subject.id, subject);
      this.cache.set(subject.id, { subject, until: now + CACHE_TTL_MS });
    }
    return found;
  }

  /** The workspaces that name `account`, from the account index (keys only), then their items as stored now (not cached). */
  async pooledIn(account: string): Promise<Subject[]> {
    const ids: string[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({ TableName: this.tableName, IndexName: ACCOUNT_INDEX, KeyConditionExpression: 'account = :account', ExpressionAttributeValues: { ':account': account }, ExclusiveStartKey }),
      );
      for (const item of page.Items ?? []) ids.push(String(item.id));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    const items = await batchGet(
      this.client,
      this.tableName,
      ids.map((id) => ({ id })),
    );
    // The index lags its table a little: a workspace that has left the account since is left out.
    return items
      .map(toSubject)
      .filter((subject) => subject.account === account)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Sets the workspace's own attributes only, so that a change made while it is being closed keeps the claim and the next-due instant. */
  async put(subject: Subject): Promise<void> {
    const set = FIELDS.filter((f) => subject[f] !== undefined);
    const remove = FIELDS.filter((f) => subject[f] === undefined);
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { id: subject.id },
        UpdateExpression:
          `SET ${[...set.map((f) => `#${f} = :${f}`), 'dueShard = if_not_exists(dueShard, :dueShard)', 'nextDueAt = if_not_exists(nextDueAt, :dueAtOnce)'].join(', ')}` +
          (remove.length > 0 ? ` REMOVE ${remove.map((f) => `#${f}`).join(', ')}` : ''),
        ExpressionAttributeNames: Object.fromEntries(FIELDS.map((f) => [`#${f}`, f])),
        ExpressionAttributeValues: { ...Object.fromEntries(set.map((f) => [`:${f}`, subject[f]])), ':dueShard': shardOf(subject.id, DUE_SHARDS), ':dueAtOnce': DUE_AT_ONCE },
      }),
    );
    this.cache.delete(subject.id);
  }

  /** Adds the workspace unless one with its id exists (then left as it is); true if added. */
  async create(subject: Subject): Promise<boolean> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...subject, dueShard: shardOf(subject.id, DUE_SHARDS), nextDueAt: DUE_AT_ONCE },
          ConditionExpression: 'attribute_not_exists(id)',
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /**
   * Puts in the due index, due at once, every workspace written before the index existed (none carries
   * `nextDueAt`): run once after deploying over such a version (`usage-pipeline subjects index`). The only
   * scan of the table in the closes' path, and a one-off. Resolves with how many it indexed.
   */
  async indexMissing(): Promise<number> {
    let indexed = 0;
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(new ScanCommand({ TableName: this.tableName, ProjectionExpression: 'id', FilterExpression: 'attribute_not_exists(nextDueAt)', ExclusiveStartKey }));
      for (const { id } of page.Items ?? []) {
        await this.client.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { id },
            UpdateExpression: 'SET dueShard = if_not_exists(dueShard, :dueShard), nextDueAt = if_not_exists(nextDueAt, :dueAtOnce)',
            ConditionExpression: 'attribute_exists(id)',
            ExpressionAttributeValues: { ':dueShard': shardOf(String(id), DUE_SHARDS), ':dueAtOnce': DUE_AT_ONCE },
          }),
        );
        indexed += 1;
      }
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return indexed;
  }

  /** Each shard of the due index in turn, a page at a time (keys only, about 60 bytes each: some 16,000 ids a page). */
  async *due(dueBefore: string): AsyncIterable<string[]> {
    for (let shard = 0; shard < DUE_SHARDS; shard++) yield* this.duePages(shard, dueBefore);
  }

  private async *duePages(shard: number, dueBefore: string): AsyncGenerator<string[]> {
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: DUE_INDEX,
          KeyConditionExpression: 'dueShard = :shard AND nextDueAt <= :dueBefore',
          ExpressionAttributeValues: { ':shard': shard, ':dueBefore': dueBefore },
          ExclusiveStartKey,
        }),
      );
      if (page.Items?.length) yield page.Items.map((item) => String(item.id));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
  }

  async claim(id: string, holder: string, now: Date, until: Date): Promise<{ subject: Subject; nextDueAt: string } | undefined> {
    try {
      const { Attributes } = await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { id },
          UpdateExpression: 'SET closeHolder = :holder, closeUntil = :until',
          ConditionExpression: 'attribute_exists(id) AND (attribute_not_exists(closeUntil) OR closeUntil <= :now OR closeHolder = :holder)',
          ExpressionAttributeValues: { ':holder': holder, ':until': until.toISOString(), ':now': now.toISOString() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return Attributes ? { subject: toSubject(Attributes), nextDueAt: String(Attributes.nextDueAt ?? DUE_AT_ONCE) } : undefined;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw error;
    }
  }

  async release(id: string, holder: string, nextDueAt?: string): Promise<void> {
    try {
      await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { id },
          UpdateExpression: `${nextDueAt ? 'SET nextDueAt = :nextDueAt ' : ''}REMOVE closeHolder, closeUntil`,
          ConditionExpression: 'closeHolder = :holder',
          ExpressionAttributeValues: { ':holder': holder, ...(nextDueAt ? { ':nextDueAt': nextDueAt } : {}) },
        }),
      );
    } catch (error) {
      // Its claim expired and another worker took it: that worker sets what is due next.
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  async list(): Promise<Subject[]> {
    const subjects: Subject[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(new ScanCommand({ TableName: this.tableName, ExclusiveStartKey }));
      subjects.push(...(page.Items ?? []).map(toSubject));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return subjects.sort((a, b) => a.id.localeCompare(b.id));
  }
}

function toSubject(item: Record<string, unknown>): Subject {
  return {
    id: String(item.id),
    plan: String(item.plan),
    billingAnchorDay: Number(String(item.billingAnchorDay)),
    timeZone: typeof item.timeZone === 'string' ? item.timeZone : 'UTC',
    contacts: Array.isArray(item.contacts) ? item.contacts.map(String) : [],
    ...(typeof item.name === 'string' ? { name: item.name } : {}),
    ...(typeof item.createdAt === 'string' ? { createdAt: item.createdAt } : {}),
    ...(item.kind === 'account' ? { kind: 'account' as const } : {}),
    ...(typeof item.account === 'string' ? { account: item.account } : {}),
    ...(typeof item.workspaceGroup === 'string' ? { workspaceGroup: item.workspaceGroup } : {}),
  };
}
