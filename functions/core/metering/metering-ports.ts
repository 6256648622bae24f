import type { Rejection } from './envelope';
import type { Breakdown, Chunk, CycleState, LaneRun, LedgerChange, LedgerEntry, LedgerImage, MemberKind, ParkedRecord, RollupKind, RollupUpdate } from './rollups';

/** What metering needs from the outside world: the ledger, the rollups, the queues. Adapters implement these, tests pass fakes. */

export interface Ledger {
  /**
   * Writes every entry (one item per identity); returns those that still failed after retries, and how
   * many were known duplicates, left unwritten because the ledger already holds the same content.
   */
  putAll(entries: readonly LedgerEntry[]): Promise<{ failed: LedgerEntry[]; knownDuplicates: number }>;
}

export interface QuarantineRecord extends Rejection {
  /** The quarantine's key: stable across redeliveries of the same message. */
  messageId: string;
  index: number;
  subject?: string;
  sentAt: string;
  receivedAt: string;
  /** The rejected event as received (or the whole message body when it could not be split into events). */
  body: string;
  /** The stored body is cut short (the original was over the item size limit): it cannot be replayed. */
  bodyTruncated?: boolean;
}

export interface Quarantine {
  putAll(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }>;
  list(filter: { subject?: string; limit: number }): Promise<QuarantineRecord[]>;
}

export type CommitResult = 'committed' | 'already-applied';

export interface RollupWriter {
  /** Per lane (a fixed group of subjects, `laneOf`): the padded sequence number of its last record applied from this shard, if any. */
  readCheckpoints(shardId: string, lanes: readonly string[]): Promise<Map<string, string>>;
  /**
   * Applies a chunk and moves each of its lanes' checkpoints across its run, in one transaction;
   * 'already-applied' (and nothing written) if any lane's checkpoint had reached its run.
   */
  commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult>;
  /** What planning needs of each cycle item (`cycleItemKey`), read consistently; an item not stored yet is left out. */
  readCycleStates(keys: readonly CycleItemKey[]): Promise<Map<string, CycleState>>;
  /**
   * Parks one record DynamoDB refused on its own (`reason`) and moves its lane's checkpoint across it, in one
   * transaction; 'already-applied' (and nothing written) if the checkpoint had reached it.
   */
  park(shardId: string, run: LaneRun, change: LedgerChange, reason: string): Promise<CommitResult>;
}

/** The parked records (`ParkedRecord`), for replay. */
export interface ParkedRecords {
  /** Every parked record, oldest first; of one subject's changes when asked. */
  parked(subject?: string): Promise<ParkedRecord[]>;
  /** Applies a parked record's chunk and removes the record, in one transaction; 'gone' (nothing written) if it was removed already. */
  applyParked(record: ParkedRecord, chunk: Chunk): Promise<'applied' | 'gone'>;
}

export interface RollupRow {
  usageType: string;
  kind: RollupKind;
  period: string;
  /** The user or group of a member item; the event key of a late item. */
  member?: string;
  total: string;
  /** How many events the item counts (absent on items written before it was kept, and on late items). */
  requests?: string;
  /** Of a closed cycle item: the part of `total` applied after the close (late events and corrections). */
  late?: string;
  /** Of a cycle item: when its cycle was closed. */
  closedAt?: string;
  /** Of a cycle item: how many channel and feature values it has admitted (rollups BREAKDOWN_LIMITS). */
  admitted?: Record<Breakdown, number>;
  /** Of a late item: when it was last changed. */
  appliedAt?: string;
  counters: Record<string, string>;
}

/**
 * What one event changed in a cycle after the cycle was closed (a late event or a correction), as applied
 * within one minute; an event changed again later has another entry. A correction that only moved the event
 * to another channel, feature or user has a delta of 0.
 */
export interface LateChange {
  cycleStart: string;
  usageType: string;
  /** The event's identity (`eventKey`). */
  eventKey: string;
  /** Exact decimal string; negative when a correction lowered the count. */
  delta: string;
  /** The last time within that minute. */
  appliedAt: string;
}

/** What a cycle close needs beside reading: marking the cycle's items closed, so later changes count as late. */
export interface RollupCloser {
  /** Marks the cycle items of these usage types closed (creating empty ones); a second call changes nothing. */
  closeCycle(subject: string, cycleStart: string, usageTypes: readonly string[], closedAt: string): Promise<void>;
  /** Late items of the subject whose cycle start is in [fromCycle, toCycle]. */
  lateChanges(subject: string, fromCycle: string, toCycle: string): Promise<LateChange[]>;
}

