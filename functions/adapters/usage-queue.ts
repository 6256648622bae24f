import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DependencyError } from '../core/errors';
import { MAX_MESSAGE_BYTES } from '../core/metering/envelope';
import type { OriginalMessage, ReplayQueue, UsageQueue } from '../core/metering/metering-ports';
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

  /**
   * Sends every body; an entry SQS failed on its side is sent again with backoff. What SQS refuses as the
   * sender's fault (e.g. InvalidMessageContents) is not sent again: 502 queue_refused. A queue that cannot
   * be reached, or keeps failing entries, is 503 queue_unavailable. Either way the messages sent before
   * stay queued, and sending the same events again counts each once (the ledger keeps one per identity).
   */
  async sendAll(bodies: readonly string[]): Promise<void> {
    const retry = 'events already queued count once when sent again';
    for (const batch of sendBatches(bodies, (body) => body)) {
      let entries = batch.map((MessageBody, j) => ({ Id: String(j), MessageBody }));
      for (let attempt = 0; entries.length > 0; attempt++) {
        if (attempt >= MAX_ATTEMPTS) throw new DependencyError('queue_unavailable', `the usage queue failed ${entries.length} messages ${MAX_ATTEMPTS} times; retry later (${retry})`, true);
        if (attempt > 0) await backoff(attempt);
        const { Failed = [] } = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries })).catch((error: unknown) => {
          throw new DependencyError('queue_unavailable', `the usage queue could not be reached (${errorName(error)}); retry later (${retry})`, true);
        });
        const refused = Failed.find((f) => f.SenderFault);
        if (refused) throw new DependencyError('queue_refused', `the usage queue refused a message: ${refused.Code ?? 'unknown'}: ${refused.Message ?? 'no reason given'} (${retry})`, false);
        const failed = new Set(Failed.map((f) => f.Id));
        entries = entries.filter((e) => failed.has(e.Id));
      }
    }
  }

  /**
   * Sends messages back with the time each was first sent. SQS counts message attributes in its 1 MiB, so a
   * body that fits alone but not with the attribute is sent as its events in two or more messages (each event
   * counts on its own; a part sent twice counts once). A message fails if any of its parts does.
   */
  async resend<M extends OriginalMessage>(messages: readonly M[]): Promise<{ failed: M[] }> {
    const failed = new Set<M>();
    const parts = messages.flatMap((message) => withAttributeRoom(message.body).map((body) => ({ message, body })));
    for (const batch of sendBatches(parts, (part) => part.body + ATTRIBUTE_OVERHEAD)) {
      let pending = batch.map((part, j) => ({
        message: part.message,
        entry: { Id: String(j), MessageBody: part.body, MessageAttributes: { [ORIGINAL_SENT_AT_ATTRIBUTE]: { DataType: 'String', StringValue: part.message.sentAt } } },
      }));
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
      for (const { message } of pending) failed.add(message);
    }
    return { failed: messages.filter((message) => failed.has(message)) };
  }
}

/** The SDK's name for a service error (e.g. QueueDoesNotExist), never its message or stack. */
const errorName = (error: unknown) => (error instanceof Error ? error.name : 'unknown error');

/**
 * What the originalSentAt attribute adds to a message's size as SQS counts it (name, type and value; the
 * value is an ISO instant of 24 characters), padded for an instant with more digits.
 */
const ATTRIBUTE_OVERHEAD = 'x'.repeat(ORIGINAL_SENT_AT_ATTRIBUTE.length + 'String'.length + 32);

/**
 * A body as messages that each leave room for the attribute: an array of events is split in halves until
 * they fit; a body that cannot be split stays whole. The events' text is kept as it was (never parsed and
 * written again, which would round large numbers).
 */
export function withAttributeRoom(body: string): string[] {
  if (Buffer.byteLength(body, 'utf8') + ATTRIBUTE_OVERHEAD.length <= MAX_MESSAGE_BYTES) return [body];
  const events = arrayElements(body);
  if (!events || events.length < 2) return [body];
  const half = Math.ceil(events.length / 2);
  return [...withAttributeRoom(`[${events.slice(0, half).join(',')}]`), ...withAttributeRoom(`[${events.slice(half).join(',')}]`)];
}

/** The text of each element of a JSON array, or undefined if the text is not an array. */
function arrayElements(text: string): string[] | undefined {
  const json = text.trim();
  if (!json.startsWith('[') || !json.endsWith(']')) return undefined;
  const elements: string[] = [];
  let depth = 0;
  let inString = false;
  let start = 1;
  for (let i = 1; i < json.length - 1; i++) {
    const c = json[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      elements.push(json.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = json.slice(start, -1).trim();
  if (last.length > 0) elements.push(last);
  return elements;
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
