import { type _Record, type DynamoDBStreamsClient, ExpiredIteratorException, GetRecordsCommand, GetShardIteratorCommand, TrimmedDataAccessException } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { describeShards } from '../functions/adapters/ledger-stream';
import { MAX_PAYLOAD_BYTES } from './lambda-context';
import { sleep } from './sqs-poller';

/**
 * Behaves like Lambda's DynamoDB stream event source mapping: one batch per shard at a time, in
 * order; a child shard starts after its parent is finished; a reported failure retries from the
 * failed record; a thrown error retries with the batch bisected. With a tumbling window, as AWS
 * documents it ("Using tumbling windows with DynamoDB Streams"): each record belongs to the window
 * of the time it entered the stream (windows aligned on multiples of their length since the epoch,
 * UTC); a batch never spans two windows; the `state` a function returns comes back in the next
 * invoke of the same window; a window ends with a final invoke without records
 * (`isFinalInvokeForWindow`), retried until it succeeds, and the next window starts from `{}`; a
 * response without `state` is a failed invoke; a state past 1 MB ends the window early
 * (`isWindowTerminatedEarly`) and the window goes on with a fresh state; a shard's end ends its window.
 */
export interface StreamPollerOptions {
  streams: DynamoDBStreamsClient;
  streamArn: string;
  batchSize: number;
  maxBatchingWindowMs: number;
  tumblingWindowSeconds: number;
  invoke: (event: StreamEvent) => Promise<StreamResponse>;
  onError: (error: unknown) => void;
  /**
   * Decides when a batching window expires and when a tumbling window is over (default: the wall
   * clock). It must tell the time DynamoDB stamps stream records with; tests hold it still.
   */
  now?: () => number;
  /**
   * When a record entered the stream, which decides its window (default: its ApproximateCreationDateTime;
   * DynamoDB Local stamps it to the minute, which is exact for windows that are whole minutes).
   */
  recordTime?: (record: _Record) => number | undefined;
}

/** The fields a tumbling window adds to a stream event (AWS's DynamodbTimeWindowEvent). */
export interface TumblingWindowFields {
  window: { start: string; end: string };
  state: WindowState;
  shardId: string;
  eventSourceARN: string;
  isFinalInvokeForWindow: boolean;
  isWindowTerminatedEarly: boolean;
}
export type WindowState = Record<string, string>;
export type StreamEvent = DynamoDBStreamEvent & Partial<TumblingWindowFields>;
export type StreamResponse = (DynamoDBBatchResponse & { state?: WindowState }) | undefined;

const POLL_MS = 100;
/** Past a window's end, how long a caught-up shard waits for the window's last records to show. */
const WINDOW_CLOSE_GRACE_MS = 1000;
/** Lambda keeps at most 1 MB of state per shard; more ends the window early. */
const MAX_STATE_BYTES = 1024 * 1024;

interface OpenWindow {
  start: number;
  end: number;
  state: WindowState;
  /** The function returned more state than Lambda keeps: the next invoke ends the window early. */
  overflowed: boolean;
}

class MissingStateError extends Error {
  override readonly name = 'MissingStateError';
  constructor() {
    super('the function answered a tumbling-window invoke without `state`; Lambda counts that as a failed invoke');
  }
}

export class StreamPoller {
  private running = false;
  private readonly finished = new Set<string>();
  private readonly started = new Set<string>();
  private readonly workers: Promise<void>[] = [];
  private readonly caughtUp = new Map<string, boolean>();
  private discovery: Promise<void> | undefined;
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly recordTime: (record: _Record) => number | undefined;

  constructor(private readonly options: StreamPollerOptions) {
    this.now = options.now ?? Date.now;
    this.recordTime = options.recordTime ?? ((record) => record.dynamodb?.ApproximateCreationDateTime?.getTime());
    this.windowMs = options.tumblingWindowSeconds * 1000;
  }

  start(): void {
    this.running = true;
    this.discovery = this.discover();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.discovery;
    await Promise.allSettled(this.workers);
  }

  /**
   * True when every open shard's last read was empty and no records wait to be delivered. A window's
   * final invoke carries no records and comes when the window is over, so it is not waited for.
   */
  get idle(): boolean {
    return this.started.size > 0 && [...this.caughtUp.values()].every(Boolean);
  }

