import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { isLosslessNumber, parse } from 'lossless-json';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse } from '../support/api-contract';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * Amounts a double cannot hold, end to end: quantities written in the JSON text with every digit (a sum past
 * 2^53, a credit to the 9th decimal, 17 significant digits) go in over SQS and POST …/usages, and come back
 * digit for digit from the usage and quota API, the cycle report written at the close, and a daily export.
 * Every response is read as text (with a lossless parser, never JSON.parse) and compared with decimals this
 * file works out in bigint nano-units.
 */

const CONFIG = 'test/fixtures/report-config.json';
const MINUTE = 60_000;
const DAY = 86_400_000;
const GRACE = 60 * MINUTE;
const NANO = 1_000_000_000n;

/** A decimal literal ("12345678.123456789", at most 9 decimals) in nano-units, with bigint alone. */
function nano(literal: string): bigint {
  const [whole = '0', fraction = ''] = literal.split('.');
  return BigInt(whole) * NANO + BigInt(fraction.padEnd(9, '0'));
}

/** Nano-units as the shortest plain decimal: 9007199254740993000000000n → "9007199254740993". */
function decimal(units: bigint): string {
  const fraction = (units % NANO).toString().padStart(9, '0').replace(/0+$/, '');
  return `${units / NANO}${fraction ? `.${fraction}` : ''}`;
}

const sum = (literals: readonly string[]) => decimal(literals.reduce((total, literal) => total + nano(literal), 0n));

/** Each event's quantity as it is written in the message; none is over 2^53 − 1 or 9 decimals, so all are valid. */
type Subject = 'ws_sqs' | 'ws_nine' | 'ws_api';
const SENT: Record<Subject, Record<string, readonly string[]>> = {
  // Over SQS: two token events whose sum is 2^53 + 1, two credit events 9 orders of magnitude apart.
  ws_sqs: { tokens: ['9007199254740991', '2'], credits: ['100000000', '0.000000001'] },
  // Over SQS, one event of 17 significant digits.
  ws_nine: { credits: ['12345678.123456789'] },
  // Over POST /v1/workspaces/{id}/usages.
  ws_api: { tokens: ['9007199254740991', '2'], credits: ['12345678.123456789'] },
};
const SUBJECTS = Object.keys(SENT) as Subject[];

/** What every reader must answer: the exact sums. */
const EXPECTED: Record<Subject, Record<string, string>> = Object.fromEntries(
  SUBJECTS.map((subject) => [subject, Object.fromEntries(Object.entries(SENT[subject]).map(([usageType, literals]) => [usageType, sum(literals)]))]),
) as Record<Subject, Record<string, string>>;

let stack: LocalStack;
let client: StackClient;
let s3: S3Client;
let cycle: { start: string; end: string };
let anchor: number;

const clockNow = () => stack.clock.now().getTime();
const iso = (ms: number) => new Date(ms).toISOString();

/** The JSON text of an event with its quantity written as the literal, digit for digit. */
function eventText(subject: Subject | undefined, id: string, usageType: string, quantity: string, time: string): string {
  const envelope = { specversion: '1.0', id, source: '//exact-amounts', type: 'com.example.usage', ...(subject ? { subject } : {}), time, data: { usageType, quantity: 0 } };
  return JSON.stringify(envelope).replace('"quantity":0', `"quantity":${quantity}`);
}

type Tree = Record<string, unknown>;

/** Calls the API and reads the answer as text; `body` holds every number as its literal text (a LosslessNumber). */
async function call(method: string, path: string, body?: string): Promise<{ status: number; text: string; body: Tree }> {
  const response = await fetch(`${stack.ready.api}${path}`, { method, headers: bearer(ADMIN_KEY), ...(body === undefined ? {} : { body }) });
  const text = await response.text();
  // The contract is about shape, which a double shows as well as the exact number.
  if (path !== '/v1/test-clock') checkResponse(method, path, response.status, JSON.parse(text));
  return { status: response.status, text, body: parse(text) as Tree };
}

/** The literal of a number as the JSON text wrote it. */
function literal(value: unknown): string {
  if (!isLosslessNumber(value)) throw new Error(`expected a JSON number, got ${JSON.stringify(value)}`);
  return value.toString();
}

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: CONFIG, onError: () => undefined });
  client = new StackClient(stack);
  s3 = new S3Client({ region: stack.ready.region, endpoint: stack.ready.s3.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  // A UTC cycle anchored on today (the 28th at the latest, so it never clamps): it began at midnight or before, and lasts weeks.
  const today = new Date(clockNow());
  anchor = Math.min(today.getUTCDate(), 28);
  const start = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), anchor);
  cycle = { start: iso(start), end: iso(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() + 1, anchor)) };
  for (const subject of SUBJECTS) {
    const { status } = await call('PUT', `/v1/workspaces/${subject}`, JSON.stringify({ plan: 'team', billingAnchorDay: anchor, timeZone: 'UTC' }));
    expect(status).toBe(201);
  }
}, 180_000);

afterAll(async () => {
  s3?.destroy();
  client?.close();
  await stack?.stop();
});

