/**
 * One contender of bench/export/export-memory.ts, run alone in a fresh process so that the peak memory it
 * reports is its own. Usage: export-run <streamed-json | streamed-jsonl | buffered>, with the stand-ins'
 * endpoints, the table and bucket names, and BENCH_EXPORT_FROM / BENCH_EXPORT_TO in the environment.
 * Prints one line, `RESULT {json}` (see RunReport), and exits 0 even when the export fails: a failure
 * is a result. A crash (such as running out of heap) prints nothing, and the parent reports it.
 */
import { randomBytes } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { appContext } from '../../functions/adapters/app-context';
import { requireEnv } from '../../functions/adapters/dynamodb';
import { BUCKETS } from '../../functions/contract/resources';
import type { Principal } from '../../functions/core/access/api-keys';
import { type ExportRequest, exportRequestSchema, requestExport, runExport, subjectBuckets } from '../../functions/core/reporting/exports';
import { type ExportBucket, REPORT_SCHEMA_VERSION } from '../../functions/core/reporting/report-schema';
import { MODES, type Mode, RANGE_ENV, RESULT_PREFIX, type RunReport } from './export-protocol';

const SAMPLE_MS = 50;
const SERIES_EVERY = 20;
const MB = 1024 * 1024;
/** An admin key: an export of every workspace, as finance would ask for. */
const PRINCIPAL: Principal = { keyId: 'bench', scope: 'admin' };

const mode = process.argv[2] as Mode;
if (!MODES.includes(mode)) throw new Error(`usage: export-run <${MODES.join(' | ')}>`);

const peak = { rss: 0, heapUsed: 0, samples: 0 };
const series: RunReport['series'] = [];
let started = performance.now();
const sample = () => {
  const usage = process.memoryUsage();
  peak.rss = Math.max(peak.rss, usage.rss);
  peak.heapUsed = Math.max(peak.heapUsed, usage.heapUsed);
  if (peak.samples++ % SERIES_EVERY === 0) {
    const mb = (bytes: number) => Math.round((10 * bytes) / MB) / 10;
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = usage;
    series.push({ s: Math.round((performance.now() - started) / 100) / 10, rss: mb(rss), heapUsed: mb(heapUsed), heapTotal: mb(heapTotal), external: mb(external), arrayBuffers: mb(arrayBuffers) });
  }
};
sample();
const sampler = setInterval(sample, SAMPLE_MS);

const range = { from: requireEnv(RANGE_ENV.from), to: requireEnv(RANGE_ENV.to), granularity: 'hour' as const };
// The adapters the export Lambda uses, built from the environment as there; built before the clock starts.
const deps = {
  exports: appContext.exports(),
  subjects: appContext.subjects(),
  rollups: appContext.rollups(),
  files: appContext.exportFiles(),
  clock: appContext.clock(),
  prefix: BUCKETS.reports.exportsPrefix,
};

const startRss = process.memoryUsage().rss;
started = performance.now();
let outcome: Pick<RunReport, 'ok' | 'error' | 'key' | 'bucketCount' | 'bytes'>;
try {
  outcome = { ok: true, ...(mode === 'buffered' ? await buffered() : await streamed(mode === 'streamed-json' ? 'json' : 'jsonl')) };
} catch (error) {
  outcome = { ok: false, error: (error as Error).message };
}
const seconds = (performance.now() - started) / 1000;
sample();
clearInterval(sampler);

const report: RunReport = {
  mode,
  ...outcome,
  seconds,
  startRssMb: startRss / MB,
  peakRssSampledMb: peak.rss / MB,
  // Reported in kilobytes (KiB) on Linux.
  maxRssMb: (process.resourceUsage().maxRSS * 1024) / MB,
  peakHeapUsedMb: peak.heapUsed / MB,
  samples: peak.samples,
  series,
};
process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(report)}\n`);

/** This pipeline: a job, as the API would create it, run by the export function's own code. */
async function streamed(format: ExportRequest['format']) {
  const request = exportRequestSchema.parse({ ...range, format });
  const { id } = await requestExport(request, PRINCIPAL, deps);
  const job = await runExport(id, deps);
  if (job?.status !== 'ready' || !job.key) throw new Error(job?.error?.message ?? `export ${id} ended ${job?.status ?? 'missing'}`);
  return { key: job.key, bucketCount: job.bucketCount, bytes: job.bytes };
}

/**
 * The obvious design it replaces: the same buckets from the same reader, gathered into one array,
 * serialized as one document and stored with one PutObject. Same header and order as the streamed file.
 */
async function buffered() {
  const request = exportRequestSchema.parse({ ...range, format: 'json' });
  const subjects = (await deps.subjects.list()).sort((a, b) => (a.id < b.id ? -1 : 1));
  const buckets: ExportBucket[] = [];
  for (const subject of subjects) for await (const bucket of subjectBuckets(subject, request, deps.rollups)) buckets.push(bucket);
  const id = `exp_${randomBytes(12).toString('hex')}`;
  const document = {
    schemaVersion: REPORT_SCHEMA_VERSION,
    kind: 'usage-export',
    id,
    generatedAt: deps.clock.now().toISOString(),
    from: request.from,
    to: request.to,
    granularity: request.granularity,
    subjects: subjects.map((s) => s.id),
    buckets,
  };
  const body = JSON.stringify(document);
  const key = `${deps.prefix}${id}.json`;
  await appContext.s3().send(new PutObjectCommand({ Bucket: appContext.reportsBucket(), Key: key, Body: body, ContentType: 'application/json' }));
  return { key, bucketCount: buckets.length, bytes: Buffer.byteLength(body) };
}
