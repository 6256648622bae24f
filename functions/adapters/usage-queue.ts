import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { MAX_MESSAGE_BYTES } from '../core/envelope';
import type { OriginalMessage, ReplayQueue, UsageQueue } from '../core/ports';
import { backoff } from './dynamodb';
import { withoutSdkLogging } from './sdk-clients';

const MAX_BATCH = 10;
const MAX_ATTEMPTS = 5;

/**
 * The message attribute a replayed message carries: when it was first sent. Ingest takes it for the
 * message's send time (never later than SentTimestamp), so a replayed stale copy still loses to its correction.
 */
export const ORIGINAL_SENT_AT_ATTRIBUTE = 'originalSentAt';

/** The usage-events queue; entries SQS reports as failed are sent again with backoff. */
export class SqsUsageQueue implements UsageQueue, ReplayQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async sendAll(bodies: readonly string[]): Promise<void> {
    for (const batch of sendBatches(bodies, (body) => body)) {
      let entries = batch.map((MessageBody, j) => ({ Id: String(j), MessageBody }));
      for (let attempt = 0; entries.length > 0; attempt++) {
        if (attempt >= MAX_ATTEMPTS) throw new Error(`the usage queue refused ${entries.length} messages after ${MAX_ATTEMPTS} attempts`);
        if (attempt > 0) await backoff(attempt);
        const { Failed = [] } = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }));
        const failed = new Set(Failed.map((f) => f.Id));
        entries = entries.filter((e) => failed.has(e.Id));
      }
    }
  }

  async resend<M extends OriginalMessage>(messages: readonly M[]): Promise<{ failed: M[] }> {
    const failed: M[] = [];
    for (const batch of sendBatches(messages, (message) => message.body)) {
      let pending = batch.map((message, j) => ({ message, entry: { Id: String(j), MessageBody: message.body, MessageAttributes: { [ORIGINAL_SENT_AT_ATTRIBUTE]: { DataType: 'String', StringValue: message.sentAt } } } }));
      for (let attempt = 0; attempt < MAX_ATTEMPTS && pending.length > 0; attempt++) {
        if (attempt > 0) await backoff(attempt);
        try {
          const { Failed = [] } = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: pending.map((p) => p.entry) }));
          const refused = new Set(Failed.map((f) => f.Id));
          pending = pending.filter((p) => refused.has(p.entry.Id));
        } catch {
          // The SDK has retried already; the next attempt may still get through.
        }
      }
      failed.push(...pending.map((p) => p.message));
    }
    return { failed };
  }
}

/** SendMessageBatch takes at most 10 entries and 1 MiB in all: consecutive groups within both (a lone larger entry is sent alone). */
export function sendBatches<T>(items: readonly T[], bodyOf: (item: T) => string): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(bodyOf(item), 'utf8');
    if (batch.length === MAX_BATCH || (batch.length > 0 && bytes + size > MAX_MESSAGE_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

export function createSqsClient(): SQSClient {
  return withoutSdkLogging(new SQSClient({ maxAttempts: 8 }));
}
