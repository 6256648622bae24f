import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { buildApp, type UsagePipelineApp } from '../../bin/app';
import { CONFIG_FILE_ENV, EVENT_SOURCES, FUNCTIONS, QUEUES, TABLES } from '../../functions/adapters/resources';
import type { FunctionName } from '../../lib/usage-function';

interface CfnResourceJson {
  Type: string;
  Properties: Record<string, unknown>;
}
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

let built: UsagePipelineApp;
let stateful: Template;
let stateless: Template;

beforeAll(() => {
  // One synth for the whole file: it bundles three functions. The feature flags are those the CLI passes;
  // nag findings are left to their own test below instead of failing every test through synth.
  built = buildApp(fixture('config.json'), { context: { ...cdkJson.context, [FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT]: false } });
  stateful = Template.fromStack(built.stateful);
  stateless = Template.fromStack(built.stateless);
});

/** The synthesized resource behind a construct (its default child, or itself for L1 constructs). */
function resourceOf(construct: IConstruct): { logicalId: string; resource: CfnResourceJson } {
  const element = (construct.node.defaultChild ?? construct) as CfnElement;
  const stack = Stack.of(construct);
  const logicalId = stack.getLogicalId(element);
  const template = stack === built.stateful ? stateful : stateless;
  const resource = (template.toJSON().Resources as Record<string, CfnResourceJson>)[logicalId];
  if (!resource) throw new Error(`no resource ${logicalId} in ${stack.stackName}`);
  return { logicalId, resource };
}

