import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, NumberValue, QueryCommand, TransactWriteCommand, type TransactWriteCommandInput, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { CHECKPOINT_RETENTION_DAYS } from '../contract/resources';
import type { CommitResult, CycleItemKey, LateChange, ParkedRecords, RepairStore, RollupCloser, RollupRange, RollupReader, RollupRow, RollupWriter } from '../core/metering/metering-ports';
import {
  type Breakdown,
  type Chunk,
  ChunkRefusedError,
  CycleItemsChangedError,
  type CycleState,
  cycleItemKey,
  cycleStateOf,
  type LaneRun,
  type LedgerChange,
  type MemberKind,
  type ParkedRecord,
  padSequenceNumber,
  ROLLUP_PREFIX,
  type RollupKind,
  type RollupUpdate,
  rollupSortKey,
} from '../core/metering/rollups';
import type { Clock } from '../core/ports';
import { toDecimalString } from '../core/quantity';
import { batchGet } from './batch';
import { backoff, writeMeter } from './dynamodb';
import { leaseHeld } from './lease-store';

/** Parked records share one partition: there are few, and an operator lists them all. */
const PARKED_PK = 'parked#records';
const parkedKey = (shardId: string, sequenceNumber: string) => ({ pk: PARKED_PK, sk: `${shardId}#${padSequenceNumber(sequenceNumber)}` });
const subjectOf = (change: LedgerChange) => (change.newImage ?? change.oldImage)?.subject ?? '';

/**
 * Why DynamoDB refused a write for good: a request it finds invalid (a key, expression or item over its
 * limit) or a transaction cancelled for such a reason, as opposed to conflicts and throttling.
 */
function refusalOf(error: unknown, reasons: readonly { Code?: string; Message?: string }[]): string | undefined {
  if (error instanceof Error && error.name === 'ValidationException') return `ValidationException: ${error.message}`;
  const refused = reasons.find((r) => r.Code === 'ValidationError' || r.Code === 'ItemCollectionSizeLimitExceeded');
  return refused ? `${refused.Code ?? ''}: ${refused.Message ?? ''}` : undefined;
}

/** One checkpoint per shard and lane (a fixed group of subjects, `laneOf`): that lane's records from that shard are applied up to it. */
const checkpointKey = (shardId: string, lane: string) => ({ pk: `shard#${shardId}`, sk: `owner#${lane}` });
const COUNTER = /^(h|r|d|ch|c|f)#/;
/** Of a cycle item: how many values of each breakdown it has admitted (rollups BREAKDOWN_LIMITS). */
const ADMITTED: Record<Breakdown, string> = { channel: 'channelsAdmitted', feature: 'featuresAdmitted' };
const MAX_CONFLICT_RETRIES = 6;

/**
 * Rollup items: pk = subject, sk = D#day#usageType (with hour counters), C#cycleStart#usageType (with day,
 * channel and feature counters), U#cycleStart#usageType#userId, G#cycleStart#usageType#groupId, and
 * L#cycleStart#usageType#appliedMinute#eventKey (what one event changed in a closed cycle, per minute it was applied). Counters change only inside a
 * transaction that also advances the checkpoints (pk shard#id, sk owner#bucket-n) of the records' lanes. A cycle close sets `closedAt` on the cycle's
 * items; from then on each change to them must also add to `late` and write its late item, and the
 * condition on `closedAt` makes a chunk that assumed otherwise fail as a whole.
 */
