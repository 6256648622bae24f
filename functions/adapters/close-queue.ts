import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { CloseQueue } from '../core/billing/closes';
import { backoff } from './dynamodb';

/** SQS takes at most 10 messages per SendMessageBatch. */
const MAX_BATCH = 10;
/** Batches in flight at once: a month close of 1,000,000 workspaces is 100,000 of them. */
const BATCHES_IN_FLIGHT = 16;
const MAX_ATTEMPTS = 8;

/** The closes queue: one message per workspace id, so that a failed close is retried (and dead-lettered) alone. */
export class SqsCloseQueue implements CloseQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(subjectIds: readonly string[]): Promise<void> {
    const batches: string[][] = [];
    for (let i = 0; i < subjectIds.length; i += MAX_BATCH) batches.push(subjectIds.slice(i, i + MAX_BATCH));
    let next = 0;
    const sender = async () => {
      for (let batch = batches[next++]; batch; batch = batches[next++]) await this.sendBatch(batch);
    };
    await Promise.all(Array.from({ length: Math.min(BATCHES_IN_FLIGHT, batches.length) }, sender));
  }

  /** Entries SQS failed on its side are sent again with backoff; a workspace sent twice is closed once (its claim). */
  private async sendBatch(ids: string[]): Promise<void> {
    let entries = ids.map((MessageBody, j) => ({ Id: String(j), MessageBody }));
    for (let attempt = 0; entries.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`the closes queue failed ${entries.length} messages ${MAX_ATTEMPTS} times`);
      if (attempt > 0) await backoff(attempt);
      const { Failed = [] } = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }));
      const failed = new Set(Failed.map((f) => f.Id));
      entries = entries.filter((e) => failed.has(e.Id));
    }
  }
}
