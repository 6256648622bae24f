import { SQSClient, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import type { UsageQueue } from '../core/ports';
import { backoff } from './dynamodb';

const MAX_BATCH = 10;
const MAX_ATTEMPTS = 5;

/** The usage-events queue; entries SQS reports as failed are sent again with backoff. */
export class SqsUsageQueue implements UsageQueue {
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
}

export function createSqsClient(): SQSClient {
  return new SQSClient({ maxAttempts: 8 });
}