function policyStatements(name: FunctionName): Statement[] {
  const policy = built.stateless.functions[name].role?.node.tryFindChild('DefaultPolicy');
  if (!policy) throw new Error(`${name} has no default policy`);
  return (resourceOf(policy).resource.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
}

const actionsOf = (statements: Statement[]) => statements.flatMap((s) => [s.Action].flat());

describe('stateful stack', () => {
  it.each(Object.entries(TABLES))('table %s is built from its definition', (name, definition) => {
    const { logicalId } = resourceOf(built.stateful.tables[name as keyof typeof TABLES]);
    const keys = [definition.partitionKey, ...('sortKey' in definition ? [definition.sortKey] : [])];
    stateful.templateMatches({
      Resources: {
        [logicalId]: {
          DeletionPolicy: 'Retain',
          Properties: {
            KeySchema: keys.map((key, i) => ({ AttributeName: key.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
            AttributeDefinitions: keys.map((key) => ({ AttributeName: key.name, AttributeType: key.type })),
            BillingMode: 'PAY_PER_REQUEST',
            SSESpecification: { SSEEnabled: true },
            PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: definition.pointInTimeRecovery },
            DeletionProtectionEnabled: true,
            TimeToLiveSpecification: 'timeToLiveAttribute' in definition ? { AttributeName: definition.timeToLiveAttribute, Enabled: true } : Match.absent(),
            StreamSpecification: 'stream' in definition ? { StreamViewType: definition.stream } : Match.absent(),
          },
        },
      },
    });
  });

  it('has exactly the tables of resources.ts', () => {
    stateful.resourceCountIs('AWS::DynamoDB::Table', Object.keys(TABLES).length);
  });

  it('sends a message to the dead-letter queue after maxReceiveCount receives', () => {
    const usage = QUEUES.usageEvents;
    stateful.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: usage.visibilityTimeoutSeconds,
      MessageRetentionPeriod: usage.retentionDays * 86_400,
      RedrivePolicy: { maxReceiveCount: usage.maxReceiveCount, deadLetterTargetArn: { 'Fn::GetAtt': [resourceOf(built.stateful.deadLetterQueue).logicalId, 'Arn'] } },
    });
    // Lambda's guidance for SQS sources: visibility at least six times the function timeout.
    expect(usage.visibilityTimeoutSeconds).toBeGreaterThanOrEqual(6 * FUNCTIONS.ingest.timeoutSeconds);
  });

  it.each([
    ['stateful', () => stateful],
    ['stateless', () => stateless],
  ])('%s: every queue is encrypted and refuses plain HTTP', (_stack, template) => {
    const queues = Object.values(template().findResources('AWS::SQS::Queue')) as CfnResourceJson[];
    expect(queues.length).toBeGreaterThan(0);
    for (const queue of queues) expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    template().resourceCountIs('AWS::SQS::QueuePolicy', queues.length);
    template().allResourcesProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });
});

describe('functions', () => {
  it.each(FUNCTION_NAMES)('%s runs Node.js 22 on arm64 with the shared defaults', (name) => {
    const { logicalId } = resourceOf(built.stateless.functions[name]);
    stateless.templateMatches({
      Resources: {
        [logicalId]: {
          Properties: {
            Runtime: 'nodejs22.x',
            Architectures: ['arm64'],
            Handler: 'index.handler',
            Timeout: FUNCTIONS[name].timeoutSeconds,
            MemorySize: FUNCTIONS[name].memoryMb,
            TracingConfig: { Mode: 'Active' },
            LoggingConfig: { LogGroup: { Ref: Match.anyValue() } },
            Environment: {
              Variables: { NODE_OPTIONS: '--enable-source-maps', POWERTOOLS_SERVICE_NAME: 'usage-pipeline', [CONFIG_FILE_ENV]: '/var/task/config.json' },
            },
          },
        },
      },
    });
  });

  it('keeps function and access logs for one month', () => {
    stateless.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    stateless.resourceCountIs('AWS::Logs::LogGroup', FUNCTION_NAMES.length + 1);
  });

  it.each(FUNCTION_NAMES)('%s bundles the validated configuration beside an ESM bundle with the require shim', (name) => {
    const bundle = join(built.app.outdir, (built.stateless.functions[name].node.findChild('Code') as Asset).assetPath);
    expect(readFileSync(join(bundle, 'config.json'), 'utf8')).toBe(readFileSync(fixture('config.json'), 'utf8'));
    expect(readFileSync(join(bundle, 'index.mjs'), 'utf8')).toMatch(/^import\s*\{\s*createRequire as __createRequire\s*\}/);
  });

  it.each([
    ['ingest', [TABLES.ledger, TABLES.quarantine, TABLES.subjects]],
    ['aggregate', [TABLES.rollups]],
    ['api', [TABLES.rollups, TABLES.subjects, TABLES.quarantine]],
  ] as const)('%s is told exactly the tables it uses', (name, tables) => {
    const variables = (resourceOf(built.stateless.functions[name]).resource.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const tableVariables = Object.values(TABLES).map((t) => t.envVar).filter((v) => v in variables);
    expect(tableVariables.sort()).toEqual(tables.map((t) => t.envVar).sort());
  });
});

describe('least privilege', () => {
  const rollupsId = () => resourceOf(built.stateful.tables.rollups).logicalId;

  it('the api function cannot write to any table', () => {
    const actions = actionsOf(policyStatements('api'));
    expect(actions).toContain('dynamodb:Query');
    for (const write of ['dynamodb:PutItem', 'dynamodb:BatchWriteItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem']) expect(actions).not.toContain(write);
  });

  it('the ingest function has no access to the rollups table', () => {
    expect(JSON.stringify(policyStatements('api'))).toContain(rollupsId()); // the check below can see the table
    expect(JSON.stringify(policyStatements('ingest'))).not.toContain(rollupsId());
  });

  it('the aggregate function writes only the rollups table', () => {
    const writes = policyStatements('aggregate').filter((s) => [s.Action].flat().includes('dynamodb:UpdateItem'));
    expect(writes).toHaveLength(1);
    expect(JSON.stringify(writes[0]?.Resource)).toContain(rollupsId());
  });

  it.each(FUNCTION_NAMES)('%s: a wildcard resource only carries actions without resource-level permissions', (name) => {
    const wildcard = policyStatements(name).filter((s) => s.Resource === '*');
    for (const action of actionsOf(wildcard)) expect(['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'dynamodb:ListStreams']).toContain(action);
  });
});

describe('event source mappings', () => {
  it('ingest reads the usage-events queue in batches and reports partial failures', () => {
    const source = EVENT_SOURCES.ingest;
    stateless.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: resourceOf(built.stateless.functions.ingest).logicalId },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp(QUEUES.usageEvents.name) },
      BatchSize: source.batchSize,
      MaximumBatchingWindowInSeconds: source.maxBatchingWindowSeconds,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('aggregate reads the ledger stream with a tumbling window and an on-failure queue', () => {
    const source = EVENT_SOURCES.aggregate;
    stateless.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: resourceOf(built.stateless.functions.aggregate).logicalId },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp(`${TABLES.ledger.name}.*StreamArn`) },
      BatchSize: source.batchSize,
      MaximumBatchingWindowInSeconds: source.maxBatchingWindowSeconds,
      TumblingWindowInSeconds: source.tumblingWindowSeconds,
      ParallelizationFactor: source.parallelizationFactor,
      BisectBatchOnFunctionError: source.bisectBatchOnError,
      MaximumRetryAttempts: source.retryAttempts,
      StartingPosition: source.startingPosition,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [resourceOf(built.stateless.aggregateFailures).logicalId, 'Arn'] } } },
    });
  });
});

