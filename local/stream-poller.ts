import {
  DescribeStreamCommand,
  type DynamoDBStreamsClient,
  ExpiredIteratorException,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record,
  type Shard,
  TrimmedDataAccessException,
} from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import type { LedgerStreamEvent } from '../functions/aggregate';
import { MAX_PAYLOAD_BYTES } from './lambda-context';
import { sleep } from './sqs-poller';

/**
 * Behaves like Lambda's DynamoDB stream event source mapping with a tumbling window: one batch
 * per shard at a time, in order; a child shard starts after its parent is finished; a reported
 * failure retries from the failed record; a thrown error retries with the batch bisected.
 */
export interface StreamPollerOptions {
  streams: DynamoDBStreamsClient;
  streamArn: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  tumblingWindowSeconds: number;
  /** The event carries `shardId` and window fields, as with a tumbling window; a function without one ignores them. */
  invoke: (event: LedgerStreamEvent) => Promise<DynamoDBBatchResponse>;
  onError: (error: unknown) => void;
}

const POLL_MS = 100;

export class StreamPoller {
  private running = false;
  private readonly finished = new Set<string>();
  private readonly started = new Set<string>();
  private readonly workers: Promise<void>[] = [];
  private readonly caughtUp = new Map<string, boolean>();
  private discovery: Promise<void> | undefined;

  constructor(private readonly options: StreamPollerOptions) {}

  start(): void {
    this.running = true;
    this.discovery = this.discover();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.discovery;
    await Promise.allSettled(this.workers);
  }

  /** True when every open shard's last read was empty and nothing is being delivered. */
  get idle(): boolean {
    return this.started.size > 0 && [...this.caughtUp.values()].every(Boolean);
  }

  private async discover(): Promise<void> {
    while (this.running) {
      try {
        const shards = await this.listShards();
        const known = new Set(shards.map((s) => s.ShardId));
        for (const shard of shards) {
          const id = shard.ShardId;
          if (!id || this.started.has(id)) continue;
          const parent = shard.ParentShardId;
          if (parent && known.has(parent) && !this.finished.has(parent)) continue; // parent first, as Lambda does
          this.started.add(id);
          this.caughtUp.set(id, false);
          this.workers.push(this.consume(id));
        }
      } catch (error) {
        this.options.onError(error);
      }
      await sleep(500);
    }
  }

  private async listShards(): Promise<Shard[]> {
    const shards: Shard[] = [];
    let ExclusiveStartShardId: string | undefined;
    do {
      const { StreamDescription } = await this.options.streams.send(new DescribeStreamCommand({ StreamArn: this.options.streamArn, ExclusiveStartShardId }));
      shards.push(...(StreamDescription?.Shards ?? []));
      ExclusiveStartShardId = StreamDescription?.LastEvaluatedShardId;
    } while (ExclusiveStartShardId);
    return shards;
  }

  private async iterator(shardId: string, after?: string): Promise<string | undefined> {
    const { ShardIterator } = await this.options.streams.send(
      new GetShardIteratorCommand({
        StreamArn: this.options.streamArn,
        ShardId: shardId,
        ShardIteratorType: after ? 'AFTER_SEQUENCE_NUMBER' : 'TRIM_HORIZON',
        ...(after ? { SequenceNumber: after } : {}),
      }),
    );
    return ShardIterator;
  }

