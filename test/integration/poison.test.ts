import { GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { GroundTruth } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';

/**
 * Poison cannot stall the queue or the ledger stream: through the local runtime's pollers, good events are
 * sent in the same batches as malformed bodies, a body of 200 KB, events the config does not know, and
 * messages whose delivery fails every time. Every good event must be counted exactly; each bad one must
 * end quarantined with its reason, and each failing one in the dead-letter queue, alone.
 */

const NOW = suiteClockStart().getTime();
const MARKER = 'poison-fails-every-time';
const ANCHORS = { ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29 };

let stack: LocalStack;
let client: StackClient;

beforeAll(async () => {
  stack = await startLocal({
    clockStart: new Date(NOW),
    configPath: 'test/fixtures/config.json',
    // Longer than a batch takes on a busy machine: a batch that outlives it is received again and can reach the DLQ.
    visibilityTimeoutSeconds: 10,
    onError: () => undefined,
    // A message that fails on every delivery, as one a handler bug trips over would: only it is reported failed.
    wrapIngest: (invoke) => async (event) => {
      const failing = event.Records.filter((r) => r.body.includes(MARKER));
      const response = await invoke({ Records: event.Records.filter((r) => !failing.includes(r)) });
      return { batchItemFailures: [...response.batchItemFailures, ...failing.map((r) => ({ itemIdentifier: r.messageId }))] };
    },
  });
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

test('poison among good events ends quarantined or in the DLQ; every good event is counted once', async () => {
  // Arrange: 400 good events over four workspaces, poison every tenth message
  const truth = new GroundTruth(ANCHORS);
  const subjects = Object.keys(ANCHORS);
  const bodies: string[] = [];
  const expectedReasons: string[] = [];
  let failing = 0;
  for (let i = 0; i < 400; i++) {
    const event = usageEvent({
      id: `poison-good-${i}`,
      source: '//test/poison',
      subject: subjects[i % subjects.length] ?? '',
      time: new Date(NOW - 60_000 - i * 3_600_000),
      quantity: 1 + ((i * 37) % 500),
    });
    truth.accept(event);
    bodies.push(JSON.stringify(event));
    if (i % 10 !== 0) continue;
    const poison: [string, string | undefined][] = [
      [`{"specversion":"1.0","id":"broken-${i}"`, 'not_json'],
      [JSON.stringify({ ...event, id: `big-${i}`, data: { ...event.data, feature: 'x'.repeat(200_000) } }), 'invalid_dimension'],
      [JSON.stringify({ ...event, id: `ghost-${i}`, subject: 'ws_ghost' }), 'unknown_subject'],
      [JSON.stringify({ ...event, id: `${MARKER}-${i}` }), undefined],
    ];
    const [body, reason] = poison[(i / 10) % 4] as [string, string | undefined];
    bodies.push(body);
    if (reason) expectedReasons.push(reason);
    else failing += 1;
  }

  // Act
  await client.send(bodies);
  await stack.settle(240_000);

  // Assert: the good events, bucket by bucket
  const range = { from: new Date(NOW - 80 * 86_400_000), to: new Date(NOW + 86_400_000) };
  for (const subject of subjects) {
    for (const granularity of ['hour', 'cycle'] as const) {
      expect({ subject, granularity, buckets: await client.buckets(subject, granularity, range.from, range.to) }).toEqual({ subject, granularity, buckets: truth.buckets(subject, granularity) });
    }
  }
  // The bad ones, each with its reason
  const quarantined = (await client.quarantine()).map((q) => q.reason).sort();
  expect(quarantined).toEqual([...expectedReasons].sort());
  // The failing ones, alone in the dead-letter queue, after their receives ran out
  const { Attributes } = await client.sqs.send(new GetQueueAttributesCommand({ QueueUrl: stack.ready.sqs.dlqUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
  expect(Number(Attributes?.ApproximateNumberOfMessages)).toBe(failing);
  const { Messages = [] } = await client.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.ready.sqs.dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30 }));
  expect(Messages.length).toBeGreaterThan(0);
  expect(Messages.every((m) => m.Body?.includes(MARKER))).toBe(true);
}, 300_000);
