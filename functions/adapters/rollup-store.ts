import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, NumberValue, PutCommand, TransactWriteCommand, type TransactWriteCommandInput, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { CHECKPOINT_RETENTION_HOURS } from '../contract/resources';
import { MAX_ITEMS_PER_TRANSACTION } from '../core/metering/aggregate';
import type { CommitResult, CycleItemKey, LateChange, ParkedRecords, RepairStore, RollupCloser, RollupRange, RollupReader, RollupRow, RollupWriter } from '../core/metering/metering-ports';
import {
  decodePending,
  emptyLane,
  encodePending,
  type LaneState,
  mayPend,
  PENDING_LIMITS,
  type PendingLimits,
  pendingKey,
  pendingOf,
  planLaneCommit,
  withCheckpoint,
  withPending,
} from '../core/metering/pending';
import {
  type Breakdown,
  type Chunk,
  ChunkRefusedError,
  CycleItemsChangedError,
  type CycleState,
  channelCounter,
  checkpointLaneOf,
  cycleItemKey,
  cycleStateOf,
  featureCounter,
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
import { backoff, queryItems, writeMeter } from './dynamodb';
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

const conditionFailed = (error: unknown) => error instanceof Error && error.name === 'ConditionalCheckFailedException';
/** A single write's error as a ChunkRefusedError when no retry changes it (then its records are narrowed down and parked), else as it is. */
const refusedForGood = (error: unknown) => {
  const refused = refusalOf(error, []);
  return refused ? new ChunkRefusedError(refused, { cause: error }) : error;
};

/**
 * One item per lane (a fixed group of subjects, `laneOf`): per shard, the lane's records from that shard are applied
 * up to its checkpoint; and the lane's pending deltas (core/metering/pending.ts).
 */
const LANE_PK_PREFIX = 'lane#';
const laneKey = (lane: string) => ({ pk: `${LANE_PK_PREFIX}${lane}`, sk: 'lane' });
/** Where checkpoints were kept before lane items held them; read until a lane item has the shard's (stream records live 24 hours). */
const legacyCheckpointKey = (shardId: string, lane: string) => ({ pk: `shard#${shardId}`, sk: `owner#${lane}` });
/** A reader reads a subject's lane item before and after its rows; when a fold came in between, it reads again, this many times at most. */
const MAX_STABLE_READS = 10;
const COUNTER = /^(h|r|d|ch|c|f)#/;
/** Of a cycle item: how many values of each breakdown it has admitted (rollups BREAKDOWN_LIMITS). */
const ADMITTED: Record<Breakdown, string> = { channel: 'channelsAdmitted', feature: 'featuresAdmitted' };
const MAX_CONFLICT_RETRIES = 6;

/**
 * Rollup items: pk = subject, sk = D#day#usageType (with hour counters), C#cycleStart#usageType (with day,
 * channel and feature counters), U#cycleStart#usageType#userId, G#cycleStart#usageType#groupId, and
 * L#cycleStart#usageType#appliedMinute#eventKey (what one event changed in a closed cycle, per minute it was applied). Counters change only in a
 * write that also moves the lane item (pk lane#bucket-n, sk lane: per shard its checkpoint, and the deltas that wait, core/metering/pending.ts):
 * a plain conditional put of it when the deltas wait, a transaction when they fold. Readers add what waits. A cycle close sets `closedAt` on the cycle's
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
    /** When deltas wait in their lane's item and when they fold (core/metering/pending.ts); `FOLD_AT_ONCE` folds every commit at once. */
    private readonly pendingLimits: PendingLimits = PENDING_LIMITS,
    /**
     * The clock of lane bookkeeping (how long deltas waited, when a shard's checkpoint was last written): the machine's,
     * as the stream's retention runs on it, whatever clock the rollups' periods follow. A benchmark may simulate it.
     */
    private readonly laneClock: Clock = { now: () => new Date() },
  ) {}

  /** Lane items as this process last read or wrote them: a commit computed from one holds only if the stored version is still its. */
  private readonly laneStates = new Map<string, LaneState>();
  /** Checkpoints from before lane items, by `${shardId}\u0000${lane}`: they never move again. */
  private readonly legacyCheckpoints = new Map<string, string>();

  async readCheckpoints(shardId: string, lanes: readonly string[]): Promise<Map<string, string>> {
    const states = await this.readLanes(lanes);
    const withoutOwn = lanes.filter((lane) => !states.get(lane)?.checkpoints.has(shardId) && !this.legacyCheckpoints.has(`${shardId}\u0000${lane}`));
    if (withoutOwn.length > 0) {
      const legacy = await batchGet(
        this.client,
        this.tableName,
        withoutOwn.map((lane) => legacyCheckpointKey(shardId, lane)),
        { consistentRead: true },
      );
      for (const item of legacy) if (typeof item.sequenceNumber === 'string') this.legacyCheckpoints.set(`${shardId}\u0000${String(item.sk).slice('owner#'.length)}`, item.sequenceNumber);
    }
    const checkpoints = new Map<string, string>();
    for (const lane of lanes) {
      this.laneStates.set(lane, states.get(lane) ?? emptyLane());
      const checkpoint = this.appliedThrough(shardId, lane);
      if (checkpoint !== undefined) checkpoints.set(lane, checkpoint);
    }
    return checkpoints;
  }

  /** The padded sequence number of the lane's last record applied from the shard, as this process knows it. */
  private appliedThrough(shardId: string, lane: string): string | undefined {
    const own = this.laneStates.get(lane)?.checkpoints.get(shardId)?.sequenceNumber;
    const legacy = this.legacyCheckpoints.get(`${shardId}\u0000${lane}`);
    return own === undefined ? legacy : legacy === undefined || own > legacy ? own : legacy;
  }

  /** Lane items read strongly consistent; a lane without one has an empty state. */
  private async readLanes(lanes: readonly string[]): Promise<Map<string, LaneState>> {
    const items = await batchGet(this.client, this.tableName, lanes.map(laneKey), { consistentRead: true });
    const states = new Map(lanes.map((lane) => [lane, emptyLane()]));
    for (const item of items) states.set(String(item.pk).slice(LANE_PK_PREFIX.length), toLaneState(item));
    return states;
  }

  /**
   * A chunk of one lane (as the aggregate plans them): its updates wait in the lane item or fold into their items
   * (core/metering/pending.ts), and the lane's checkpoint moves across its run, in one write: a plain conditional put
   * when nothing folds, a transaction otherwise. A chunk of several lanes folds everything.
   */
  async commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult> {
    const befores: LaneState[] = [];
    for (const run of chunk.runs) {
      const before = await this.laneBefore(shardId, run);
      if (before === 'already-applied') return before;
      befores.push(before);
    }
    const checkpoint = (run: LaneRun) => ({ shardId, sequenceNumber: padSequenceNumber(run.lastSequenceNumber) });
    const now = this.laneClock.now();
    const [only] = chunk.runs;
    const [before] = befores;
    if (chunk.runs.length === 1 && only && before) {
      const updates = await this.admitApart(only.lane, before, chunk.updates);
      const { fold, next } = planLaneCommit(only.lane, before, updates, checkpoint(only), now, this.pendingLimits);
      return this.writeLanes([{ lane: only.lane, before, after: next }], fold);
    }
    const moved = chunk.runs.map((run, i) => {
      const state = befores[i] as LaneState;
      return { lane: run.lane, before: state, after: withCheckpoint(state, checkpoint(run), now) };
    });
    return this.writeLanes(moved, chunk.updates);
  }

  /** The lane item a run commits against, as this process knows it; 'already-applied' when its checkpoint has passed the run. */
  private async laneBefore(shardId: string, run: LaneRun): Promise<LaneState | 'already-applied'> {
    const before = this.laneStates.get(run.lane) ?? (await this.readLanes([run.lane])).get(run.lane) ?? emptyLane();
    this.laneStates.set(run.lane, before);
    const applied = this.appliedThrough(shardId, run.lane);
    // The run was committed already, by another try of this batch or another invocation of the shard.
    return applied !== undefined && applied >= padSequenceNumber(run.firstSequenceNumber) ? 'already-applied' : before;
  }

  /**
   * The breakdown values a lane's cycle updates admit, written to their cycle items on their own (one plain conditional
   * update each, as the commit's condition would check), so that the counts may wait in the lane item rather than make
   * the commit a transaction. An admission only names a value; if the commit then fails, the retry finds it admitted.
   * Updates that fold anyway keep their admissions.
   */
  private async admitApart(lane: string, state: LaneState, updates: readonly RollupUpdate[]): Promise<RollupUpdate[]> {
    return Promise.all(
      updates.map(async (update) => {
        // With no room to wait in, the counts fold anyway, admission included.
        if (update.admit === undefined || this.pendingLimits.maxPendingBytes === 0 || !mayPend({ ...update, admit: undefined } as RollupUpdate, lane, state)) return update;
        try {
          const response = await this.client.send(new UpdateCommand({ TableName: this.tableName, ...admission(update), ReturnConsumedCapacity: 'TOTAL' }));
          writeMeter.record(response.ConsumedCapacity);
        } catch (error) {
          if (conditionFailed(error)) throw new CycleItemsChangedError([cycleItemKey(update.subject, update.period, update.usageType)]);
          throw refusedForGood(error);
        }
        const { admit: _admitted, ...counts } = update;
        return counts;
      }),
    );
  }

  async park(shardId: string, run: LaneRun, change: LedgerChange, reason: string): Promise<CommitResult> {
    const before = await this.laneBefore(shardId, run);
    if (before === 'already-applied') return before;
    const after = withCheckpoint(before, { shardId, sequenceNumber: padSequenceNumber(run.lastSequenceNumber) }, this.laneClock.now());
    const record: ParkedRecord = { shardId, sequenceNumber: run.firstSequenceNumber, reason, change, parkedAt: this.clock.now().toISOString() };
    const put = { Put: { TableName: this.tableName, Item: { ...parkedKey(shardId, run.firstSequenceNumber), subject: subjectOf(change), record: JSON.stringify(record) } } };
    return this.writeLanes([{ lane: run.lane, before, after }], [], [put]);
  }

  /**
   * Writes lane items (each only if still at the version read) with the updates folded and any other item, in one
   * write. 'already-applied' when a lane item moved on meanwhile: the caller plans again from what is stored.
   */
  private async writeLanes(writes: readonly LaneWrite[], fold: readonly RollupUpdate[], others: NonNullable<TransactWriteCommandInput['TransactItems']> = []): Promise<CommitResult> {
    const appliedAt = this.clock.now().toISOString();
    const puts = writes.map((write) => this.lanePut(write));
    let result: CommitResult;
    try {
      if (fold.length === 0 && others.length === 0 && puts.length === 1 && puts[0]) {
        result = await this.putLane(puts[0].Put);
      } else {
        const updates = fold.map((update) => ({ Update: { TableName: this.tableName, ...toUpdate(update, appliedAt) } }));
        result = await this.transact([...updates, ...others, ...puts], { updates: [...fold] });
      }
    } catch (error) {
      for (const write of writes) this.laneStates.delete(write.lane);
      throw error;
    }
    for (const write of writes) {
      if (result === 'committed') this.laneStates.set(write.lane, write.after);
      else this.laneStates.delete(write.lane);
    }
    return result;
  }

  /** The one write of a commit that only adds pending deltas: one write unit per started KB of the lane item. */
  private async putLane(put: ReturnType<DynamoRollups['lanePut']>['Put']): Promise<CommitResult> {
    try {
      const response = await this.client.send(new PutCommand({ ...put, ReturnConsumedCapacity: 'TOTAL' }));
      writeMeter.record(response.ConsumedCapacity);
      return 'committed';
    } catch (error) {
      if (conditionFailed(error)) return 'already-applied';
      throw refusedForGood(error);
    }
  }

  /** A lane item's state as a put that holds only if the stored item is still at the version it was computed from. */
  private lanePut({ lane, before, after }: LaneWrite) {
    const oldest = this.laneClock.now().getTime() - CHECKPOINT_RETENTION_HOURS * 3_600_000;
    const checkpoints: Record<string, string> = {};
    // A shard that wrote nothing to the lane for a day has no record left on the stream (24 hours) to apply again.
    for (const [shardId, { sequenceNumber, at }] of after.checkpoints) if (Date.parse(at) >= oldest) checkpoints[shardId] = `${sequenceNumber}|${at}`;
    return {
      Put: {
        TableName: this.tableName,
        Item: {
          ...laneKey(lane),
          version: after.version,
          checkpoints,
          pending: encodePending(after.pending),
          ...(after.since !== undefined ? { since: after.since } : {}),
          ...(after.closedThrough !== undefined ? { closedThrough: after.closedThrough } : {}),
        },
        ...(before.version === 0
          ? { ConditionExpression: 'attribute_not_exists(pk)' }
          : { ConditionExpression: '#version = :version', ExpressionAttributeNames: { '#version': 'version' }, ExpressionAttributeValues: { ':version': before.version } }),
      },
    };
  }

  async parked(subject?: string): Promise<ParkedRecord[]> {
    const records: ParkedRecord[] = [];
    const items = queryItems(this.client, { TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': PARKED_PK }, ConsistentRead: true });
    for await (const item of items) if (subject === undefined || item.subject === subject) records.push(JSON.parse(String(item.record)) as ParkedRecord);
    return records.sort((a, b) => (a.parkedAt < b.parkedAt ? -1 : a.parkedAt > b.parkedAt ? 1 : 0));
  }

  async applyParked(record: ParkedRecord, chunk: Chunk): Promise<'applied' | 'gone'> {
    const appliedAt = this.clock.now().toISOString();
    const updates = chunk.updates.map((update) => ({ Update: { TableName: this.tableName, ...toUpdate(update, appliedAt) } }));
    const remove = { Delete: { TableName: this.tableName, Key: parkedKey(record.shardId, record.sequenceNumber), ConditionExpression: 'attribute_exists(pk)' } };
    // The removal is last, where commitChunk's checkpoints are: its failed condition reads as 'already-applied'.
    return (await this.transact([...updates, remove], chunk)) === 'committed' ? 'applied' : 'gone';
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

  /**
   * Marks the cycle's items closed. In the same transaction it folds the subject's pending deltas (they were applied
   * before the close, so they count in the cycle, not as late) and raises its lane's `closedThrough`, which no later
   * delta of the cycle waits past: the aggregate's next commit of the lane, planned before, finds the lane item moved.
   */
  async closeCycle(subject: string, cycleStart: string, usageTypes: readonly string[], closedAt: string): Promise<void> {
    const lane = checkpointLaneOf(subject);
    const closing = new Set(usageTypes.map((usageType) => rollupSortKey('cycle', cycleStart, usageType)));
    for (let attempt = 0; attempt < MAX_CLOSE_ATTEMPTS; attempt++) {
      const before = (await this.readLanes([lane])).get(lane) ?? emptyLane();
      // Whatever does not fit this transaction folds in one before it (each with the lane item, as the aggregate's).
      const room = MAX_ITEMS_PER_TRANSACTION - 1 - closing.size;
      const waiting = pendingOf(before, subject);
      const folded = waiting.slice(0, Math.max(0, room));
      const pending = new Map(before.pending);
      for (const update of folded) pending.delete(pendingKey(update));
      const done = folded.length === waiting.length;
      const after: LaneState = { ...before, version: before.version + 1, pending };
      if (done && (before.closedThrough === undefined || before.closedThrough < cycleStart)) after.closedThrough = cycleStart;
      if (pending.size === 0) delete after.since;
      const appliedAt = this.clock.now().toISOString();
      const closes = done
        ? [...closing].map((sk) => {
            const update = folded.find((u) => rollupSortKey(u.kind, u.period, u.usageType) === sk);
            return { Update: { TableName: this.tableName, ...closingUpdate(subject, sk, cycleStart, closedAt, update, appliedAt) } };
          })
        : [];
      const others = folded.filter((u) => !(done && closing.has(rollupSortKey(u.kind, u.period, u.usageType))));
      const result = await this.writeLanes([{ lane, before, after }], others, closes);
      if (result === 'committed' && done) return;
    }
    throw new Error(`the lane of ${subject} kept changing while its cycle ${cycleStart} was being closed`);
  }

  async lateChanges(subject: string, fromCycle: string, toCycle: string): Promise<LateChange[]> {
    const rows = await this.between(subject, 'late', `${ROLLUP_PREFIX.late}#${fromCycle}`, `${ROLLUP_PREFIX.late}#${toCycle}\uffff`);
    return rows.map((row) => ({ cycleStart: row.period, usageType: row.usageType, eventKey: row.member ?? '', delta: row.total, appliedAt: row.appliedAt ?? '' }));
  }

  /** With the subject's pending deltas added: what the items hold once folded. */
  async query(subject: string, kind: 'day' | 'cycle', fromPeriod: string, toPeriod: string): Promise<RollupRow[]> {
    const prefix = ROLLUP_PREFIX[kind];
    const [from, to] = [`${prefix}#${fromPeriod}`, `${prefix}#${toPeriod}\uffff`];
    const { value: rows, lane } = await this.stable(subject, () => this.between(subject, kind, from, to, true));
    const inRange = (u: RollupUpdate) => {
      const sk = rollupSortKey(u.kind, u.period, u.usageType);
      return u.kind === kind && sk >= from && sk <= to;
    };
    return withPending(rows, pendingOf(lane, subject).filter(inRange));
  }

  /** What planning needs of cycle items: what they have admitted and whether they are closed, which pending deltas never change. */
  async readCycleStates(keys: readonly CycleItemKey[]): Promise<Map<string, CycleState>> {
    const items = await this.storedCycleItems(keys);
    return new Map([...items].map(([key, row]) => [key, cycleStateOf(row)]));
  }

  /**
   * With their subjects' pending deltas added. Items are read between two reads of their lanes' items; those whose
   * lane changed in between (a commit of the lane came meanwhile) are read again, until each lane reads the same.
   */
  async cycleItems(keys: readonly CycleItemKey[]): Promise<Map<string, RollupRow>> {
    const merged = new Map<string, RollupRow>();
    let left = [...keys];
    for (let attempt = 0; left.length > 0; attempt++) {
      if (attempt >= MAX_STABLE_READS) throw new Error(`the lanes of ${left.length} subject(s) kept changing while their rollups were read`);
      const lanes = [...new Set(left.map((k) => checkpointLaneOf(k.subject)))];
      const before = await this.readLanes(lanes);
      const items = await this.storedCycleItems(left);
      const after = await this.readLanes(lanes);
      const settled = (lane: string) => before.get(lane)?.version === after.get(lane)?.version;
      for (const key of left) {
        const lane = checkpointLaneOf(key.subject);
        if (!settled(lane)) continue;
        const id = cycleItemKey(key.subject, key.cycleStart, key.usageType);
        const waiting = after.get(lane)?.pending.get(pendingKey({ subject: key.subject, kind: 'cycle', period: key.cycleStart, usageType: key.usageType }));
        const stored = items.get(id);
        const [row] = withPending(stored ? [stored] : [], waiting ? [waiting] : []);
        if (row) merged.set(id, row);
      }
      left = left.filter((key) => !settled(checkpointLaneOf(key.subject)));
    }
    return merged;
  }

  /**
   * Reads a subject's rows between two reads of its lane's item, again when the lane item changed in between: a fold
   * moves deltas from the lane item into the rows in one transaction, so equal versions mean the rows and the lane
   * item read belong together.
   */
  private async stable<T>(subject: string, read: () => Promise<T>): Promise<{ value: T; lane: LaneState }> {
    const lane = checkpointLaneOf(subject);
    for (let attempt = 0; attempt < MAX_STABLE_READS; attempt++) {
      const before = await this.readLanes([lane]);
      const value = await read();
      const after = (await this.readLanes([lane])).get(lane) ?? emptyLane();
      if (before.get(lane)?.version === after.version) return { value, lane: after };
    }
    throw new Error(`the lane of ${subject} kept changing while its rollups were read`);
  }

  private async storedCycleItems(keys: readonly CycleItemKey[]): Promise<Map<string, RollupRow>> {
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
    const { value: kinds, lane } = await this.stable(subject, () =>
      Promise.all([
        read('day', range.fromDay, range.toDay),
        read('cycle', range.fromCycle, range.toCycle),
        read('user', range.fromCycle, range.toCycle),
        read('group', range.fromCycle, range.toCycle),
      ]),
    );
    const waiting = pendingOf(lane, subject);
    const [days, cycles, users, groups] = kinds;
    const within = (kind: 'day' | 'cycle', from: string, to: string) => waiting.filter((u) => u.kind === kind && u.period >= from && u.period <= to);
    return [...withPending(days, within('day', range.fromDay, range.toDay)), ...withPending(cycles, within('cycle', range.fromCycle, range.toCycle)), ...users, ...groups];
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
    const items = queryItems(this.client, {
      TableName: this.tableName,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
      ExpressionAttributeValues: { ':pk': subject, ':from': from, ':to': to },
      ...(consistent ? { ConsistentRead: true } : {}),
    });
    for await (const item of items) rows.push(toRow(item, kind));
    return rows;
  }
}

interface LaneWrite {
  lane: string;
  before: LaneState;
  after: LaneState;
}

const MAX_CLOSE_ATTEMPTS = 20;

function toLaneState(item: Record<string, unknown>): LaneState {
  const checkpoints = new Map<string, { sequenceNumber: string; at: string }>();
  for (const [shardId, value] of Object.entries((item.checkpoints as Record<string, unknown> | undefined) ?? {})) {
    const [sequenceNumber = '', at = ''] = String(value).split('|');
    checkpoints.set(shardId, { sequenceNumber, at });
  }
  const state: LaneState = { version: Number(numberText(item.version)), checkpoints, pending: decodePending(typeof item.pending === 'string' ? item.pending : undefined) };
  if (typeof item.since === 'string') state.since = item.since;
  if (typeof item.closedThrough === 'string') state.closedThrough = item.closedThrough;
  return state;
}

/** An open cycle item's admission of breakdown values alone: its admitted counts, and a zero counter per value admitted. */
function admission(update: RollupUpdate) {
  const names: Record<string, string> = { '#usageType': 'usageType', '#period': 'period' };
  const values: Record<string, unknown> = { ':usageType': update.usageType, ':period': update.period, ':zero': 0 };
  const adds: string[] = [];
  const conditions = ['attribute_not_exists(closedAt)'];
  for (const [dimension, admit] of Object.entries(update.admit ?? {}) as [Breakdown, { expected: number; values: string[] }][]) {
    names[`#${dimension}Admitted`] = ADMITTED[dimension];
    values[`:${dimension}Admitted`] = admit.values.length;
    adds.push(`#${dimension}Admitted :${dimension}Admitted`);
    if (admit.expected === 0) conditions.push(`attribute_not_exists(#${dimension}Admitted)`);
    else {
      values[`:${dimension}Expected`] = admit.expected;
      conditions.push(`#${dimension}Admitted = :${dimension}Expected`);
    }
    admit.values.forEach((value, i) => {
      names[`#${dimension}${i}`] = dimension === 'channel' ? channelCounter(value) : featureCounter(value);
      adds.push(`#${dimension}${i} :zero`);
    });
  }
  return {
    Key: { pk: update.subject, sk: rollupSortKey('cycle', update.period, update.usageType) },
    UpdateExpression: `SET #usageType = :usageType, #period = :period ADD ${adds.join(', ')}`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}

/** A cycle item's close: with the deltas that waited for it, when there are any (folded as applied before the close). */
function closingUpdate(subject: string, sk: string, cycleStart: string, closedAt: string, waiting: RollupUpdate | undefined, appliedAt: string) {
  const usageType = sk.slice(3 + cycleStart.length);
  if (!waiting) {
    return {
      Key: { pk: subject, sk },
      UpdateExpression: 'SET closedAt = if_not_exists(closedAt, :closedAt), usageType = :usageType, period = :period',
      ExpressionAttributeValues: { ':closedAt': closedAt, ':usageType': usageType, ':period': cycleStart },
    };
  }
  const { ConditionExpression: _open, ...update } = toUpdate(waiting, appliedAt);
  return {
    ...update,
    UpdateExpression: update.UpdateExpression.replace(/^SET /, 'SET closedAt = if_not_exists(closedAt, :closedAt), '),
    ExpressionAttributeValues: { ...update.ExpressionAttributeValues, ':closedAt': closedAt },
  };
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
