import { execFile } from 'node:child_process';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { SQSEvent } from 'aws-lambda';
import { appContext } from '../../functions/adapters/app-context';
import { FUNCTIONS, SCHEDULES } from '../../functions/contract/resources';
import type { SchedulerResult } from '../../functions/scheduler.handler';
import { lambdaContext } from '../../local/lambda-context';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { utcCycleStart } from '../../testkit/ground-truth';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * The fanned-out closes on DynamoDB Local and the SQS stand-in: the scheduler reads the due index and sends
 * each workspace to the closes queue, the close function closes it under a claim, and the test clock answers a
 * move that outlasts its wait with the move to poll. Every instant comes from the stack's clock.
 */

const MINUTE = 60_000;
const DAY = 86_400_000;
const GRACE = 60 * MINUTE;
const WORKSPACES = ['ws_a31', 'ws_b01', 'ws_c15', 'ws_d29']; // test/fixtures/config.json, all in UTC

/** While set, every close batch waits this long first: a move of the test clock that outlasts its answer. */
let closeDelayMs = 0;
let stack: LocalStack;
let client: StackClient;
let documents: DynamoDBDocumentClient;

beforeAll(async () => {
  stack = await startLocal({
    clockStart: suiteClockStart(),
    configPath: 'test/fixtures/config.json',
    testClockAnswerWithinMs: 300,
    onError: () => undefined,
    wrapCloses: (invoke) => async (event) => {
      if (closeDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, closeDelayMs));
      return invoke(event);
    },
  });
  client = new StackClient(stack);
  documents = DynamoDBDocumentClient.from(new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }));
}, 300_000);

afterAll(async () => {
  client?.close();
  documents?.destroy();
  await stack?.stop();
});

/** The end of the UTC day containing `instant`: the first day a UTC workspace still has open once everything before it closed. */
const endOfUtcDay = (instant: number) => new Date(Math.floor(instant / DAY) * DAY + DAY).toISOString();

async function invokeCloses(ids: string[]): Promise<unknown> {
  const { handler } = await import('../../functions/closes.handler');
  const event = { Records: ids.map((body, i) => ({ messageId: `m-${i}-${body}`, body, attributes: {}, messageAttributes: {} })) } as unknown as SQSEvent;
  return handler(event, lambdaContext('closes', FUNCTIONS.closes.timeoutSeconds));
}

async function invokeScheduler(): Promise<SchedulerResult> {
  const { handler } = await import('../../functions/scheduler.handler');
  return (await handler({ job: SCHEDULES.closeDue.job }, lambdaContext('scheduler', FUNCTIONS.scheduler.timeoutSeconds))) as SchedulerResult;
}

async function subjectItem(id: string): Promise<Record<string, unknown>> {
  return (await documents.send(new GetCommand({ TableName: stack.tables.subjects, Key: { id } }))).Item ?? {};
}

describe('closes fanned out through the closes queue', () => {
  test('after a move every workspace is next due at the end of its first open day, holds no claim, and a scheduler run then sends nothing', async () => {
    // Act
    const moved = stack.clock.now().getTime() + DAY;
    await stack.advanceClock(new Date(moved));
    const items = await Promise.all(WORKSPACES.map(subjectItem));
    const run = await invokeScheduler();

    // Assert
    const expected = endOfUtcDay(moved - GRACE);
    expect(items.map((item) => [item.id, item.nextDueAt, item.closeHolder])).toEqual(WORKSPACES.map((id) => [id, expected, undefined]));
    expect(run).toMatchObject({ dispatched: 0 });
  });

  test('two workers given the same workspace at once: one closes it, the other leaves its message to be retried, and a late event in its closed cycle is recorded as one adjustment', async () => {
    // Arrange: ws_b01's cycle closes with 5 tokens; then a late event of 7 lands in it
    const cycleStart = utcCycleStart(stack.clock.now(), 1);
    const cycleEnd = Date.UTC(cycleStart.getUTCFullYear(), cycleStart.getUTCMonth() + 1, 1);
    await client.send([JSON.stringify(usageEvent({ id: 'fan-on-time', subject: 'ws_b01', usageType: 'tokens', quantity: 5, time: new Date(stack.clock.now().getTime() - MINUTE) }))]);
    const closed = await stack.advanceClock(new Date(cycleEnd + GRACE + MINUTE));
    expect(closed.closes.cyclesClosed.filter((c) => c.subject === 'ws_b01')).toHaveLength(1);
    await client.send([JSON.stringify(usageEvent({ id: 'fan-late', subject: 'ws_b01', usageType: 'tokens', quantity: 7, time: new Date(cycleEnd - MINUTE) }))]);
    await stack.settle();
    stack.clock.advanceTo(new Date(stack.clock.now().getTime() + DAY)); // a day falls due; no scheduler run
    // Counted: a close reads the workspace's last day snapshot once; a worker that finds it claimed reads nothing.
    const accounts = appContext.accounts();
    const lastDaySnapshot = accounts.lastDaySnapshot.bind(accounts);
    let closesStarted = 0;
    accounts.lastDaySnapshot = async (subject) => {
      if (subject === 'ws_b01') closesStarted += 1;
      return lastDaySnapshot(subject);
    };

    // Act
    const responses = await Promise.all([invokeCloses(['ws_b01']), invokeCloses(['ws_b01'])]);
    accounts.lastDaySnapshot = lastDaySnapshot;

    // Assert
    const failures = (responses as { batchItemFailures: unknown[] }[]).map((r) => r.batchItemFailures.length).sort();
    expect(failures).toEqual([0, 1]);
    expect(closesStarted).toBe(1);
    const adjustments = (await accounts.listAdjustments('ws_b01')).filter((a) => a.usageType === 'tokens');
    expect(adjustments.map((a) => a.delta)).toEqual(['7']);
    expect((await subjectItem('ws_b01')).closeHolder).toBeUndefined();
  });
});

