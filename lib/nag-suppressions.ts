import { type CfnElement, DefaultStackSynthesizer, Stack, Validations } from 'aws-cdk-lib';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { DashboardSite } from './dashboard-site';
import type { StatefulStack } from './stateful-stack';
import type { StatelessStack } from './stateless-stack';
import type { BucketBinding, UsageFunction } from './usage-function';

/**
 * Every cdk-nag AwsSolutions finding this app accepts, each on the narrowest construct and with its
 * reason. Anything not listed here fails synth.
 */
export function acknowledgeNagFindings(stateful: StatefulStack, stateless: StatelessStack): void {
  Validations.of(stateful.accessLogsBucket).acknowledge({
    id: 'AwsSolutions-S1',
    reason: 'This is the server access log bucket of the reports bucket; a log bucket cannot log to itself, and logging it to yet another bucket would only move the finding.',
  });
  for (const fn of Object.values(stateless.functions)) {
    Validations.of(fn).acknowledge(
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason: 'Only logs:CreateLogGroup/CreateLogStream/PutLogEvents; a hand-written equivalent would still need a wildcard log-stream ARN.',
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Holds only xray:PutTraceSegments/PutTelemetryRecords (active tracing) and, for the aggregate, notify and export functions, dynamodb:ListStreams (stream event sources); none of these actions supports resource-level permissions.',
      },
      {
        id: 'AwsSolutions-L1',
        reason: 'Node.js 22 is pinned on purpose: the bundle targets node22, and moving to a newer runtime changes the target with it after testing.',
      },
    );
  }
  for (const fn of Object.values(stateless.functions)) {
    for (const binding of fn.bucketBindings) acknowledgeBucketBinding(fn, binding);
  }
  Validations.of(stateless.aggregateFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the on-failure destination of the aggregate stream mapping (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  Validations.of(stateless.notifyFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the on-failure destination of the notify stream mapping (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  Validations.of(stateless.exportFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the on-failure destination of the export stream mapping (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  Validations.of(stateless.schedulerFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the DeadLetterConfig of the close-due schedule (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  for (const route of stateless.apiRoutes) {
    Validations.of(route).acknowledge({
      id: 'AwsSolutions-APIG4',
      reason:
        "Every route but /openapi.json requires an API key, checked by the API function (hash lookup, constant-time compare, scope per route) so that 401 and 403 carry the API's error body, which a gateway authorizer cannot.",
    });
  }
  const scheduler = stateless.functions.scheduler;
  const schedulerId = Stack.of(scheduler).getLogicalId(scheduler.node.defaultChild as CfnElement);
  Validations.of(stateless.scheduleRole).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${schedulerId}.Arn>:*]`,
    reason:
      'lambda:InvokeFunction on the versions and aliases of the scheduler function only (Function.grantInvoke, used by the LambdaInvoke target, always adds the qualified ARN); no other function is reachable.',
  });
}

/** The dashboard's findings: a CloudFront site on its default domain, and the deployment function CDK provides. */
export function acknowledgeDashboardNagFindings(site: DashboardSite): void {
  Validations.of(site.logsBucket).acknowledge({
    id: 'AwsSolutions-S1',
    reason: "This is the log bucket of the dashboard (CloudFront standard logs and the assets bucket's access logs); a log bucket cannot log to itself.",
  });
  Validations.of(site.distribution).acknowledge(
    { id: 'AwsSolutions-CFR1', reason: 'The dashboard is for customers wherever they are; who sees what is decided by API keys, not by country.' },
    {
      id: 'AwsSolutions-CFR2',
      reason: 'The site is static files plus the API, which checks every key itself and is throttled at its stage; a web ACL would add cost without guarding anything the key check does not.',
    },
    {
      id: 'AwsSolutions-CFR4',
      reason:
        'The distribution uses its default *.cloudfront.net certificate, whose security policy CloudFront fixes (TLSv1); browsers negotiate TLS 1.2 or 1.3 with it. A custom domain with its own certificate would allow TLSv1.2_2021 as the minimum.',
    },
  );
  // BucketDeployment's function is CDK's own singleton (one per stack), with the AWS CLI layer it needs.
  const assetsBucketName = DefaultStackSynthesizer.DEFAULT_FILE_ASSETS_BUCKET_NAME.replace('${Qualifier}', DefaultStackSynthesizer.DEFAULT_QUALIFIER)
    .replace('${AWS::AccountId}', '<AWS::AccountId>')
    .replace('${AWS::Region}', '<AWS::Region>');
  const deployer = Stack.of(site).node.children.find((child) => child.node.id.startsWith('Custom::CDKBucketDeployment'));
  if (!deployer) throw new Error("the dashboard's BucketDeployment function was not found");
  Validations.of(deployer).acknowledge(
    {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      reason: "CDK's BucketDeployment function: only logs:CreateLogGroup/CreateLogStream/PutLogEvents.",
    },
    ...['s3:GetBucket*', 's3:GetObject*', 's3:List*', 's3:Abort*', 's3:DeleteObject*'].map((action) => ({
      id: `AwsSolutions-IAM5[Action::${action}]`,
      reason: `CDK's BucketDeployment function (Bucket.grantRead of the CDK assets bucket, grantReadWrite of the dashboard bucket): ${action} on those two buckets only, to copy the build over.`,
    })),
    {
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${assetsBucketName}/*]`,
      reason: "CDK's BucketDeployment function reads the zipped build from the CDK assets bucket, under a key known only at deploy time.",
    },
    {
      id: `AwsSolutions-IAM5[Resource::<${Stack.of(site).getLogicalId(site.bucket.node.defaultChild as CfnElement)}.Arn>/*]`,
      reason: "CDK's BucketDeployment function writes the build's files (hashed names, known only at build time) into the dashboard bucket.",
    },
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: "CDK's BucketDeployment function invalidates the page in CloudFront after a deploy; cloudfront:CreateInvalidation and GetInvalidation take no resource-level permission.",
    },
    { id: 'AwsSolutions-L1', reason: 'CDK chooses the runtime of its BucketDeployment function and moves it with each aws-cdk-lib release.' },
  );
}

/**
 * The wildcards of a prefix-scoped bucket grant (UsageFunction.bindBucket): the object resource
 * `<bucket>/<prefix>*` and the action groups of Bucket.grantRead and Bucket.grantPut.
 */
function acknowledgeBucketBinding(fn: UsageFunction, { bucket, access, prefix }: BucketBinding): void {
  const where = `under ${prefix} of the bucket only`;
  const rules = [
    {
      id: `AwsSolutions-IAM5[Resource::${crossStackArn(bucket)}/${prefix}*]`,
      reason: `Object access is limited to the ${prefix} prefix; the keys below it (per cycle and workspace, or per export) are only known at run time.`,
    },
  ];
  if (access !== 'write') {
    rules.push(
      { id: 'AwsSolutions-IAM5[Action::s3:GetObject*]', reason: `Bucket.grantRead: s3:GetObject and its version, attribute and tagging reads, on objects ${where}.` },
      {
        id: 'AwsSolutions-IAM5[Action::s3:GetBucket*]',
        reason: 'Bucket.grantRead: read-only bucket metadata (location, versioning, encryption) of this one bucket, which the SDK may consult; nothing that changes the bucket.',
      },
      {
        id: 'AwsSolutions-IAM5[Action::s3:List*]',
        reason: 'Bucket.grantRead: s3:ListBucket and multipart-upload listing on this one bucket, so that a missing object answers 404 instead of 403.',
      },
    );
  }
  if (access !== 'read') {
    rules.push({ id: 'AwsSolutions-IAM5[Action::s3:Abort*]', reason: `Bucket.grantPut: s3:AbortMultipartUpload for a failed multipart upload, on objects ${where}; no delete is granted.` });
  }
  Validations.of(fn).acknowledge(...rules);
}

/**
 * How cdk-nag names the ARN of a bucket of another stack: the name of the export it is imported from.
 * Stack.exportValue returns (and, if missing, creates) the very export that the automatic cross-stack
 * reference uses, so this adds nothing to the templates.
 */
function crossStackArn(bucket: IBucket): string {
  const owner = Stack.of(bucket);
  const imported = owner.resolve(owner.exportValue(bucket.bucketArn)) as { 'Fn::ImportValue'?: unknown };
  const name = imported['Fn::ImportValue'];
  if (typeof name !== 'string') throw new Error(`cannot name the export of ${bucket.node.path}'s ARN`);
  return name;
}
