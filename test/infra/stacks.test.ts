import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { buildApp, type UsagePipelineApp } from '../../bin/app';
import { BUCKETS, CONFIG_FILE_ENV, EMAIL_ENV, EVENT_SOURCES, FUNCTIONS, QUEUES, SCHEDULES, TABLES } from '../../functions/contract/resources';
import { ROUTES } from '../../functions/contract/routes';
import { StatefulStack } from '../../lib/stateful-stack';
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
type TableName = keyof typeof TABLES;

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];
/** The handler answers the test clock's routes (POST /v1/test-clock, GET its moves) only in the local runtime; the HTTP API must not expose them. */
const LOCAL_ONLY_PATH = '/v1/test-clock';
const API_ROUTE_KEYS = ROUTES.filter((r) => !r.path.startsWith(LOCAL_ONLY_PATH)).map((r) => `${r.method} ${r.path}`);
const TABLE_WRITES = ['dynamodb:PutItem', 'dynamodb:BatchWriteItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'];
const TABLE_READS = ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query'];
const REPORTS = BUCKETS.reports;

let built: UsagePipelineApp;
let stateful: Template;
let stateless: Template;

beforeAll(() => {
  // One synth for the whole file: it bundles every function. The feature flags are those the CLI passes;
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

function roleStatements(role: IConstruct | undefined, what: string): Statement[] {
  const policy = role?.node.tryFindChild('DefaultPolicy');
  if (!policy) throw new Error(`${what} has no default policy`);
  return (resourceOf(policy).resource.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
}

const policyStatements = (name: FunctionName) => roleStatements(built.stateless.functions[name].role, name);
const actionsOf = (statements: Statement[]) => statements.flatMap((s) => [s.Action].flat());
/** The statements that allow any of `actions`. */
const allowing = (statements: Statement[], actions: string[]) => statements.filter((s) => s.Effect === 'Allow' && [s.Action].flat().some((a) => actions.includes(a)));
/** Environment variables of a function. */
const variablesOf = (name: FunctionName) => (resourceOf(built.stateless.functions[name]).resource.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
/** The S3 statements allowing any action that `matches`. */
const s3Allowing = (statements: Statement[], matches: (action: string) => boolean) =>
  statements.filter((s) => s.Effect === 'Allow' && [s.Action].flat().some((a) => a.startsWith('s3:') && matches(a)));
const isS3Write = (action: string) => action === 's3:*' || action.startsWith('s3:Put');
const isS3Read = (action: string) => action === 's3:*' || action.startsWith('s3:GetObject');
/**
 * Where the resources of an S3 statement point in the reports bucket: '' for the bucket itself, the
 * key pattern (`exports/*`) for its objects. Any other resource fails the test.
 */
function reportsBucketKeys(statement: Statement): string[] {
  const bucketArn = `${resourceOf(built.stateful.reportsBucket).logicalId}Arn`;
  return [statement.Resource].flat().map((resource) => {
    const join = (resource as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
    if (!join) {
      expect(resource).toEqual({ 'Fn::ImportValue': expect.stringContaining(bucketArn) });
      return '';
    }
    const [bucket, key, ...rest] = join[1];
    expect(rest).toEqual([]);
    expect(JSON.stringify(bucket)).toContain(bucketArn);
    return String(key).replace(/^\//, '');
  });
}
/** The object key patterns (not the bucket itself) that `statements` reach. */
const objectKeys = (statements: Statement[]) => [...new Set(statements.flatMap(reportsBucketKeys).filter((k) => k !== ''))].sort();

/** How the stateless stack refers to a resource of the stateful stack (its Arn export). */
const importedArn = (construct: IConstruct) => ({ 'Fn::ImportValue': Match.stringLikeRegexp(`${resourceOf(construct).logicalId}Arn`) });

describe('stateful stack', () => {
  it('buys warm throughput for the tables a close writes, and only those, when the config asks for it; none by default', () => {
    // Arrange
    const warmTables = (stack: StatefulStack) => {
      const resources = Template.fromStack(stack).toJSON().Resources as Record<string, { Properties: { WarmThroughput?: unknown } }>;
      return Object.entries(stack.tables)
        .map(([name, table]) => [name, resources[stack.getLogicalId(table.node.defaultChild as CfnElement)]?.Properties.WarmThroughput] as const)
        .filter(([, warm]) => warm !== undefined);
    };

    // Act
    const warm = warmTables(new StatefulStack(new App(), 'Warm', { closesWarmWritesPerSecond: 9000 }));
    const cold = warmTables(new StatefulStack(new App(), 'Cold'));

    // Assert
    expect(Object.fromEntries(warm)).toEqual({ accounts: { WriteUnitsPerSecond: 9000 }, subjects: { WriteUnitsPerSecond: 9000 }, rollups: { WriteUnitsPerSecond: 9000 } });
    expect(cold).toEqual([]);
  });

  it.each(Object.entries(TABLES))('table %s is built from its definition', (name, definition) => {
    const { logicalId } = resourceOf(built.stateful.tables[name as keyof typeof TABLES]);
    const keys = [definition.partitionKey, ...('sortKey' in definition ? [definition.sortKey] : [])];
    const indexes = 'indexes' in definition ? definition.indexes : [];
    // Every key attribute once: the table's, then its indexes' (CDK declares each attribute it is first given).
    const attributes = [...new Map([...keys, ...indexes.flatMap((index) => [index.partitionKey, index.sortKey])].map((key) => [key.name, key])).values()];
    stateful.templateMatches({
      Resources: {
        [logicalId]: {
          DeletionPolicy: 'Retain',
          Properties: {
            KeySchema: keys.map((key, i) => ({ AttributeName: key.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
            AttributeDefinitions: attributes.map((key) => ({ AttributeName: key.name, AttributeType: key.type })),
            GlobalSecondaryIndexes: indexes.length
              ? indexes.map((index) => ({
                  IndexName: index.name,
                  KeySchema: [
                    { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
                    { AttributeName: index.sortKey.name, KeyType: 'RANGE' },
                  ],
                  Projection: { ProjectionType: 'KEYS_ONLY' },
                }))
              : Match.absent(),
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

  it('keeps grants and snapshots in an encrypted Accounts table with pk/sk keys and point-in-time recovery', () => {
    stateful.templateMatches({
      Resources: {
        [resourceOf(built.stateful.tables.accounts).logicalId]: {
          Type: 'AWS::DynamoDB::Table',
          DeletionPolicy: 'Retain',
          Properties: {
            KeySchema: [
              { AttributeName: 'pk', KeyType: 'HASH' },
              { AttributeName: 'sk', KeyType: 'RANGE' },
            ],
            PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
            SSESpecification: { SSEEnabled: true },
            TimeToLiveSpecification: Match.absent(),
          },
        },
      },
    });
  });

  it('keeps threshold alerts in an encrypted Alerts table with pk/sk keys, a new-and-old-images stream and point-in-time recovery', () => {
    stateful.templateMatches({
      Resources: {
        [resourceOf(built.stateful.tables.alerts).logicalId]: {
          Type: 'AWS::DynamoDB::Table',
          DeletionPolicy: 'Retain',
          Properties: {
            KeySchema: [
              { AttributeName: 'pk', KeyType: 'HASH' },
              { AttributeName: 'sk', KeyType: 'RANGE' },
            ],
            StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
            PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
            SSESpecification: { SSEEnabled: true },
            DeletionProtectionEnabled: true,
            TimeToLiveSpecification: Match.absent(),
          },
        },
      },
    });
  });

  it("indexes the subjects by due shard and next-due instant for the scheduler, and by account for an account's rankings, keys only", () => {
    expect(TABLES.subjects.indexes).toEqual([
      { name: 'due', partitionKey: { name: 'dueShard', type: 'N' }, sortKey: { name: 'nextDueAt', type: 'S' } },
      { name: 'account', partitionKey: { name: 'account', type: 'S' }, sortKey: { name: 'id', type: 'S' } },
    ]);
    const indexed = Object.entries(TABLES).filter(([, definition]) => 'indexes' in definition);
    expect(indexed.map(([name]) => name)).toEqual(['subjects']);
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
      // SQS's largest message, 1 MiB, on the queue and on its dead-letter queue, so that a redriven message fits.
      MaximumMessageSize: 1_048_576,
    });
    expect(resourceOf(built.stateful.deadLetterQueue).resource.Properties.MaximumMessageSize).toBe(1_048_576);
    // Lambda's guidance for SQS sources: visibility at least six times the function timeout.
    expect(usage.visibilityTimeoutSeconds).toBeGreaterThanOrEqual(6 * FUNCTIONS.ingest.timeoutSeconds);
  });

  describe('reports bucket', () => {
    const reportsId = () => resourceOf(built.stateful.reportsBucket).logicalId;
    const rules = () => (resourceOf(built.stateful.reportsBucket).resource.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;

    it('is encrypted, private, versioned and retained', () => {
      stateful.templateMatches({
        Resources: {
          [reportsId()]: {
            Type: 'AWS::S3::Bucket',
            DeletionPolicy: 'Retain',
            UpdateReplacePolicy: 'Retain',
            Properties: {
              BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
              PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
              OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
              VersioningConfiguration: { Status: 'Enabled' },
            },
          },
        },
      });
    });

    it('refuses plain HTTP', () => {
      stateful.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: reportsId() },
        PolicyDocument: {
          Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
        },
      });
    });

    it('logs access to the access-log bucket', () => {
      stateful.templateMatches({
        Resources: {
          [reportsId()]: {
            Properties: { LoggingConfiguration: { DestinationBucketName: { Ref: resourceOf(built.stateful.accessLogsBucket).logicalId }, LogFilePrefix: Match.anyValue() } },
          },
        },
      });
    });

    it('expires export files after the export retention, and their old versions after a day', () => {
      const exportsRules = rules().filter((r) => r.Prefix === REPORTS.exportsPrefix);
      expect(exportsRules).toEqual([expect.objectContaining({ Status: 'Enabled', ExpirationInDays: REPORTS.exportRetentionDays, NoncurrentVersionExpiration: { NoncurrentDays: 1 } })]);
      expect(REPORTS.exportRetentionDays).toBe(7);
    });

    it('moves cycle reports to infrequent access and never expires their current versions', () => {
      const reportsRules = rules().filter((r) => r.Prefix === REPORTS.reportsPrefix);
      expect(reportsRules).toEqual([
        expect.objectContaining({
          Status: 'Enabled',
          Transitions: [{ StorageClass: 'STANDARD_IA', TransitionInDays: REPORTS.reportsInfrequentAccessDays }],
          NoncurrentVersionExpiration: { NoncurrentDays: 365 },
        }),
      ]);
      // No rule that reaches reports/ (its prefix or none) deletes a current version.
      for (const rule of rules().filter((r) => r.Prefix === undefined || REPORTS.reportsPrefix.startsWith(String(r.Prefix)))) {
        expect(rule).not.toHaveProperty('ExpirationInDays');
        expect(rule).not.toHaveProperty('ExpirationDate');
      }
    });

    it('aborts incomplete multipart uploads after a day', () => {
      expect(rules()).toContainEqual(expect.objectContaining({ Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }));
    });

    it('outputs its name', () => {
      stateful.hasOutput('ReportsBucketName', { Value: { Ref: reportsId() } });
    });

    it('has an access-log bucket that is encrypted, private, retained, expires its logs and accepts only the reports bucket logs', () => {
      const { logicalId } = resourceOf(built.stateful.accessLogsBucket);
      stateful.templateMatches({
        Resources: {
          [logicalId]: {
            Type: 'AWS::S3::Bucket',
            DeletionPolicy: 'Retain',
            Properties: {
              BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
              PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
              LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: Match.anyValue() })]) },
              // Log delivery is granted by the bucket policy, not by an ACL.
              AccessControl: Match.absent(),
            },
          },
        },
      });
      stateful.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: logicalId },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Principal: { Service: 'logging.s3.amazonaws.com' },
              Action: 's3:PutObject',
              Condition: { ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [reportsId(), 'Arn'] } } },
            }),
          ]),
        },
      });
    });

    it('every bucket is encrypted, blocks all public access and refuses plain HTTP; the stateless stack has none', () => {
      const buckets = Object.entries(stateful.findResources('AWS::S3::Bucket')) as [string, CfnResourceJson][];
      expect(buckets).toHaveLength(2);
      for (const [logicalId, bucket] of buckets) {
        expect(bucket.Properties.BucketEncryption).toBeDefined();
        expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
        stateful.hasResourceProperties('AWS::S3::BucketPolicy', {
          Bucket: { Ref: logicalId },
          PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
        });
      }
      stateless.resourceCountIs('AWS::S3::Bucket', 0);
    });
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

  it.each(FUNCTION_NAMES)('%s bundles the validated configuration, without its local API keys, beside an ESM bundle with the require shim', (name) => {
    const bundle = join(built.app.outdir, (built.stateless.functions[name].node.findChild('Code') as Asset).assetPath);
    const bundled = readFileSync(join(bundle, 'config.json'), 'utf8');
    const { apiKeys, ...rest } = JSON.parse(readFileSync(fixture('config.json'), 'utf8')) as Record<string, unknown>;
    expect(apiKeys).toHaveLength(1); // the fixture has a key that must stay out of the bundle
    expect(JSON.parse(bundled)).toEqual(rest);
    expect(bundled).not.toContain('infra-test-admin-key');
    expect(readFileSync(join(bundle, 'index.mjs'), 'utf8')).toMatch(/^import\s*\{\s*createRequire as __createRequire\s*\}/);
  });

  it.each([
    ['ingest', [TABLES.ledger, TABLES.quarantine, TABLES.subjects]],
    ['aggregate', [TABLES.rollups, TABLES.alerts, TABLES.subjects, TABLES.accounts]],
    ['api', [TABLES.rollups, TABLES.subjects, TABLES.quarantine, TABLES.accounts, TABLES.apiKeys, TABLES.exports]],
    ['scheduler', [TABLES.subjects, TABLES.accounts]],
    ['closes', [TABLES.subjects, TABLES.rollups, TABLES.accounts]],
    ['notify', [TABLES.alerts, TABLES.subjects, TABLES.rollups, TABLES.accounts]],
    ['export', [TABLES.rollups, TABLES.subjects, TABLES.exports]],
  ] as const)('%s is told exactly the tables it uses', (name, tables) => {
    const variables = variablesOf(name);
    const tableVariables = Object.values(TABLES)
      .map((t) => t.envVar)
      .filter((v) => v in variables);
    expect(tableVariables.sort()).toEqual(tables.map((t) => t.envVar).sort());
  });

  it('only the api, scheduler, closes and export functions are told the reports bucket, by its name', () => {
    const told = FUNCTION_NAMES.filter((name) => REPORTS.envVar in variablesOf(name));
    expect(told.sort()).toEqual(['api', 'closes', 'export', 'scheduler']);
    for (const name of told) {
      expect(variablesOf(name)[REPORTS.envVar]).toEqual({ 'Fn::ImportValue': expect.stringContaining(`Ref${resourceOf(built.stateful.reportsBucket).logicalId}`) });
    }
  });
});