  private async consume(shardId: string): Promise<void> {
    let iterator = await this.iterator(shardId);
    let lastRead: string | undefined;
    let buffer: _Record[] = [];
    let windowClosesAt = Number.POSITIVE_INFINITY;
    while (this.running) {
      try {
        if (iterator && !this.full(buffer)) {
          const page = await this.options.streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: Math.min(1000, this.options.batchSize - buffer.length) }));
          const records = page.Records ?? [];
          if (records.length > 0 && buffer.length === 0) windowClosesAt = Date.now() + this.options.maxBatchingWindowMs;
          buffer.push(...records);
          lastRead = buffer.at(-1)?.dynamodb?.SequenceNumber ?? lastRead;
          iterator = page.NextShardIterator;
          this.caughtUp.set(shardId, buffer.length === 0);
          if (buffer.length === 0) {
            if (!iterator) break; // a closed shard, fully read
            await sleep(POLL_MS);
            continue;
          }
          // As Lambda does: keep gathering until the batch is full, would pass 6 MB, or its window closes.
          if (iterator && !this.full(buffer) && Date.now() < windowClosesAt) {
            if (records.length === 0) await sleep(Math.min(POLL_MS, windowClosesAt - Date.now()));
            continue;
          }
        }
        if (buffer.length === 0) break;
        const batch = buffer.slice(0, fittingPayload(buffer, this.options.streamArn));
        const rest = buffer.slice(batch.length);
        buffer = [...(await this.deliver(shardId, batch)), ...rest];
        // Records left over are waiting already: their window opens now.
        windowClosesAt = rest.length > 0 ? Date.now() + this.options.maxBatchingWindowMs : Number.POSITIVE_INFINITY;
      } catch (error) {
        if (error instanceof ExpiredIteratorException || error instanceof TrimmedDataAccessException) {
          iterator = await this.iterator(shardId, lastRead);
          continue;
        }
        this.options.onError(error);
        await sleep(500);
      }
    }
    if (this.running) this.finished.add(shardId);
    this.caughtUp.delete(shardId);
  }

  /** A batch ends at the batch size or where one more record would pass the payload limit. */
  private full(buffer: readonly _Record[]): boolean {
    return buffer.length >= this.options.batchSize || fittingPayload(buffer, this.options.streamArn) < buffer.length;
  }

  /** Delivers the buffer until it is empty, retrying failures like Lambda; returns what is left if stopped. */
  private async deliver(shardId: string, buffer: _Record[]): Promise<_Record[]> {
    let pending = buffer;
    let size = pending.length; // shrinks by bisection after a thrown error
    let attempt = 0;
    while (pending.length > 0 && this.running) {
      const batch = pending.slice(0, size);
      const event: LedgerStreamEvent = {
        Records: batch.map((r) => toLambdaRecord(r, this.options.streamArn)),
        shardId,
        state: {},
        ...tumblingWindow(this.options.tumblingWindowSeconds),
      };
      try {
        const response = await this.options.invoke(event);
        const failed = response?.batchItemFailures?.[0]?.itemIdentifier;
        const failedAt = failed ? batch.findIndex((r) => r.dynamodb?.SequenceNumber === failed) : -1;
        if (failedAt >= 0) {
          pending = pending.slice(failedAt);
          attempt += 1;
          await sleep(Math.min(5000, 100 * 2 ** attempt));
          continue;
        }
        pending = pending.slice(batch.length);
        size = pending.length;
        attempt = 0;
      } catch (error) {
        this.options.onError(error);
        size = Math.max(1, Math.floor(size / 2));
        attempt += 1;
        await sleep(Math.min(5000, 100 * 2 ** attempt));
      }
    }
    return pending;
  }
}

/** A record's size in the invocation's JSON, worked out once per record. */
const sizes = new WeakMap<_Record, number>();
function recordBytes(record: _Record, streamArn: string): number {
  let bytes = sizes.get(record);
  if (bytes === undefined) sizes.set(record, (bytes = Buffer.byteLength(JSON.stringify(toLambdaRecord(record, streamArn)))));
  return bytes;
}

/** How many of the records, from the first, one invocation can carry: at least one. */
export function fittingPayload(records: readonly _Record[], streamArn: string): number {
  const envelope = 1024; // `{"Records":[…]}` with the shard and window fields, generously
  let bytes = envelope;
  for (let i = 0; i < records.length; i += 1) {
    bytes += recordBytes(records[i] as _Record, streamArn) + 1;
    if (bytes > MAX_PAYLOAD_BYTES) return Math.max(1, i);
  }
  return records.length;
}

function tumblingWindow(seconds: number) {
  if (seconds <= 0) return {};
  const length = seconds * 1000;
  const start = Math.floor(Date.now() / length) * length;
  return {
    window: { start: new Date(start).toISOString(), end: new Date(start + length).toISOString() },
    isFinalInvokeForWindow: false,
    isWindowTerminatedEarly: false,
  };
}

export function toLambdaRecord(record: _Record, streamArn: string): DynamoDBRecord {
  const d = record.dynamodb;
  return {
    eventID: record.eventID,
    eventName: record.eventName,
    eventVersion: record.eventVersion ?? '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: record.awsRegion ?? 'local',
    eventSourceARN: streamArn,
    ...(record.userIdentity ? { userIdentity: { type: record.userIdentity.Type, principalId: record.userIdentity.PrincipalId } } : {}),
    dynamodb: {
      ApproximateCreationDateTime: d?.ApproximateCreationDateTime ? Math.floor(d.ApproximateCreationDateTime.getTime() / 1000) : undefined,
      Keys: d?.Keys as never,
      NewImage: d?.NewImage as never,
      OldImage: d?.OldImage as never,
      SequenceNumber: d?.SequenceNumber,
      SizeBytes: d?.SizeBytes,
      StreamViewType: d?.StreamViewType,
    },
  };
}
