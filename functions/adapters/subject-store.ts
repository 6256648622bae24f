import { type DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Subject, SubjectStore } from '../core/ports';
import { batchGet } from './batch';

const CACHE_TTL_MS = 60_000;

/**
 * Subjects (workspaces). Known subjects are cached for a minute per process, since every ingest
 * batch asks; unknown ones are not cached, so a subject added a moment ago is found at once.
 */
export class DynamoSubjects implements SubjectStore {
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

  async put(subject: Subject): Promise<void> {
    await this.client.send(new PutCommand({ TableName: this.tableName, Item: { ...subject } }));
    this.cache.delete(subject.id);
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
  };
}
