/**
 * The one definition of every table, queue and event source mapping, and of the environment
 * variables that name them. The CDK stacks and the local runtime both build from this file.
 */

import { MAX_MESSAGE_BYTES } from '../core/metering/envelope';

export type AttributeType = 'S' | 'N';

export interface TableDefinition {
  /** Logical name (CDK construct id, local table name prefix). */
  name: string;
  /** Environment variable that carries the physical table name to handlers. */
  envVar: string;
  partitionKey: { name: string; type: AttributeType };
  sortKey?: { name: string; type: AttributeType };
  timeToLiveAttribute?: string;
  stream?: 'NEW_AND_OLD_IMAGES';
  pointInTimeRecovery: boolean;
  /** Global secondary indexes; keys only, since what they find is read from the table itself. */
  indexes?: readonly IndexDefinition[];
}

export interface IndexDefinition {
  name: string;
  partitionKey: { name: string; type: AttributeType };
  sortKey: { name: string; type: AttributeType };
}

/**
 * Workspaces are spread over this many partitions of the due index, so that the next-due writes of a month
 * close (one per workspace) stay far below the 1,000 writes a second one partition takes.
 */
export const DUE_SHARDS = 16;

export const TABLES = {
  /** One item per event identity (CloudEvents source + id); its stream feeds the aggregator. */
  ledger: {
    name: 'Ledger',
    envVar: 'LEDGER_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    timeToLiveAttribute: 'expiresAt',
    stream: 'NEW_AND_OLD_IMAGES',
    pointInTimeRecovery: true,
  },
  /** Day items (with hour counters), cycle items (with day counters), and checkpoints per shard and subject. */
  rollups: {
    name: 'Rollups',
    envVar: 'ROLLUPS_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    timeToLiveAttribute: 'expiresAt',
    pointInTimeRecovery: true,
  },
  /**
   * Workspaces: plan, billing anchor, time zone, contacts; and for the closes, when the workspace's next day
   * ends (`nextDueAt`) and who is closing it now (a claim that expires).
   */
  subjects: {
    name: 'Subjects',
    envVar: 'SUBJECTS_TABLE',
    partitionKey: { name: 'id', type: 'S' },
    pointInTimeRecovery: true,
    indexes: [
      /** The scheduler's query: per shard (0 to DUE_SHARDS - 1), the workspaces whose next day has ended. */
      { name: 'due', partitionKey: { name: 'dueShard', type: 'N' }, sortKey: { name: 'nextDueAt', type: 'S' } },
      /** An account's pooled workspaces, for its rankings: sparse, only workspaces that name an `account` are in it. */
      { name: 'account', partitionKey: { name: 'account', type: 'S' }, sortKey: { name: 'id', type: 'S' } },
    ],
  },
  /**
   * Per workspace, beside the counters: grants (G#id), cycle snapshots (C#cycleStart), day snapshots
   * (D#day) and adjustments to closed cycles (A#cycleStart#usageType#detectedAt).
   */
  accounts: {
    name: 'Accounts',
    envVar: 'ACCOUNTS_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    pointInTimeRecovery: true,
  },
  /**
   * One item per (subject, cycle, usage type, threshold) crossed: written once by a conditional put, so
   * retries and concurrent batches cannot make two. Its stream feeds the notify function.
   */
  alerts: {
    name: 'Alerts',
    envVar: 'ALERTS_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    stream: 'NEW_AND_OLD_IMAGES',
    pointInTimeRecovery: true,
  },
  /** API keys by public id: the SHA-256 of the key, its scope and workspace; never the key. */
  apiKeys: {
    name: 'ApiKeys',
    envVar: 'API_KEYS_TABLE',
    partitionKey: { name: 'id', type: 'S' },
    pointInTimeRecovery: true,
  },
  /** On-demand export jobs: what was asked, by whom, and where the file is once written. Its stream starts the export function. */
  exports: {
    name: 'Exports',
    envVar: 'EXPORTS_TABLE',
    partitionKey: { name: 'id', type: 'S' },
    timeToLiveAttribute: 'expiresAt',
    stream: 'NEW_AND_OLD_IMAGES',
    pointInTimeRecovery: true,
  },
  /** Rejected events with their reason, kept for inspection and replay. */
  quarantine: {
    name: 'Quarantine',
    envVar: 'QUARANTINE_TABLE',
    partitionKey: { name: 'pk', type: 'S' },
    sortKey: { name: 'sk', type: 'S' },
    timeToLiveAttribute: 'expiresAt',
    pointInTimeRecovery: true,
  },
} as const satisfies Record<string, TableDefinition>;

