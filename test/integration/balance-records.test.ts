import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { BALANCE_RECORDS_CACHE, DynamoAccounts } from '../../functions/adapters/account-store';
import type { CycleSnapshot, Grant } from '../../functions/core/billing/balance';
import { createTables } from '../../local/bootstrap';
import { type StandIn, startDynamoDbLocal } from '../../local/stand-ins';
import { suiteClockStart } from '../../testkit/clock-start';

/**
 * A live view (quotas, summary, an alert's email) reads a workspace's grants and cycle snapshots through
 * `balanceRecords`, which a warm function answers from memory for 30 s of its clock: the common quota check
 * then costs one rollup read. These tests run the DynamoDB store against DynamoDB Local and count the
 * requests it sends; the store's clock is the test's.
 */

const REGION = 'us-east-1';
let dynamodb: StandIn;
let base: DynamoDBClient;
let documents: DynamoDBDocumentClient;
let table: string;
/** Requests the store under test sent, by command name. */
const sent: string[] = [];
/** When set, a Query's answer waits for it before it is handed back (to let a write overtake a read). */
let holdQueries: Promise<void> | undefined;
/** Queries answered by DynamoDB and now held. */
let held = 0;

beforeAll(async () => {
  dynamodb = await startDynamoDbLocal({ region: REGION });
  base = new DynamoDBClient({ region: REGION, endpoint: dynamodb.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  base.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push(String(context.commandName));
      const hold = context.commandName === 'QueryCommand' ? holdQueries : undefined;
      const answer = await next(args);
      if (hold) {
        held++;
        await hold;
      }
      return answer;
    },
    { step: 'initialize', name: 'countRequests' },
  );
  documents = DynamoDBDocumentClient.from(base);
  table = (await createTables(base)).names.accounts;
}, 300_000);

afterAll(async () => {
  documents?.destroy();
  await dynamodb?.stop();
});

/** A store whose clock the test moves, as the local test clock moves the functions'. */
function storeWithClock(start: Date, cache = BALANCE_RECORDS_CACHE) {
  let now = start.getTime();
  const store = new DynamoAccounts(documents, table, { now: () => new Date(now) }, cache);
  return { store, advance: (ms: number) => (now += ms) };
}

/** The bytes the store counts for a workspace's records: their JSON. */
const bytesOf = (records: unknown) => Buffer.byteLength(JSON.stringify(records));

let workspaces = 0;
const newWorkspace = () => `ws_cache_${++workspaces}`;
const bonus = (subject: string, id: string, amount: string, grantedAt: Date): Grant => ({ subject, id, kind: 'bonus', usageType: 'tokens', amount, grantedAt: grantedAt.toISOString() });

