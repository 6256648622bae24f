import type { CycleSnapshot, Grant } from './billing/balance';
import type { Rejection } from './metering/envelope';
import type { CycleReport, CycleSummary } from './reporting/report-schema';
import type { Breakdown, Chunk, CycleState, LedgerChange, LedgerEntry, MemberKind, OwnerRun, ParkedRecord, RollupKind } from './metering/rollups';

/** What core needs from the outside world; adapters implement these, tests pass fakes. */

export interface Subject {
  id: string;
  plan: string;
  billingAnchorDay: number;
  timeZone: string;
  contacts: string[];
  name?: string;
  /** When the workspace was created; its first cycle close is of the cycle containing this instant. */
  createdAt?: string;
}

export interface SubjectDirectory {
  /** The subjects that exist among `ids`; unknown ids are absent from the map. */
  getMany(ids: readonly string[]): Promise<Map<string, Subject>>;
}

export interface SubjectStore extends SubjectDirectory {
  get(id: string): Promise<Subject | undefined>;
  put(subject: Subject): Promise<void>;
  list(): Promise<Subject[]>;
}

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
  /** Per owner (a bucket of subjects, `ownerOf`): the padded sequence number of its last record applied from this shard, if any. */
  readCheckpoints(shardId: string, owners: readonly string[]): Promise<Map<string, string>>;
  /**
   * Applies a chunk and moves each of its owners' checkpoints across its run, in one transaction;
   * 'already-applied' (and nothing written) if any owner's checkpoint had reached its run.
   */
  commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult>;
  /** What planning needs of each cycle item (`cycleItemKey`), read consistently; an item not stored yet is left out. */
  readCycleStates(keys: readonly CycleItemKey[]): Promise<Map<string, CycleState>>;
  /**
   * Parks one record DynamoDB refused on its own (`reason`) and moves its owner's checkpoint across it, in one
   * transaction; 'already-applied' (and nothing written) if the checkpoint had reached it.
   */
  park(shardId: string, run: OwnerRun, change: LedgerChange, reason: string): Promise<CommitResult>;
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

export interface Clock {
  now(): Date;
}

/** Frozen totals of one local day of a subject, written by the daily close. */
export interface DaySnapshot {
  subject: string;
  day: string;
  /** Total per usage type, exact decimal strings. */
  totals: Record<string, string>;
  frozenAt: string;
}

/** A change to a closed cycle's total after its snapshot was frozen (late events, corrections). */
export interface Adjustment {
  subject: string;
  cycleStart: string;
  usageType: string;
  /** Exact decimal string; negative when a correction lowered the total. */
  delta: string;
  /** The cycle's total in the rollups when the adjustment was recorded. */
  totalAfter: string;
  detectedAt: string;
}

/** Grants, closes and adjustments of subjects: everything a balance needs beside the rollups. */
export interface AccountStore {
  listGrants(subject: string): Promise<Grant[]>;
  /** Writes the grant unless one with its id exists; 'exists' then, and nothing changes. */
  putGrant(grant: Grant): Promise<'created' | 'exists'>;
  /** Every cycle snapshot of the subject, oldest first. */
  listCycleSnapshots(subject: string): Promise<CycleSnapshot[]>;
  /** Writes the snapshot unless the cycle already has one; returns the one stored (the first written wins). */
  freezeCycle(snapshot: CycleSnapshot): Promise<CycleSnapshot>;
  markCycleClosed(subject: string, cycleStart: string): Promise<void>;
  /** The latest closed day of the subject, if any. */
  lastDaySnapshot(subject: string): Promise<DaySnapshot | undefined>;
  /** Writes the day's snapshot unless it exists. */
  freezeDay(snapshot: DaySnapshot): Promise<void>;
  listAdjustments(subject: string): Promise<Adjustment[]>;
  putAdjustment(adjustment: Adjustment): Promise<void>;
  /** Notes that the summary of the cycles starting at `cycleStart` must be (re)written; noting it twice is once. */
  markSummaryDue(cycleStart: string): Promise<void>;
  /** Cycle starts whose summary is due, oldest first. */
  summariesDue(): Promise<string[]>;
  clearSummaryDue(cycleStart: string): Promise<void>;
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

/** One crossed threshold of one subject, usage type and cycle. */
export interface Alert {
  subject: string;
  usageType: string;
  cycleStart: string;
  cycleEnd: string;
  /** Percent of the cycle allowance. */
  threshold: number;
  /** True for the highest threshold an evaluation crossed; lower ones crossed with it are only recorded as passed. */
  notify: boolean;
  /** Use and allowance (L + S) when the crossing was seen, exact decimal strings. */
  used: string;
  allowance: string;
  recordedAt: string;
}

export interface AlertDelivery {
  alert: Alert;
  /** Contacts SES has accepted a message for. */
  sentTo: string[];
  /** Contacts a send was started for (a start without a `sentTo` entry is a send that may or may not have happened). */
  attempted: string[];
  status: 'pending' | 'sent' | 'no_contacts';
}

export interface AlertStore {
  /** Thresholds already recorded for the subject, usage type and cycle. */
  recorded(subject: string, usageType: string, cycleStart: string): Promise<Set<number>>;
  /** Writes the alert unless one exists for its subject, usage type, cycle and threshold; true if written. */
  record(alert: Alert): Promise<boolean>;
  delivery(alert: Pick<Alert, 'subject' | 'usageType' | 'cycleStart' | 'threshold'>): Promise<AlertDelivery | undefined>;
  markAttempted(alert: Alert, contact: string): Promise<void>;
  markSent(alert: Alert, contact: string): Promise<void>;
  markDone(alert: Alert, status: 'sent' | 'no_contacts'): Promise<void>;
}

export interface Email {
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface EmailSender {
  /** Sends one message; resolves with the provider's message id once it has accepted it. */
  send(email: Email): Promise<string>;
}

/** A stored API key: its hash, never the key. */
export interface ApiKeyRecord {
  id: string;
  /** SHA-256 of the key, hex. */
  hash: string;
  scope: 'workspace' | 'finance' | 'admin';
  subject?: string;
  name?: string;
  createdAt: string;
  revokedAt?: string;
}

export interface ApiKeyStore {
  get(id: string): Promise<ApiKeyRecord | undefined>;
  /** Writes the record unless one with its id exists. */
  put(record: ApiKeyRecord): Promise<void>;
  list(): Promise<ApiKeyRecord[]>;
  revoke(id: string, revokedAt: string): Promise<void>;
}

/** Where cycle reports and per-cycle summaries are kept (S3 in AWS and locally). */
export interface ReportStore {
  /** Writes (or rewrites) the subject's report of its cycle; resolves with its key. */
  putCycleReport(report: CycleReport): Promise<string>;
  getCycleReport(cycleStart: string, subject: string): Promise<CycleReport | undefined>;
  /** Every subject's report of the cycles that start at `cycleStart`, read as they are consumed. */
  listCycleReports(cycleStart: string): AsyncIterable<{ key: string; report: CycleReport }>;
  putCycleSummary(summary: CycleSummary): Promise<string>;
}
