import { Duration, Stack } from 'aws-cdk-lib';
import { Alarm, AlarmStatusWidget, ComparisonOperator, Dashboard, GraphWidget, type IMetric, MathExpression, Metric, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { type ITable, Operation } from 'aws-cdk-lib/aws-dynamodb';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../functions/contract/telemetry';
import type { TableName } from './stateful-stack';
import type { FunctionName } from './usage-function';

/** Every DynamoDB operation the functions and the CLI send (GetRecords: the stream mappings); at most 10, the alarm limit. */
export const TABLE_OPERATIONS = [
  Operation.GET_ITEM,
  Operation.BATCH_GET_ITEM,
  Operation.QUERY,
  Operation.SCAN,
  Operation.PUT_ITEM,
  Operation.UPDATE_ITEM,
  Operation.DELETE_ITEM,
  Operation.BATCH_WRITE_ITEM,
  Operation.TRANSACT_WRITE_ITEMS,
  Operation.GET_RECORDS,
] as const;

/** A stream mapping falls this far behind its table before it alarms. */
export const MAX_ITERATOR_AGE = {
  /** Rollups, quotas and threshold alerts are stale. */
  aggregate: Duration.minutes(5),
  /** Threshold emails are late. */
  notify: Duration.minutes(15),
  /** Export jobs run one at a time for up to 15 minutes each; half an hour means a queue of waiting exports. */
  export: Duration.minutes(30),
} as const;

/** The oldest usage-events message waits this long before it alarms: ingest's maxConcurrency holds a backlog in the queue. */
export const MAX_USAGE_QUEUE_AGE = Duration.minutes(5);

/**
 * The oldest closes message waits this long before it alarms: the closes fall behind the scheduler, and past the
 * hourly interval its next run sends the same workspaces again.
 */
export const MAX_CLOSES_QUEUE_AGE = Duration.minutes(30);

/** Share of received events quarantined, in percent, above which producers are likely sending something broken. */
export const MAX_QUARANTINE_PERCENT = 5;

/** The period every alarm and graph aggregates over. */
const PERIOD = Duration.minutes(5);

type StreamConsumer = keyof typeof MAX_ITERATOR_AGE;

export interface OperationsProps {
  readonly functions: Readonly<Record<FunctionName, IFunction>>;
  readonly tables: Readonly<Record<TableName, ITable>>;
  /** The usage-events queue (what producers send). */
  readonly usageQueue: IQueue;
  /** The closes queue (workspaces due, from the scheduler to the closes function). */
  readonly closesQueue: IQueue;
  /** Queues that hold what the pipeline gave up on, by alarm id, each with what a message there means. */
  readonly deadLetters: Readonly<Record<string, { queue: IQueue; description: string }>>;
}

/**
 * The alarms and the dashboard of the pipeline: every failure an operator must see (dead letters, stream
 * lag, closes falling behind, function errors and throttles, table throttles and system errors, a quarantine spike) raises an
 * alarm on one encrypted SNS topic. Each alarm has a runbook entry in docs/operations.md ("Runbook").
 */
export class Operations extends Construct {
  /** Every alarm goes here, in ALARM and back to OK. */
  readonly topic: Topic;
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: OperationsProps) {
    super(scope, id);
    const { functions, tables, usageQueue, closesQueue, deadLetters } = props;

    // CloudWatch can publish to an encrypted topic only with a customer managed key that lets it encrypt.
    const key = new Key(this, 'AlarmTopicKey', { description: 'Encrypts the usage pipeline alarm topic', enableKeyRotation: true });
    const cloudwatch = new ServicePrincipal('cloudwatch.amazonaws.com', { conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } } });
    key.grant(cloudwatch, 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.topic = new Topic(this, 'AlarmTopic', { displayName: 'Usage pipeline alarms', masterKey: key, enforceSSL: true });
    this.topic.grantPublish(cloudwatch);

    const deadLetterDepth = Object.entries(deadLetters).map(([alarmId, { queue, description }]) => {
      const depth = queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: PERIOD });
      this.alarm(alarmId, depth, 0, description);
      return depth.with({ label: alarmId });
    });

    // Ingest starts at most EVENT_SOURCES.ingest.maxConcurrency invocations, so a backlog shows as waiting messages, not throttles.
    const queueAge = usageQueue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: PERIOD });
    this.alarm('UsageQueueAge', queueAge, MAX_USAGE_QUEUE_AGE.toSeconds(), `The oldest usage event has waited in the queue for more than ${MAX_USAGE_QUEUE_AGE.toHumanString()}`);
    // The closes function starts at most EVENT_SOURCES.closes.maxConcurrency invocations, so closes that fall behind show here.
    const closesAge = closesQueue.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: PERIOD });
    this.alarm(
      'ClosesQueueAge',
      closesAge,
      MAX_CLOSES_QUEUE_AGE.toSeconds(),
      `The oldest workspace due to be closed has waited in the closes queue for more than ${MAX_CLOSES_QUEUE_AGE.toHumanString()}`,
    );

    const iteratorAge = (Object.entries(MAX_ITERATOR_AGE) as [StreamConsumer, Duration][]).map(([name, maxAge]) => {
      const fn = functions[name];
      const age = fn.metric('IteratorAge', { statistic: 'Maximum', period: PERIOD });
      this.alarm(`${fn.node.id}IteratorAge`, age, maxAge.toMilliseconds(), `The ${name} function lags its stream by more than ${maxAge.toHumanString()}`);
      return age.with({ label: name });
    });

    const errors: IMetric[] = [];
    const throttles: IMetric[] = [];
    for (const [name, fn] of Object.entries(functions)) {
      const failed = fn.metricErrors({ statistic: 'Sum', period: PERIOD });
      const throttled = fn.metricThrottles({ statistic: 'Sum', period: PERIOD });
      this.alarm(`${fn.node.id}Errors`, failed, 0, `The ${name} function failed`);
      this.alarm(`${fn.node.id}Throttles`, throttled, 0, `Lambda throttled invocations of the ${name} function`);
      errors.push(failed.with({ label: name }));
      throttles.push(throttled.with({ label: name }));
    }

    const tableThrottles: IMetric[] = [];
    const tableErrors: IMetric[] = [];
    const writeUnits: IMetric[] = [];
    for (const [name, table] of Object.entries(tables)) {
      const construct = table.node.id;
      const throttled = sumOverOperations(name, table, 'ThrottledRequests', `${name} throttled`);
      const systemErrors = sumOverOperations(name, table, 'SystemErrors', `${name} system errors`);
      this.alarm(`${construct}TableThrottles`, throttled, 0, `DynamoDB throttled requests to the ${name} table`);
      this.alarm(`${construct}TableSystemErrors`, systemErrors, 0, `DynamoDB answered requests to the ${name} table with a server error`);
      tableThrottles.push(throttled);
      tableErrors.push(systemErrors);
      writeUnits.push(table.metricConsumedWriteCapacityUnits({ statistic: 'Sum', period: PERIOD, label: name }));
    }

    // The ingest function counts every event it receives as accepted, duplicate in its batch, or quarantined;
    // the aggregate counts its parked records and failed commits.
    const serviceMetric = (metricName: string) => new Metric({ namespace: METRICS_NAMESPACE, metricName, dimensionsMap: { service: SERVICE_NAME }, statistic: 'Sum', period: PERIOD });
    const quarantined = serviceMetric('EventsQuarantined');
    const accepted = serviceMetric('EventsAccepted');
    const quarantineRate = new MathExpression({
      expression: '100 * FILL(quarantined, 0) / (FILL(quarantined, 0) + FILL(accepted, 0) + FILL(duplicates, 0))',
      usingMetrics: { quarantined, accepted, duplicates: serviceMetric('DuplicatesInBatch') },
      label: 'quarantined %',
      period: PERIOD,
    });
    this.alarm('QuarantineRate', quarantineRate, MAX_QUARANTINE_PERCENT, `More than ${MAX_QUARANTINE_PERCENT}% of received events were quarantined`);
    // The aggregate answers a failed commit or threshold evaluation with batchItemFailures (Lambda resumes from the
    // record named), which Lambda's Errors metric never counts: these metrics of its own make failures and parked records visible.
    this.alarm('AggregateRecordsParked', serviceMetric('RecordsParked'), 0, 'DynamoDB refused ledger records on their own; they are parked and not counted');
    this.alarm('AggregateCommitFailures', serviceMetric('RollupCommitFailures'), 0, 'A rollup commit failed after its retries; the batch resumes from the failed record');
    this.alarm('AggregateThresholdFailures', serviceMetric('ThresholdEvaluationFailures'), 0, 'Threshold evaluation failed after the rollups were applied; the batch is retried');

    this.dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(3) });
    const graph = (title: string, left: IMetric[], options: { leftLabel?: string } = {}) =>
      new GraphWidget({ title, left, width: 12, height: 6, ...(options.leftLabel ? { leftYAxis: { label: options.leftLabel, showUnits: false } } : {}) });
    this.dashboard.addWidgets(
      graph('Ingest: events per 5 minutes', [
        usageQueue.metricNumberOfMessagesReceived({ statistic: 'Sum', period: PERIOD, label: 'messages received' }),
        accepted.with({ label: 'events accepted' }),
        quarantined.with({ label: 'events quarantined' }),
      ]),
      graph('Quarantine rate', [quarantineRate], { leftLabel: '%' }),
    );
    // Per reason (a dimension the ingest function adds to each reason's count): what producers get wrong.
    const byReason = new MathExpression({
      expression: `SELECT SUM(EventsQuarantined) FROM SCHEMA("${METRICS_NAMESPACE}", reason, service) GROUP BY reason`,
      usingMetrics: {},
      label: 'quarantined by reason',
      period: PERIOD,
    });
    this.dashboard.addWidgets(graph('Stream iterator age (aggregate, notify, export)', iteratorAge, { leftLabel: 'ms' }), graph('Write units per table', writeUnits));
    this.dashboard.addWidgets(graph('Function errors', errors), graph('Function throttles', throttles));
    this.dashboard.addWidgets(graph('Table throttled requests', tableThrottles), graph('Table system errors', tableErrors));
    this.dashboard.addWidgets(graph('Dead-letter and failure queue depth', deadLetterDepth), graph('Quarantined events by reason', [byReason]));
    this.dashboard.addWidgets(new AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: Math.ceil(this.alarms.length / 4) + 1 }));
  }

  /** Fires when the metric goes above the threshold in one period, and tells the topic (and again when it recovers). */
  private alarm(id: string, metric: IMetric, threshold: number, description: string): Alarm {
    const alarm = new Alarm(this, `${id}Alarm`, {
      metric,
      threshold,
      alarmDescription: `${description}. Runbook: docs/operations.md, "Runbook", ${id}.`,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      // No data means nothing happened (no dead letters, no invocations, no throttles), which is healthy.
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    const action = new SnsAction(this.topic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarms.push(alarm);
    return alarm;
  }
}

/**
 * A DynamoDB per-operation metric summed over TABLE_OPERATIONS. DynamoDB publishes these only for
 * operations that had one, so each is filled with zeros: a plain `m1 + m2` would be empty unless every
 * operation had throttles in the same period.
 */
function sumOverOperations(name: string, table: ITable, metricName: 'ThrottledRequests' | 'SystemErrors', label: string): MathExpression {
  // Ids are unique per table and metric, because one graph shows the sums of every table.
  const usingMetrics = Object.fromEntries(
    TABLE_OPERATIONS.map((operation, i) => [
      `${name}${metricName}${i}`,
      table.metric(metricName, { dimensionsMap: { TableName: table.tableName, Operation: operation }, statistic: 'Sum', period: PERIOD }),
    ]),
  );
  return new MathExpression({
    expression: `SUM([${Object.keys(usingMetrics)
      .map((m) => `FILL(${m}, 0)`)
      .join(', ')}])`,
    usingMetrics,
    label,
    period: PERIOD,
  });
}
