import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { IConstruct } from 'constructs';
import { buildApp, type UsagePipelineApp } from '../../bin/app';
import { BUCKETS, FUNCTIONS, TABLES } from '../../functions/contract/resources';
import type { FunctionName } from '../../lib/usage-function';

/**
 * What each function may do, derived from the synthesized templates (every statement of every role,
 * each resource named by what it points at), compared with the matrix below: the access each handler
 * needs, from reading it and its adapters. A function that gains a table, a stream, a queue, a bucket
 * prefix, an SES identity or an action fails here, and so does one that loses what it needs.
 */

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}
interface CfnResource {
  Type: string;
  Properties: Record<string, unknown>;
  Metadata?: { cdk_nag?: { rules_to_suppress?: { id: string; reason: string }[] } };
}
/** Resource name (`table:ledger`, `bucket:reports/exports/*`, `*`, …) → the actions allowed on it, sorted. */
type Grants = Record<string, string[]>;
type TableName = keyof typeof TABLES;

// The action groups of CDK's grants, spelled out so that a wider grant after an upgrade fails here too.
const XRAY = ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'];
/** Table.grantReadData. GetRecords/GetShardIterator on a table ARN authorize nothing (streams have their own ARN). */
const READ = [
  'dynamodb:BatchGetItem',
  'dynamodb:ConditionCheckItem',
  'dynamodb:DescribeTable',
  'dynamodb:GetItem',
  'dynamodb:GetRecords',
  'dynamodb:GetShardIterator',
  'dynamodb:Query',
  'dynamodb:Scan',
];
/** Table.grantWriteData. */
const WRITE = ['dynamodb:BatchWriteItem', 'dynamodb:DeleteItem', 'dynamodb:DescribeTable', 'dynamodb:PutItem', 'dynamodb:UpdateItem'];
const READ_WRITE = [...new Set([...READ, ...WRITE])].sort();
/** A stream event source: this stream only, plus ListStreams, which has no resource-level permission. */
const STREAM = ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'];
const LIST_STREAMS = ['dynamodb:ListStreams'];
const CONSUME = ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'];
const SEND = ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'];
/** Bucket.grantRead on one prefix: the bucket (list, metadata) and the objects under the prefix. */
const OBJECT_READ = ['s3:GetBucket*', 's3:GetObject*', 's3:List*'];
/** Bucket.grantPut on one prefix: put and abort a multipart upload; no delete. */
const OBJECT_PUT = ['s3:Abort*', 's3:PutObject', 's3:PutObjectLegalHold', 's3:PutObjectRetention', 's3:PutObjectTagging', 's3:PutObjectVersionTagging'];
const SEND_EMAIL = ['ses:SendEmail'];
const { exportsPrefix, reportsPrefix } = BUCKETS.reports;
/** `notifications.from` of the fixture config. */
const SENDER = 'usage-alerts@mail.usage.example';

const union = (...groups: string[][]) => [...new Set(groups.flat())].sort();