describe('notify function', () => {
  it('is told the SES configuration set from its stack parameter', () => {
    stateless.templateMatches({
      Resources: {
        [resourceOf(built.stateless.functions.notify).logicalId]: {
          Properties: { Environment: { Variables: { [EMAIL_ENV.configurationSet]: { Ref: 'SesConfigurationSet' } } } },
        },
      },
    });
  });

  it('takes the configuration set as a stack parameter, and no SES identity: that comes from the configured sender', () => {
    stateless.hasParameter('SesConfigurationSet', { Type: 'String', Default: '' });
    expect(Object.keys(stateless.toJSON().Parameters as Record<string, unknown>)).not.toContain('SesIdentity');
  });

  it('is the only function told about SES', () => {
    for (const name of FUNCTION_NAMES.filter((n) => n !== 'notify')) {
      const variables = (resourceOf(built.stateless.functions[name]).resource.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(Object.keys(variables)).not.toContain(EMAIL_ENV.configurationSet);
      expect(JSON.stringify(policyStatements(name))).not.toContain('ses:');
    }
  });
});

describe('least privilege', () => {
  const rollupsId = () => resourceOf(built.stateful.tables.rollups).logicalId;
  const tableId = (name: TableName) => resourceOf(built.stateful.tables[name]).logicalId;
  const otherTables = (...names: TableName[]) => (Object.keys(TABLES) as TableName[]).filter((n) => !names.includes(n));

  it('the api function writes only the subjects, accounts, API keys and exports tables', () => {
    const statements = policyStatements('api');
    expect(actionsOf(statements)).toContain('dynamodb:Query');
    const writes = JSON.stringify(allowing(statements, TABLE_WRITES).map((s) => s.Resource));
    for (const name of ['subjects', 'accounts', 'apiKeys', 'exports'] as const) expect(writes).toContain(tableId(name));
    for (const name of otherTables('subjects', 'accounts', 'apiKeys', 'exports')) expect(writes).not.toContain(tableId(name));
  });

  it('only the api and export functions can touch the exports table', () => {
    for (const name of FUNCTION_NAMES) {
      const touches = JSON.stringify(policyStatements(name)).includes(tableId('exports'));
      expect([name, touches]).toEqual([name, name === 'api' || name === 'export']);
    }
  });

  it('the export function writes only the exports table and reads rollups and subjects', () => {
    const statements = policyStatements('export');
    const writes = JSON.stringify(allowing(statements, TABLE_WRITES).map((s) => s.Resource));
    expect(writes).toContain(tableId('exports'));
    for (const name of otherTables('exports')) expect(writes).not.toContain(tableId(name));
    const reads = JSON.stringify(allowing(statements, TABLE_READS).map((s) => s.Resource));
    for (const name of ['rollups', 'subjects', 'exports'] as const) expect(reads).toContain(tableId(name));
    for (const name of ['ledger', 'quarantine', 'alerts', 'apiKeys', 'accounts'] as const) expect(JSON.stringify(statements)).not.toContain(tableId(name));
  });

  it('the export function can dead-letter only into its own failure queue', () => {
    const sends = allowing(policyStatements('export'), ['sqs:SendMessage']);
    expect(sends.map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [resourceOf(built.stateless.exportFailures).logicalId, 'Arn'] }]);
  });

  it('only the scheduler, closes and export functions can write to the reports bucket, each under its own prefix only', () => {
    const writers = FUNCTION_NAMES.filter((name) => s3Allowing(policyStatements(name), isS3Write).length > 0);
    expect(writers.sort()).toEqual(['closes', 'export', 'scheduler']);
    expect(objectKeys(s3Allowing(policyStatements('scheduler'), isS3Write))).toEqual([`${REPORTS.reportsPrefix}*`]);
    expect(objectKeys(s3Allowing(policyStatements('closes'), isS3Write))).toEqual([`${REPORTS.reportsPrefix}*`]);
    expect(objectKeys(s3Allowing(policyStatements('export'), isS3Write))).toEqual([`${REPORTS.exportsPrefix}*`]);
    // Object writes name object keys, never the bucket itself.
    for (const name of writers) {
      for (const statement of s3Allowing(policyStatements(name), isS3Write)) expect(reportsBucketKeys(statement)).not.toContain('');
    }
  });

  it('the api function may only read export files, the scheduler only cycle reports, and the closes and export functions read nothing', () => {
    expect(objectKeys(s3Allowing(policyStatements('api'), isS3Read))).toEqual([`${REPORTS.exportsPrefix}*`]);
    expect(objectKeys(s3Allowing(policyStatements('scheduler'), isS3Read))).toEqual([`${REPORTS.reportsPrefix}*`]);
    expect(s3Allowing(policyStatements('closes'), isS3Read)).toEqual([]);
    expect(s3Allowing(policyStatements('export'), isS3Read)).toEqual([]);
    // Every S3 statement of these functions stays in the reports bucket, within the function's prefix.
    const prefixes = { api: REPORTS.exportsPrefix, scheduler: REPORTS.reportsPrefix, closes: REPORTS.reportsPrefix, export: REPORTS.exportsPrefix } as const;
    for (const [name, prefix] of Object.entries(prefixes) as [FunctionName, string][]) {
      expect(objectKeys(s3Allowing(policyStatements(name), () => true))).toEqual([`${prefix}*`]);
    }
  });

  it('no function can delete objects', () => {
    for (const name of FUNCTION_NAMES) {
      const s3Actions = actionsOf(s3Allowing(policyStatements(name), () => true));
      expect(s3Actions.filter((a) => a === 's3:*' || a.startsWith('s3:Delete'))).toEqual([]);
    }
  });

  it.each(['ingest', 'aggregate', 'notify'] as const)('%s has no S3 access and is not told the bucket', (name) => {
    expect(actionsOf(policyStatements(name)).filter((a) => a.startsWith('s3:'))).toEqual([]);
    expect(JSON.stringify(policyStatements(name))).not.toContain(resourceOf(built.stateful.reportsBucket).logicalId);
    expect(Object.keys(variablesOf(name))).not.toContain(REPORTS.envVar);
  });

  it('no function but the api function can touch the API keys table', () => {
    expect(JSON.stringify(policyStatements('api'))).toContain(tableId('apiKeys'));
    for (const name of FUNCTION_NAMES.filter((n) => n !== 'api')) expect(JSON.stringify(policyStatements(name))).not.toContain(tableId('apiKeys'));
  });

  it('the api function can send to the usage-events queue', () => {
    stateless.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^ApiServiceRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Allow', Action: Match.arrayWith(['sqs:SendMessage']), Resource: importedArn(built.stateful.usageQueue) })]),
      },
    });
    stateless.templateMatches({
      Resources: {
        [resourceOf(built.stateless.functions.api).logicalId]: {
          Properties: { Environment: { Variables: { [QUEUES.usageEvents.envVar]: { 'Fn::ImportValue': Match.stringLikeRegexp(`Ref${QUEUES.usageEvents.name}`) } } } },
        },
      },
    });
  });

  it('the scheduler function writes only the accounts table, queries only the due index of the subjects, and sends only to the closes queue', () => {
    const statements = policyStatements('scheduler');
    const writes = JSON.stringify(allowing(statements, TABLE_WRITES).map((s) => s.Resource));
    // Its lease and the summary marks it clears are accounts items; closing is the closes function's.
    expect(writes).toContain(tableId('accounts'));
    for (const name of otherTables('accounts')) expect(writes).not.toContain(tableId(name));
    expect(JSON.stringify(statements)).not.toContain(rollupsId());
    // The subjects table: one Query on one index, never the table's items.
    const subjects = statements.filter((s) => JSON.stringify(s.Resource).includes(tableId('subjects')));
    expect(subjects).toEqual([
      {
        Effect: 'Allow',
        Action: 'dynamodb:Query',
        Resource: { 'Fn::Join': ['', [{ 'Fn::ImportValue': expect.stringContaining(`${tableId('subjects')}Arn`) }, `/index/${TABLES.subjects.indexes[0].name}`]] },
      },
    ]);
    const sends = allowing(statements, ['sqs:SendMessage']);
    expect(sends.map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [resourceOf(built.stateless.closesQueue).logicalId, 'Arn'] }]);
    expect(variablesOf('scheduler')[QUEUES.closes.envVar]).toEqual({ Ref: resourceOf(built.stateless.closesQueue).logicalId });
  });

  it("the api function queries the account index of the subjects (an account's rankings), and no other index", () => {
    const statements = policyStatements('api');
    const indexes = statements.filter((s) => JSON.stringify(s.Resource).includes('/index/'));
    expect(indexes).toEqual([
      {
        Effect: 'Allow',
        Action: 'dynamodb:Query',
        Resource: { 'Fn::Join': ['', [{ 'Fn::ImportValue': expect.stringContaining(`${tableId('subjects')}Arn`) }, `/index/${TABLES.subjects.indexes[1].name}`]] },
      },
    ]);
  });

  it('the closes function updates subject items without reading them, writes rollups and accounts, and consumes only the closes queue', () => {
    const statements = policyStatements('closes');
    const writes = JSON.stringify(allowing(statements, TABLE_WRITES).map((s) => s.Resource));
    for (const name of ['subjects', 'rollups', 'accounts'] as const) expect(writes).toContain(tableId(name));
    for (const name of otherTables('subjects', 'rollups', 'accounts')) expect(JSON.stringify(statements)).not.toContain(tableId(name));
    const reads = JSON.stringify(allowing(statements, TABLE_READS).map((s) => s.Resource));
    for (const name of ['rollups', 'accounts'] as const) expect(reads).toContain(tableId(name));
    expect(reads).not.toContain(tableId('subjects'));
    // No grant of it reaches an index.
    expect(JSON.stringify(statements)).not.toContain('/index/');
    const receives = allowing(statements, ['sqs:ReceiveMessage']);
    expect(receives.map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [resourceOf(built.stateless.closesQueue).logicalId, 'Arn'] }]);
    expect(allowing(statements, ['sqs:SendMessage'])).toEqual([]);
  });

  it('only the scheduler and the api reach an index of a table', () => {
    for (const name of FUNCTION_NAMES) expect([name, JSON.stringify(policyStatements(name)).includes('/index/')]).toEqual([name, name === 'scheduler' || name === 'api']);
  });

  it('the schedule role can only invoke the scheduler function and dead-letter into its queue', () => {
    const statements = roleStatements(built.stateless.scheduleRole, 'the schedule role');
    const scheduler = resourceOf(built.stateless.functions.scheduler).logicalId;
    expect(statements).toEqual([
      { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: [{ 'Fn::GetAtt': [scheduler, 'Arn'] }, { 'Fn::Join': ['', [{ 'Fn::GetAtt': [scheduler, 'Arn'] }, ':*']] }] },
      { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: { 'Fn::GetAtt': [resourceOf(built.stateless.schedulerFailures).logicalId, 'Arn'] } },
    ]);
  });

  it('the ingest function has no access to the rollups table', () => {
    expect(JSON.stringify(policyStatements('api'))).toContain(rollupsId()); // the check below can see the table
    expect(JSON.stringify(policyStatements('ingest'))).not.toContain(rollupsId());
  });

  it('the aggregate function writes only the rollups and alerts tables', () => {
    const writes = JSON.stringify(allowing(policyStatements('aggregate'), TABLE_WRITES).map((s) => s.Resource));
    for (const name of ['rollups', 'alerts'] as const) expect(writes).toContain(tableId(name));
    for (const name of otherTables('rollups', 'alerts')) expect(writes).not.toContain(tableId(name));
  });

  it('the aggregate function can query and conditionally put alerts, and reads subjects and accounts', () => {
    const statements = policyStatements('aggregate');
    const alerts = tableId('alerts');
    for (const action of ['dynamodb:PutItem', 'dynamodb:Query']) {
      expect(JSON.stringify(allowing(statements, [action]).map((s) => s.Resource))).toContain(alerts);
    }
    const reads = JSON.stringify(allowing(statements, TABLE_READS).map((s) => s.Resource));
    for (const name of ['subjects', 'accounts'] as const) expect(reads).toContain(tableId(name));
    stateless.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^AggregateServiceRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Allow', Action: Match.arrayWith(['dynamodb:PutItem']), Resource: Match.arrayWith([importedArn(built.stateful.tables.alerts)]) })]),
      },
    });
  });

  it('the notify function writes only the alerts table and reads subjects, rollups and accounts', () => {
    const statements = policyStatements('notify');
    const writes = JSON.stringify(allowing(statements, TABLE_WRITES).map((s) => s.Resource));
    expect(writes).toContain(tableId('alerts'));
    for (const name of otherTables('alerts')) expect(writes).not.toContain(tableId(name));
    const reads = JSON.stringify(allowing(statements, TABLE_READS).map((s) => s.Resource));
    for (const name of ['alerts', 'subjects', 'rollups', 'accounts'] as const) expect(reads).toContain(tableId(name));
    for (const name of ['ledger', 'quarantine'] as const) expect(JSON.stringify(statements)).not.toContain(tableId(name));
  });

  it('the notify function may send email only as the configured sender (its address or domain identity) and with the configuration set, if one is given', () => {
    const sender = 'usage-alerts@mail.usage.example'; // the fixture's notifications.from
    const statements = policyStatements('notify');
    const ses = statements.filter((s) => [s.Action].flat().some((a) => a.startsWith('ses:')));
    const sesArn = (resource: string, name: unknown) => ({
      'Fn::Join': [
        '',
        ['arn:', { Ref: 'AWS::Partition' }, ':ses:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ...(typeof name === 'string' ? [`:${resource}/${name}`] : [`:${resource}/`, name])],
      ],
    });
    const conditions = Object.entries(stateless.toJSON().Conditions as Record<string, unknown>);
    const [inUse] = conditions.find(([, expression]) => JSON.stringify(expression) === JSON.stringify({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'SesConfigurationSet' }, ''] }] })) ?? [];
    expect(inUse).toBeDefined();
    expect(ses).toHaveLength(1);
    expect(ses[0]).toMatchObject({ Effect: 'Allow', Action: 'ses:SendEmail' });
    // Exactly these three (policy minimization orders them).
    const resources = [ses[0]?.Resource].flat();
    expect(resources).toHaveLength(3);
    expect(resources).toEqual(
      expect.arrayContaining([
        sesArn('identity', sender),
        sesArn('identity', 'mail.usage.example'),
        { 'Fn::If': [inUse, sesArn('configuration-set', { Ref: 'SesConfigurationSet' }), { Ref: 'AWS::NoValue' }] },
      ]),
    );
    expect(JSON.stringify(ses)).not.toContain('*');
  });

  it('the notify function can dead-letter only into its own failure queue', () => {
    const sends = allowing(policyStatements('notify'), ['sqs:SendMessage']);
    expect(sends.map((s) => s.Resource)).toEqual([{ 'Fn::GetAtt': [resourceOf(built.stateless.notifyFailures).logicalId, 'Arn'] }]);
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

  it('ingest starts at most maxConcurrency invocations, so a backlog waits in the queue instead of being throttled', () => {
    const mappings = Object.values(stateless.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: resourceOf(built.stateless.functions.ingest).logicalId } } }));
    expect(mappings).toHaveLength(1);
    expect(mappings[0]?.Properties.ScalingConfig).toEqual({ MaximumConcurrency: 5 });
    expect(EVENT_SOURCES.ingest.maxConcurrency).toBe(5);
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

