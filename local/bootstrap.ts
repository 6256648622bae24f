import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DynamoDBClient,
  type GlobalSecondaryIndex,
  ResourceInUseException,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { BUCKETS, QUEUES, TABLES, type TableDefinition } from '../functions/contract/resources';

/** Creates the tables and queues from the same definitions the CDK stacks use. */

export const localTableName = (definition: TableDefinition) => `usage-pipeline-${definition.name.toLowerCase()}`;

export async function createTables(client: DynamoDBClient): Promise<{ names: Record<keyof typeof TABLES, string>; streamArns: Record<'ledger' | 'alerts' | 'exports', string> }> {
  const names = {} as Record<keyof typeof TABLES, string>;
  for (const [key, definition] of Object.entries(TABLES) as [keyof typeof TABLES, TableDefinition][]) {
    const TableName = localTableName(definition);
    names[key] = TableName;
    const keys = [definition.partitionKey, ...(definition.sortKey ? [definition.sortKey] : [])];
    const indexes = definition.indexes ?? [];
    const attributes = new Map([...keys, ...indexes.flatMap((i) => [i.partitionKey, i.sortKey])].map((k) => [k.name, k.type]));
    const input: CreateTableCommandInput = {
      TableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [...attributes].map(([AttributeName, AttributeType]) => ({ AttributeName, AttributeType })),
      KeySchema: keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
      ...(indexes.length > 0 ? { GlobalSecondaryIndexes: indexes.map(globalIndex) } : {}),
      ...(definition.stream ? { StreamSpecification: { StreamEnabled: true, StreamViewType: definition.stream } } : {}),
    };
    try {
      await client.send(new CreateTableCommand(input));
      if (definition.timeToLiveAttribute) {
        await client.send(new UpdateTimeToLiveCommand({ TableName, TimeToLiveSpecification: { Enabled: true, AttributeName: definition.timeToLiveAttribute } }));
      }
    } catch (error) {
      if (!(error instanceof ResourceInUseException)) throw error;
      // Kept from a persisted run: it gains the indexes added since (one per update, as DynamoDB allows).
      const existing = (await client.send(new DescribeTableCommand({ TableName }))).Table?.GlobalSecondaryIndexes ?? [];
      for (const index of indexes.filter((i) => !existing.some((e) => e.IndexName === i.name))) {
        await client.send(new UpdateTableCommand({ TableName, AttributeDefinitions: input.AttributeDefinitions, GlobalSecondaryIndexUpdates: [{ Create: globalIndex(index) }] }));
        await indexActive(client, TableName, index.name);
      }
    }
  }
  const streamArn = async (table: 'ledger' | 'alerts' | 'exports') => {
    const arn = (await client.send(new DescribeTableCommand({ TableName: names[table] }))).Table?.LatestStreamArn;
    if (!arn) throw new Error(`table ${names[table]} has no stream`);
    return arn;
  };
  return { names, streamArns: { ledger: await streamArn('ledger'), alerts: await streamArn('alerts'), exports: await streamArn('exports') } };
}

/** DynamoDB Local answers queries on an index (and writes to its table) only once the index is ACTIVE, about a second. */
async function indexActive(client: DynamoDBClient, TableName: string, IndexName: string): Promise<void> {
  for (let attempt = 0; attempt < 120; attempt++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName }));
    if (Table?.GlobalSecondaryIndexes?.find((i) => i.IndexName === IndexName)?.IndexStatus === 'ACTIVE') return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`index ${IndexName} of table ${TableName} did not become active in 30 s`);
}

/** Keys only, as in the CDK stack: what an index finds is read from the table itself. */
function globalIndex(index: NonNullable<TableDefinition['indexes']>[number]): GlobalSecondaryIndex {
  return {
    IndexName: index.name,
    KeySchema: [
      { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
      { AttributeName: index.sortKey.name, KeyType: 'RANGE' },
    ],
    Projection: { ProjectionType: 'KEYS_ONLY' },
  };
}

export const localBucketName = `usage-pipeline-${BUCKETS.reports.name.toLowerCase()}`;

/** The reports bucket; creating it again (a persisted run) changes nothing. */
export async function createBucket(client: S3Client): Promise<string> {
  await client.send(new CreateBucketCommand({ Bucket: localBucketName }));
  return localBucketName;
}

export const localQueueName = (definition: { name: string }) => `usage-pipeline-${definition.name}`;

export async function createQueues(client: SQSClient, visibilityTimeoutSeconds: number): Promise<{ queueUrl: string; dlqUrl: string; closesUrl: string; closesDlqUrl: string }> {
  const retention = (days: number) => String(days * 86_400);
  const { QueueUrl: dlqUrl } = await client.send(
    new CreateQueueCommand({
      QueueName: localQueueName(QUEUES.deadLetter),
      Attributes: { MessageRetentionPeriod: retention(QUEUES.deadLetter.retentionDays), MaximumMessageSize: String(QUEUES.deadLetter.maxMessageBytes) },
    }),
  );
  if (!dlqUrl) throw new Error('dead-letter queue was not created');
  const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }));
  const { QueueUrl: queueUrl } = await client.send(
    new CreateQueueCommand({
      QueueName: localQueueName(QUEUES.usageEvents),
      Attributes: {
        VisibilityTimeout: String(visibilityTimeoutSeconds),
        MessageRetentionPeriod: retention(QUEUES.usageEvents.retentionDays),
        MaximumMessageSize: String(QUEUES.usageEvents.maxMessageBytes),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: Attributes?.QueueArn, maxReceiveCount: QUEUES.usageEvents.maxReceiveCount }),
      },
    }),
  );
  if (!queueUrl) throw new Error('usage-events queue was not created');
  const { QueueUrl: closesDlqUrl } = await client.send(
    new CreateQueueCommand({ QueueName: localQueueName(QUEUES.closesDeadLetter), Attributes: { MessageRetentionPeriod: retention(QUEUES.closesDeadLetter.retentionDays) } }),
  );
  if (!closesDlqUrl) throw new Error('closes dead-letter queue was not created');
  const { Attributes: closesDlq } = await client.send(new GetQueueAttributesCommand({ QueueUrl: closesDlqUrl, AttributeNames: ['QueueArn'] }));
  const { QueueUrl: closesUrl } = await client.send(
    new CreateQueueCommand({
      QueueName: localQueueName(QUEUES.closes),
      Attributes: {
        VisibilityTimeout: String(visibilityTimeoutSeconds),
        MessageRetentionPeriod: retention(QUEUES.closes.retentionDays),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: closesDlq?.QueueArn, maxReceiveCount: QUEUES.closes.maxReceiveCount }),
      },
    }),
  );
  if (!closesUrl) throw new Error('closes queue was not created');
  return { queueUrl, dlqUrl, closesUrl, closesDlqUrl };
}
