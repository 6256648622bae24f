import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { DynamoLeases } from '../../functions/adapters/lease-store';
import { FUNCTIONS, SCHEDULES } from '../../functions/contract/resources';
import type { SchedulerResult } from '../../functions/scheduler.handler';
import { lambdaContext } from '../../local/lambda-context';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';

/**
 * The scheduler runs one at a time without reserved concurrency: each run holds a lease item in the
 * accounts table (DynamoDB Local here), and a run that finds it held sends no workspace to be closed. Runs are invoked as
 * Lambda would, concurrently, through the real handler; every instant comes from the stack's clock.
 */

const DAY_MS = 86_400_000;
const JOB = SCHEDULES.closeDue.job;

let stack: LocalStack;
let documents: DynamoDBDocumentClient;
let leases: DynamoLeases;

/** One invocation of the scheduler function, with its own request id (the lease holder). */
async function invokeScheduler(): Promise<SchedulerResult> {
  const { handler } = await import('../../functions/scheduler.handler');
  return (await handler({ job: JOB }, lambdaContext('scheduler', FUNCTIONS.scheduler.timeoutSeconds))) as SchedulerResult;
}

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/config.json', onError: () => undefined });
  documents = DynamoDBDocumentClient.from(new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }));
  leases = new DynamoLeases(documents, stack.tables.accounts);
}, 300_000);

afterAll(async () => {
  documents?.destroy();
  await stack?.stop();
});

describe('the lease', () => {
  test('of two holders asking at once, exactly one gets it; the other gets it once it expires, not before', async () => {
    // Arrange
    const name = `lease-${randomUUID()}`;
    const now = stack.clock.now();
    const until = new Date(now.getTime() + 60_000);

    // Act
    const [first, second] = await Promise.all([leases.acquire(name, 'run-a', now, until), leases.acquire(name, 'run-b', now, until)]);
    const beforeExpiry = await leases.acquire(name, 'run-c', new Date(until.getTime() - 1), new Date(until.getTime() + 60_000));
    const atExpiry = await leases.acquire(name, 'run-c', until, new Date(until.getTime() + 60_000));

    // Assert
    expect([first, second].filter(Boolean)).toHaveLength(1);
    expect([beforeExpiry, atExpiry]).toEqual([false, true]);
  });

  test('is given back only by its holder', async () => {
    // Arrange
    const name = `lease-${randomUUID()}`;
    const now = stack.clock.now();
    const until = new Date(now.getTime() + 60_000);
    await leases.acquire(name, 'run-a', now, until);

    // Act
    await leases.release(name, 'run-b');
    const afterOthersRelease = await leases.acquire(name, 'run-c', now, until);
    await leases.release(name, 'run-a');
    const afterHoldersRelease = await leases.acquire(name, 'run-c', now, until);

    // Assert
    expect([afterOthersRelease, afterHoldersRelease]).toEqual([false, true]);
  });
});

describe('the scheduler function', () => {
  test('a run that finds another holding the lease sends nothing to close; once it is free, the next run sends what is due', async () => {
    // Arrange: another run holds the lease; days have become due
    const now = stack.clock.now();
    expect(await leases.acquire(JOB, 'another-run', now, new Date(now.getTime() + 3 * DAY_MS))).toBe(true);

    // Act
    const { closes: whileHeld } = await stack.advanceClock(new Date(now.getTime() + 2 * DAY_MS));
    await leases.release(JOB, 'another-run');
    const afterRelease = await invokeScheduler();

    // Assert
    expect(whileHeld).toMatchObject({ daysClosed: 0, cyclesClosed: [] });
    expect(afterRelease.skipped).toBeUndefined();
    // The four workspaces of the config, each with days due.
    expect(afterRelease.dispatched).toBe(4);
  });

  test('of two runs invoked at once, one sends the workspaces whose days fell due and the other sends nothing', async () => {
    // Arrange: two more days fall due
    await stack.advanceClock(new Date(stack.clock.now().getTime() + 2 * DAY_MS)); // closes what was due so far
    stack.clock.advanceTo(new Date(stack.clock.now().getTime() + 2 * DAY_MS));

    // Act
    const runs = await Promise.all([invokeScheduler(), invokeScheduler()]);

    // Assert
    const skipped = runs.filter((r) => r.skipped !== undefined);
    const ran = runs.filter((r) => r.skipped === undefined);
    expect([skipped.length, ran.length]).toEqual([1, 1]);
    expect(skipped[0]?.dispatched).toBe(0);
    // Four subjects, each with two days due.
    expect(ran[0]?.dispatched).toBe(4);
  });

  test('a run that ended gave its lease back, so the next run is not held up', async () => {
    // Act
    const next = await invokeScheduler();

    // Assert
    expect(next.skipped).toBeUndefined();
  });
});
