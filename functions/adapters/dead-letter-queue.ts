import { ChangeMessageVisibilityBatchCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DeadLetter, DeadLetterQueue } from '../core/metering/metering-ports';
import { ORIGINAL_SENT_AT_ATTRIBUTE } from './usage-queue';

/** Long enough for a replay of a full DLQ; a replay that dies leaves its messages hidden this long at most. */
const HIDE_SECONDS = 15 * 60;
const MAX_BATCH = 10;

/** The usage-events dead-letter queue, as a replay drains it. */
export class SqsDeadLetterQueue implements DeadLetterQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async approximateCount(): Promise<number> {
    const { Attributes } = await this.client.send(new GetQueueAttributesCommand({ QueueUrl: this.queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
    return Number(Attributes?.ApproximateNumberOfMessages ?? 0);
  }

  async receive(): Promise<DeadLetter[]> {
    // A short long poll asks every SQS server, so an empty answer means the queue has nothing visible.
    const { Messages = [] } = await this.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: MAX_BATCH,
        WaitTimeSeconds: 1,
        VisibilityTimeout: HIDE_SECONDS,
        MessageSystemAttributeNames: ['SentTimestamp'],
        MessageAttributeNames: [ORIGINAL_SENT_AT_ATTRIBUTE],
      }),
    );
    return Messages.map((message) => {
      const sent = Number(message.Attributes?.SentTimestamp);
      // A message replayed before and dead-lettered again keeps its first send time.
      const original = message.MessageAttributes?.[ORIGINAL_SENT_AT_ATTRIBUTE]?.StringValue;
      return {
        messageId: message.MessageId ?? '',
        receipt: message.ReceiptHandle ?? '',
        body: message.Body ?? '',
        sentAt: original ?? new Date(Number.isFinite(sent) ? sent : Date.now()).toISOString(),
      };
    });
  }

  async delete(messages: readonly DeadLetter[]): Promise<{ failed: DeadLetter[] }> {
    const failed: DeadLetter[] = [];
    for (let i = 0; i < messages.length; i += MAX_BATCH) {
      const batch = messages.slice(i, i + MAX_BATCH);
      try {
        const { Failed = [] } = await this.client.send(new DeleteMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: batch.map((m, j) => ({ Id: String(j), ReceiptHandle: m.receipt })) }));
        failed.push(...Failed.map((f) => batch[Number(f.Id)]).filter((m): m is DeadLetter => m !== undefined));
      } catch {
        failed.push(...batch); // the SDK has retried already
      }
    }
    return { failed };
  }

  async release(messages: readonly DeadLetter[]): Promise<void> {
    for (let i = 0; i < messages.length; i += MAX_BATCH) {
      const batch = messages.slice(i, i + MAX_BATCH);
      // Best effort: a message not released becomes visible by itself when its hiding time ends.
      await this.client
        .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: this.queueUrl, Entries: batch.map((m, j) => ({ Id: String(j), ReceiptHandle: m.receipt, VisibilityTimeout: 0 })) }))
        .catch(() => undefined);
    }
  }
}
