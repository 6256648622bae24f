import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { IConstruct } from 'constructs';
import { buildApp, type UsagePipelineApp } from '../../bin/app';
import { FUNCTIONS, TABLES } from '../../functions/contract/resources';
import type { FunctionName } from '../../lib/usage-function';

/** The alarms and the dashboard, read from the synthesized template. */

interface AlarmJson {
  Properties: {
    AlarmActions?: unknown[];
    OKActions?: unknown[];
    Threshold: number;
    ComparisonOperator: string;
    EvaluationPeriods: number;
    TreatMissingData: string;
    AlarmDescription: string;
    MetricName?: string;
    Namespace?: string;
    Statistic?: string;
    Period?: number;
    Dimensions?: { Name: string; Value: unknown }[];
    Metrics?: {
      Id: string;
      Expression?: string;
      ReturnData?: boolean;
      MetricStat?: { Metric: { MetricName: string; Namespace: string; Dimensions: { Name: string; Value: unknown }[] }; Stat: string };
    }[];
  };
}
type TableName = keyof typeof TABLES;

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];
const TABLE_NAMES = Object.keys(TABLES) as TableName[];
/** What the application sends to DynamoDB (the operations a table alarm must watch). */
const OPERATIONS = ['GetItem', 'BatchGetItem', 'Query', 'Scan', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems', 'GetRecords'];

let built: UsagePipelineApp;
let stateless: Template;
let alarms: Record<string, AlarmJson>;

const logicalId = (construct: IConstruct) => Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);
const topicRef = () => ({ Ref: logicalId(built.stateless.operations.topic) });

beforeAll(() => {
  built = buildApp(fileURLToPath(new URL('fixtures/config.json', import.meta.url)), { context: { ...cdkJson.context, [FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT]: false } });
  stateless = Template.fromStack(built.stateless);
  alarms = stateless.findResources('AWS::CloudWatch::Alarm') as Record<string, AlarmJson>;
});

/** The one alarm whose logical id starts with `Operations{id}Alarm`. */
function alarmNamed(id: string): AlarmJson {
  const found = Object.entries(alarms).filter(([logical]) => new RegExp(`^Operations${id}Alarm[0-9A-F]{8}$`).test(logical));
  expect(found.map(([logical]) => logical)).toHaveLength(1);
  return found[0]?.[1] as AlarmJson;
}

const functionRef = (name: FunctionName) => ({ Ref: logicalId(built.stateless.functions[name]) });

describe('alarm topic', () => {
  it('is encrypted with a rotated customer managed key that CloudWatch may use, and refuses plain HTTP', () => {
    const key = logicalId(built.stateless.operations.topic.node.scope?.node.tryFindChild('AlarmTopicKey') as IConstruct);
    stateless.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [key, 'Arn'] } });
    stateless.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
          }),
        ]),
      },
    });
    stateless.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [topicRef()],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sns:Publish', Principal: { Service: 'cloudwatch.amazonaws.com' } }),
        ]),
      },
    });
    stateless.resourceCountIs('AWS::SNS::Topic', 1);
  });
});

