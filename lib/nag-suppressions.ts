import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import type { StatelessStack } from './stateless-stack';

/**
 * Every cdk-nag AwsSolutions finding this app accepts, each on the narrowest construct and with its
 * reason. Anything not listed here fails synth. The stateful stack needs none.
 */
export function acknowledgeNagFindings(stateless: StatelessStack): void {
  for (const fn of Object.values(stateless.functions)) {
    Validations.of(fn).acknowledge(
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason: 'Only logs:CreateLogGroup/CreateLogStream/PutLogEvents; a hand-written equivalent would still need a wildcard log-stream ARN.',
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'Holds only xray:PutTraceSegments/PutTelemetryRecords (active tracing) and, for the aggregate and notify functions, dynamodb:ListStreams (stream event sources); none of these actions supports resource-level permissions.',
      },
      {
        id: 'AwsSolutions-L1',
        reason: 'Node.js 22 is pinned on purpose: the bundle targets node22, and moving to a newer runtime changes the target with it after testing.',
      },
    );
  }
  Validations.of(stateless.aggregateFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the on-failure destination of the aggregate stream mapping (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  Validations.of(stateless.notifyFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the on-failure destination of the notify stream mapping (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  Validations.of(stateless.schedulerFailures).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself a dead-letter queue: the DeadLetterConfig of the close-due schedule (cdk-nag only recognises queues named in a RedrivePolicy).',
  });
  for (const route of stateless.apiRoutes) {
    Validations.of(route).acknowledge({
      id: 'AwsSolutions-APIG4',
      reason:
        'Every route but /openapi.json requires an API key, checked by the API function (hash lookup, constant-time compare, scope per route) so that 401 and 403 carry the API\'s error body, which a gateway authorizer cannot.',
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
