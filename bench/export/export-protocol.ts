/** What bench/export/export-memory.ts and its child bench/export/export-run.ts agree on: modes, environment, report. */

export const MODES = ['streamed-json', 'streamed-jsonl', 'buffered'] as const;
export type Mode = (typeof MODES)[number];

/** The export's range, in the child's environment beside the stand-ins' endpoints and the resource names. */
export const RANGE_ENV = { from: 'BENCH_EXPORT_FROM', to: 'BENCH_EXPORT_TO' } as const;

/** The child's one line of output: this prefix, then the RunReport as JSON. */
export const RESULT_PREFIX = 'RESULT ';

export interface RunReport {
  mode: Mode;
  ok: boolean;
  error?: string;
  /** Where the file is, and what the contender says it holds. */
  key?: string;
  bucketCount?: number;
  bytes?: number;
  /** The export alone, modules already loaded and clients built. */
  seconds: number;
  /** RSS before the export starts: the floor (Node, the SDK, the project's modules) under the peak. */
  startRssMb: number;
  /** Highest RSS seen by sampling process.memoryUsage() every 50 ms. */
  peakRssSampledMb: number;
  /** The kernel's high-water mark for the whole process (getrusage ru_maxrss): no spike escapes it. */
  maxRssMb: number;
  /** Highest heapUsed seen by the same sampling. */
  peakHeapUsedMb: number;
  samples: number;
  /** Once a second: seconds since the export started and memory in MiB, to show whether it levels off or climbs. */
  series: { s: number; rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number }[];
}