describe('alarms', () => {
  it('every alarm tells the one topic when it fires and when it recovers, fires above its threshold in one period, and names its runbook entry', () => {
    expect(Object.keys(alarms).length).toBeGreaterThan(0);
    for (const [logical, { Properties: p }] of Object.entries(alarms)) {
      expect([logical, p.AlarmActions, p.OKActions]).toEqual([logical, [topicRef()], [topicRef()]]);
      expect(p).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching' });
      const id = /^Operations(\w+)Alarm[0-9A-F]{8}$/.exec(logical)?.[1];
      expect(p.AlarmDescription).toContain(`Runbook: docs/operations.md, "Runbook", ${id}.`);
    }
  });

  it("has exactly the alarms below: 6 dead-letter and failure queues, the usage and closes queues' oldest messages, 3 stream mappings, errors and throttles of 7 functions, throttles and system errors of 8 tables, the quarantine rate, the aggregate's parked records, failed commits and failed threshold evaluations", () => {
    expect(FUNCTION_NAMES).toHaveLength(7);
    expect(Object.keys(alarms)).toHaveLength(6 + 2 + 3 + 2 * FUNCTION_NAMES.length + 2 * TABLE_NAMES.length + 1 + 3);
  });

  it('every alarm has its entry in the runbook of docs/operations.md', () => {
    const runbook =
      readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')
        .split(/^## Runbook$/m)[1]
        ?.split(/^## /m)[0] ?? '';
    const headings = [...runbook.matchAll(/^### (.+)$/gm)].map((m) => m[1] ?? '');
    // A heading names its alarms, or names the tables of an alarm made once per table ("one per table: Ledger, Rollups, …").
    const named = new Set(headings.flatMap((h) => h.match(/\b[A-Z]\w+\b/g) ?? []));
    const perTable = headings.flatMap((h) => /one per table: ([^)]+)\)/.exec(h)?.[1]?.split(', ') ?? []);
    expect(perTable.sort()).toEqual(TABLE_NAMES.map((name) => built.stateful.tables[name].node.id).sort());
    for (const logical of Object.keys(alarms)) {
      const id = /^Operations(\w+)Alarm[0-9A-F]{8}$/.exec(logical)?.[1] ?? '';
      const table = /^(\w+)Table(Throttles|SystemErrors)$/.exec(id)?.[1];
      expect([id, named.has(id) || (table !== undefined && perTable.includes(table))]).toEqual([id, true]);
    }
  });

  it('ClosesQueueAge fires when the oldest workspace due has waited more than 30 minutes in the closes queue (closes fall behind the hourly runs)', () => {
    expect(alarmNamed('ClosesQueueAge').Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateAgeOfOldestMessage',
      Statistic: 'Maximum',
      Threshold: 1800,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(built.stateless.closesQueue), 'QueueName'] } }],
    });
  });

  it("UsageQueueAge fires when the oldest usage event has waited more than 5 minutes (ingest's capped concurrency keeps a backlog there)", () => {
    expect(alarmNamed('UsageQueueAge').Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateAgeOfOldestMessage',
      Statistic: 'Maximum',
      Threshold: 300,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::ImportValue': expect.stringContaining(`${logicalId(built.stateful.usageQueue)}QueueName`) } }],
    });
  });

  it.each([
    ['AggregateRecordsParked', 'RecordsParked'],
    ['AggregateCommitFailures', 'RollupCommitFailures'],
    ['AggregateThresholdFailures', 'ThresholdEvaluationFailures'],
  ])('%s fires on the first %s the aggregate function counts', (id, metricName) => {
    expect(alarmNamed(id).Properties).toMatchObject({
      Namespace: 'UsagePipeline',
      MetricName: metricName,
      Statistic: 'Sum',
      Threshold: 0,
      Dimensions: [{ Name: 'service', Value: 'usage-pipeline' }],
    });
  });

  it.each([
    ['UsageDeadLetters', () => ({ 'Fn::ImportValue': expect.stringContaining(`${logicalId(built.stateful.deadLetterQueue)}QueueName`) })],
    ['AggregateFailures', () => ({ 'Fn::GetAtt': [logicalId(built.stateless.aggregateFailures), 'QueueName'] })],
    ['NotifyFailures', () => ({ 'Fn::GetAtt': [logicalId(built.stateless.notifyFailures), 'QueueName'] })],
    ['ExportFailures', () => ({ 'Fn::GetAtt': [logicalId(built.stateless.exportFailures), 'QueueName'] })],
    ['SchedulerFailures', () => ({ 'Fn::GetAtt': [logicalId(built.stateless.schedulerFailures), 'QueueName'] })],
    ['ClosesDeadLetters', () => ({ 'Fn::GetAtt': [logicalId(built.stateless.closesDeadLetterQueue), 'QueueName'] })],
  ])('%s fires on the first message in its queue', (id, queueName) => {
    expect(alarmNamed(id).Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Statistic: 'Maximum',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: queueName() }],
    });
  });

  it.each([
    ['aggregate', 5],
    ['notify', 15],
    ['export', 30],
  ] as const)('the %s stream mapping alarms when it lags more than %i minutes', (name, minutes) => {
    const id = `${built.stateless.functions[name].node.id}IteratorAge`;
    expect(alarmNamed(id).Properties).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'IteratorAge',
      Statistic: 'Maximum',
      Threshold: minutes * 60_000,
      Dimensions: [{ Name: 'FunctionName', Value: functionRef(name) }],
    });
  });

  it('every event source mapping on a stream has an iterator age alarm', () => {
    const mappings = Object.values(stateless.findResources('AWS::Lambda::EventSourceMapping')) as { Properties: { FunctionName: unknown; StartingPosition?: string } }[];
    const streamConsumers = mappings.filter((m) => m.Properties.StartingPosition).map((m) => JSON.stringify(m.Properties.FunctionName));
    expect(streamConsumers).toHaveLength(3);
    const watched = Object.values(alarms)
      .filter((a) => a.Properties.MetricName === 'IteratorAge')
      .map((a) => JSON.stringify(a.Properties.Dimensions?.[0]?.Value));
    expect(watched.sort()).toEqual(streamConsumers.sort());
  });

  it.each(FUNCTION_NAMES)('%s: any error and any throttled invocation alarm', (name) => {
    for (const [suffix, metricName] of [
      ['Errors', 'Errors'],
      ['Throttles', 'Throttles'],
    ]) {
      expect(alarmNamed(`${built.stateless.functions[name].node.id}${suffix}`).Properties).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: metricName,
        Statistic: 'Sum',
        Threshold: 0,
        Dimensions: [{ Name: 'FunctionName', Value: functionRef(name) }],
      });
    }
  });

  it.each(TABLE_NAMES)('table %s: any throttled request and any system error, summed over every operation the app sends, alarm', (name) => {
    const table = built.stateful.tables[name];
    for (const [suffix, metricName] of [
      ['TableThrottles', 'ThrottledRequests'],
      ['TableSystemErrors', 'SystemErrors'],
    ]) {
      const { Properties: p } = alarmNamed(`${table.node.id}${suffix}`);
      expect(p.Threshold).toBe(0);
      const stats = (p.Metrics ?? []).filter((m) => m.MetricStat);
      const [expression, ...others] = (p.Metrics ?? []).filter((m) => m.Expression);
      expect(others).toEqual([]);
      // Missing operations count as zero, so one throttled operation is enough to fire.
      expect(expression).toMatchObject({ ReturnData: true, Expression: `SUM([${stats.map((m) => `FILL(${m.Id}, 0)`).join(', ')}])` });
      expect(stats.map((m) => m.MetricStat?.Metric.Dimensions.find((d) => d.Name === 'Operation')?.Value).sort()).toEqual([...OPERATIONS].sort());
      for (const { MetricStat } of stats) {
        expect(MetricStat).toMatchObject({ Stat: 'Sum', Metric: { Namespace: 'AWS/DynamoDB', MetricName: metricName } });
        expect(MetricStat?.Metric.Dimensions).toContainEqual({ Name: 'TableName', Value: { 'Fn::ImportValue': expect.stringContaining(`Ref${logicalId(table)}`) } });
      }
    }
  });

  it('the quarantine rate alarms above 5% of the events the ingest function received, from its own metrics', () => {
    const { Properties: p } = alarmNamed('QuarantineRate');
    expect(p.Threshold).toBe(5);
    const byId = Object.fromEntries((p.Metrics ?? []).map((m) => [m.Id, m]));
    const expression = (p.Metrics ?? []).find((m) => m.ReturnData !== false && m.Expression);
    expect(expression?.Expression).toBe('100 * FILL(quarantined, 0) / (FILL(quarantined, 0) + FILL(accepted, 0) + FILL(duplicates, 0))');
    for (const [id, metricName] of [
      ['quarantined', 'EventsQuarantined'],
      ['accepted', 'EventsAccepted'],
      ['duplicates', 'DuplicatesInBatch'],
    ] as const) {
      // The totals the ingest function emits with its one default dimension (test/integration/log-scrubbing.test.ts reads them).
      expect(byId[id]?.MetricStat).toEqual({ Metric: { Namespace: 'UsagePipeline', MetricName: metricName, Dimensions: [{ Name: 'service', Value: 'usage-pipeline' }] }, Period: 300, Stat: 'Sum' });
    }
  });
});