  private async discover(): Promise<void> {
    while (this.running) {
      try {
        const shards = await describeShards(this.options.streams, this.options.streamArn);
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
    let gatherUntil = Number.POSITIVE_INFINITY;
    let open: OpenWindow | undefined;
    while (this.running) {
      try {
        if (iterator && !this.full(buffer) && this.windowCut(buffer, open) === buffer.length) {
          const page = await this.options.streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: Math.min(1000, this.options.batchSize - buffer.length) }));
          const records = page.Records ?? [];
          if (records.length > 0 && buffer.length === 0) gatherUntil = this.now() + this.options.maxBatchingWindowMs;
          buffer.push(...records);
          lastRead = buffer.at(-1)?.dynamodb?.SequenceNumber ?? lastRead;
          iterator = page.NextShardIterator;
          this.caughtUp.set(shardId, buffer.length === 0);
          if (buffer.length === 0) {
            // Caught up: the open window is over once its end has passed, or when the shard has ended.
            if (open && (!iterator || this.now() >= open.end + WINDOW_CLOSE_GRACE_MS)) {
              if (!(await this.endWindow(shardId, open))) break;
              open = undefined;
            }
            if (!iterator) break; // a closed shard, fully read
            await sleep(POLL_MS);
            continue;
          }
          // As Lambda does: keep gathering until the batch is full, would pass 6 MB, reaches the next window, or its batching window closes.
          if (iterator && !this.full(buffer) && this.windowCut(buffer, open) === buffer.length && this.now() < gatherUntil) {
            if (records.length === 0) await sleep(POLL_MS);
            continue;
          }
        }
        if (buffer.length === 0) {
          // A closed shard, fully read: its window ends with it.
          if (open) await this.endWindow(shardId, open);
          break;
        }
        if (this.windowMs > 0) {
          const start = this.windowStart(buffer[0] as _Record, open);
          if (open && start > open.start) {
            // The shard has moved past the open window: it is over.
            if (!(await this.endWindow(shardId, open))) break;
            open = undefined;
          }
          open ??= { start, end: start + this.windowMs, state: {}, overflowed: false };
        }
        const sameWindow = buffer.slice(0, this.windowCut(buffer, open));
        const batch = sameWindow.slice(0, Math.min(this.options.batchSize, fittingPayload(sameWindow, this.options.streamArn)));
        const rest = buffer.slice(batch.length);
        buffer = [...(await this.deliver(shardId, batch, open)), ...rest];
        // Records left over are waiting already: their batching window opens now.
        gatherUntil = rest.length > 0 ? this.now() + this.options.maxBatchingWindowMs : Number.POSITIVE_INFINITY;
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

  /**
   * The window a record belongs to: that of the time it entered the stream, as Lambda decides it, but
   * never before the window already open (a window, once over, does not come back).
   */
  private windowStart(record: _Record, open: OpenWindow | undefined): number {
    const stamped = this.recordTime(record) ?? this.now();
    return Math.max(Math.floor(stamped / this.windowMs) * this.windowMs, open?.start ?? Number.NEGATIVE_INFINITY);
  }

  /** How many records, from the first, belong to the first one's window (all of them without a tumbling window). */
  private windowCut(buffer: readonly _Record[], open: OpenWindow | undefined): number {
    if (this.windowMs <= 0 || buffer.length === 0) return buffer.length;
    const first = this.windowStart(buffer[0] as _Record, open);
    const cut = buffer.findIndex((record) => this.windowStart(record, open) > first);
    return cut < 0 ? buffer.length : cut;
  }

  private event(shardId: string, records: readonly _Record[], open: OpenWindow | undefined, final = false): StreamEvent {
    const Records = records.map((r) => toLambdaRecord(r, this.options.streamArn));
    if (!open) return { Records };
    return {
      Records,
      window: { start: new Date(open.start).toISOString(), end: new Date(open.end).toISOString() },
      state: open.state,
      shardId,
      eventSourceARN: this.options.streamArn,
      isFinalInvokeForWindow: final,
      isWindowTerminatedEarly: final && open.overflowed,
    };
  }

  /**
   * The window's final invoke, without records, retried until it succeeds (Lambda suspends the shard
   * until then); its state is dropped. False if the poller stopped first.
   */
  private async endWindow(shardId: string, open: OpenWindow): Promise<boolean> {
    for (let attempt = 1; this.running; attempt += 1) {
      try {
        const response = await this.options.invoke(this.event(shardId, [], open, true));
        if (!response || response.state === undefined) throw new MissingStateError();
        return true;
      } catch (error) {
        this.options.onError(error);
        await sleep(Math.min(5000, 100 * 2 ** attempt));
      }
    }
    return false;
  }

  /** Delivers the batch until it is empty, retrying failures like Lambda; returns what is left if stopped. */
  private async deliver(shardId: string, buffer: _Record[], open: OpenWindow | undefined): Promise<_Record[]> {
    let pending = buffer;
    let size = pending.length; // shrinks by bisection after a thrown error
    let attempt = 0;
    while (pending.length > 0 && this.running) {
      if (open?.overflowed) {
        // Lambda ends the window early and goes on in the same window with a fresh state.
        if (!(await this.endWindow(shardId, open))) break;
        Object.assign(open, { state: {}, overflowed: false });
      }
      const batch = pending.slice(0, size);
      try {
        const response = await this.options.invoke(this.event(shardId, batch, open));
        if (open) {
          if (!response || response.state === undefined) throw new MissingStateError();
          // Also with a reported failure: the state is the function's account of the records before it.
          open.state = response.state;
          open.overflowed = Buffer.byteLength(JSON.stringify(response.state)) > MAX_STATE_BYTES;
        }
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
