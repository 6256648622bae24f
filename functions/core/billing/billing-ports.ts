import type { CycleSnapshot, Grant } from './balance';

/** What billing needs from the outside world: the account store of grants, snapshots and adjustments. */

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

/** A subject's grants and cycle snapshots: what a live balance reads beside the rollups. */
export interface BalanceRecords {
  grants: Grant[];
  snapshots: CycleSnapshot[];
}

/** Grants, closes and adjustments of subjects: everything a balance needs beside the rollups. */
export interface AccountStore {
  listGrants(subject: string): Promise<Grant[]>;
  /**
   * The grants and cycle snapshots a live view (quotas, summary, an alert's email) reads. A store may answer
   * from what it read a short while ago (the DynamoDB store: at most 30 s of its clock), never from before
   * its own last write for that subject; closes and reports read `listGrants` and `listCycleSnapshots`.
   */
  balanceRecords(subject: string): Promise<BalanceRecords>;
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
  /**
   * Notes that the summary of the cycles starting at `cycleStart` must be (re)written, counted in a shard of
   * its own per group of subjects, so that a month close of every workspace spreads these writes.
   */
  markSummaryDue(cycleStart: string, subject: string): Promise<void>;
  /** Cycle starts whose summary is due, oldest first, each with the counts read (what `clearSummaryDue` compares). */
  summariesDue(): Promise<SummaryDue[]>;
  /** Clears what `due` read, except a shard noted again since: its summary stays due. */
  clearSummaryDue(due: SummaryDue): Promise<void>;
}

/** A cycle start whose summary is due, and how many times each shard had noted it when read. */
export interface SummaryDue {
  cycleStart: string;
  marks: Record<string, number>;
}
