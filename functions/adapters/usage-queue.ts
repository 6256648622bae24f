import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
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
    for (let i = 0; i < bodies.length; i += MAX_BATCH) {
      let entries = bodies.slice(i, i + MAX_BATCH).map((MessageBody, j) => ({ Id: String(j), MessageBody }));
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
    for (let i = 0; i < messages.length; i += MAX_BATCH) {
      const batch = messages.slice(i, i + MAX_BATCH);
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

export function createSqsClient(): SQSClient {
  return withoutSdkLogging(new SQSClient({ maxAttempts: 8 }));
}