describe('notify event source mapping', () => {
  it('reads the alerts stream in small batches, bisects on error and has an on-failure queue', () => {
    const source = EVENT_SOURCES.notify;
    stateless.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: resourceOf(built.stateless.functions.notify).logicalId },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp(`${TABLES.alerts.name}.*StreamArn`) },
      BatchSize: source.batchSize,
      MaximumBatchingWindowInSeconds: source.maxBatchingWindowSeconds,
      ParallelizationFactor: source.parallelizationFactor,
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: source.retryAttempts,
      StartingPosition: source.startingPosition,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [resourceOf(built.stateless.notifyFailures).logicalId, 'Arn'] } } },
    });
    expect(source.batchSize).toBe(10);
  });

  it('is invoked only for inserted alerts with notify = true', () => {
    const mappings = stateless.findResources('AWS::Lambda::EventSourceMapping', {
      Properties: { FunctionName: { Ref: resourceOf(built.stateless.functions.notify).logicalId } },
    }) as Record<string, CfnResourceJson>;
    const [mapping, ...others] = Object.values(mappings);
    expect(others).toEqual([]);
    const { Filters } = mapping?.Properties.FilterCriteria as { Filters: { Pattern: string }[] };
    expect(Filters.map((f) => JSON.parse(f.Pattern) as unknown)).toEqual([{ eventName: ['INSERT'], dynamodb: { NewImage: { notify: { BOOL: [true] } } } }]);
  });

  it('the export mapping is invoked only for inserted export jobs (not for its own status updates)', () => {
    const mappings = stateless.findResources('AWS::Lambda::EventSourceMapping', {
      Properties: { FunctionName: { Ref: resourceOf(built.stateless.functions.export).logicalId } },
    }) as Record<string, CfnResourceJson>;
    const [mapping, ...others] = Object.values(mappings);
    expect(others).toEqual([]);
    const { Filters } = mapping?.Properties.FilterCriteria as { Filters: { Pattern: string }[] };
    expect(Filters.map((f) => JSON.parse(f.Pattern) as unknown)).toEqual([{ eventName: ['INSERT'] }]);
  });

  it('the other mappings are not filtered', () => {
    for (const name of ['ingest', 'aggregate', 'closes'] as const) {
      stateless.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: resourceOf(built.stateless.functions[name]).logicalId },
        FilterCriteria: Match.absent(),
      });
    }
  });
});