/** The ground truth: what each function needs, and why (the handler and its adapters). */
const EXPECTED: Record<FunctionName, Grants> = {
  // SQS batch → ledger items (conditional put per event identity) or quarantine records; subjects are looked up.
  ingest: {
    '*': XRAY,
    'table:ledger': WRITE,
    'table:quarantine': WRITE,
    'table:subjects': READ,
    'queue:usageEvents': CONSUME,
  },
  // Ledger stream → rollup transactions with the shard checkpoint; crossed thresholds → alert items.
  aggregate: {
    '*': union(XRAY, LIST_STREAMS),
    'stream:ledger': STREAM,
    'table:rollups': READ_WRITE,
    'table:alerts': READ_WRITE,
    'table:subjects': READ,
    'table:accounts': READ,
    'queue:aggregateFailures': SEND,
  },
  // Quotas, analytics, reports (read); workspaces, grants, keys and export jobs (written); record usage (send);
  // presigned downloads of finished exports (read exports/ only).
  api: {
    '*': XRAY,
    'table:rollups': READ,
    'table:subjects': READ_WRITE,
    // An account's rankings find its workspaces in the account index.
    'table:subjects/index/account': ['dynamodb:Query'],
    'table:quarantine': READ,
    'table:accounts': READ_WRITE,
    'table:apiKeys': READ_WRITE,
    'table:exports': READ_WRITE,
    'queue:usageEvents': SEND,
    'bucket:reports': OBJECT_READ,
    [`bucket:reports/${exportsPrefix}*`]: OBJECT_READ,
  },
  // Hourly: the workspaces due from the due index (a query of that index, nothing else of the subjects table) to the
  // closes queue; its lease and the summary marks in accounts; cycle reports read back, summaries written, under reports/.
  scheduler: {
    '*': XRAY,
    'table:subjects/index/due': ['dynamodb:Query'],
    'queue:closes': SEND,
    'table:accounts': READ_WRITE,
    'bucket:reports': OBJECT_READ,
    [`bucket:reports/${reportsPrefix}*`]: union(OBJECT_READ, OBJECT_PUT),
  },
  // Closes queue → per workspace: a claim and its release (conditional updates of the subjects item, the claim returning
  // it); snapshots, grants, adjustments and summary marks in accounts; closed marks on rollups; the cycle report put under reports/.
  closes: {
    '*': XRAY,
    'queue:closes': CONSUME,
    'table:subjects': WRITE,
    'table:rollups': READ_WRITE,
    'table:accounts': READ_WRITE,
    [`bucket:reports/${reportsPrefix}*`]: OBJECT_PUT,
  },
  // Alerts stream → one email per contact from the configured identity; marks each alert sent.
  notify: {
    '*': union(XRAY, LIST_STREAMS),
    'stream:alerts': STREAM,
    'table:alerts': READ_WRITE,
    'table:subjects': READ,
    'table:rollups': READ,
    'table:accounts': READ,
    // The sender of the fixture's `notifications.from`, as an address identity and as its domain's.
    [`ses:identity/${SENDER}`]: SEND_EMAIL,
    [`ses:identity/${SENDER.split('@')[1] ?? ''}`]: SEND_EMAIL,
    'ses:configuration-set/SesConfigurationSet': SEND_EMAIL,
    'queue:notifyFailures': SEND,
  },
  // Exports stream → reads rollups, writes one file under exports/ (multipart), records progress on the job.
  export: {
    '*': union(XRAY, LIST_STREAMS),
    'stream:exports': STREAM,
    'table:rollups': READ,
    'table:subjects': READ,
    'table:exports': READ_WRITE,
    [`bucket:reports/${exportsPrefix}*`]: OBJECT_PUT,
    'queue:exportFailures': SEND,
  },
};

const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

let built: UsagePipelineApp;
let statelessResources: Record<string, CfnResource>;
let statefulResources: Record<string, CfnResource>;
/** Stateful logical id → resource name, longest id first (so `LedgerStreamArn` is not read as `Ledger`). */
let importNames: [string, string][];
/** Stateless logical id → resource name. */
let localNames: Map<string, string>;

const logicalId = (construct: IConstruct) => Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

beforeAll(() => {
  built = buildApp(fileURLToPath(new URL('fixtures/config.json', import.meta.url)), { context: { ...cdkJson.context, [FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT]: false } });
  statelessResources = Template.fromStack(built.stateless).toJSON().Resources as Record<string, CfnResource>;
  statefulResources = Template.fromStack(built.stateful).toJSON().Resources as Record<string, CfnResource>;
  const { stateful, stateless } = built;
  importNames = [
    ...(Object.keys(TABLES) as TableName[]).flatMap((name): [string, string][] => [
      [`${logicalId(stateful.tables[name])}StreamArn`, `stream:${name}`],
      [`${logicalId(stateful.tables[name])}Arn`, `table:${name}`],
    ]),
    [`${logicalId(stateful.usageQueue)}Arn`, 'queue:usageEvents'],
    [`${logicalId(stateful.deadLetterQueue)}Arn`, 'queue:deadLetter'],
    [`${logicalId(stateful.reportsBucket)}Arn`, 'bucket:reports'],
  ];
  importNames.sort(([a], [b]) => b.length - a.length);
  localNames = new Map([
    [logicalId(stateless.aggregateFailures), 'queue:aggregateFailures'],
    [logicalId(stateless.notifyFailures), 'queue:notifyFailures'],
    [logicalId(stateless.exportFailures), 'queue:exportFailures'],
    [logicalId(stateless.schedulerFailures), 'queue:schedulerFailures'],
    [logicalId(stateless.closesQueue), 'queue:closes'],
    [logicalId(stateless.closesDeadLetterQueue), 'queue:closesDeadLetter'],
    ...FUNCTION_NAMES.map((name): [string, string] => [logicalId(stateless.functions[name]), `function:${name}`]),
  ]);
});