describe('dashboard', () => {
  interface Widget {
    type: string;
    properties: { title: string; metrics?: unknown[][]; alarms?: string[] };
  }
  let widgets: Widget[];

  beforeAll(() => {
    const [dashboard, ...others] = Object.values(stateless.findResources('AWS::CloudWatch::Dashboard')) as { Properties: { DashboardBody: unknown } }[];
    expect(others).toEqual([]);
    // The body is a Fn::Join of JSON text and references; each reference becomes a readable placeholder.
    const body = dashboard?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
    const text = body['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : placeholder(part))).join('');
    widgets = (JSON.parse(text) as { widgets: Widget[] }).widgets;
  });

  function placeholder(reference: unknown): string {
    const r = reference as { Ref?: string; 'Fn::GetAtt'?: [string, string]; 'Fn::ImportValue'?: string };
    if (r.Ref) return `Ref:${r.Ref}`;
    if (r['Fn::GetAtt']) return `GetAtt:${r['Fn::GetAtt'].join('.')}`;
    if (r['Fn::ImportValue']) return `Import:${r['Fn::ImportValue']}`;
    return 'Token';
  }

  const graph = (title: string) => {
    const found = widgets.filter((w) => w.properties.title === title);
    expect(found).toHaveLength(1);
    return JSON.stringify(found[0]?.properties.metrics);
  };

  it('shows the pipeline: ingest rate, quarantine, iterator age, write units, errors, throttles, dead letters and every alarm', () => {
    expect(widgets.map((w) => w.properties.title)).toEqual([
      'Ingest: events per 5 minutes',
      'Quarantine rate',
      'Stream iterator age (aggregate, notify, export)',
      'Write units per table',
      'Function errors',
      'Function throttles',
      'Table throttled requests',
      'Table system errors',
      'Dead-letter and failure queue depth',
      'Quarantined events by reason',
      'Alarms',
    ]);
  });

  it('graphs what each title says', () => {
    for (const name of ['NumberOfMessagesReceived', 'EventsAccepted', 'EventsQuarantined']) expect(graph('Ingest: events per 5 minutes')).toContain(`"${name}"`);
    expect(graph('Quarantine rate')).toContain('100 * FILL(quarantined, 0)');
    expect(graph('Quarantined events by reason')).toContain('GROUP BY reason');
    for (const name of ['aggregate', 'notify', 'export'] as const) expect(graph('Stream iterator age (aggregate, notify, export)')).toContain(`Ref:${logicalId(built.stateless.functions[name])}`);
    for (const name of TABLE_NAMES) expect(graph('Write units per table')).toContain(`Ref${logicalId(built.stateful.tables[name])}`);
    expect(graph('Write units per table').match(/ConsumedWriteCapacityUnits/g)).toHaveLength(TABLE_NAMES.length);
    for (const title of ['Function errors', 'Function throttles']) {
      for (const name of FUNCTION_NAMES) expect(graph(title)).toContain(`Ref:${logicalId(built.stateless.functions[name])}`);
    }
    for (const title of ['Table throttled requests', 'Table system errors']) expect(graph(title).match(/SUM\(\[/g)).toHaveLength(TABLE_NAMES.length);
    expect(graph('Dead-letter and failure queue depth').match(/ApproximateNumberOfMessagesVisible/g)).toHaveLength(6);
  });

  it('the alarm widget shows every alarm', () => {
    const [widget] = widgets.filter((w) => w.type === 'alarm');
    expect(widget?.properties.alarms?.sort()).toEqual(
      Object.keys(alarms)
        .map((id) => `GetAtt:${id}.Arn`)
        .sort(),
    );
  });
});
