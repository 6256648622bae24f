import type { LedgerImage } from '../metering/rollups';
import type { CycleReport, CycleSummary } from './report-schema';

/** What reporting needs from the outside world: the report store, the ledger as the audit scans it, the files exports write. */

/** Where cycle reports and per-cycle summaries are kept (S3 in AWS and locally). */
export interface ReportStore {
  /** Writes (or rewrites) the subject's report of its cycle; resolves with its key. */
  putCycleReport(report: CycleReport): Promise<string>;
  getCycleReport(cycleStart: string, subject: string): Promise<CycleReport | undefined>;
  /** Every subject's report of the cycles that start at `cycleStart`, read as they are consumed. */
  listCycleReports(cycleStart: string): AsyncIterable<{ key: string; report: CycleReport }>;
  putCycleSummary(summary: CycleSummary): Promise<string>;
}

export interface LedgerScanner {
  /** Every event in the ledger (of one subject, when given), in no particular order. */
  scan(subject?: string): AsyncIterable<LedgerImage>;
}

/** Streams text into one object; resolves once the whole object is stored. */
export interface FileWriter {
  write(key: string, contentType: string, chunks: AsyncIterable<string>): Promise<{ bytes: number }>;
}