describe('balanceRecords', () => {
  test('a second read within 30 s of the clock sends no request and answers what the first read found', async () => {
    // Arrange
    const start = suiteClockStart();
    const subject = newWorkspace();
    const { store, advance } = storeWithClock(start);
    await store.putGrant(bonus(subject, 'b1', '100', start));

    // Act
    sent.length = 0;
    const first = await store.balanceRecords(subject);
    const firstRequests = [...sent];
    sent.length = 0;
    advance(BALANCE_RECORDS_CACHE.maxAgeMs - 1);
    const second = await store.balanceRecords(subject);

    // Assert: the first read queried the grants and the snapshots; the second sent nothing.
    expect(firstRequests).toEqual(['QueryCommand', 'QueryCommand']);
    expect(sent).toEqual([]);
    expect(first.grants.map((g) => [g.id, g.amount])).toEqual([['b1', '100']]);
    expect(second).toEqual(first);
  });

  test("another function's grant shows once 30 s of the clock have passed, not before", async () => {
    // Arrange: two functions, each with its own store (its own memory), on the same clock.
    const start = suiteClockStart();
    const subject = newWorkspace();
    const reader = storeWithClock(start);
    const writer = new DynamoAccounts(documents, table, { now: () => start });
    await reader.store.balanceRecords(subject);

    // Act
    await writer.putGrant(bonus(subject, 'topped-up', '5', start));
    reader.advance(BALANCE_RECORDS_CACHE.maxAgeMs - 1);
    const justBefore = await reader.store.balanceRecords(subject);
    reader.advance(1);
    const atTheBound = await reader.store.balanceRecords(subject);

    // Assert
    expect(justBefore.grants).toEqual([]);
    expect(atTheBound.grants.map((g) => g.id)).toEqual(['topped-up']);
  });

  test('its own writes show at once: a grant, a frozen cycle and its close', async () => {
    // Arrange
    const start = suiteClockStart();
    const subject = newWorkspace();
    const { store } = storeWithClock(start);
    await store.balanceRecords(subject);
    const snapshot: CycleSnapshot = {
      subject,
      cycleStart: '2026-01-01T00:00:00.000Z',
      cycleEnd: '2026-02-01T00:00:00.000Z',
      plan: 'free',
      status: 'closing',
      frozenAt: start.toISOString(),
      usage: {},
      expired: {},
    };

    // Act
    await store.putGrant(bonus(subject, 'b2', '7', start));
    const afterGrant = await store.balanceRecords(subject);
    await store.freezeCycle(snapshot);
    const afterFreeze = await store.balanceRecords(subject);
    await store.markCycleClosed(subject, snapshot.cycleStart);
    const afterClose = await store.balanceRecords(subject);

    // Assert
    expect(afterGrant.grants.map((g) => g.id)).toEqual(['b2']);
    expect(afterFreeze.snapshots.map((s) => [s.cycleStart, s.status])).toEqual([[snapshot.cycleStart, 'closing']]);
    expect(afterClose.snapshots.map((s) => [s.cycleStart, s.status])).toEqual([[snapshot.cycleStart, 'closed']]);
  });

  test('a read that a write of its own store overtook is not kept', async () => {
    // Arrange: the read's queries are answered before the grant is written, and handed back after.
    const start = suiteClockStart();
    const subject = newWorkspace();
    const { store } = storeWithClock(start);
    let release: () => void = () => undefined;
    holdQueries = new Promise((resolve) => (release = resolve));
    held = 0;

    // Act
    const overtaken = store.balanceRecords(subject);
    while (held < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    await store.putGrant(bonus(subject, 'b3', '1', start));
    release();
    const read = await overtaken;
    holdQueries = undefined;
    const next = await store.balanceRecords(subject);

    // Assert
    expect(read.grants).toEqual([]);
    expect(next.grants.map((g) => g.id)).toEqual(['b3']);
  });

  test('a jump of the clock (the local test clock) ages what it read at once', async () => {
    // Arrange
    const start = suiteClockStart();
    const subject = newWorkspace();
    const { store, advance } = storeWithClock(start);
    const writer = new DynamoAccounts(documents, table, { now: () => start });
    await store.balanceRecords(subject);
    await writer.putGrant(bonus(subject, 'b4', '3', start));

    // Act
    advance(31 * 86_400_000);
    const afterJump = await store.balanceRecords(subject);

    // Assert
    expect(afterJump.grants.map((g) => g.id)).toEqual(['b4']);
  });

  test('what it hands out is a copy: a caller that changes it changes nothing for the next', async () => {
    // Arrange
    const start = suiteClockStart();
    const subject = newWorkspace();
    const { store } = storeWithClock(start);
    await store.putGrant(bonus(subject, 'b5', '9', start));

    // Act
    const first = await store.balanceRecords(subject);
    (first.grants[0] as Grant).amount = '0';
    first.grants.push(bonus(subject, 'forged', '1000', start));
    const second = await store.balanceRecords(subject);

    // Assert
    expect(second.grants.map((g) => [g.id, g.amount])).toEqual([['b5', '9']]);
  });

  test('what it keeps is bounded in bytes: records at the bound are kept, past it they are read on every check', async () => {
    // Arrange: two workspaces whose records are the same size; a bound of exactly one of them.
    const start = suiteClockStart();
    // Ids of one length, so that the two workspaces' records are the same number of bytes.
    const [small, other] = ['ws_bound_a', 'ws_bound_b'];
    const writer = new DynamoAccounts(documents, table, { now: () => start });
    await writer.putGrant(bonus(small, 'g1', '1', start));
    await writer.putGrant(bonus(other, 'g1', '1', start));
    const size = bytesOf(await writer.listGrants(small).then((grants) => ({ grants, snapshots: [] })));
    const atTheBound = storeWithClock(start, { ...BALANCE_RECORDS_CACHE, bytes: size }).store;
    const pastTheBound = storeWithClock(start, { ...BALANCE_RECORDS_CACHE, bytes: size - 1 }).store;

    // Act
    await atTheBound.balanceRecords(small);
    sent.length = 0;
    await atTheBound.balanceRecords(small);
    const keptAtTheBound = sent.length;
    await atTheBound.balanceRecords(other); // a second workspace: the first makes room for it
    sent.length = 0;
    await atTheBound.balanceRecords(other);
    const keptTheNewest = sent.length;
    await atTheBound.balanceRecords(small);
    const firstReadAgain = sent.length;
    await pastTheBound.balanceRecords(small);
    sent.length = 0;
    await pastTheBound.balanceRecords(small);
    const keptPastTheBound = sent.length;

    // Assert: requests sent by the second check of each
    expect(keptAtTheBound).toBe(0);
    expect(keptTheNewest).toBe(0);
    expect(firstReadAgain).toBe(2);
    expect(keptPastTheBound).toBe(2);
  });
});
