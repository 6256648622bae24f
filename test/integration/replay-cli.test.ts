import { execFile } from 'node:child_process';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import { createSqsClient, SqsUsageQueue } from '../../functions/adapters/usage-queue';
import type { QuarantineRecord } from '../../functions/core/metering/metering-ports';
import type { ReplayResult } from '../../functions/core/metering/replay';
import { replayQuarantine } from '../../functions/core/metering/replay';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { type Granularity, GroundTruth, type TestEvent } from '../../testkit/ground-truth';
import { checkResponse } from '../support/api-contract';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * `usage-pipeline replay` as an operator runs it, against the local stack: events quarantined for a
 * workspace that did not exist yet and messages dead-lettered while ingest failed them, then the cause
 * fixed (the workspaces created, the fault gone) and corrections sent meanwhile. Dry runs and filters
 * select exactly the expected entries and change nothing; a replay makes every rollup equal a ground truth
 * the test keeps itself (a replayed stale copy loses to its correction); a second replay changes nothing,
 * and so does a replay that died between sending and removing, run again.
 */

const CONFIG = 'test/fixtures/config.json';
const HOUR = 3_600_000;
const NOW = suiteClockStart().getTime();
const RANGE = { from: new Date(NOW - 40 * 86_400_000), to: new Date(NOW + 86_400_000) };
/** Workspaces of the config, plus two created only after their events were quarantined (anchor day 1, UTC). */
const truth = new GroundTruth({ ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29, ws_late1: 1, ws_late2: 1 });

/** Ingest fails messages whose body has a marker: before its writes (nothing lands), or after them (it all lands). */
const faults = { failBefore: '', failAfter: '' };

let stack: LocalStack;
let client: StackClient;

beforeAll(async () => {
  stack = await startLocal({
    clockStart: new Date(NOW),
    configPath: CONFIG,
    // Short, so that a failing message reaches the DLQ (after 5 receives) within seconds.
    visibilityTimeoutSeconds: 3,
    onError: () => undefined,
    wrapIngest: (invoke) => async (event) => {
      const has = (marker: string) => (body: string) => marker !== '' && body.includes(marker);
      const before = event.Records.filter((r) => has(faults.failBefore)(r.body));
      const rest = event.Records.filter((r) => !before.includes(r));
      const response = rest.length > 0 ? await invoke({ Records: rest }) : { batchItemFailures: [] };
      const after = rest.filter((r) => has(faults.failAfter)(r.body));
      return { batchItemFailures: [...response.batchItemFailures, ...[...before, ...after].map((r) => ({ itemIdentifier: r.messageId }))] };
    },
  });
  client = new StackClient(stack);
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

let sequence = 0;
function usage(subject: string, quantity: number, overrides: { id?: string; usageType?: string; userId?: string } = {}): TestEvent {
  sequence += 1;
  return usageEvent({
    id: overrides.id ?? `rp-${sequence}`,
    source: '//replay-test',
    subject,
    time: new Date(NOW - (1 + (sequence % 30)) * HOUR),
    usageType: overrides.usageType ?? 'tokens',
    quantity,
    ...(overrides.userId ? { userId: overrides.userId } : {}),
  });
}

const send = (events: readonly (TestEvent | TestEvent[] | string)[]) => client.send(events.map((e) => (typeof e === 'string' ? e : JSON.stringify(e))));

async function expectRollups(subjects: readonly string[]): Promise<void> {
  await stack.settle();
  for (const subject of subjects) {
    for (const granularity of ['hour', 'day', 'cycle'] as Granularity[]) {
      const actual = await client.buckets(subject, granularity, RANGE.from, RANGE.to);
      expect({ subject, granularity, buckets: actual }).toEqual({ subject, granularity, buckets: truth.buckets(subject, granularity) });
    }
  }
}

async function dlqDepth(): Promise<number> {
  const { Attributes: a } = await client.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: stack.ready.sqs.dlqUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return Number(a?.ApproximateNumberOfMessages ?? 0) + Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0);
}

/** The quarantine as the admin API lists it: event id (or the raw body) per reason, sorted. */
async function quarantineIds(): Promise<string[]> {
  const items = await client.quarantine();
  return items.map((i) => `${i.reason}:${idOf(i.body)}`).sort();
}

function idOf(body: string): string {
  try {
    return String((JSON.parse(body) as { id?: unknown }).id);
  } catch {
    return body;
  }
}

/** The replay command in its own process (async, so the stack in this process keeps serving), on the stack's clock. */
function replay(...args: string[]): Promise<{ code: number; result: ReplayResult; stderr: string }> {
  const argv = [
    'bin/usage-pipeline.js',
    'replay',
    '--endpoint',
    stack.ready.dynamodb.endpoint,
    '--sqs-endpoint',
    stack.ready.sqs.endpoint,
    '--config',
    CONFIG,
    '--now',
    stack.clock.now().toISOString(),
    '--json',
    ...args,
  ];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, argv, { env: { ...process.env, NODE_OPTIONS: '' }, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      try {
        resolve({ code, result: JSON.parse(stdout) as ReplayResult, stderr });
      } catch {
        reject(new Error(`replay ${args.join(' ')} exited ${code} without JSON: ${stdout}\n${stderr}`));
      }
    });
  });
}

