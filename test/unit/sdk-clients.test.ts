import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { describe, expect, test } from '@jest/globals';
import { awsClients } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { createSqsClient } from '../../functions/adapters/usage-queue';

/** The SDK's logger middleware builds a redacted copy of each request and response even for a discarding logger. */
const middlewareNames = (client: { middlewareStack: { identify(): string[] } }) => client.middlewareStack.identify().map((entry) => entry.split(' ')[0]);

describe('the SDK clients the handlers share', () => {
  test('a client as the SDK builds it carries the logger middleware (what the others must lack)', () => {
    // Arrange
    const client = new DynamoDBClient({});

    // Act
    const names = middlewareNames(client);

    // Assert
    expect(names).toContain('loggerMiddleware');
  });

  test.each([
    ['dynamodb', () => awsClients.dynamodb()],
    ['ledger', () => awsClients.ledger()],
    ['s3', () => awsClients.s3()],
    ['ses', () => awsClients.ses()],
    ['sqs', () => createSqsClient()],
    ['document client', () => createDocumentClient()],
  ])('%s: built without the SDK logger middleware', (_name, build) => {
    // Arrange
    const client = build();

    // Act
    const names = middlewareNames(client);

    // Assert
    expect(names).not.toContain('loggerMiddleware');
    expect(names.length).toBeGreaterThan(5);
  });
});