export interface RollupReader {
  /** Day or cycle items of one subject whose period is in [fromPeriod, toPeriod] (inclusive, string order). */
  query(subject: string, kind: 'day' | 'cycle', fromPeriod: string, toPeriod: string): Promise<RollupRow[]>;
  /** Every user or group item of one subject, cycle and usage type. */
  members(subject: string, kind: MemberKind, cycleStart: string, usageType: string): Promise<RollupRow[]>;
  /**
   * Cycle items by key, read strongly consistent (so a commit just made is seen), keyed by `cycleItemKey`;
   * a key without an item is absent.
   */
  cycleItems(keys: readonly CycleItemKey[]): Promise<Map<string, RollupRow>>;
}

export interface CycleItemKey {
  subject: string;
  cycleStart: string;
  usageType: string;
}

/** The usage-events queue, for events recorded through the API. */
export interface UsageQueue {
  /** Sends message bodies; resolves once the queue has accepted every one. */
  sendAll(bodies: readonly string[]): Promise<void>;
}

/** Which entries a replay takes: those of one subject, those quarantined for one reason. */
export interface ReplayFilter {
  subject?: string;
  reason?: Rejection['reason'];
}

/** The quarantine as a replay reads and empties it. */
export interface QuarantineReplaySource {
  /** How many entries the filter selects (for progress). */
  count(filter: ReplayFilter): Promise<number>;
  /** The entries the filter selects, a page at a time; removing entries already read does not disturb the paging. */
  entries(filter: ReplayFilter): AsyncIterable<QuarantineRecord[]>;
  /** Removes entries; returns those whose removal failed. */
  remove(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }>;
}

/** A message sent again, with the time it was first sent, so that the message sent last still wins. */
export interface OriginalMessage {
  body: string;
  sentAt: string;
}

/** The usage-events queue, as a replay sends to it. */
export interface ReplayQueue {
  /** Sends each message with its original send time; resolves with those the queue still refused after retries. */
  resend<M extends OriginalMessage>(messages: readonly M[]): Promise<{ failed: M[] }>;
}

/** A message received from the dead-letter queue. */
export interface DeadLetter extends OriginalMessage {
  messageId: string;
  /** What deleting or releasing this receipt of the message takes. */
  receipt: string;
}

/** The usage-events dead-letter queue. */
export interface DeadLetterQueue {
  /** Roughly how many messages wait (for progress). */
  approximateCount(): Promise<number>;
  /** Up to 10 messages, hidden from other receivers for the rest of the replay; none once the queue is empty. */
  receive(): Promise<DeadLetter[]>;
  /** Deletes messages; returns those whose deletion failed. */
  delete(messages: readonly DeadLetter[]): Promise<{ failed: DeadLetter[] }>;
  /** Makes messages visible again at once: those a replay leaves in the queue. */
  release(messages: readonly DeadLetter[]): Promise<void>;
}

/** A ledger item as the repair reads it: the image rollups are built from, and its version. */
export interface VersionedImage {
  image: LedgerImage;
  /** Changes with every write of the item: its message's sent time and content digest. */
  version: string;
}

export interface LedgerVersions {
  /** Every ledger item of the subject, read strongly consistent, in no particular order. */
  versions(subject: string): AsyncIterable<VersionedImage>;
}

/** A ledger stream record, with the versions of its images. */
export interface StreamedChange {
  shardId: string;
  change: LedgerChange;
  eventKey: string;
  oldVersion?: string;
  newVersion?: string;
}

export interface LedgerStreamReader {
  /** The stream's shards, parents before their children. */
  shards(): Promise<string[]>;
  /** The shard's records after a sequence number (from its oldest without one), up to what is there now. */
  changesAfter(shardId: string, after: string | undefined): AsyncIterable<StreamedChange>;
}

/** Which rollup items a snapshot reads: day items by local date, cycle, user and group items by cycle start. */
export interface RollupRange {
  fromDay: string;
  toDay: string;
  fromCycle: string;
  toCycle: string;
}