/** Names what a policy resource points at; anything this test does not recognise fails it. */
function resourceName(resource: unknown): string {
  if (resource === '*') return '*';
  const json = JSON.stringify(resource);
  const imported = (resource as { 'Fn::ImportValue'?: string })['Fn::ImportValue'];
  if (typeof imported === 'string') {
    const found = importNames.find(([id]) => imported.includes(id));
    if (found) return found[1];
  }
  const attribute = (resource as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
  if (attribute?.[1] === 'Arn' && localNames.has(attribute[0])) return localNames.get(attribute[0]) ?? '';
  const join = (resource as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (join && join[0] === '') {
    const parts = join[1];
    // `<arn>/suffix`: an index of a table, objects under a key prefix, a function's versions.
    if (parts.length === 2 && typeof parts[1] === 'string') return `${resourceName(parts[0])}${parts[1]}`;
    // arn:<partition>:ses:<region>:<account>:<type>/<stack parameter>
    const ses = /"arn:",\{"Ref":"AWS::Partition"\},":ses:",\{"Ref":"AWS::Region"\},":",\{"Ref":"AWS::AccountId"\},":([a-z-]+)\/",\{"Ref":"(\w+)"\}/.exec(json);
    if (ses) return `ses:${ses[1]}/${ses[2]}`;
    // arn:<partition>:ses:<region>:<account>:<type>/<name known at synth>
    const named = /^\["arn:",\{"Ref":"AWS::Partition"\},":ses:",\{"Ref":"AWS::Region"\},":",\{"Ref":"AWS::AccountId"\},":([a-z-]+)\/([^"]+)"\]$/.exec(JSON.stringify(parts));
    if (named) return `ses:${named[1]}/${named[2]}`;
  }
  const conditional = (resource as { 'Fn::If'?: [string, unknown, unknown] })['Fn::If'];
  if (conditional && JSON.stringify(conditional[2]) === JSON.stringify({ Ref: 'AWS::NoValue' })) return resourceName(conditional[1]);
  throw new Error(`unrecognised policy resource ${json}`);
}

function statementsOf(role: IConstruct | undefined): Statement[] {
  const policy = role?.node.tryFindChild('DefaultPolicy');
  if (!policy) throw new Error(`${role?.node.path ?? 'role'} has no default policy`);
  const resource = statelessResources[logicalId(policy)];
  return (resource?.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
}

function grantsOf(statements: Statement[]): Grants {
  const grants: Record<string, Set<string>> = {};
  for (const statement of statements) {
    expect(statement.Effect).toBe('Allow');
    for (const resource of [statement.Resource].flat()) {
      const name = resourceName(resource);
      grants[name] ??= new Set();
      for (const action of [statement.Action].flat()) grants[name].add(action);
    }
  }
  return Object.fromEntries(Object.entries(grants).map(([name, actions]) => [name, [...actions].sort()]));
}

const functionGrants = (name: FunctionName) => grantsOf(statementsOf(built.stateless.functions[name].role));
const sorted = (grants: Grants) => Object.fromEntries(Object.entries(grants).map(([k, v]) => [k, [...v].sort()]));

/** Whether an IAM action pattern (`s3:Put*`, `s3:*`, `*`) covers `action`. */
const covers = (pattern: string, action: string) => new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*')}$`, 'i').test(action);

describe('per-function least privilege', () => {
  it.each(FUNCTION_NAMES)('%s may do exactly what its handler needs, on exactly those resources', (name) => {
    expect(functionGrants(name)).toEqual(sorted(EXPECTED[name]));
  });

  it('the matrix is not vacuous: a grant the handler does not need fails the comparison', () => {
    // The export function gaining read access to the ledger, as an extra bindTable would add.
    const widened = { ...functionGrants('export'), 'table:ledger': READ };
    expect(widened).not.toEqual(sorted(EXPECTED.export));
    // One more action on a table it already has.
    const grants = functionGrants('ingest');
    expect({ ...grants, 'table:subjects': union(grants['table:subjects'] ?? [], ['dynamodb:PutItem']) }).not.toEqual(sorted(EXPECTED.ingest));
  });

  it.each(FUNCTION_NAMES)('%s has only the basic execution managed policy (logs) and no inline policy but its default one', (name) => {
    const role = statelessResources[logicalId(built.stateless.functions[name].role as IConstruct)];
    expect(JSON.stringify(role?.Properties.ManagedPolicyArns)).toBe(
      JSON.stringify([{ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole']] }]),
    );
    expect(role?.Properties.Policies).toBeUndefined();
  });

  it('every role and policy of the app is one this test knows: the functions and the schedule role', () => {
    const roles = Object.keys(statelessResources).filter((id) => statelessResources[id]?.Type === 'AWS::IAM::Role');
    const known = [...FUNCTION_NAMES.map((n) => logicalId(built.stateless.functions[n].role as IConstruct)), logicalId(built.stateless.scheduleRole)];
    expect(roles.sort()).toEqual(known.sort());
    const policies = Object.values(statelessResources).filter((r) => r.Type === 'AWS::IAM::Policy');
    expect(policies).toHaveLength(known.length);
    for (const type of ['AWS::IAM::Role', 'AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy', 'AWS::IAM::User']) {
      expect(Object.values(statefulResources).filter((r) => r.Type === type)).toEqual([]);
    }
  });

  it('the schedule role may only invoke the scheduler function and dead-letter into its own queue', () => {
    expect(grantsOf(statementsOf(built.stateless.scheduleRole))).toEqual({
      'function:scheduler': ['lambda:InvokeFunction'],
      'function:scheduler:*': ['lambda:InvokeFunction'],
      'queue:schedulerFailures': ['sqs:SendMessage'],
    });
  });
});

describe('wildcards', () => {
  const WITHOUT_RESOURCE_LEVEL_PERMISSIONS = union(XRAY, LIST_STREAMS);

  it.each(FUNCTION_NAMES)('%s: a * resource carries only actions AWS cannot scope to a resource, and cdk-nag acknowledges it', (name) => {
    const wildcard = functionGrants(name)['*'] ?? [];
    expect(wildcard.length).toBeGreaterThan(0);
    for (const action of wildcard) expect(WITHOUT_RESOURCE_LEVEL_PERMISSIONS).toContain(action);
    const policy = statelessResources[logicalId(built.stateless.functions[name].role?.node.tryFindChild('DefaultPolicy') as IConstruct)];
    const acknowledged = policy?.Metadata?.cdk_nag?.rules_to_suppress ?? [];
    expect(acknowledged).toContainEqual({ id: 'AwsSolutions-IAM5[Resource::*]', reason: expect.stringMatching(/xray:PutTraceSegments.*ListStreams/s) });
  });

  it('no statement of any role allows a wildcard action of a whole service (`s3:*`, `dynamodb:*`, `*`)', () => {
    const roles = [...FUNCTION_NAMES.map((n) => built.stateless.functions[n].role), built.stateless.scheduleRole];
    for (const role of roles) {
      for (const action of statementsOf(role).flatMap((s) => [s.Action].flat())) expect(action).not.toMatch(/^(\*|[a-z0-9-]+:\*)$/);
    }
  });
});

describe('buckets', () => {
  const DELETES = [
    's3:DeleteObject',
    's3:DeleteObjectVersion',
    's3:DeleteObjectTagging',
    's3:DeleteObjectVersionTagging',
    's3:DeleteBucket',
    's3:DeleteBucketPolicy',
    's3:PutLifecycleConfiguration',
    's3:PutBucketPolicy',
  ];

  it.each(FUNCTION_NAMES)('%s cannot delete objects or change the bucket (no granted pattern covers a delete)', (name) => {
    const actions = Object.values(functionGrants(name)).flat();
    for (const action of actions) {
      for (const forbidden of DELETES) expect([action, forbidden, covers(action, forbidden)]).toEqual([action, forbidden, false]);
    }
  });

  it('the pattern check is not vacuous', () => {
    expect(covers('s3:*', 's3:DeleteObject')).toBe(true);
    expect(covers('s3:Delete*', 's3:DeleteObjectVersion')).toBe(true);
    expect(covers('s3:PutObject', 's3:DeleteObject')).toBe(false);
  });

  it('object access always names a key prefix of the function, never every object of the bucket', () => {
    for (const name of FUNCTION_NAMES) {
      for (const resource of Object.keys(functionGrants(name)).filter((r) => r.startsWith('bucket:reports/'))) {
        expect([`bucket:reports/${exportsPrefix}*`, `bucket:reports/${reportsPrefix}*`]).toContain(resource);
      }
    }
  });
});

describe('tenant isolation at the IAM level', () => {
  // Every function serves every workspace, so IAM cannot separate workspaces by key (no dynamodb:LeadingKeys
  // here); the API function checks each caller's key and workspace itself (test/integration/api.test.ts).
  // What IAM does guarantee is what a request, or a URL the API signs, can ever reach.

  it('the API function (the one tenants call) and every URL it presigns can reach export files only, never cycle reports', () => {
    const objects = Object.keys(functionGrants('api')).filter((r) => r.startsWith('bucket:reports/'));
    expect(objects).toEqual([`bucket:reports/${exportsPrefix}*`]);
  });

  it('the API function cannot read the ledger (raw events of every workspace) or the alerts (contacts), nor consume the queue', () => {
    const grants = functionGrants('api');
    for (const name of ['table:ledger', 'stream:ledger', 'table:alerts', 'stream:alerts', 'queue:deadLetter']) expect(grants).not.toHaveProperty([name]);
    expect(grants['queue:usageEvents']).not.toContain('sqs:ReceiveMessage');
  });

  it('only the API function can read or write API key hashes, and only the notify function can send email', () => {
    for (const name of FUNCTION_NAMES) {
      const grants = functionGrants(name);
      expect([name, 'table:apiKeys' in grants]).toEqual([name, name === 'api']);
      expect([
        name,
        Object.values(grants)
          .flat()
          .some((a) => a.startsWith('ses:')),
      ]).toEqual([name, name === 'notify']);
    }
  });
});
