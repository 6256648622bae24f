import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { AttributeType, BillingMode, StreamViewType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { QUEUES, TABLES, type TableDefinition } from '../functions/adapters/resources';

export type TableName = keyof typeof TABLES;

/**
 * The resources that hold data: the four tables and the usage-events queue with its dead-letter queue.
 * Everything here is retained on stack deletion; the stateless stack can be replaced freely.
 */
export class StatefulStack extends Stack {
  readonly tables: Readonly<Record<TableName, Table>>;
  readonly usageQueue: Queue;
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    this.tables = mapValues(TABLES, (definition) => this.table(definition));

    this.deadLetterQueue = new Queue(this, QUEUES.deadLetter.name, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(QUEUES.deadLetter.retentionDays),
      // Messages here are events not yet counted; they are replayed, never thrown away with the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const usage = QUEUES.usageEvents;
    this.usageQueue = new Queue(this, usage.name, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(usage.visibilityTimeoutSeconds),
      retentionPeriod: Duration.days(usage.retentionDays),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: usage.maxReceiveCount },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    new CfnOutput(this, 'UsageQueueUrl', { value: this.usageQueue.queueUrl, description: 'Send usage events here' });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl, description: 'Events that failed ingestion; redrive after a fix' });
  }

  private table(definition: TableDefinition): Table {
    return new Table(this, definition.name, {
      partitionKey: attribute(definition.partitionKey),
      sortKey: definition.sortKey && attribute(definition.sortKey),
      timeToLiveAttribute: definition.timeToLiveAttribute,
      stream: definition.stream && StreamViewType[definition.stream],
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: definition.pointInTimeRecovery },
      billingMode: BillingMode.PAY_PER_REQUEST,
      encryption: TableEncryption.AWS_MANAGED,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}

function attribute({ name, type }: TableDefinition['partitionKey']) {
  return { name, type: type === 'S' ? AttributeType.STRING : AttributeType.NUMBER };
}

function mapValues<K extends string, V, R>(record: Record<K, V>, map: (value: V) => R): Record<K, R> {
  // Object.entries forgets the key type; the keys are exactly those of `record`.
  return Object.fromEntries(Object.entries<V>(record).map(([key, value]) => [key, map(value)])) as Record<K, R>;
}