describe('HTTP API', () => {
  it.each(['GET /v1/workspaces/{id}/usage', 'GET /v1/quarantine'])('%s requires IAM authorization', (routeKey) => {
    stateless.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: routeKey, AuthorizationType: 'AWS_IAM' });
  });

  it('has no other routes', () => {
    stateless.resourceCountIs('AWS::ApiGatewayV2::Route', 2);
  });

  it('throttles and logs access on the default stage', () => {
    stateless.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: Match.anyValue(), ThrottlingBurstLimit: Match.anyValue() },
      AccessLogSettings: { DestinationArn: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] }, Format: Match.stringLikeRegexp('\\$context\\.requestId') },
    });
  });

  it('outputs the API and queue URLs', () => {
    stateless.hasOutput('ApiUrl', {});
    stateful.hasOutput('UsageQueueUrl', {});
  });
});

describe('alarms', () => {
  const alarm = (properties: Record<string, unknown>) =>
    stateless.hasResourceProperties('AWS::CloudWatch::Alarm', { ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1, ...properties });

  it('fires on any message in the dead-letter queue', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::ImportValue': Match.stringLikeRegexp(QUEUES.deadLetter.name) } }],
    });
  });

  it('fires when aggregation lags the stream by more than five minutes', () => {
    alarm({
      Namespace: 'AWS/Lambda',
      MetricName: 'IteratorAge',
      Statistic: 'Maximum',
      Threshold: 5 * 60 * 1000,
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: resourceOf(built.stateless.functions.aggregate).logicalId } }],
    });
  });

  it.each(FUNCTION_NAMES)('fires on any error of %s', (name) => {
    alarm({
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Threshold: 0,
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: resourceOf(built.stateless.functions[name]).logicalId } }],
    });
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged error or warning', () => {
    // cdk-nag 3 is a validation plugin, not an Aspect: its findings are a report, not stack annotations.
    const { violations } = new AwsSolutionsChecks().validateScope(built.app);
    const findings = violations.map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`);
    expect(findings).toEqual([]);
  });

  it.each([
    ['stateful', () => built.stateful],
    ['stateless', () => built.stateless],
  ])('%s carries no error or warning annotation', (_name, stack) => {
    const annotations = Annotations.fromStack(stack());
    const messages = [...annotations.findError('*', Match.anyValue()), ...annotations.findWarning('*', Match.anyValue())].map((m) => `${m.id}: ${String(m.entry.data)}`);
    expect(messages).toEqual([]);
  });
});