describe('closes queue and its event source mapping', () => {
  it('the closes queue redrives to its dead-letter queue after maxReceiveCount receives, with a visibility timeout six times the closes timeout', () => {
    const closes = QUEUES.closes;
    expect(resourceOf(built.stateless.closesQueue).resource.Properties).toMatchObject({
      VisibilityTimeout: closes.visibilityTimeoutSeconds,
      MessageRetentionPeriod: closes.retentionDays * 86_400,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { maxReceiveCount: closes.maxReceiveCount, deadLetterTargetArn: { 'Fn::GetAtt': [resourceOf(built.stateless.closesDeadLetterQueue).logicalId, 'Arn'] } },
    });
    expect(closes.visibilityTimeoutSeconds).toBeGreaterThanOrEqual(6 * FUNCTIONS.closes.timeoutSeconds);
    expect(resourceOf(built.stateless.closesDeadLetterQueue).resource.Properties).toMatchObject({
      MessageRetentionPeriod: QUEUES.closesDeadLetter.retentionDays * 86_400,
      SqsManagedSseEnabled: true,
    });
  });

  it('the closes function reads the closes queue ten workspaces at a time, at most maxConcurrency invocations, and reports partial failures', () => {
    const source = EVENT_SOURCES.closes;
    const mappings = Object.values(stateless.findResources('AWS::Lambda::EventSourceMapping', { Properties: { FunctionName: { Ref: resourceOf(built.stateless.functions.closes).logicalId } } }));
    expect(mappings).toHaveLength(1);
    expect(mappings[0]?.Properties).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': [resourceOf(built.stateless.closesQueue).logicalId, 'Arn'] },
      BatchSize: source.batchSize,
      MaximumBatchingWindowInSeconds: source.maxBatchingWindowSeconds,
      ScalingConfig: { MaximumConcurrency: source.maxConcurrency },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    expect(source.batchSize).toBe(10);
  });
});

