import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import { TABLES } from '../../functions/contract/resources';
import type { Subject } from '../../functions/core/ports';
import { createTables, localTableName } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, type StandIn, startDynamoDbLocal } from '../../local/stand-ins';

/**
 * The account index of the subjects table on DynamoDB Local: an account's pooled workspaces are found by query, not
 * by a scan of every workspace; and a subjects table kept from an older run (`npm run local -- --persist`), made before
 * the index existed, gains it when the local stack starts again.
 */

const REGION = 'us-east-1';
let dynamodb: StandIn;
let base: DynamoDBClient;

const workspace = (id: string, account?: string): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [], ...(account ? { account } : {}) });

beforeAll(async () => {
  dynamodb = await startDynamoDbLocal({ region: REGION });
  base = new DynamoDBClient({ region: REGION, endpoint: dynamodb.endpoint, credentials: LOCAL_CREDENTIALS });
}, 60_000);

afterAll(async () => {
  base?.destroy();
  await dynamodb?.stop();
});

describe('the account index of the subjects table', () => {
  test('a table made before the index gains it on the next start, with the workspaces already stored; an account finds exactly its own', async () => {
    // Arrange: the subjects table as an older version made it, with the due index only, and workspaces in it
    const TableName = localTableName(TABLES.subjects);
    await base.send(
      new CreateTableCommand({
        TableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'id', AttributeType: 'S' },
          { AttributeName: 'dueShard', AttributeType: 'N' },
          { AttributeName: 'nextDueAt', AttributeType: 'S' },
        ],
        KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
        GlobalSecondaryIndexes: [
          {
            IndexName: 'due',
            KeySchema: [
              { AttributeName: 'dueShard', KeyType: 'HASH' },
              { AttributeName: 'nextDueAt', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'KEYS_ONLY' },
          },
        ],
      }),
    );
    const subjects = new DynamoSubjects(DynamoDBDocumentClient.from(base), TableName);
    for (const subject of [workspace('ws_a', 'acme'), workspace('ws_b', 'acme'), workspace('ws_c', 'globex'), workspace('ws_d'), { ...workspace('acme'), kind: 'account' as const }]) {
      await subjects.put(subject);
    }

    // Act: the local stack starts again on the kept table (twice: a second start changes nothing)
    await createTables(base);
    await createTables(base);
    const indexes = (await base.send(new DescribeTableCommand({ TableName }))).Table?.GlobalSecondaryIndexes?.map((i) => i.IndexName);
    const acme = await subjects.pooledIn('acme');
    const globex = await subjects.pooledIn('globex');
    const nobody = await subjects.pooledIn('initech');

    // Assert
    expect(indexes?.sort()).toEqual(TABLES.subjects.indexes.map((i) => i.name).sort());
    expect(acme.map((s) => [s.id, s.account])).toEqual([
      ['ws_a', 'acme'],
      ['ws_b', 'acme'],
    ]);
    expect(globex.map((s) => s.id)).toEqual(['ws_c']);
    expect(nobody).toEqual([]);
  });

  test('a workspace that moves to another account, or leaves its account, is found under its new one only, at once', async () => {
    // Arrange
    const subjects = new DynamoSubjects(DynamoDBDocumentClient.from(base), localTableName(TABLES.subjects));
    await subjects.put(workspace('ws_move', 'acme'));
    const before = (await subjects.pooledIn('acme')).map((s) => s.id);

    // Act
    // Another process (the api that takes PUT /v1/workspaces/{id}) moves them
    const elsewhere = new DynamoSubjects(DynamoDBDocumentClient.from(base), localTableName(TABLES.subjects));
    await elsewhere.put(workspace('ws_move', 'globex'));
    await elsewhere.put(workspace('ws_a'));
    // This store read ws_move as acme's a moment ago: the answer is the table's, not what it holds in its cache
    const acme = (await subjects.pooledIn('acme')).map((s) => s.id);
    const globex = (await subjects.pooledIn('globex')).map((s) => s.id);

    // Assert
    expect(before).toEqual(['ws_a', 'ws_b', 'ws_move']);
    expect(acme).toEqual(['ws_b']);
    expect(globex).toEqual(['ws_c', 'ws_move']);
  });
});