describe('amounts past what a double holds, from the JSON text in to the JSON text out', () => {
  test('events over SQS and POST …/usages are accepted as written, none quarantined', async () => {
    // Arrange
    const time = iso(clockNow());
    const texts = (subject: Subject, withSubject: boolean) =>
      Object.entries(SENT[subject]).flatMap(([usageType, literals]) => literals.map((q, i) => eventText(withSubject ? subject : undefined, `${subject}-${usageType}-${i}`, usageType, q, time)));

    // Act: one message per event, and the API's events as one array
    await client.send([...texts('ws_sqs', true), ...texts('ws_nine', true)]);
    const posted = await call('POST', '/v1/workspaces/ws_api/usages', `[${texts('ws_api', false).join(',')}]`);
    await stack.settle();

    // Assert
    expect(posted.status).toBe(202);
    expect(await client.quarantine()).toEqual([]);
  });

  test('GET …/quotas and GET …/usage answer the exact sums', async () => {
    for (const subject of SUBJECTS) {
      // Act
      const quotas = await call('GET', `/v1/workspaces/${subject}/quotas`);
      const usage = await call('GET', `/v1/workspaces/${subject}/usage?granularity=cycle&from=${cycle.start}&to=${cycle.end}`);

      // Assert
      const entries = quotas.body.quotas as Tree[];
      const used = Object.fromEntries(entries.filter((q) => EXPECTED[subject][q.usageType as string] !== undefined).map((q) => [q.usageType, literal(q.usedAmount)]));
      expect({ subject, used }).toEqual({ subject, used: EXPECTED[subject] });
      const buckets = usage.body.buckets as Tree[];
      // requests: one per event sent, whatever its amount.
      expect({ subject, buckets: buckets.map((b) => ({ start: b.start, usageType: b.usageType, quantity: literal(b.quantity), requests: literal(b.requests) })) }).toEqual({
        subject,
        buckets: Object.entries(EXPECTED[subject])
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([usageType, quantity]) => ({ start: cycle.start, usageType, quantity, requests: String(SENT[subject][usageType]?.length) })),
      });
      for (const [usageType, amount] of Object.entries(EXPECTED[subject])) {
        expect(quotas.text).toContain(`"usedAmount":${amount},`);
        expect(usage.text).toContain(`"quantity":${amount},"requests":${SENT[subject][usageType]?.length}}`);
      }
    }
    // Over the allowance with nothing left: the rest of the entry is plain.
    const tokens = ((await call('GET', '/v1/workspaces/ws_sqs/quotas')).body.quotas as Tree[]).find((q) => q.usageType === 'tokens') ?? {};
    expect([literal(tokens.limitAmount), literal(tokens.availableAmount)]).toEqual(['20000', '0']);
  });

  test('the cycle report written at the close and a daily export carry the exact sums', async () => {
    // Act: past the cycle's end and the close's grace period, then an export of the closed cycle
    const moved = await call('POST', '/v1/test-clock', JSON.stringify({ advanceTo: iso(Date.parse(cycle.end) + GRACE + MINUTE) }));
    expect(moved.status).toBe(200);
    const requested = await call('POST', '/v1/exports', JSON.stringify({ from: cycle.start, to: iso(Date.parse(cycle.start) + 32 * DAY), granularity: 'day', subjects: SUBJECTS, format: 'json' }));
    expect(requested.status).toBe(202);
    let view: Tree = {};
    for (let i = 0; i < 120 && view.status !== 'ready' && view.status !== 'failed'; i++) {
      await stack.settle();
      view = (await call('GET', `/v1/exports/${requested.body.id as string}`)).body;
      if (view.status !== 'ready') await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(view.status).toBe('ready');
    const exported = await (await fetch(view.url as string)).text();

    // Assert: reports and exports write quantities as decimal strings
    for (const subject of SUBJECTS) {
      const object = await s3.send(new GetObjectCommand({ Bucket: stack.ready.s3.bucket, Key: `reports/${cycle.start}/${subject}.json` }));
      const text = (await object.Body?.transformToString('utf8')) ?? '';
      const report = parse(text) as Tree;
      const totals = Object.fromEntries((report.usage as Tree[]).filter((u) => EXPECTED[subject][u.usageType as string] !== undefined).map((u) => [u.usageType, [u.total, u.closedTotal]]));
      expect({ subject, totals }).toEqual({ subject, totals: Object.fromEntries(Object.entries(EXPECTED[subject]).map(([usageType, total]) => [usageType, [total, total]])) });
      const onDemand = await call('GET', `/v1/workspaces/${subject}/report?cycle=previous`);
      for (const total of Object.values(EXPECTED[subject])) {
        expect(text).toContain(`"total": "${total}"`);
        expect(onDemand.text).toContain(`"total":"${total}","closedTotal":"${total}"`);
      }
    }
    const buckets = (parse(exported) as { buckets: Tree[] }).buckets;
    const exportedTotals = Object.fromEntries(SUBJECTS.map((subject) => [subject, Object.fromEntries(buckets.filter((b) => b.subject === subject).map((b) => [b.usageType, b.quantity]))]));
    expect(exportedTotals).toEqual(EXPECTED);
    for (const subject of SUBJECTS) for (const total of Object.values(EXPECTED[subject])) expect(exported).toContain(`"quantity":"${total}"`);
  });
});