describe('export event source mapping', () => {
  it('reads the exports stream one job at a time, without bisecting, with an on-failure queue', () => {
    const source = EVENT_SOURCES.export;
    stateless.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: resourceOf(built.stateless.functions.export).logicalId },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp(`${TABLES.exports.name}.*StreamArn`) },
      BatchSize: 1,
      ParallelizationFactor: source.parallelizationFactor,
      BisectBatchOnFunctionError: false,
      MaximumRetryAttempts: source.retryAttempts,
      StartingPosition: source.startingPosition,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [resourceOf(built.stateless.exportFailures).logicalId, 'Arn'] } } },
    });
    expect(source.batchSize).toBe(1);
  });
});

describe('scheduler', () => {
  it('needs no reserved concurrency (closes are single-flight through a lease in the accounts table), nor does any function', () => {
    for (const name of FUNCTION_NAMES) {
      expect([name, resourceOf(built.stateless.functions[name]).resource.Properties.ReservedConcurrentExecutions]).toEqual([name, undefined]);
    }
    // The lease is an item of the accounts table, which the scheduler may write.
    expect(variablesOf('scheduler')[TABLES.accounts.envVar]).toBeDefined();
    const writes = JSON.stringify(allowing(policyStatements('scheduler'), ['dynamodb:PutItem', 'dynamodb:DeleteItem']).map((s) => s.Resource));
    expect(writes).toContain(resourceOf(built.stateful.tables.accounts).logicalId);
  });

  it('is invoked by an EventBridge Scheduler schedule with the close-due job, retries and a dead-letter queue', () => {
    const closeDue = SCHEDULES.closeDue;
    stateless.resourceCountIs('AWS::Scheduler::Schedule', 1);
    stateless.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: closeDue.expression,
      State: 'ENABLED',
      Target: {
        Arn: { 'Fn::GetAtt': [resourceOf(built.stateless.functions.scheduler).logicalId, 'Arn'] },
        Input: JSON.stringify({ job: closeDue.job }),
        RoleArn: { 'Fn::GetAtt': [resourceOf(built.stateless.scheduleRole).logicalId, 'Arn'] },
        RetryPolicy: { MaximumRetryAttempts: Match.anyValue(), MaximumEventAgeInSeconds: closeDue.intervalMinutes * 60 },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [resourceOf(built.stateless.schedulerFailures).logicalId, 'Arn'] } },
      },
    });
    const { Input } = resourceOf(built.stateless.closeDueSchedule).resource.Properties.Target as { Input: string };
    expect(JSON.parse(Input)).toEqual({ job: 'close-due' });
  });

  it('lets only EventBridge Scheduler of this account assume the schedule role', () => {
    stateless.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          {
            Effect: 'Allow',
            Action: 'sts:AssumeRole',
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' }, 'aws:SourceArn': Match.anyValue() } },
          },
        ],
      },
    });
  });
});

