import { CreateQueueCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { LOCAL_CREDENTIALS, type StandIn, startSqsStandIn } from '../../local/stand-ins';

/**
 * The SQS stand-in takes what SQS takes in a message body, #x9 | #xA | #xD | #x20 to #xD7FF |
 * #xE000 to #xFFFD | #x10000 to #x10FFFF, and refuses the rest as SQS does (InvalidMessageContents),
 * through the real SDK, which also checks the MD5 of each body it sends and receives. The verdicts
 * are written out here from that rule, one character on each side of every edge.
 */

const REGION = 'us-east-1';

let sqs: StandIn;
let client: SQSClient;
let queueUrl: string;

beforeAll(async () => {
  sqs = await startSqsStandIn({ region: REGION });
  client = new SQSClient({ region: REGION, endpoint: sqs.endpoint, credentials: LOCAL_CREDENTIALS });
  const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: 'characters' }));
  queueUrl = QueueUrl ?? '';
});

afterAll(async () => {
  client?.destroy();
  await sqs?.stop();
});

const accepted: [string, string][] = [
  ['tab', '\t'],
  ['line feed', '\n'],
  ['carriage return', '\r'],
  ['space', ' '],
  ['U+D7FF', '\uD7FF'],
  ['U+E000', '\uE000'],
  ['U+FFFD', '\uFFFD'],
  ['U+10000', '\u{10000}'],
  ['🚀 (U+1F680)', '🚀'],
  ['U+10FFFF', '\u{10FFFF}'],
];

const refused: [string, string][] = [
  ['U+0000', '\u0000'],
  ['U+0008', '\u0008'],
  ['U+001F', '\u001F'],
  ['a lone high surrogate', '\uD800'],
  ['a lone low surrogate', '\uDFFF'],
  ['U+FFFE', '\uFFFE'],
  ['U+FFFF', '\uFFFF'],
];

describe('message body characters', () => {
  test.each(accepted)('%s is taken and comes back unchanged', async (_, character) => {
    // Arrange
    const body = `rocket-${character}-end`;

    // Act
    const sent = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: '0', MessageBody: body }] }));
    const { Messages = [] } = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    await client.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) }));

    // Assert
    expect(sent.Failed ?? []).toEqual([]);
    expect(Messages.map((m) => m.Body)).toEqual([body]);
  });

  test.each(refused)('%s is refused as SQS refuses it', async (_, character) => {
    // Arrange
    const body = `rocket-${character}-end`;

    // Act
    const batch = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: '0', MessageBody: body }] }));
    const single = await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body })).then(
      () => 'taken',
      (error: unknown) => (error as { name?: string }).name,
    );

    // Assert
    expect(batch.Failed?.map((f) => [f.Id, f.Code, f.SenderFault])).toEqual([['0', 'InvalidMessageContents', true]]);
    expect(single).toMatch(/InvalidMessageContents$/);
  });
});
