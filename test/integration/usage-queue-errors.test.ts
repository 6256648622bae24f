import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { errorResponse } from '../../functions/adapters/http';
import { SqsUsageQueue } from '../../functions/adapters/usage-queue';
import { DependencyError } from '../../functions/core/errors';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse } from '../support/api-contract';

/**
 * POST …/usages and the usage queue, on the local stack: an event id with a character outside the
 * Basic Multilingual Plane is queued and counted, as SQS takes it; what the queue refuses, or a queue
 * that cannot be reached, answers a named 502 or 503 (never internal_error), as openapi.json says.
 */

const CONFIG = 'test/fixtures/api-config.json';
const ADMIN = 'test-admin-key-000000000000';
const HOUR_MS = 3_600_000;

let stack: LocalStack;
let sqs: SQSClient;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: CONFIG, onError: () => undefined });
  sqs = new SQSClient({ region: stack.ready.region, endpoint: stack.ready.sqs.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
}, 300_000);

afterAll(async () => {
  sqs?.destroy();
  await stack?.stop();
});

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** What the API answers for the error, checked against openapi.json for POST …/usages. */
function answered(error: unknown): { status: number; body: { error: { code: string; message: string } } } {
  const response = errorResponse(error) as APIGatewayProxyStructuredResultV2;
  const body = JSON.parse(response.body ?? '') as { error: { code: string; message: string } };
  checkResponse('POST', '/v1/workspaces/ws_one/usages', response.statusCode ?? 0, body);
  return { status: response.statusCode ?? 0, body };
}

describe('POST …/usages', () => {
  test('an event id with 🚀 is queued and counted', async () => {
    // Arrange
    const time = new Date(stack.clock.now().getTime() - HOUR_MS);
    const hour = new Date(Math.floor(time.getTime() / HOUR_MS) * HOUR_MS);

    // Act
    const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_one/usages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ specversion: '1.0', id: 'rocket-🚀', type: 'usage', time: time.toISOString(), data: { usageType: 'tokens', quantity: 7 } }),
    });
    const accepted = (await response.json()) as { events: { id: string }[] };
    await stack.settle();
    const usage = await fetch(`${stack.ready.api}/v1/workspaces/ws_one/usage?granularity=hour&from=${hour.toISOString()}&to=${new Date(hour.getTime() + HOUR_MS).toISOString()}`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    const { buckets } = (await usage.json()) as { buckets: { usageType: string; quantity: number }[] };

    // Assert
    expect(response.status).toBe(202);
    expect(accepted.events.map((e) => e.id)).toEqual(['rocket-🚀']);
    expect(buckets).toEqual([expect.objectContaining({ usageType: 'tokens', quantity: 7 })]);
  });
});

describe('the usage queue refuses or cannot be reached', () => {
  test('a message the queue refuses is 502 queue_refused, not sent again; the messages it took stay queued', async () => {
    // Arrange: a lone surrogate, which SQS refuses as InvalidMessageContents, beside a message it takes.
    const queueUrl = (await sqsQueue('refusing')).url;
    const queue = new SqsUsageQueue(sqs, queueUrl);

    // Act
    const error = await caught(queue.sendAll(['{"fine":true}', '{"bad":"\uD800"}']));
    const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));

    // Assert
    expect(error).toBeInstanceOf(DependencyError);
    const { status, body } = answered(error);
    expect(status).toBe(502);
    expect(body.error.code).toBe('queue_refused');
    expect(body.error.message).toContain('InvalidMessageContents');
    expect(Messages.map((m) => m.Body)).toEqual(['{"fine":true}']);
  });

  test('a queue that cannot be reached is 503 queue_unavailable', async () => {
    // Arrange
    const queue = new SqsUsageQueue(sqs, `${stack.ready.sqs.endpoint}/000000000000/no-such-queue`);

    // Act
    const error = await caught(queue.sendAll(['{"fine":true}']));

    // Assert
    expect(error).toBeInstanceOf(DependencyError);
    const { status, body } = answered(error);
    expect(status).toBe(503);
    expect(body.error.code).toBe('queue_unavailable');
  });
});

async function sqsQueue(name: string): Promise<{ url: string }> {
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name }));
  return { url: QueueUrl ?? '' };
}
