import { DescribeTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DescribeStreamCommand, type DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, type Shard } from '@aws-sdk/client-dynamodb-streams';
import type { LedgerStreamReader, StreamedChange } from '../core/metering/metering-ports';
import { type LedgerStreamRecord, ledgerChangeFromRecord, ledgerVersionFromStream } from './ledger-store';

/**
 * An empty page may precede records further on ("it might take multiple calls to get to a portion of the
 * shard that contains stream records", GetRecords); several in a row mark an open shard's present end. A
 * closed shard ends without a next iterator.
 */
const EMPTY_PAGES_AT_END = 5;

/**
 * Reads the ledger's stream from a sequence number to what is there now, for a repair (core/metering/repair.ts). It
 * is the stream's second reader beside the aggregate's event source mapping, the most DynamoDB advises per
 * shard; a repair reads each shard once, from its checkpoint, so it is brief.
 */
export class DynamoLedgerStream implements LedgerStreamReader {
  private arn: Promise<string> | undefined;

  constructor(
    private readonly streams: DynamoDBStreamsClient,
    private readonly dynamodb: DynamoDBClient,
    private readonly tableName: string,
  ) {}

  async shards(): Promise<string[]> {
    return parentsFirst(await describeShards(this.streams, await this.streamArn()));
  }

  async *changesAfter(shardId: string, after: string | undefined): AsyncIterable<StreamedChange> {
    const StreamArn = await this.streamArn();
    const start = after === undefined ? { ShardIteratorType: 'TRIM_HORIZON' as const } : { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER' as const, SequenceNumber: after };
    let iterator = (await this.streams.send(new GetShardIteratorCommand({ StreamArn, ShardId: shardId, ...start }))).ShardIterator;
    let empty = 0;
    while (iterator && empty < EMPTY_PAGES_AT_END) {
      const page = await this.streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1000 }));
      const records = page.Records ?? [];
      for (const record of records) {
        const change = ledgerChangeFromRecord(record as LedgerStreamRecord);
        const image = record.dynamodb?.NewImage ?? record.dynamodb?.OldImage;
        const eventKey = image?.pk?.S;
        if (!change || eventKey === undefined) continue;
        const oldVersion = ledgerVersionFromStream(record.dynamodb?.OldImage);
        const newVersion = ledgerVersionFromStream(record.dynamodb?.NewImage);
        yield { shardId, change, eventKey, ...(oldVersion ? { oldVersion } : {}), ...(newVersion ? { newVersion } : {}) };
      }
      empty = records.length === 0 ? empty + 1 : 0;
      iterator = page.NextShardIterator;
    }
  }

  private streamArn(): Promise<string> {
    this.arn ??= this.dynamodb.send(new DescribeTableCommand({ TableName: this.tableName })).then(({ Table }) => {
      if (!Table?.LatestStreamArn) throw new Error(`table ${this.tableName} has no stream`);
      return Table.LatestStreamArn;
    });
    return this.arn;
  }
}

/** Every shard of a stream, through DescribeStream's pages. */
export async function describeShards(streams: DynamoDBStreamsClient, streamArn: string): Promise<Shard[]> {
  const shards: Shard[] = [];
  let ExclusiveStartShardId: string | undefined;
  do {
    const { StreamDescription } = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId }));
    shards.push(...(StreamDescription?.Shards ?? []));
    ExclusiveStartShardId = StreamDescription?.LastEvaluatedShardId;
  } while (ExclusiveStartShardId);
  return shards;
}

/** Shards ordered so that a parent comes before its children: an item's records then read in write order. */
function parentsFirst(shards: readonly Shard[]): string[] {
  const ids = new Set(shards.map((s) => s.ShardId));
  const ordered: string[] = [];
  const placed = new Set<string>();
  const place = (shard: Shard) => {
    const id = shard.ShardId;
    if (!id || placed.has(id)) return;
    placed.add(id);
    const parent = shards.find((s) => s.ShardId === shard.ParentShardId);
    if (parent && ids.has(parent.ShardId)) place(parent);
    ordered.push(id);
  };
  for (const shard of shards) place(shard);
  return ordered;
}