export const QUEUES = {
  usageEvents: {
    name: 'UsageEvents',
    envVar: 'USAGE_QUEUE_URL',
    /** Six times the ingest timeout, as Lambda recommends for SQS sources. */
    visibilityTimeoutSeconds: 360,
    retentionDays: 14,
    /** Receives before a message moves to the dead-letter queue. */
    maxReceiveCount: 5,
    /** SQS's most; ingest takes a body of this size (and refuses a larger one whole as payload_too_large). */
    maxMessageBytes: MAX_MESSAGE_BYTES,
  },
  deadLetter: {
    name: 'UsageEventsDlq',
    envVar: 'USAGE_DLQ_URL',
    retentionDays: 14,
    /** As large as the usage queue's, so that every message it redrives fits. */
    maxMessageBytes: MAX_MESSAGE_BYTES,
  },
  /** Workspaces whose days or cycles are due, one workspace id per message, from the scheduler to the close function. */
  closes: {
    name: 'Closes',
    envVar: 'CLOSES_QUEUE_URL',
    /** Six times the close function's timeout, as Lambda recommends for SQS sources. */
    visibilityTimeoutSeconds: 6 * 300,
    retentionDays: 4,
    /** Receives before a message moves to its dead-letter queue; the next hourly run sends its workspaces again anyway. */
    maxReceiveCount: 5,
  },
  closesDeadLetter: {
    name: 'ClosesDlq',
    envVar: 'CLOSES_DLQ_URL',
    retentionDays: 14,
  },
} as const;

export const FUNCTIONS = {
  ingest: { timeoutSeconds: 60, memoryMb: 1024 },
  aggregate: { timeoutSeconds: 120, memoryMb: 1024 },
  api: { timeoutSeconds: 29, memoryMb: 512 },
  /**
   * Finds the workspaces due and sends them to the closes queue; writes the summaries of closed cycles. A summary
   * is built in memory, about 0.6 KB per workspace of its cycle start at its peak (rows and their JSON): 1,769 MB
   * (one whole vCPU) holds a million with room for the SDK's copy of the body.
   */
  scheduler: { timeoutSeconds: 900, memoryMb: 1769 },
  /** Closes the workspaces of one batch of closes messages (one workspace each), side by side. */
  closes: { timeoutSeconds: 300, memoryMb: 1024 },
  notify: { timeoutSeconds: 60, memoryMb: 512 },
  /** Streams one export from DynamoDB to S3; memory stays bounded however many buckets it writes. */
  export: { timeoutSeconds: 900, memoryMb: 1024 },
} as const;

