import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { ReadyInfo } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { type Bucket, GroundTruth, type TestEvent, utcCycleStart } from '../../testkit/ground-truth';
import { ADMIN_KEY, bearer } from '../support/local-stack';

/**
 * `usage-pipeline local` as a producer meets it: a separate process that prints one READY line,
 * takes events over SQS and answers on HTTP, and stops everything on Ctrl-C.
 */

const CLI = 'bin/usage-pipeline.js';
const DAY = 86_400_000;
const START = suiteClockStart();

function run(args: string[]): { child: ChildProcessWithoutNullStreams; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'pipe', env: { ...process.env, NODE_OPTIONS: '' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  return { child, stdout: () => out, stderr: () => err };
}

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('usage-pipeline local, as a separate process', () => {
  let proc: ReturnType<typeof run>;
  let ready: ReadyInfo;

  beforeAll(async () => {
    proc = run(['local', '--config', 'test/fixtures/config.json', '--port', '0', '--clock-start', START.toISOString()]);
    const line = await waitFor(
      () =>
        proc
          .stdout()
          .split('\n')
          .find((l) => l.startsWith('READY ')),
      90_000,
      `READY (stderr: ${proc.stderr()})`,
    );
    ready = JSON.parse(line.slice('READY '.length)) as ReadyInfo;
  });

  afterAll(() => {
    if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
  });

  test('prints one READY line with the endpoints', async () => {
    expect(ready).toEqual({
      api: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      region: expect.any(String),
      sqs: { endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), queueUrl: expect.stringContaining('127.0.0.1'), dlqUrl: expect.stringContaining('127.0.0.1') },
      dynamodb: { endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) },
      ses: { endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), store: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/store$/) },
      s3: { endpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), bucket: 'usage-pipeline-reports' },
    });
    const store = await fetch(ready.ses.store);
    expect(await store.json()).toMatchObject({ emails: [] });
    // The bucket exists: an empty listing, path-style, answers 200.
    expect((await fetch(`${ready.s3.endpoint}/${ready.s3.bucket}?list-type=2`)).status).toBe(200);
  });

  test('its clock starts where --clock-start says: the quota view is in the cycle of that instant', async () => {
    for (const [subject, anchor] of [
      ['ws_a31', 31],
      ['ws_c15', 15],
    ] as const) {
      const response = await fetch(`${ready.api}/v1/workspaces/${subject}/quotas`, { headers: bearer(ADMIN_KEY) });
      const { quotas } = (await response.json()) as { quotas: { cycleStart: string }[] };
      expect({ subject, cycleStarts: [...new Set(quotas.map((q) => q.cycleStart))] }).toEqual({ subject, cycleStarts: [utcCycleStart(START, anchor).toISOString()] });
    }
  });

  test('counts what a producer sends with SendMessageBatch, within seconds', async () => {
    // Arrange
    const truth = new GroundTruth({ ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29 });
    const now = START.getTime();
    const events: TestEvent[] = Array.from({ length: 400 }, (_, i) =>
      usageEvent({
        id: `cli-${i}`,
        source: '//cli-test',
        subject: ['ws_a31', 'ws_b01', 'ws_c15', 'ws_d29'][i % 4]!,
        time: new Date(now - (i % 50) * DAY - i * 60_000),
        usageType: i % 5 === 0 ? 'images' : 'tokens',
        quantity: 1 + (i % 13),
      }),
    );
    events.forEach((e) => truth.accept(e));
    const bodies = [
      ...events.slice(0, 200).map((e) => JSON.stringify(e)),
      JSON.stringify(events.slice(200)),
      ...events.slice(0, 50).map((e) => JSON.stringify(e)), // duplicates
      '{"broken": ',
    ];
    const sqs = new SQSClient({ region: ready.region, endpoint: ready.sqs.endpoint, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });

    // Act
    for (let i = 0; i < bodies.length; i += 10) {
      await sqs.send(new SendMessageBatchCommand({ QueueUrl: ready.sqs.queueUrl, Entries: bodies.slice(i, i + 10).map((MessageBody, j) => ({ Id: String(j), MessageBody })) }));
    }
    sqs.destroy();

    // Assert: every daily bucket of every subject converges to the ground truth, its use and its events (the copies not counted).
    const from = new Date(now - 60 * DAY).toISOString();
    const to = new Date(now + DAY).toISOString();
    for (const subject of truth.subjects()) {
      const expected = truth.buckets(subject, 'day');
      const actual = await waitFor(
        async () => {
          const response = await fetch(`${ready.api}/v1/workspaces/${subject}/usage?granularity=day&from=${from}&to=${to}`, { headers: bearer(ADMIN_KEY) });
          const { buckets } = (await response.json()) as { buckets: Bucket[] };
          return JSON.stringify(buckets) === JSON.stringify(expected) ? buckets : undefined;
        },
        30_000,
        `${subject} to converge`,
      ).catch(() => undefined);
      expect({ subject, buckets: actual ?? 'did not converge' }).toEqual({ subject, buckets: expected });
    }
    const quarantine = await waitFor(
      async () => {
        const { items } = (await (await fetch(`${ready.api}/v1/quarantine`, { headers: bearer(ADMIN_KEY) })).json()) as { items: { reason: string }[] };
        return items.length > 0 ? items : undefined;
      },
      10_000,
      'the quarantine',
    );
    expect(quarantine.map((q) => q.reason)).toEqual(['not_json']);
  });

  test('Ctrl-C stops it, and stdout held nothing but the READY line', async () => {
    proc.child.kill('SIGINT');
    const [code, signal] = (await once(proc.child, 'exit')) as [number | null, string | null];
    expect(code !== null || signal !== null).toBe(true);
    expect(proc.stdout().trim().split('\n')).toHaveLength(1);
    expect(proc.stdout()).toMatch(/^READY \{/);
  });
});

test('a --clock-start that is not an instant stops start-up, naming the flag', async () => {
  const proc = run(['local', '--config', 'test/fixtures/config.json', '--port', '0', '--clock-start', '2028-02-30T12:00:00Z']);
  const [code] = (await once(proc.child, 'exit')) as [number | null];
  expect(code).toBe(2);
  expect(proc.stderr()).toContain('--clock-start must be an ISO 8601 instant');
  expect(proc.stdout()).toBe('');
});

test('a bad configuration file stops start-up, naming the key', async () => {
  const proc = run(['local', '--config', 'test/fixtures/bad-config.json', '--port', '0']);
  const [code] = (await once(proc.child, 'exit')) as [number | null];
  expect(code).toBe(2);
  expect(proc.stderr()).toContain('plans[0].quotas.tokenz: unknown usage type "tokenz"');
  expect(proc.stdout()).toBe('');
});
