import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

/** Lambda's limit on a synchronous invocation's payload: a batch ends before its records' JSON passes 6 MB, whatever its batch size. */
export const MAX_PAYLOAD_BYTES = 6 * 1024 * 1024;

/** The parts of a Lambda context that handlers and Powertools read. */
export function lambdaContext(functionName: string, timeoutSeconds: number): Context {
  const deadline = Date.now() + timeoutSeconds * 1000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