/** Event source mappings; the local pollers read the same numbers. */
export const EVENT_SOURCES = {
  ingest: {
    batchSize: 1000,
    maxBatchingWindowSeconds: 1,
    /**
     * Concurrent ingest invocations the queue may start (Lambda's ScalingConfig; 2-1000). Five is where Lambda
     * starts polling a queue; each takes ~1,400 events/s (0.41 ms of client CPU per ledger put on ~0.6 vCPU at
     * 1,024 MB), so ~7,000 events/s in all. Beyond it a backlog waits in the queue, unreceived: it takes no
     * concurrency from the api or the stream functions, and no throttled receive counts toward maxReceiveCount.
     */
    maxConcurrency: 5,
  },
  aggregate: {
    /** The most Lambda allows; its 6 MB payload limit ends a batch of ~1 KB ledger records at ~6,000 first (local/stream-poller.ts). */
    batchSize: 10000,
    /** Fuller batches write each subject's items fewer times: sparse traffic costs half as much as at 1 s (docs/performance.md, "Performance"). */
    maxBatchingWindowSeconds: 10,
    /** A tumbling window is what makes Lambda put `shardId` in the event; the window state stays empty. */
    tumblingWindowSeconds: 60,
    parallelizationFactor: 1,
    bisectBatchOnError: true,
    retryAttempts: 10000,
    startingPosition: 'TRIM_HORIZON',
  },
  /**
   * Closes messages → the close function, up to 10 messages (one workspace id each) per invocation: Powertools'
   * BatchProcessor closes the batch's workspaces side by side, and only the failed ones are retried (partial batch
   * responses). maxConcurrency bounds the invocations, and with them the load a month close puts on DynamoDB and S3.
   */
  closes: {
    batchSize: 10,
    maxBatchingWindowSeconds: 0,
    maxConcurrency: 50,
  },
  /** Alert records → emails. Small batches: each alert is a few SES calls, and a failure retries only its batch. */
  notify: {
    batchSize: 10,
    maxBatchingWindowSeconds: 1,
    parallelizationFactor: 1,
    bisectBatchOnError: true,
    retryAttempts: 100,
    startingPosition: 'TRIM_HORIZON',
  },
  /** New export jobs → the export function, one job per invocation. */
  export: {
    batchSize: 1,
    maxBatchingWindowSeconds: 0,
    parallelizationFactor: 1,
    bisectBatchOnError: false,
    retryAttempts: 2,
    startingPosition: 'TRIM_HORIZON',
  },
} as const;

/** Cycle reports and exports. Reports are finance records and are kept; export files are copies and expire. */
export const BUCKETS = {
  reports: {
    name: 'Reports',
    envVar: 'REPORTS_BUCKET',
    /** `reports/{cycleStart}/{subject}.json` and `reports/{cycleStart}/summary.json`. */
    reportsPrefix: 'reports/',
    /** `exports/{exportId}.json` or `.jsonl`. */
    exportsPrefix: 'exports/',
    /** Export files are deleted this long after they were written. */
    exportRetentionDays: 7,
    /** Cycle reports move to infrequent access after this long (they are read around invoicing, rarely later). */
    reportsInfrequentAccessDays: 90,
  },
} as const;

/** How long a presigned download URL of an export or report stays valid. */
export const PRESIGNED_URL_SECONDS = 300;
/** Export job records are kept this long, like their files. */
export const EXPORT_RETENTION_DAYS = BUCKETS.reports.exportRetentionDays;

/** The SES configuration set threshold emails name (a stack parameter in AWS); the sender is the config's `notifications.from`. */
export const EMAIL_ENV = { configurationSet: 'SES_CONFIGURATION_SET' } as const;

/** The scheduler's one job runs hourly and closes whatever days and cycles have become due. */
export const SCHEDULES = {
  closeDue: { expression: 'rate(1 hour)', intervalMinutes: 60, job: 'close-due' },
} as const;

/**
 * A shard's checkpoint in a lane item outlives the stream's 24-hour retention by an hour, then is dropped: shards roll
 * over every few hours, and the lane item, rewritten with every commit, must not carry a week of them.
 */
export const CHECKPOINT_RETENTION_HOURS = 25;
/** Quarantined events are kept this long for inspection and replay. */
export const QUARANTINE_RETENTION_DAYS = 90;

/** Path of the JSON configuration file inside the function bundle (or on disk locally). */
export const CONFIG_FILE_ENV = 'USAGE_CONFIG_FILE';
