import type { Rejection } from './envelope';
import type { Chunk, LedgerEntry, RollupKind } from './rollups';

/** What core needs from the outside world; adapters implement these, tests pass fakes. */

export interface Subject {
  id: string;
  plan: string;
  billingAnchorDay: number;
  timeZone: string;
  contacts: string[];
  name?: string;
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
  /** Writes every entry (one item per identity); returns those that still failed after retries. */
  putAll(entries: readonly LedgerEntry[]): Promise<{ failed: LedgerEntry[] }>;
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
}

export interface Quarantine {
  putAll(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }>;
  list(filter: { subject?: string; limit: number }): Promise<QuarantineRecord[]>;
}

export type CommitResult = 'committed' | 'already-applied';

export interface RollupWriter {
  /** The padded sequence number of the last record applied on this shard, if any. */
  readCheckpoint(shardId: string): Promise<string | undefined>;
  /** Applies a chunk and advances the checkpoint in one transaction; 'already-applied' if the checkpoint had passed it. */
  commitChunk(shardId: string, chunk: Chunk): Promise<CommitResult>;
}

export interface RollupRow {
  usageType: string;
  kind: RollupKind;
  period: string;
  total: string;
  counters: Record<string, string>;
}

export interface RollupReader {
  /** Rollup items of one subject whose period is in [fromPeriod, toPeriod] (inclusive, string order). */
  query(subject: string, kind: RollupKind, fromPeriod: string, toPeriod: string): Promise<RollupRow[]>;
}

export interface Clock {
  now(): Date;
}