describe('the test clock', () => {
  test('a move that outlasts its wait answers 202 with the move, which reads done with what it closed once the closes finish', async () => {
    // Arrange: every close batch takes a second; the clock answers within 300 ms
    await stack.advanceClock(new Date(stack.clock.now().getTime() + MINUTE)); // whatever was due is closed
    const advanceTo = new Date(stack.clock.now().getTime() + 2 * DAY).toISOString();
    closeDelayMs = 1000;

    // Act
    const response = await fetch(`${stack.ready.api}/v1/test-clock`, { method: 'POST', headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' }, body: JSON.stringify({ advanceTo }) });
    const accepted = (await response.json()) as { move: { id: string; status: string; advanceTo: string; location: string } };
    const polls: string[] = [];
    let move: { status: string; result?: { closes: { daysClosed: number } } } = accepted.move;
    while (move.status === 'running' && polls.length < 600) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const polled = await fetch(`${stack.ready.api}${accepted.move.location}`, { headers: bearer(ADMIN_KEY) });
      polls.push(String(polled.status));
      move = ((await polled.json()) as { move: typeof move }).move;
    }
    closeDelayMs = 0;

    // Assert: two whole days later, each of the four workspaces has exactly two more days ended
    expect(response.status).toBe(202);
    expect(response.headers.get('location')).toBe(`/v1/test-clock/moves/${accepted.move.id}`);
    expect(accepted.move).toMatchObject({ status: 'running', advanceTo });
    expect(new Set(polls)).toEqual(new Set(['200']));
    expect(move.status).toBe('done');
    expect(move.result?.closes.daysClosed).toBe(2 * WORKSPACES.length);
  });

  test('a move it does not know is a 404 unknown_clock_move; a move backwards is refused at once', async () => {
    // Act
    const unknown = await fetch(`${stack.ready.api}/v1/test-clock/moves/no-such-move`, { headers: bearer(ADMIN_KEY) });
    const backwards = await fetch(`${stack.ready.api}/v1/test-clock`, {
      method: 'POST',
      headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({ advanceTo: new Date(stack.clock.now().getTime() - DAY).toISOString() }),
    });

    // Assert
    expect([unknown.status, ((await unknown.json()) as { error: { code: string } }).error.code]).toEqual([404, 'unknown_clock_move']);
    expect([backwards.status, ((await backwards.json()) as { error: { code: string } }).error.code]).toEqual([400, 'clock_backwards']);
  });
});

describe('an upgrade over a version without the due index', () => {
  test('`usage-pipeline subjects index` puts a workspace written before the index existed into it, due at once; a second run indexes none', async () => {
    // Arrange: the workspace item as an earlier version wrote it, without dueShard and nextDueAt
    await documents.send(
      new PutCommand({
        TableName: stack.tables.subjects,
        Item: { id: 'ws_before_index', plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [], createdAt: stack.clock.now().toISOString() },
      }),
    );
    const dueNow = async () => {
      const ids: string[] = [];
      for await (const page of appContext.subjects().due(stack.clock.now().toISOString())) ids.push(...page);
      return ids;
    };
    const dueBefore = await dueNow();

    // Act
    const first = await cli('subjects', 'index');
    const second = await cli('subjects', 'index');
    const dueAfter = await dueNow();

    // Assert
    expect(dueBefore).not.toContain('ws_before_index');
    expect([first, second]).toEqual([{ indexed: 1 }, { indexed: 0 }]);
    expect(dueAfter).toContain('ws_before_index');
  });
});

/** The admin CLI in its own process (async, so the stack in this process keeps serving), against the stack's DynamoDB Local. */
function cli(...args: string[]): Promise<unknown> {
  const argv = ['bin/usage-pipeline.js', ...args, '--endpoint', stack.ready.dynamodb.endpoint, '--config', 'test/fixtures/config.json'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, argv, { env: { ...process.env, NODE_OPTIONS: '' }, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`usage-pipeline ${args.join(' ')} failed: ${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}
