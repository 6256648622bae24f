import { DeleteMessageBatchCommand, type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { MAX_PAYLOAD_BYTES } from './lambda-context';

/**
 * Behaves like Lambda's SQS event source mapping: gathers up to `batchSize` messages, or what fits in
 * Lambda's 6 MB payload, or until the batching window closes, invokes the handler, deletes what succeeded. Failed messages stay
 * invisible until the visibility timeout ends, and the queue's redrive policy moves a message to
 * the dead-letter queue after maxReceiveCount receives.
 */
export interface SqsPollerOptions {
  sqs: SQSClient;
  queueUrl: string;
  queueArn: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  /** Concurrent batches, as Lambda runs several pollers per queue. */
  concurrency: number;
  invoke: (event: SQSEvent) => Promise<SQSBatchResponse>;
  onError: (error: unknown) => void;
}

export class SqsPoller {
  private running = false;
  private busy = 0;
  private emptyPolls = 0;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: SqsPollerOptions) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.options.concurrency }, () => this.loop());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.allSettled(this.loops);
  }

  /** True when no batch is in flight and every loop's last receive came back empty. */
  get idle(): boolean {
    return this.busy === 0 && this.emptyPolls >= this.options.concurrency;
  }

  private async loop(): Promise<void> {
    // Records received but left out of a full batch: still invisible to others, they open the next one.
    const carried: SQSRecord[] = [];
    while (this.running) {
      try {
        const records = await this.gather(carried);
        if (records.length === 0) continue;
        this.busy += 1;
        try {
          await this.deliver(records);
        } finally {
          this.busy -= 1;
        }
      } catch (error) {
        this.options.onError(error);
        await sleep(500);
      }
    }
  }

  /** Up to `batchSize` messages whose invocation stays within Lambda's 6 MB payload, as Lambda's own batches do. */
  private async gather(carried: SQSRecord[]): Promise<SQSRecord[]> {
    const { sqs, queueUrl, batchSize, maxBatchingWindowMs } = this.options;
    const batch: SQSRecord[] = [];
    let bytes = 1024; // `{"Records":[…]}`, generously
    const add = (received: readonly SQSRecord[]) => {
      for (const record of received) {
        const size = Buffer.byteLength(JSON.stringify(record)) + 1;
        if (carried.length > 0 || (batch.length > 0 && bytes + size > MAX_PAYLOAD_BYTES)) carried.push(record);
        else {
          batch.push(record);
          bytes += size;
        }
      }
    };
    if (carried.length > 0) add(carried.splice(0));
    if (carried.length > 0 || batch.length >= batchSize) return batch;
    let closesAt = batch.length > 0 ? Date.now() + maxBatchingWindowMs : Number.POSITIVE_INFINITY; // the window opens with the first message
    while (this.running && batch.length < batchSize && carried.length === 0 && Date.now() < closesAt) {
      const { Messages = [] } = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: Math.min(10, batchSize - batch.length),
          WaitTimeSeconds: batch.length === 0 ? 1 : 0,
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
        }),
      );
      if (batch.length === 0 && Messages.length === 0) {
        this.emptyPolls = Math.min(this.emptyPolls + 1, this.options.concurrency);
        return batch;
      }
      if (batch.length === 0) closesAt = Date.now() + maxBatchingWindowMs;
      this.emptyPolls = 0;
      add(Messages.map((m) => this.toRecord(m)));
      if (Messages.length === 0) await sleep(Math.min(50, Math.max(0, closesAt - Date.now())));
    }
    return batch;
  }

  private async deliver(records: SQSRecord[]): Promise<void> {
    const event: SQSEvent = { Records: records };
    let failed: Set<string>;
    try {
      const response = await this.options.invoke(event);
      failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch (error) {
      // A thrown invocation fails the whole batch, as in Lambda.
      this.options.onError(error);
      return;
    }
    const done = records.filter((r) => r.messageId && !failed.has(r.messageId));
    for (let i = 0; i < done.length; i += 10) {
      await this.options.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.options.queueUrl,
          Entries: done.slice(i, i + 10).map((r, j) => ({ Id: String(j), ReceiptHandle: r.receiptHandle })),
        }),
      );
    }
  }

  private toRecord(message: Message): SQSRecord {
    const a = message.Attributes ?? {};
    return {
      messageId: message.MessageId ?? '',
      receiptHandle: message.ReceiptHandle ?? '',
      body: message.Body ?? '',
      attributes: {
        ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
        SentTimestamp: a.SentTimestamp ?? String(Date.now()),
        SenderId: a.SenderId ?? 'local',
        ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      },
      messageAttributes: Object.fromEntries(
        Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
          name,
          { dataType: value.DataType ?? 'String', ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}) },
        ]),
      ),
      md5OfBody: message.MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.options.queueArn,
      awsRegion: 'local',
    };
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
