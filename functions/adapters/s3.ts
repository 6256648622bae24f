import { Readable } from 'node:stream';
import { GetObjectCommand, NoSuchKey, PutObjectCommand, paginateListObjectsV2, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { BUCKETS, PRESIGNED_URL_SECONDS } from '../contract/resources';
import type { CycleReport, CycleSummary } from '../core/reporting/report-schema';
import type { FileWriter, ReportStore } from '../core/reporting/reporting-ports';
import { withoutSdkLogging } from './sdk-clients';

/**
 * S3: cycle reports, summaries and export files in one bucket. The endpoint comes from the SDK's own
 * AWS_ENDPOINT_URL_S3 (set by the local runtime); a local endpoint is a host and port, so it is addressed path-style.
 */
export function createS3Client(): S3Client {
  return withoutSdkLogging(new S3Client({ maxAttempts: 8, forcePathStyle: Boolean(process.env.AWS_ENDPOINT_URL_S3) }));
}

const { reportsPrefix } = BUCKETS.reports;
export const cycleReportKey = (cycleStart: string, subject: string) => `${reportsPrefix}${cycleStart}/${subject}.json`;
/** Subject ids start with a letter or digit, so the summary's name cannot be a subject's. */
export const cycleSummaryKey = (cycleStart: string) => `${reportsPrefix}${cycleStart}/_summary.json`;

/** Reports read at once for a summary: 64 at ~30 ms each reads a million in about 8 minutes, inside the scheduler's 15. */
const READS_IN_FLIGHT = 64;

export class S3Reports implements ReportStore {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async putCycleReport(report: CycleReport): Promise<string> {
    return this.putJson(cycleReportKey(report.cycle.start, report.subject.id), report);
  }

  async getCycleReport(cycleStart: string, subject: string): Promise<CycleReport | undefined> {
    return this.getJson<CycleReport>(cycleReportKey(cycleStart, subject));
  }

  async *listCycleReports(cycleStart: string): AsyncIterable<{ key: string; report: CycleReport }> {
    for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: `${reportsPrefix}${cycleStart}/` })) {
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key && object.Key !== cycleSummaryKey(cycleStart) ? [object.Key] : []));
      // A few reads in flight at a time; only those reports are held.
      for (let i = 0; i < keys.length; i += READS_IN_FLIGHT) {
        const batch = keys.slice(i, i + READS_IN_FLIGHT);
        const reports = await Promise.all(batch.map((key) => this.getJson<CycleReport>(key)));
        for (const [j, report] of reports.entries()) if (report) yield { key: batch[j] ?? '', report };
      }
    }
  }

  async putCycleSummary(summary: CycleSummary): Promise<string> {
    return this.putJson(cycleSummaryKey(summary.cycleStart), summary);
  }

  private async putJson(key: string, value: unknown): Promise<string> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: `${JSON.stringify(value, null, 2)}\n`, ContentType: 'application/json' }));
    return key;
  }

  private async getJson<T>(key: string): Promise<T | undefined> {
    try {
      const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return JSON.parse((await Body?.transformToString('utf8')) ?? 'null') as T;
    } catch (error) {
      if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  }
}

/** A short-lived GET URL for one object: a plain `fetch` downloads it, no credentials needed. */
export function presignDownload(client: S3Client, bucket: string, key: string, filename: string): Promise<string> {
  return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key, ResponseContentDisposition: `attachment; filename="${filename}"` }), {
    expiresIn: PRESIGNED_URL_SECONDS,
  });
}

/** Multipart parts of 8 MiB, two in flight: an upload holds about 16 MiB whatever the file's size. */
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

/** Streams generated text into one object with a multipart upload, never holding the whole file. */
export class S3FileWriter implements FileWriter {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async write(key: string, contentType: string, chunks: AsyncIterable<string>): Promise<{ bytes: number }> {
    let bytes = 0;
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of chunks) {
          const buffer = Buffer.from(chunk, 'utf8');
          bytes += buffer.length;
          yield buffer;
        }
      })(),
    );
    const upload = new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: counted, ContentType: contentType }, partSize: PART_BYTES, queueSize: PARTS_IN_FLIGHT });
    await upload.done();
    return { bytes };
  }
}