export interface RepairStore {
  readCheckpoints(shardId: string, lanes: readonly string[]): Promise<Map<string, string>>;
  /** The subject's day, cycle, user and group items in the range, read strongly consistent. */
  readSubjectRollups(subject: string, range: RollupRange): Promise<RollupRow[]>;
  parked(subject?: string): Promise<ParkedRecord[]>;
  /**
   * Adds the updates, or removes the parked records, in one transaction that holds only while `lease` is still
   * held (core/lease.ts). 'stale' (nothing written) if the lease is lost or a parked record is gone;
   * CycleItemsChangedError if a cycle item is not as planned (closed, or breakdown values admitted).
   */
  applyRepair(lease: { name: string; holder: string }, work: { updates?: readonly RollupUpdate[]; removeParked?: readonly ParkedRecord[] }): Promise<'committed' | 'stale'>;
}

/** One event as an activity item stores it (core/metering/activity.ts): short names, quantities as exact decimal text. */
export interface ActivityEvent {
  /** The event's time (UTC ISO with milliseconds). */
  t: string;
  /** Its usage type. */
  u: string;
  /** Its feature, when it names one. */
  f?: string;
  /** Its quantity, exact decimal text. */
  q: string;
  /** The credits the rate card charged for it, exact decimal text. */
  c?: string;
  /** Its identity (`eventKey`). */
  k: string;
}

/** One aggregate batch's events of one checkpoint lane of workspaces (core/metering/activity.ts). */
export interface ActivityLaneItem {
  lane: string;
  /** `A#<written at>#<shardId>#<first sequence number of the lane's records, padded>[#p<part>]`: sorts by write time. */
  sk: string;
  /** Each workspace's newest events of the batch, newest first (time, then event key). */
  events: Record<string, ActivityEvent[]>;
  /** Epoch seconds (the table's TTL attribute). */
  expiresAt: number;
}

/** A rolled-up event keeps when the lane item it came from expires (epoch seconds): it is shown no longer. */
export interface ActivityRolledEvent extends ActivityEvent {
  x: number;
}

/** A workspace's newest events as of its lane's last roll-up (core/metering/activity.ts). */
export interface ActivityRolled {
  subject: string;
  /** The sort key of the newest lane item rolled into it: a lane item after it was written later than any copy here. */
  through: string;
  /** Newest first (time, then event key). */
  events: ActivityRolledEvent[];
  /** Epoch seconds: when its last event expires. */
  expiresAt: number;
}

/** How far a lane's items have been rolled up. */
export interface ActivityMarker {
  lane: string;
  /** The newest lane item rolled; absent until one has been. */
  through?: string;
  /** Epoch milliseconds of the last roll-up's claim; 0 asks for the next one at once. */
  rolledAt: number;
}

/** Recent activity, written best effort beside the rollups (never in their transaction). */
export interface ActivityWriter {
  /** Writes (replaces) each lane item; returns those that still failed after retries, and the first error. */
  putLaneItems(items: readonly ActivityLaneItem[]): Promise<{ failed: ActivityLaneItem[]; error?: unknown }>;
  /** The markers of these lanes, read strongly consistent; a lane never rolled up has none. */
  markers(lanes: readonly string[]): Promise<Map<string, ActivityMarker>>;
  /** Takes the lane's next roll-up: stores `rolledAt` if its marker is still `seen` (or still missing); false if another process took it. */
  claimRoll(lane: string, seen: ActivityMarker | undefined, rolledAt: number): Promise<boolean>;
  /** Up to `max` of the lane's items with a sort key after `after` (all when absent) and before `before`, oldest first, read strongly consistent. */
  laneItems(lane: string, after: string | undefined, before: string, max: number): Promise<ActivityLaneItem[]>;
  /** These workspaces' rolling items, read strongly consistent; a workspace without one is absent. */
  rolledMany(subjects: readonly string[]): Promise<Map<string, ActivityRolled>>;
  /** Writes (replaces) each rolling item; returns those that still failed after retries, and the first error. */
  putRolled(items: readonly ActivityRolled[]): Promise<{ failed: ActivityRolled[]; error?: unknown }>;
  /** Ends the roll-up claimed at `claimedAt`: stores the marker if that claim still holds; false if it does not. */
  finishRoll(marker: ActivityMarker, claimedAt: number): Promise<boolean>;
}

export interface ActivityReader {
  marker(lane: string): Promise<ActivityMarker | undefined>;
  rolled(subject: string): Promise<ActivityRolled | undefined>;
  /** The lane's items with a sort key from `from` on, greatest (newest written) first, read page by page as iterated. */
  laneItemsSince(lane: string, from: string): AsyncIterable<ActivityLaneItem>;
}