describe('HTTP API', () => {
  it('exposes every route of functions/api.handler.ts except the local test clock', () => {
    expect(API_ROUTE_KEYS.length).toBe(ROUTES.length - 2);
    expect(API_ROUTE_KEYS).not.toContain(`POST ${LOCAL_ONLY_PATH}`);
  });

  it('sends every route to the API function, which checks its key', () => {
    const api = resourceOf(built.stateless.functions.api).logicalId;
    const integrations = Object.entries(stateless.findResources('AWS::ApiGatewayV2::Integration'));
    const routes = Object.values(stateless.findResources('AWS::ApiGatewayV2::Route')) as CfnResourceJson[];
    expect(routes).toHaveLength(API_ROUTE_KEYS.length);
    for (const route of routes) {
      const [, integration] = integrations.find(([id]) => JSON.stringify(route.Properties.Target).includes(id)) ?? [];
      expect(JSON.stringify(integration?.Properties)).toContain(api);
    }
  });

  it('has no other routes (in particular no test clock)', () => {
    stateless.resourceCountIs('AWS::ApiGatewayV2::Route', API_ROUTE_KEYS.length);
    expect(Object.keys(stateless.findResources('AWS::ApiGatewayV2::Route', { Properties: { RouteKey: Match.stringLikeRegexp('test-clock') } }))).toEqual([]);
  });

  it('throttles and logs access on the default stage', () => {
    stateless.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: Match.anyValue(), ThrottlingBurstLimit: Match.anyValue() },
      AccessLogSettings: { DestinationArn: { 'Fn::GetAtt': [Match.anyValue(), 'Arn'] }, Format: Match.stringLikeRegexp('\\$context\\.requestId') },
    });
  });

  it('outputs the API and queue URLs and the reports bucket name', () => {
    stateless.hasOutput('ApiUrl', {});
    stateful.hasOutput('UsageQueueUrl', {});
    stateful.hasOutput('ReportsBucketName', {});
  });
});

