import { CfnOutput, CfnParameter, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import { HttpApi, HttpMethod, type HttpRoute, LogGroupLogDestination } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { FilterCriteria, FilterRule, StartingPosition } from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq, SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { type IQueue, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { BUCKETS, EVENT_SOURCES, QUEUES, SCHEDULES, TABLES } from '../functions/contract/resources';
import { DEPLOYED_ROUTES } from '../functions/contract/routes';
import { Operations } from './operations';
import type { TableName } from './stateful-stack';
import { type FunctionName, UsageFunction } from './usage-function';

export interface StatelessStackProps extends StackProps {
  readonly tables: Readonly<Record<TableName, ITable>>;
  readonly usageQueue: IQueue;
  readonly deadLetterQueue: IQueue;
  /** Cycle reports (written by the closes function, summed up by the scheduler) and export files (written by the export function, downloaded through the API). */
  readonly reportsBucket: IBucket;
  /** Absolute path of the validated configuration file that every function bundles. */
  readonly configFile: string;
  /** The configuration's `notifications.from`: the only address notify may send as. */
  readonly emailSender: string;
}

type StreamSource = (typeof EVENT_SOURCES)['aggregate' | 'notify' | 'export'];

/** Per-account guard rails for the HTTP API; producers with real volume use SQS directly. */
const API_THROTTLE = { rateLimit: 50, burstLimit: 100 };
/** Times EventBridge Scheduler retries an invocation the Lambda service refused, before the dead-letter queue. */
const SCHEDULE_RETRY_ATTEMPTS = 10;

/** Functions, their event sources, the HTTP API and the alarms: nothing here holds data. */
export class StatelessStack extends Stack {
  readonly functions: Readonly<Record<FunctionName, UsageFunction>>;
  /** Where the aggregate mapping records batches it gave up on (shard and sequence range, not the data). */
  readonly aggregateFailures: Queue;
  /** Where the notify mapping records alert batches it gave up on (shard and sequence range, not the data). */
  readonly notifyFailures: Queue;
  /** Where the export mapping records export jobs it gave up on (shard and sequence range, not the data). */
  readonly exportFailures: Queue;
  /** The SES configuration set threshold emails name; empty means none. */
  readonly sesConfigurationSet: CfnParameter;
  /** Workspaces due to be closed, one id per message, from the scheduler to the closes function. */
  readonly closesQueue: Queue;
  /** Closes messages received QUEUES.closes.maxReceiveCount times without a close. */
  readonly closesDeadLetterQueue: Queue;
  /** Where EventBridge Scheduler puts close-due invocations it could not deliver after its retries. */
  readonly schedulerFailures: Queue;
  readonly closeDueSchedule: Schedule;
  /** What EventBridge Scheduler assumes to invoke the scheduler function and to dead-letter into schedulerFailures. */
  readonly scheduleRole: Role;
  readonly api: HttpApi;
  readonly apiRoutes: HttpRoute[];
  /** Alarms (on one SNS topic) and the dashboard. */
  readonly operations: Operations;

  constructor(scope: Construct, id: string, props: StatelessStackProps) {
    super(scope, id, props);
    const { tables, configFile, reportsBucket } = props;
    const reports = BUCKETS.reports;

    const ingest = new UsageFunction(this, 'Ingest', { name: 'ingest', configFile })
      .bindTable(tables.ledger, TABLES.ledger, 'write')
      .bindTable(tables.quarantine, TABLES.quarantine, 'write')
      .bindTable(tables.subjects, TABLES.subjects, 'read');
    const aggregate = new UsageFunction(this, 'Aggregate', { name: 'aggregate', configFile })
      .bindTable(tables.rollups, TABLES.rollups, 'readWrite')
      // Thresholds crossed become alert items (conditional put, once each); plans and contacts decide which.
      .bindTable(tables.alerts, TABLES.alerts, 'readWrite')
      .bindTable(tables.subjects, TABLES.subjects, 'read')
      .bindTable(tables.accounts, TABLES.accounts, 'read');
    const api = new UsageFunction(this, 'Api', { name: 'api', configFile })
      .bindTable(tables.rollups, TABLES.rollups, 'read')
      // PUT /v1/workspaces/{id} creates and changes workspaces; an account's rankings find its workspaces in the account index.
      .bindTable(tables.subjects, TABLES.subjects, 'readWrite')
      .bindIndex(tables.subjects, TABLES.subjects, TABLES.subjects.indexes[1].name)
      .bindTable(tables.quarantine, TABLES.quarantine, 'read')
      // Grants are read and added through the API.
      .bindTable(tables.accounts, TABLES.accounts, 'readWrite')
      // POST /v1/workspaces/{id}/usages enqueues events for the ingest function.
      .bindQueue(props.usageQueue, QUEUES.usageEvents.envVar, 'send')
      // Every request's key is looked up here; admins create and revoke keys through the API.
      .bindTable(tables.apiKeys, TABLES.apiKeys, 'readWrite')
      // POST /v1/exports creates export jobs, GET reads them.
      .bindTable(tables.exports, TABLES.exports, 'readWrite')
      // Finished exports are downloaded through presigned GetObject URLs; cycle reports are built from the tables.
      .bindBucket(reportsBucket, reports.envVar, 'read', reports.exportsPrefix);
    // The closes queue lives here, not in the stateful stack: it holds only workspace ids, and a workspace keeps its
    // next-due instant until a close moves it, so the next hourly run sends every id again whatever the queue lost.
    // Beside its producer and its consumer, its visibility timeout changes with the closes function's timeout in one deploy.
    this.closesDeadLetterQueue = new Queue(this, QUEUES.closesDeadLetter.name, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(QUEUES.closesDeadLetter.retentionDays),
    });
    const closesQueue = QUEUES.closes;
    this.closesQueue = new Queue(this, `${closesQueue.name}Queue`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(closesQueue.visibilityTimeoutSeconds),
      retentionPeriod: Duration.days(closesQueue.retentionDays),
      deadLetterQueue: { queue: this.closesDeadLetterQueue, maxReceiveCount: closesQueue.maxReceiveCount },
    });

    // One run at a time, without reserved concurrency (which accounts with a low concurrency quota cannot grant):
    // each run holds a lease in the accounts table, and a run that finds it held sends nothing (functions/scheduler.handler.ts).
    const scheduler = new UsageFunction(this, 'Scheduler', { name: 'scheduler', configFile })
      // It finds the workspaces due in the due index (keys only) and reads nothing else of the subjects table.
      .bindIndex(tables.subjects, TABLES.subjects, TABLES.subjects.indexes[0].name)
      .bindQueue(this.closesQueue, closesQueue.envVar, 'send')
      // The run's lease, and the cycle starts whose summary is due (read, then cleared).
      .bindTable(tables.accounts, TABLES.accounts, 'readWrite')
      // Reads reports/{cycleStart}/{subject}.json back for the cycle's summary, and writes reports/{cycleStart}/_summary.json.
      .bindBucket(reportsBucket, reports.envVar, 'readWrite', reports.reportsPrefix);
    // Closes queue → each workspace closed under a claim on its subjects item.
    const closes = new UsageFunction(this, 'Closes', { name: 'closes', configFile })
      // The claim and its release are conditional updates (the claim returns the workspace): no read of the table.
      .bindTable(tables.subjects, TABLES.subjects, 'write')
      // A cycle close marks the cycle's rollup items closed; reports and day snapshots read the rollups.
      .bindTable(tables.rollups, TABLES.rollups, 'readWrite')
      // Snapshots, spillover grants, adjustments and the summary marks.
      .bindTable(tables.accounts, TABLES.accounts, 'readWrite')
      // Writes reports/{cycleStart}/{subject}.json; it reads no report.
      .bindBucket(reportsBucket, reports.envVar, 'write', reports.reportsPrefix);
    this.sesConfigurationSet = new CfnParameter(this, 'SesConfigurationSet', {
      type: 'String',
      description: 'SES configuration set threshold emails use (empty: none)',
      default: '',
    });
    // Alert items → threshold emails; it marks each alert sent, and reads what the email says.
    const notify = new UsageFunction(this, 'Notify', { name: 'notify', configFile })
      .bindTable(tables.alerts, TABLES.alerts, 'readWrite')
      .bindTable(tables.subjects, TABLES.subjects, 'read')
      .bindTable(tables.rollups, TABLES.rollups, 'read')
      .bindTable(tables.accounts, TABLES.accounts, 'read')
      // The identity notify may send as is the configured sender itself, so a mismatch cannot be deployed.
      .bindEmail(props.emailSender, this.sesConfigurationSet.valueAsString);
    // Export jobs → one file each under exports/; it records progress and the result on the job item.
    const exportFunction = new UsageFunction(this, 'Export', { name: 'export', configFile })
      .bindTable(tables.rollups, TABLES.rollups, 'read')
      .bindTable(tables.subjects, TABLES.subjects, 'read')
      .bindTable(tables.exports, TABLES.exports, 'readWrite')
      .bindBucket(reportsBucket, reports.envVar, 'write', reports.exportsPrefix);
    this.functions = { ingest, aggregate, api, scheduler, closes, notify, export: exportFunction };

    ingest.addEventSource(
      new SqsEventSource(props.usageQueue, {
        batchSize: EVENT_SOURCES.ingest.batchSize,
        maxBatchingWindow: Duration.seconds(EVENT_SOURCES.ingest.maxBatchingWindowSeconds),
        maxConcurrency: EVENT_SOURCES.ingest.maxConcurrency,
        reportBatchItemFailures: true,
      }),
    );
    closes.addEventSource(
      new SqsEventSource(this.closesQueue, {
        batchSize: EVENT_SOURCES.closes.batchSize,
        maxBatchingWindow: Duration.seconds(EVENT_SOURCES.closes.maxBatchingWindowSeconds),
        maxConcurrency: EVENT_SOURCES.closes.maxConcurrency,
        reportBatchItemFailures: true,
      }),
    );

    this.aggregateFailures = this.streamMapping('Aggregate', aggregate, tables.ledger, EVENT_SOURCES.aggregate);
    // Only new alerts that ask for an email; the function's own updates (marking an alert sent) never invoke it.
    this.notifyFailures = this.streamMapping('Notify', notify, tables.alerts, EVENT_SOURCES.notify, [
      FilterCriteria.filter({
        eventName: FilterRule.isEqual('INSERT'),
        dynamodb: { NewImage: { notify: { BOOL: FilterRule.isEqual(true) } } },
      }),
    ]);
    // Only new jobs; the function's own status updates (running, done, failed) never invoke it.
    this.exportFailures = this.streamMapping('Export', exportFunction, tables.exports, EVENT_SOURCES.export, [FilterCriteria.filter({ eventName: FilterRule.isEqual('INSERT') })]);

    this.schedulerFailures = new Queue(this, 'SchedulerFailures', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(QUEUES.deadLetter.retentionDays),
    });
    // The same trust LambdaInvoke would create, but named here so that its grants can be tested and acknowledged.
    this.scheduleRole = new Role(this, 'CloseDueScheduleRole', {
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            // Confused-deputy guard: only schedules of this account's default group may assume the role.
            'aws:SourceAccount': this.account,
            'aws:SourceArn': this.formatArn({ service: 'scheduler', resource: 'schedule-group', resourceName: 'default' }),
          },
        },
      }),
    });
    const closeDue = SCHEDULES.closeDue;
    this.closeDueSchedule = new Schedule(this, 'CloseDueSchedule', {
      description: 'Closes every day and billing cycle that has become due',
      schedule: ScheduleExpression.expression(closeDue.expression),
      target: new LambdaInvoke(scheduler, {
        role: this.scheduleRole,
        input: ScheduleTargetInput.fromObject({ job: closeDue.job }),
        retryAttempts: SCHEDULE_RETRY_ATTEMPTS,
        // An invocation older than one interval is superseded by the next run, which closes whatever is due.
        maxEventAge: Duration.minutes(closeDue.intervalMinutes),
        deadLetterQueue: this.schedulerFailures,
      }),
    });

    this.api = new HttpApi(this, 'HttpApi', {
      // API keys are checked by the API function itself (see docs/api.md, "API keys"): a gateway authorizer
      // cannot answer a missing or bad key with the API's own error body.
      description: 'Usage pipeline API (Bearer API keys)',
      // The default stage is added below, because only an explicit stage takes throttling and access logs.
      createDefaultStage: false,
    });
    const integration = new HttpLambdaIntegration('ApiIntegration', api);
    this.apiRoutes = DEPLOYED_ROUTES.flatMap(({ method, path }) => this.api.addRoutes({ path, methods: [HttpMethod[method]], integration }));
    const accessLogs = new LogGroup(this, 'ApiAccessLogs', { retention: RetentionDays.ONE_MONTH });
    const stage = this.api.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: API_THROTTLE,
      accessLogSettings: { destination: new LogGroupLogDestination(accessLogs), format: accessLogFormat() },
    });

    this.operations = new Operations(this, 'Operations', {
      functions: this.functions,
      tables,
      usageQueue: props.usageQueue,
      closesQueue: this.closesQueue,
      deadLetters: {
        UsageDeadLetters: { queue: props.deadLetterQueue, description: 'Usage events moved to the dead-letter queue' },
        AggregateFailures: { queue: this.aggregateFailures, description: 'The aggregate mapping gave up on a ledger stream batch' },
        NotifyFailures: { queue: this.notifyFailures, description: 'The notify mapping gave up on an alerts stream batch' },
        ExportFailures: { queue: this.exportFailures, description: 'The export mapping gave up on an export job' },
        SchedulerFailures: { queue: this.schedulerFailures, description: 'EventBridge Scheduler could not invoke the scheduler function' },
        ClosesDeadLetters: { queue: this.closesDeadLetterQueue, description: `Workspace closes that failed ${QUEUES.closes.maxReceiveCount} times; the next hourly run sends them again` },
      },
    });

    new CfnOutput(this, 'ApiUrl', { value: stage.url, description: 'HTTP API base URL (Authorization: Bearer <API key>)' });
  }

  /**
   * A table's stream → a function, as its definition in EVENT_SOURCES says, with partial batch failures and
   * an on-failure queue (`{id}Failures`). Stream positions expire after 24 h, so that queue holds pointers,
   * not data: it may go with the stack.
   */
  private streamMapping(id: string, fn: UsageFunction, table: ITable, source: StreamSource, filters?: Record<string, unknown>[]): Queue {
    const failures = new Queue(this, `${id}Failures`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(QUEUES.deadLetter.retentionDays),
    });
    fn.addEventSource(
      new DynamoEventSource(table, {
        startingPosition: StartingPosition[source.startingPosition],
        batchSize: source.batchSize,
        maxBatchingWindow: Duration.seconds(source.maxBatchingWindowSeconds),
        // A tumbling window is what puts the shard id in the aggregate function's events.
        ...('tumblingWindowSeconds' in source ? { tumblingWindow: Duration.seconds(source.tumblingWindowSeconds) } : {}),
        parallelizationFactor: source.parallelizationFactor,
        bisectBatchOnError: source.bisectBatchOnError,
        retryAttempts: source.retryAttempts,
        reportBatchItemFailures: true,
        onFailure: new SqsDlq(failures),
        ...(filters ? { filters } : {}),
      }),
    );
    return failures;
  }
}

/** JSON access log lines with HTTP API context variables (the REST API presets name fields HTTP APIs lack). */
function accessLogFormat(): AccessLogFormat {
  return AccessLogFormat.custom(
    JSON.stringify({
      requestId: '$context.requestId',
      ip: '$context.identity.sourceIp',
      caller: '$context.identity.userArn',
      requestTime: '$context.requestTime',
      routeKey: '$context.routeKey',
      status: '$context.status',
      responseLength: '$context.responseLength',
      latencyMs: '$context.responseLatency',
      integrationError: '$context.integrationErrorMessage',
    }),
  );
}
