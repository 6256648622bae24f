import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { GroundTruth, type TestEvent } from '../../testkit/ground-truth';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * The byte limits on the local stack: a message of SQS's largest size, 1 MiB, is counted whole; one byte
 * more is refused by the queue when sent; fields over their UTF-8 byte limits are quarantined while the
 * rest of their message counts; and `POST …/usages` with 500 events of long non-ASCII fields (more than
 * one message's worth) answers 202 and every event it lists is counted.
 */

const MIB = 1_048_576;
const NOW = suiteClockStart().getTime();
const bytes = (text: string) => new TextEncoder().encode(text).length;

let stack: LocalStack;
let client: StackClient;
const truth = new GroundTruth({ ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29 });

beforeAll(async () => {
  stack = await startLocal({ clockStart: new Date(NOW), configPath: 'test/fixtures/config.json', onError: () => undefined });
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

/** An event with each string field near its byte limit in 2- and 3-byte characters. */
function longEvent(subject: string, n: number, quantity: number): TestEvent & { data: { feature: string; channel: string } } {
  const event = usageEvent({
    id: `${'€'.repeat(80)}-${n}`,
    source: `//limits/${'€'.repeat(330)}`,
    subject,
    time: new Date(NOW - 60_000 - (n % 48) * 3_600_000),
    quantity,
    userId: `${'é'.repeat(120)}${n % 5}`,
    channel: `${'€'.repeat(80)}${n % 3}`,
    feature: `${'€'.repeat(84)}${n % 4}`,
  });
  return event as TestEvent & { data: { feature: string; channel: string } };
}

/** As many events as fit in one array body, padded with trailing whitespace (valid JSON) to exactly `size` bytes. */
function bodyOfSize(size: number, subject: string): { body: string; events: TestEvent[] } {
  const events: TestEvent[] = [];
  for (let n = 0; bytes(JSON.stringify([...events, longEvent(subject, n, 1)])) <= size; n++) events.push(longEvent(subject, n, 1 + (n % 7)));
  const json = JSON.stringify(events);
  return { body: json + ' '.repeat(size - bytes(json)), events };
}

test('a message of exactly 1 MiB is counted whole; one byte more is refused by the queue at send, with its reason', async () => {
  // Arrange
  const fits = bodyOfSize(MIB, 'ws_b01');
  const tooLarge = bodyOfSize(MIB + 1, 'ws_a31');
  expect([bytes(fits.body), bytes(tooLarge.body)]).toEqual([MIB, MIB + 1]);
  expect(fits.events.length).toBeGreaterThan(300);
  fits.events.forEach((e) => truth.accept(e));

  // Act
  await client.send([fits.body]);
  const refused = await client.sqs.send(new SendMessageCommand({ QueueUrl: stack.ready.sqs.queueUrl, MessageBody: tooLarge.body })).then(
    () => 'accepted',
    (error: Error) => error.message,
  );

  // Assert
  expect(refused).toContain(`Message must be shorter than ${MIB} bytes`);
  await expectDaysToMatchTruth('ws_b01');
  await expectDaysToMatchTruth('ws_a31');
  expect(await client.quarantine()).toEqual([]);
});

test('fields over their byte limits are quarantined with field_too_long; the rest of their message counts', async () => {
  // Arrange: a source of 1,024 "€" is 1,024 characters (within the character limit) and 3,072 bytes
  const good = [longEvent('ws_c15', 1000, 11), longEvent('ws_c15', 1001, 13)];
  const badSource = { ...longEvent('ws_c15', 1002, 17), source: '€'.repeat(1024) };
  const badChannel = { ...longEvent('ws_c15', 1003, 19), data: { ...longEvent('ws_c15', 1003, 19).data, channel: 'é'.repeat(129) } };
  good.forEach((e) => truth.accept(e));

  // Act
  await client.send([JSON.stringify([good[0], badSource, badChannel, good[1]])]);

  // Assert
  await expectDaysToMatchTruth('ws_c15');
  const quarantined = (await client.quarantine('ws_c15')).map((q) => [q.reason, q.detail]).sort();
  expect(quarantined).toEqual([
    ['field_too_long', 'data.channel: 258 bytes in UTF-8; the limit is 256'],
    ['field_too_long', 'source: 3072 bytes in UTF-8; the limit is 1024'],
  ]);
});

test('POST …/usages with 500 long non-ASCII events: 202, split into messages within 1 MiB, every listed event counted', async () => {
  // Arrange: each event is about 2.5 KB, so the 500 take more than one message
  const events = Array.from({ length: 500 }, (_, i) => longEvent('ws_d29', 2000 + i, 1 + (i % 9)));
  expect(bytes(JSON.stringify(events))).toBeGreaterThan(MIB);
  events.forEach((e) => truth.accept(e));

  // Act
  const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_d29/usages`, {
    method: 'POST',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' },
    body: JSON.stringify(events),
  });
  const body = (await response.json()) as { events: { source: string; id: string }[] };

  // Assert
  expect(response.status).toBe(202);
  expect(body.events).toEqual(events.map((e) => ({ source: e.source, id: e.id })));
  await expectDaysToMatchTruth('ws_d29');
  expect(await client.quarantine('ws_d29')).toEqual([]);
});

test('a 1 MiB message of 3-byte characters that is not JSON is quarantined, its body cut to 300,000 bytes between characters', async () => {
  // Arrange: 349,525 "€" are 1,048,575 bytes, under the queue's limit and over a DynamoDB item's 400 KB
  const body = `{${'€'.repeat(349_525)}`;
  expect(bytes(body)).toBe(MIB);

  // Act
  await client.send([body]);
  await stack.settle();

  // Assert
  const [item] = (await client.quarantine()).filter((q) => q.reason === 'not_json');
  expect(item?.body).toBe(`{${'€'.repeat(99_999)}`); // 1 + 3 × 99,999 = 299,998 bytes; one more "€" would pass 300,000
});

async function expectDaysToMatchTruth(subject: string): Promise<void> {
  await stack.settle();
  const actual = await client.buckets(subject, 'day', new Date(NOW - 10 * 86_400_000), new Date(NOW + 86_400_000));
  expect({ subject, days: actual }).toEqual({ subject, days: truth.buckets(subject, 'day') });
}