describe('alarms', () => {
  const alarm = (properties: Record<string, unknown>) => stateless.hasResourceProperties('AWS::CloudWatch::Alarm', { ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1, ...properties });

  it('fires on any message in the dead-letter queue', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::ImportValue': Match.stringLikeRegexp(QUEUES.deadLetter.name) } }],
    });
  });

  it('fires on any close-due invocation the scheduler could not deliver', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [resourceOf(built.stateless.schedulerFailures).logicalId, 'QueueName'] } }],
    });
  });

  it('fires on any workspace close dead-lettered after its receives', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [resourceOf(built.stateless.closesDeadLetterQueue).logicalId, 'QueueName'] } }],
    });
  });

  it('fires on any alerts stream batch the notify mapping gave up on', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [resourceOf(built.stateless.notifyFailures).logicalId, 'QueueName'] } }],
    });
  });

  it('fires on any export job the export mapping gave up on', () => {
    alarm({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Threshold: 0,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [resourceOf(built.stateless.exportFailures).logicalId, 'QueueName'] } }],
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

describe('encryption at rest and in transit, in every stack', () => {
  /** How each resource type that can hold data is encrypted at rest; a new data-holding type fails the test below until it is listed. */
  const ENCRYPTED_AT_REST: Record<string, (properties: Record<string, unknown>) => boolean> = {
    'AWS::DynamoDB::Table': (p) => (p.SSESpecification as { SSEEnabled?: boolean } | undefined)?.SSEEnabled === true,
    'AWS::SQS::Queue': (p) => p.SqsManagedSseEnabled === true || p.KmsMasterKeyId !== undefined,
    'AWS::S3::Bucket': (p) => p.BucketEncryption !== undefined,
    'AWS::SNS::Topic': (p) => p.KmsMasterKeyId !== undefined,
    // CloudWatch Logs always encrypts log data at rest (service-managed AES-256); a retention is what the template decides.
    'AWS::Logs::LogGroup': (p) => typeof p.RetentionInDays === 'number',
    'AWS::KMS::Key': (p) => p.EnableKeyRotation === true,
  };
  /** Types that hold no data of their own (configuration, code, wiring, alarms). */
  const WITHOUT_DATA = new Set([
    'AWS::IAM::Role',
    'AWS::IAM::Policy',
    'AWS::Lambda::Function',
    'AWS::Lambda::EventSourceMapping',
    'AWS::Lambda::Permission',
    'AWS::SQS::QueuePolicy',
    'AWS::S3::BucketPolicy',
    'AWS::SNS::TopicPolicy',
    'AWS::Scheduler::Schedule',
    'AWS::ApiGatewayV2::Api',
    'AWS::ApiGatewayV2::Integration',
    'AWS::ApiGatewayV2::Route',
    'AWS::ApiGatewayV2::Stage',
    'AWS::CloudWatch::Alarm',
    'AWS::CloudWatch::Dashboard',
    'CDK::Metadata',
  ]);

  it.each([
    ['stateful', () => stateful],
    ['stateless', () => stateless],
  ])('%s: every resource that holds data is encrypted at rest, and no unknown kind of resource exists', (_name, template) => {
    const resources = Object.entries(template().toJSON().Resources as Record<string, CfnResourceJson>);
    for (const [logicalId, { Type, Properties }] of resources) {
      const check = ENCRYPTED_AT_REST[Type];
      expect([logicalId, Type, check ? 'data' : WITHOUT_DATA.has(Type) ? 'no data' : 'unknown']).not.toContainEqual('unknown');
      if (check) expect([logicalId, check(Properties ?? {})]).toEqual([logicalId, true]);
    }
  });

  it('every table, queue, bucket and topic of the app is counted above', () => {
    const count = (type: string) => Object.keys({ ...stateful.findResources(type), ...stateless.findResources(type) }).length;
    expect(count('AWS::DynamoDB::Table')).toBe(Object.keys(TABLES).length);
    expect(count('AWS::SQS::Queue')).toBe(8);
    expect(count('AWS::S3::Bucket')).toBe(2);
    expect(count('AWS::SNS::Topic')).toBe(1);
  });

  it('the alarm topic refuses plain HTTP, like every queue and bucket', () => {
    stateless.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Principal: '*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });
});

describe('cdk-nag suppressions', () => {
  it.each([
    ['stateful', () => stateful],
    ['stateless', () => stateless],
  ])('%s: every acknowledged finding names its rule and gives a reason', (_name, template) => {
    const resources = Object.values(template().toJSON().Resources as Record<string, CfnResourceJson & { Metadata?: { cdk_nag?: { rules_to_suppress?: { id: string; reason: string }[] } } }>);
    const rules = resources.flatMap((r) => r.Metadata?.cdk_nag?.rules_to_suppress ?? []);
    for (const rule of rules) {
      expect(rule.id).toMatch(/^AwsSolutions-[A-Z]+\d+/);
      expect(rule.reason.length).toBeGreaterThan(40);
    }
  });

  it('the check walks every stack of an app and reports a new finding (a queue without TLS or a dead-letter queue)', () => {
    const app = new App();
    new Stack(app, 'Clean');
    const probe = new Stack(app, 'Probe');
    new Queue(probe, 'Careless', { encryption: QueueEncryption.SQS_MANAGED });
    const { violations } = new AwsSolutionsChecks().validateScope(app);
    const rules = violations.map((v) => `${v.ruleName} ${v.violatingResources.map((r) => r.constructPath).join(',')}`);
    expect(rules).toEqual(expect.arrayContaining([expect.stringMatching(/^AwsSolutions-SQS3 Probe\/Careless/), expect.stringMatching(/^AwsSolutions-SQS4 Probe\/Careless/)]));
  });
});