export class DynamoRollups implements RollupWriter, RollupReader, RollupCloser, ParkedRecords, RepairStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: Clock = { now: () => new Date() },
    /** Where the leases are (adapters/lease-store.ts): a repair's writes hold only while its lease does. */
    private readonly leasesTable?: string,
  ) {}

  async readCheckpoints(shardId: string, lanes: readonly string[]): Promise<Map<string, string>> {
    const items = await batchGet(
      this.client,
      this.tableName,
      lanes.map((lane) => checkpointKey(shardId, lane)),
      { consistentRead: true },
    );
    const checkpoints = new Map<string, string>();
    for (const item of items) if (typeof item.sequenceNumber === 'string') checkpoints.set(String(item.sk).slice('owner#'.length), item.sequenceNumber);
    return checkpoints;
  }

  async commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult> {
    const appliedAt = this.clock.now().toISOString();
    const updates = chunk.updates.map((update) => ({ Update: { TableName: this.tableName, ...toUpdate(update, appliedAt) } }));
    return this.transact([...updates, ...chunk.runs.map((run) => this.checkpointUpdate(shardId, run))], chunk);
  }

  async park(shardId: string, run: LaneRun, change: LedgerChange, reason: string): Promise<CommitResult> {
    const record: ParkedRecord = { shardId, sequenceNumber: run.firstSequenceNumber, reason, change, parkedAt: this.clock.now().toISOString() };
    const put = { Put: { TableName: this.tableName, Item: { ...parkedKey(shardId, run.firstSequenceNumber), subject: subjectOf(change), record: JSON.stringify(record) } } };
    return this.transact([put, this.checkpointUpdate(shardId, run)], { updates: [] });
  }

  async parked(subject?: string): Promise<ParkedRecord[]> {
    const records: ParkedRecord[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({ TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': PARKED_PK }, ConsistentRead: true, ExclusiveStartKey }),
      );
      for (const item of page.Items ?? []) if (subject === undefined || item.subject === subject) records.push(JSON.parse(String(item.record)) as ParkedRecord);
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return records.sort((a, b) => (a.parkedAt < b.parkedAt ? -1 : a.parkedAt > b.parkedAt ? 1 : 0));
  }

  async applyParked(record: ParkedRecord, chunk: Chunk): Promise<'applied' | 'gone'> {
    const appliedAt = this.clock.now().toISOString();
    const updates = chunk.updates.map((update) => ({ Update: { TableName: this.tableName, ...toUpdate(update, appliedAt) } }));
    const remove = { Delete: { TableName: this.tableName, Key: parkedKey(record.shardId, record.sequenceNumber), ConditionExpression: 'attribute_exists(pk)' } };
    // The removal is last, where commitChunk's checkpoints are: its failed condition reads as 'already-applied'.
    return (await this.transact([...updates, remove], chunk)) === 'committed' ? 'applied' : 'gone';
  }

  /** A checkpoint moved across a run, only if none of the run has been committed: a retried chunk finds this false. */
  private checkpointUpdate(shardId: string, run: LaneRun) {
    return {
      Update: {
        TableName: this.tableName,
        Key: checkpointKey(shardId, run.lane),
        ConditionExpression: 'attribute_not_exists(sequenceNumber) OR sequenceNumber < :first',
        UpdateExpression: 'SET sequenceNumber = :last, expiresAt = :expiresAt',
        ExpressionAttributeValues: {
          ':first': padSequenceNumber(run.firstSequenceNumber),
          ':last': padSequenceNumber(run.lastSequenceNumber),
          ':expiresAt': Math.floor(Date.now() / 1000) + CHECKPOINT_RETENTION_DAYS * 86_400,
        },
      },
    };
  }

  /**
   * One transaction: the chunk's rollup updates first, then items whose failed condition means the work was
   * done already ('already-applied'). Conflicts and throttling are retried; a refusal no retry changes is a
   * ChunkRefusedError.
   */
  private async transact(items: NonNullable<TransactWriteCommandInput['TransactItems']>, chunk: Pick<Chunk, 'updates'>): Promise<CommitResult> {
    const command = new TransactWriteCommand({ TransactItems: items });
    for (let attempt = 0; ; attempt++) {
      try {
        await this.client.send(command);
        writeMeter.recordTransaction(this.tableName, items.length);
        return 'committed';
      } catch (error) {
        const reasons = error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];
        if (reasons.slice(chunk.updates.length).some((r) => r.Code === 'ConditionalCheckFailed')) return 'already-applied';
        // A cycle item's condition: closed or open as planned, and its breakdown counts as planned.
        const changed = chunk.updates.filter((update, i) => update.kind === 'cycle' && reasons[i]?.Code === 'ConditionalCheckFailed');
        if (changed.length > 0) throw new CycleItemsChangedError(changed.map((u) => cycleItemKey(u.subject, u.period, u.usageType)));
        const refused = refusalOf(error, reasons);
        if (refused) throw new ChunkRefusedError(refused, { cause: error });
        const transient = reasons.some((r) => r.Code === 'TransactionConflict' || r.Code === 'ThrottlingError' || r.Code === 'ProvisionedThroughputExceeded');
        if (!transient || attempt >= MAX_CONFLICT_RETRIES) throw error;
        await backoff(attempt);
      }
    }
  }

  async closeCycle(subject: string, cycleStart: string, usageTypes: readonly string[], closedAt: string): Promise<void> {
    await Promise.all(
      usageTypes.map((usageType) =>
        this.client.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { pk: subject, sk: rollupSortKey('cycle', cycleStart, usageType) },
            UpdateExpression: 'SET closedAt = if_not_exists(closedAt, :closedAt), usageType = :usageType, period = :period',
            ExpressionAttributeValues: { ':closedAt': closedAt, ':usageType': usageType, ':period': cycleStart },
          }),
        ),
      ),
    );
  }

  async lateChanges(subject: string, fromCycle: string, toCycle: string): Promise<LateChange[]> {
    const rows = await this.between(subject, 'late', `${ROLLUP_PREFIX.late}#${fromCycle}`, `${ROLLUP_PREFIX.late}#${toCycle}\uffff`);
    return rows.map((row) => ({ cycleStart: row.period, usageType: row.usageType, eventKey: row.member ?? '', delta: row.total, appliedAt: row.appliedAt ?? '' }));
  }

  async query(subject: string, kind: 'day' | 'cycle', fromPeriod: string, toPeriod: string): Promise<RollupRow[]> {
    const prefix = ROLLUP_PREFIX[kind];
    return this.between(subject, kind, `${prefix}#${fromPeriod}`, `${prefix}#${toPeriod}\uffff`);
  }

  async readCycleStates(keys: readonly CycleItemKey[]): Promise<Map<string, CycleState>> {
    const items = await this.cycleItems(keys);
    return new Map([...items].map(([key, row]) => [key, cycleStateOf(row)]));
  }

  async cycleItems(keys: readonly CycleItemKey[]): Promise<Map<string, RollupRow>> {
    const items = await batchGet(
      this.client,
      this.tableName,
      keys.map((k) => ({ pk: k.subject, sk: rollupSortKey('cycle', k.cycleStart, k.usageType) })),
      { consistentRead: true },
    );
    return new Map(items.map((item) => [cycleItemKey(String(item.pk), String(item.period), String(item.usageType)), toRow(item, 'cycle')]));
  }

  async members(subject: string, kind: MemberKind, cycleStart: string, usageType: string): Promise<RollupRow[]> {
    const prefix = `${rollupSortKey(kind, cycleStart, usageType)}#`;
    return this.between(subject, kind, prefix, `${prefix}\uffff`);
  }

  async readSubjectRollups(subject: string, range: RollupRange): Promise<RollupRow[]> {
    const read = (kind: Exclude<RollupKind, 'late'>, from: string, to: string) => this.between(subject, kind, `${ROLLUP_PREFIX[kind]}#${from}`, `${ROLLUP_PREFIX[kind]}#${to}\uffff`, true);
    const kinds = await Promise.all([
      read('day', range.fromDay, range.toDay),
      read('cycle', range.fromCycle, range.toCycle),
      read('user', range.fromCycle, range.toCycle),
      read('group', range.fromCycle, range.toCycle),
    ]);
    return kinds.flat();
  }

  async applyRepair(lease: { name: string; holder: string }, work: { updates?: readonly RollupUpdate[]; removeParked?: readonly ParkedRecord[] }): Promise<'committed' | 'stale'> {
    if (!this.leasesTable) throw new Error('repairs write under a lease: give DynamoRollups the table the leases are in');
    const appliedAt = this.clock.now().toISOString();
    const updates = work.updates ?? [];
    const items = [
      ...updates.map((update) => ({ Update: { TableName: this.tableName, ...toUpdate(update, appliedAt) } })),
      // After the updates, as commitChunk's checkpoints: a failed condition here reads as 'already-applied'.
      leaseHeld(this.leasesTable, lease),
      ...(work.removeParked ?? []).map((record) => ({ Delete: { TableName: this.tableName, Key: parkedKey(record.shardId, record.sequenceNumber), ConditionExpression: 'attribute_exists(pk)' } })),
    ];
    return (await this.transact(items, { updates: [...updates] })) === 'committed' ? 'committed' : 'stale';
  }

  private async between(subject: string, kind: RollupKind, from: string, to: string, consistent = false): Promise<RollupRow[]> {
    const rows: RollupRow[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
          ExpressionAttributeValues: { ':pk': subject, ':from': from, ':to': to },
          ...(consistent ? { ConsistentRead: true } : {}),
          ExclusiveStartKey,
        }),
      );
      for (const item of page.Items ?? []) rows.push(toRow(item, kind));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return rows;
  }
}

