import type { CycleReport, CycleSummary } from './report-schema';

/** Where reports are written and read. */

/** Where cycle reports and per-cycle summaries are kept (S3 in AWS and locally). */
export interface ReportStore {
  /** Writes (or rewrites) the subject's report of its cycle; resolves with its key. */
  putCycleReport(report: CycleReport): Promise<string>;
  getCycleReport(cycleStart: string, subject: string): Promise<CycleReport | undefined>;
  /** Every subject's report of the cycles that start at `cycleStart`, read as they are consumed. */
  listCycleReports(cycleStart: string): AsyncIterable<{ key: string; report: CycleReport }>;
  putCycleSummary(summary: CycleSummary): Promise<string>;
}