/** The ids of the items with an outcome: quarantine items by event id (from the stored body), DLQ items by message id. */
const outcomes = (result: ReplayResult, outcome: string) =>
  result.items
    .filter((i) => i.outcome === outcome)
    .map((i) => i.event?.id ?? i.id)
    .sort();

async function putWorkspace(id: string): Promise<void> {
  const response = await fetch(`${stack.ready.api}/v1/workspaces/${id}`, {
    method: 'PUT',
    headers: { ...bearer(ADMIN_KEY), 'content-type': 'application/json' },
    body: JSON.stringify({ plan: 'pro', billingAnchorDay: 1 }),
  });
  const body: unknown = await response.json();
  checkResponse('PUT', `/v1/workspaces/${id}`, response.status, body);
  expect(response.status).toBe(201);
}

// The scenario, built step by step by the tests below (they run in order).
const late1 = Array.from({ length: 6 }, (_, i) => usage('ws_late1', 10 + i));
const late2 = Array.from({ length: 4 }, (_, i) => usage('ws_late2', 100 + i, { userId: 'u-late2' }));
const mixedLate = usage('ws_late1', 7);
const mixedKnown = usage('ws_a31', 8);
const stillUnknownType = Array.from({ length: 3 }, (_, i) => usage('ws_a31', 1 + i, { usageType: 'videos' }));
const stillBadQuantity = Array.from({ length: 2 }, () => usage('ws_late1', -1));
const baseline = Array.from({ length: 20 }, (_, i) => usage(['ws_a31', 'ws_b01', 'ws_c15', 'ws_d29'][i % 4] ?? 'ws_a31', 1 + i));
/** Dead-lettered before anything was written. */
const deadBefore = Array.from({ length: 5 }, (_, i) => usage('ws_b01', 1000 + i, { userId: 'dlq-before' }));
/** Dead-lettered after its writes landed: already counted. */
const deadAfter = Array.from({ length: 3 }, (_, i) => usage('ws_c15', 2000 + i, { userId: 'dlq-after' }));
/** Dead-lettered, then corrected by the producer before the replay: the correction must win. */
const staleInDlq = usage('ws_b01', 3000, { userId: 'dlq-before' });
const staleCorrection = { ...staleInDlq, data: { ...staleInDlq.data, quantity: 3, userId: 'fixed' } };
/** Quarantined, then corrected once its workspace existed: the correction must win. */
const staleQuarantined = late1[0] as TestEvent;
const quarantinedCorrection = { ...staleQuarantined, data: { ...staleQuarantined.data, quantity: 500 } };

const KNOWN = ['ws_a31', 'ws_b01', 'ws_c15', 'ws_d29'];
const ALL = [...KNOWN, 'ws_late1', 'ws_late2'];

