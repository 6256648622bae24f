/* global process */
/**
 * One cold invocation of a function bundle, as Lambda's Node.js runtime makes it: the module named by
 * `_HANDLER` is imported from LAMBDA_TASK_ROOT, its export is called with the event and a context
 * object, and what it returns (or throws) is written as JSON to the result file. Written by hand: it
 * stands in for the runtime's own bootstrap, which is not published as a package.
 *
 *   node lambda-runner.mjs <event.json | -> <result.json> <timeout seconds>
 *
 * With `-` as the event, only the import is timed (the bench's cold-start figure).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const [eventFile, resultFile, timeoutSeconds] = process.argv.slice(2);
const env = process.env;
const [moduleName, exportName] = (env._HANDLER ?? '').split('.');
const write = (value) => writeFileSync(resultFile, JSON.stringify(value));

const started = performance.now();
let handler;
try {
  const module = await import(pathToFileURL(join(env.LAMBDA_TASK_ROOT ?? '', `${moduleName}.mjs`)).href);
  handler = module[exportName];
} catch (error) {
  write({ initError: { name: error.name, message: error.message } });
  process.exit(0);
}
const initMs = performance.now() - started;

if (eventFile === '-') {
  write({ initMs });
  process.exit(0);
}

const deadline = Date.now() + Number(timeoutSeconds) * 1000;
const context = {
  callbackWaitsForEmptyEventLoop: true,
  functionName: env.AWS_LAMBDA_FUNCTION_NAME,
  functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
  invokedFunctionArn: `arn:aws:lambda:${env.AWS_REGION}:123456789012:function:${env.AWS_LAMBDA_FUNCTION_NAME}`,
  memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
  awsRequestId: randomUUID(),
  logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
  logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
  getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
};
try {
  const result = await handler(JSON.parse(readFileSync(eventFile, 'utf8')), context);
  write({ initMs, result: result ?? null });
} catch (error) {
  write({ initMs, error: { name: error.name, message: error.message } });
}
// Lambda freezes the process once the handler settles; open keep-alive sockets must not hold it here.
process.exit(0);
