import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { DynamoLedger } from '../../functions/adapters/ledger-store';
import { eventKey } from '../../functions/core/metering/envelope';
import type { LedgerEntry } from '../../functions/core/metering/rollups';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, type StandIn, startDynamoDbLocal } from '../../local/stand-ins';

/**
 * The ledger remembers, per instance, the content it last wrote for each identity, so that a duplicate
 * costs no write. Counted here at the wire: every PutItem that reaches DynamoDB Local.
 */

let dynamo: StandIn;
let table: string;
const clients: DynamoDBClient[] = [];

beforeAll(async () => {
  dynamo = await startDynamoDbLocal({ region: 'us-east-1' });
  const setup = client();
  table = (await createTables(setup)).names.ledger;
});

afterAll(async () => {
  clients.forEach((c) => c.destroy());
  await dynamo?.stop();
});

function client(): DynamoDBClient {
  const created = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS, cacheMiddleware: true });
  clients.push(created);
  return created;
}

/** A ledger on its own client (one Lambda container), with the PutItem requests it sends counted. */
function container(options: { failFirstPut?: boolean } = {}): { ledger: DynamoLedger; puts: () => number } {
  const own = client();
  let puts = 0;
  let failNext = options.failFirstPut ?? false;
  own.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'PutItemCommand') return next(args);
      puts += 1;
      if (failNext) {
        failNext = false;
        throw Object.assign(new Error('injected: connection reset'), { name: 'TimeoutError' });
      }
      return next(args);
    },
    { step: 'initialize', name: 'countPuts' },
  );
  return { ledger: new DynamoLedger(own, table), puts: () => puts };
}

let nextId = 0;
function entry(overrides: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    source: 'test/ledger',
    id: `evt-${nextId++}`,
    type: 'com.example.usage',
    subject: 'ws_ledger',
    time: '2026-11-24T10:15:00.000Z',
    usageType: 'tokens',
    quantity: '12',
    dimensions: {},
    hour: '2026-11-24T10',
    day: '2026-11-24',
    cycleStart: '2026-11-01T00:00:00.000Z',
    sentAt: '2026-11-24T10:15:01.000Z',
    expiresAt: 2_000_000_000,
    ...overrides,
  };
}

async function stored(e: LedgerEntry): Promise<{ quantity?: string; sentAt?: string }> {
  const { Item } = await clients[0]!.send(new GetItemCommand({ TableName: table, Key: { pk: { S: eventKey(e) } }, ConsistentRead: true }));
  return { quantity: Item?.quantity?.N, sentAt: Item?.sentAt?.S };
}

test('a copy with the content this instance wrote is not sent again, however late it was sent', async () => {
  const { ledger, puts } = container();
  const original = entry();

  const first = await ledger.putAll([original]);
  const again = await ledger.putAll([original, { ...original, sentAt: '2026-11-24T10:20:00.000Z' }]);

  expect(first).toEqual({ failed: [], knownDuplicates: 0 });
  expect(again).toEqual({ failed: [], knownDuplicates: 2 });
  expect(puts()).toBe(1);
  expect(await stored(original)).toEqual({ quantity: '12', sentAt: '2026-11-24T10:15:01.000Z' });
});

test('a correction is written, and the original sent after it is written again: the copy sent last wins', async () => {
  const { ledger, puts } = container();
  const original = entry();
  const correction = { ...original, quantity: '30', sentAt: '2026-11-24T10:16:00.000Z' };
  const resentOriginal = { ...original, sentAt: '2026-11-24T10:17:00.000Z' };

  await ledger.putAll([original]);
  await ledger.putAll([correction]);
  expect(await stored(original)).toEqual({ quantity: '30', sentAt: '2026-11-24T10:16:00.000Z' });
  const last = await ledger.putAll([resentOriginal]);

  expect(last.knownDuplicates).toBe(0);
  expect(puts()).toBe(3);
  expect(await stored(original)).toEqual({ quantity: '12', sentAt: '2026-11-24T10:17:00.000Z' });
});

test('a duplicate reaching another instance is refused by the ledger condition, at one write', async () => {
  const one = container();
  const two = container();
  const original = entry();

  await one.ledger.putAll([original]);
  const elsewhere = await two.ledger.putAll([{ ...original, sentAt: '2026-11-24T10:18:00.000Z' }]);

  expect(elsewhere).toEqual({ failed: [], knownDuplicates: 0 });
  expect(two.puts()).toBe(1);
  expect(await stored(original)).toEqual({ quantity: '12', sentAt: '2026-11-24T10:15:01.000Z' });
});

test('the documented limit: an instance cannot see a correction another one wrote, and drops a later copy of the original', async () => {
  const one = container();
  const two = container();
  const original = entry();

  await one.ledger.putAll([original]);
  await two.ledger.putAll([{ ...original, quantity: '30', sentAt: '2026-11-24T10:16:00.000Z' }]);
  const result = await one.ledger.putAll([{ ...original, sentAt: '2026-11-24T10:17:00.000Z' }]);

  // The ledger alone would let the copy sent last (the original, at 10:17) replace the correction.
  expect(result.knownDuplicates).toBe(1);
  expect(await stored(original)).toEqual({ quantity: '30', sentAt: '2026-11-24T10:16:00.000Z' });
});

test('a write that failed is not remembered: the redelivered copy is written', async () => {
  const { ledger, puts } = container({ failFirstPut: true });
  const original = entry();

  const failed = await ledger.putAll([original]);
  const retried = await ledger.putAll([original]);

  expect(failed.failed).toEqual([original]);
  expect(retried).toEqual({ failed: [], knownDuplicates: 0 });
  expect(puts()).toBe(2);
  expect(await stored(original)).toEqual({ quantity: '12', sentAt: '2026-11-24T10:15:01.000Z' });
});
