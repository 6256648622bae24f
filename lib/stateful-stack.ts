import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, StreamViewType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership, StorageClass } from 'aws-cdk-lib/aws-s3';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';
import { BUCKETS, QUEUES, TABLES, type TableDefinition } from '../functions/contract/resources';

export type TableName = keyof typeof TABLES;

/** The tables a close writes: what a month close of many workspaces needs warm. */
const CLOSE_TABLES: readonly TableName[] = ['accounts', 'subjects', 'rollups'];

export interface StatefulStackProps extends StackProps {
  /** Warm throughput (writes a second) of the tables a close writes; the config's `closes.warmWritesPerSecond`. */
  readonly closesWarmWritesPerSecond?: number;
}

/** Server access logs of the reports bucket are kept this long. */
const ACCESS_LOG_RETENTION_DAYS = 365;
/** Older versions of a cycle report (a report rewritten by a re-run close) are kept this long. */
const REPORT_NONCURRENT_RETENTION_DAYS = 365;

/**
 * The resources that hold data: the tables, the usage-events queue with its dead-letter queue, and the
 * reports bucket with its access-log bucket. Everything here is retained on stack deletion; the
 * stateless stack can be replaced freely.
 */
export class StatefulStack extends Stack {
  readonly tables: Readonly<Record<TableName, Table>>;
  readonly usageQueue: Queue;
  readonly deadLetterQueue: Queue;
  /** Cycle reports (`reports/`, kept) and export files (`exports/`, expiring). */
  readonly reportsBucket: Bucket;
  /** Server access logs of the reports bucket. */
  readonly accessLogsBucket: Bucket;

  constructor(scope: Construct, id: string, props: StatefulStackProps = {}) {
    super(scope, id, props);
    // Log delivery is allowed by a bucket policy for the S3 logging service, not by the legacy
    // LogDeliveryWrite ACL (which needs ACLs enabled on the log bucket). Set before any child exists.
    this.node.setContext(S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);

    const warm = props.closesWarmWritesPerSecond;
    this.tables = mapValues(TABLES, (definition) => this.table(definition, warm !== undefined && CLOSE_TABLES.some((t) => TABLES[t].name === definition.name) ? warm : undefined));

    this.deadLetterQueue = new Queue(this, QUEUES.deadLetter.name, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(QUEUES.deadLetter.retentionDays),
      maxMessageSizeBytes: QUEUES.deadLetter.maxMessageBytes,
      // Messages here are events not yet counted; they are replayed, never thrown away with the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const usage = QUEUES.usageEvents;
    this.usageQueue = new Queue(this, usage.name, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(usage.visibilityTimeoutSeconds),
      retentionPeriod: Duration.days(usage.retentionDays),
      maxMessageSizeBytes: usage.maxMessageBytes,
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: usage.maxReceiveCount },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.accessLogsBucket = new Bucket(this, 'AccessLogs', {
      // Server access log delivery supports SSE-S3 only on the target bucket.
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        { id: 'ExpireAccessLogs', expiration: Duration.days(ACCESS_LOG_RETENTION_DAYS) },
        { id: 'AbortIncompleteUploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
    this.reportsBucket = this.bucket(this.accessLogsBucket);

    new CfnOutput(this, 'UsageQueueUrl', { value: this.usageQueue.queueUrl, description: 'Send usage events here' });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl, description: 'Events that failed ingestion; redrive after a fix' });
    new CfnOutput(this, 'ReportsBucketName', { value: this.reportsBucket.bucketName, description: 'Cycle reports (reports/) and export files (exports/)' });
  }

  /** The reports bucket: private, TLS only, versioned; reports are kept (infrequent access later), exports expire. */
  private bucket(accessLogs: Bucket): Bucket {
    const reports = BUCKETS.reports;
    return new Bucket(this, reports.name, {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      versioned: true,
      removalPolicy: RemovalPolicy.RETAIN,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: `${reports.name}/`,
      lifecycleRules: [
        {
          id: 'ExpireExports',
          prefix: reports.exportsPrefix,
          expiration: Duration.days(reports.exportRetentionDays),
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'ReportsToInfrequentAccess',
          prefix: reports.reportsPrefix,
          transitions: [{ storageClass: StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(reports.reportsInfrequentAccessDays) }],
          noncurrentVersionExpiration: Duration.days(REPORT_NONCURRENT_RETENTION_DAYS),
        },
        { id: 'AbortIncompleteUploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
  }

  private table(definition: TableDefinition, warmWritesPerSecond?: number): Table {
    const table = new Table(this, definition.name, {
      // Bought once, kept: the table takes this many writes a second at once, before on-demand scaling has seen them.
      ...(warmWritesPerSecond === undefined ? {} : { warmThroughput: { writeUnitsPerSecond: warmWritesPerSecond } }),
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
    // Keys only: what an index finds is read (or claimed) from the table itself.
    for (const index of definition.indexes ?? []) {
      table.addGlobalSecondaryIndex({ indexName: index.name, partitionKey: attribute(index.partitionKey), sortKey: attribute(index.sortKey), projectionType: ProjectionType.KEYS_ONLY });
    }
    return table;
  }
}

function attribute({ name, type }: TableDefinition['partitionKey']) {
  return { name, type: type === 'S' ? AttributeType.STRING : AttributeType.NUMBER };
}

function mapValues<K extends string, V, R>(record: Record<K, V>, map: (value: V) => R): Record<K, R> {
  // Object.entries forgets the key type; the keys are exactly those of `record`.
  return Object.fromEntries(Object.entries<V>(record).map(([key, value]) => [key, map(value)])) as Record<K, R>;
}