function toUpdate(update: RollupUpdate, appliedAt: string) {
  const names: Record<string, string> = { '#total': 'total', '#usageType': 'usageType', '#period': 'period' };
  const values: Record<string, unknown> = {
    ':usageType': update.usageType,
    ':period': update.period,
    ':total': NumberValue.from(toDecimalString(update.total)),
  };
  const sets = ['#usageType = :usageType', '#period = :period'];
  if (update.member !== undefined) {
    names['#member'] = 'member';
    values[':member'] = update.member;
    sets.push('#member = :member');
  }
  const adds = ['#total :total'];
  if (update.requests !== undefined && update.requests !== 0n) {
    names['#requests'] = 'requests';
    values[':requests'] = NumberValue.from(update.requests.toString());
    adds.push('#requests :requests');
  }
  let condition: string | undefined;
  if (update.kind === 'cycle' && update.closed) {
    adds.push('#late :late');
    names['#late'] = 'late';
    values[':late'] = NumberValue.from(toDecimalString(update.late ?? update.total));
    condition = 'attribute_exists(closedAt)';
  } else if (update.kind === 'cycle') {
    condition = 'attribute_not_exists(closedAt)';
  } else if (update.kind === 'late') {
    // Reports list each change in the cycle it was applied in, so every minute of application has its own item.
    sets.push('appliedAt = :appliedAt');
    values[':appliedAt'] = appliedAt;
  }
  const conditions = condition ? [condition] : [];
  for (const [dimension, admit] of Object.entries(update.admit ?? {}) as [Breakdown, { expected: number; values: string[] }][]) {
    const name = `#${dimension}Admitted`;
    names[name] = ADMITTED[dimension];
    values[`:${dimension}Admitted`] = admit.values.length;
    adds.push(`${name} :${dimension}Admitted`);
    if (admit.expected === 0) {
      conditions.push(`attribute_not_exists(${name})`);
    } else {
      values[`:${dimension}Expected`] = admit.expected;
      conditions.push(`${name} = :${dimension}Expected`);
    }
  }
  let i = 0;
  for (const [counter, delta] of update.counters) {
    if (delta === 0n) continue;
    names[`#c${i}`] = counter;
    values[`:c${i}`] = NumberValue.from(toDecimalString(delta));
    adds.push(`#c${i} :c${i}`);
    i++;
  }
  return {
    Key: { pk: update.subject, sk: rollupSortKey(update.kind, update.period, update.usageType, update.kind === 'late' ? `${appliedAt.slice(0, 16)}#${update.member}` : update.member) },
    UpdateExpression: `SET ${sets.join(', ')} ADD ${adds.join(', ')}`,
    ...(conditions.length > 0 ? { ConditionExpression: conditions.join(' AND ') } : {}),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}

function toRow(item: Record<string, unknown>, kind: RollupKind): RollupRow {
  const counters: Record<string, string> = {};
  for (const [name, value] of Object.entries(item)) if (COUNTER.test(name)) counters[name] = numberText(value);
  return {
    usageType: String(item.usageType),
    kind,
    period: String(item.period),
    ...(typeof item.member === 'string' ? { member: item.member } : {}),
    total: numberText(item.total),
    ...(item.requests !== undefined ? { requests: numberText(item.requests) } : {}),
    ...(item.late !== undefined ? { late: numberText(item.late) } : {}),
    ...(typeof item.closedAt === 'string' ? { closedAt: item.closedAt } : {}),
    ...(item[ADMITTED.channel] !== undefined || item[ADMITTED.feature] !== undefined
      ? { admitted: { channel: Number(numberText(item[ADMITTED.channel])), feature: Number(numberText(item[ADMITTED.feature])) } }
      : {}),
    ...(typeof item.appliedAt === 'string' ? { appliedAt: item.appliedAt } : {}),
    counters,
  };
}

/** Numbers are read wrapped (exact decimal text), never through a float. */
function numberText(value: unknown): string {
  if (value instanceof NumberValue) return value.value;
  if (typeof value === 'number' || typeof value === 'string') return String(value);
  if (value && typeof value === 'object' && 'value' in value) return String((value as { value: unknown }).value);
  return '0';
}