describe('usage-pipeline replay', () => {
  test('bad events land in the quarantine and failing messages in the DLQ', async () => {
    // Arrange
    [...baseline, mixedKnown, ...deadAfter].forEach((e) => truth.accept(e));
    faults.failBefore = 'dlq-before';
    faults.failAfter = 'dlq-after';

    // Act
    await send([...baseline, ...late1, ...late2, [mixedLate, mixedKnown], ...stillUnknownType, ...stillBadQuantity, '{"not json', ...deadBefore, ...deadAfter, staleInDlq]);
    const deadline = Date.now() + 90_000;
    while ((await dlqDepth()) < deadBefore.length + deadAfter.length + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));

    // Assert
    expect(await dlqDepth()).toBe(9);
    await expectRollups(KNOWN);
    expect(await quarantineIds()).toEqual(
      [
        ...[...late1, ...late2, mixedLate].map((e) => `unknown_subject:${e.id}`),
        ...stillUnknownType.map((e) => `unknown_usage_type:${e.id}`),
        ...stillBadQuantity.map((e) => `invalid_quantity:${e.id}`),
        'not_json:{"not json',
      ].sort(),
    );
  });

  test('after the fix, dry runs and filters select exactly the right entries and change nothing', async () => {
    // Arrange: the fault is gone, the workspaces exist, and two corrections arrive in the meantime
    faults.failBefore = '';
    faults.failAfter = '';
    await putWorkspace('ws_late1');
    await putWorkspace('ws_late2');
    truth.accept(quarantinedCorrection);
    truth.accept(staleCorrection);
    await send([quarantinedCorrection, staleCorrection]);
    await expectRollups(ALL);
    const quarantineBefore = await quarantineIds();

    // Act: quarantine dry runs only read, so they may overlap; a DLQ dry run hides the messages it holds
    // until it ends, so two of them run one after the other, as two operators' would have to.
    const [all, onlyLate2, onlyType, lateBadQuantity] = await Promise.all([
      replay('--from', 'quarantine', '--dry-run'),
      replay('--from', 'quarantine', '--dry-run', '--subject', 'ws_late2'),
      replay('--from', 'quarantine', '--dry-run', '--reason', 'unknown_usage_type'),
      replay('--from', 'quarantine', '--dry-run', '--subject', 'ws_late1', '--reason', 'invalid_quantity'),
    ]);
    const dlqAll = await replay('--from', 'dlq', '--dry-run');
    const dlqC15 = await replay('--from', 'dlq', '--dry-run', '--subject', 'ws_c15');

    // Assert
    expect(all.code).toBe(0);
    expect(outcomes(all.result, 'would-replay')).toEqual([...late1, ...late2, mixedLate].map((e) => e.id).sort());
    expect(
      all.result.items
        .filter((i) => i.outcome === 'skipped')
        .map((i) => i.reason)
        .sort(),
    ).toEqual(['invalid_quantity', 'invalid_quantity', 'not_json', 'unknown_usage_type', 'unknown_usage_type', 'unknown_usage_type']);
    expect({ replayed: all.result.replayed, wouldReplay: all.result.wouldReplay, skipped: all.result.skipped, failed: all.result.failed }).toEqual({
      replayed: 0,
      wouldReplay: 11,
      skipped: 6,
      failed: 0,
    });
    expect(outcomes(onlyLate2.result, 'would-replay')).toEqual(late2.map((e) => e.id).sort());
    expect(onlyLate2.result.items).toHaveLength(4);
    expect({ would: onlyType.result.wouldReplay, skipped: outcomes(onlyType.result, 'skipped') }).toEqual({ would: 0, skipped: stillUnknownType.map((e) => e.id).sort() });
    expect({ would: lateBadQuantity.result.wouldReplay, skipped: lateBadQuantity.result.items.map((i) => i.subject) }).toEqual({ would: 0, skipped: ['ws_late1', 'ws_late1'] });
    expect(dlqAll.result.wouldReplay).toBe(9);
    expect(dlqAll.result.items.map((i) => i.subject).sort()).toEqual([...Array(6).fill('ws_b01'), ...Array(3).fill('ws_c15')]);
    expect(dlqC15.result.items.map((i) => i.outcome)).toEqual(['would-replay', 'would-replay', 'would-replay']);
    expect(dlqC15.result.items.every((i) => i.subject === 'ws_c15')).toBe(true);
    // Nothing changed
    expect(await quarantineIds()).toEqual(quarantineBefore);
    expect(await dlqDepth()).toBe(9);
    await expectRollups(ALL);
  });

  test('a replay that dies after sending and before removing, run again, counts each event once', async () => {
    // Arrange: the quarantine's removal fails as if the process died after the send
    const quarantine = appContext.quarantine();
    const dying = Object.assign(Object.create(quarantine) as typeof quarantine, {
      remove: async (records: readonly QuarantineRecord[]) => ({ failed: [...records] }),
    });
    const sqs = createSqsClient();
    const deps = { quarantine: dying, queue: new SqsUsageQueue(sqs, stack.ready.sqs.queueUrl), config: stack.config, subjects: appContext.subjects(), clock: stack.clock };

    // Act
    const died = await replayQuarantine({ subject: 'ws_late2' }, { dryRun: false }, deps).finally(() => sqs.destroy());
    await stack.settle();
    const again = await replay('--from', 'quarantine', '--subject', 'ws_late2');

    // Assert: sent twice, counted once
    late2.forEach((e) => truth.accept(e));
    expect(died.replayed).toBe(4);
    expect({ code: again.code, replayed: outcomes(again.result, 'replayed') }).toEqual({ code: 0, replayed: late2.map((e) => e.id).sort() });
    await expectRollups(ALL);
    expect((await quarantineIds()).filter((id) => late2.some((e) => id.endsWith(e.id)))).toEqual([]);
  });

  test('replaying the quarantine and the DLQ makes every rollup equal the ground truth; corrections still win', async () => {
    // Act
    const quarantined = await replay('--from', 'quarantine');
    const dead = await replay('--from', 'dlq');

    // Assert
    expect({ code: quarantined.code, replayed: quarantined.result.replayed, skipped: quarantined.result.skipped, failed: quarantined.result.failed }).toEqual({
      code: 0,
      replayed: 7,
      skipped: 6,
      failed: 0,
    });
    expect({ code: dead.code, replayed: dead.result.replayed, failed: dead.result.failed }).toEqual({ code: 0, replayed: 9, failed: 0 });
    // The stale copies (the first late1 event and the dead-lettered one) were replayed too, and lose to their corrections.
    [...late1.slice(1), mixedLate, ...deadBefore].forEach((e) => truth.accept(e));
    await expectRollups(ALL);
    expect(await dlqDepth()).toBe(0);
    expect(await quarantineIds()).toEqual([...stillUnknownType.map((e) => `unknown_usage_type:${e.id}`), ...stillBadQuantity.map((e) => `invalid_quantity:${e.id}`), 'not_json:{"not json'].sort());
  });

  test('a second replay changes nothing', async () => {
    // Act
    const [quarantined, dead] = [await replay('--from', 'quarantine'), await replay('--from', 'dlq')];

    // Assert
    expect({ replayed: quarantined.result.replayed, skipped: quarantined.result.skipped }).toEqual({ replayed: 0, skipped: 6 });
    expect({ replayed: dead.result.replayed, items: dead.result.items }).toEqual({ replayed: 0, items: [] });
    await expectRollups(ALL);
  });

  test('bad options exit 2 with a clear message', async () => {
    // Act
    const results = await Promise.all(
      [['--from', 'inbox'], ['--from', 'dlq', '--reason', 'not_json'], ['--from', 'quarantine', '--reason', 'bogus'], [], ['--from', 'quarantine', '--now', 'soon']].map(
        (args) =>
          new Promise<{ code: number; stderr: string }>((resolve) => {
            execFile(process.execPath, ['bin/usage-pipeline.js', 'replay', ...args], { env: { ...process.env, NODE_OPTIONS: '' } }, (error, _stdout, stderr) =>
              resolve({ code: error && typeof error.code === 'number' ? error.code : 0, stderr }),
            );
          }),
      ),
    );

    // Assert
    expect(results.map((r) => r.code)).toEqual([2, 2, 2, 2, 2]);
    expect(results[0]?.stderr).toContain('--from must be dlq, quarantine or parked, got "inbox"');
    expect(results[1]?.stderr).toContain('--reason selects quarantine entries');
    expect(results[2]?.stderr).toContain('--reason must be one of not_json,');
    expect(results[3]?.stderr).toContain('--from must be dlq, quarantine or parked, got ""');
    expect(results[4]?.stderr).toContain('--now must be an ISO 8601 instant such as 2028-02-29T23:30:00Z, got "soon"');
  });
});
