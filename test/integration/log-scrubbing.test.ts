import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import type { SesEmailSender } from '../../functions/adapters/ses-sender';
import { PRESIGNED_URL_SECONDS } from '../../functions/contract/resources';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * What the handlers write to their logs, captured while the real handlers run on the local stack: ingest
 * with malformed events, the API with keys in headers (good, bad, off by one, revoked path, a 500), notify
 * sending threshold emails while SES refuses one with the message SES really gives (it names the
 * addresses), aggregate with a failed commit. Event logging (POWERTOOLS_LOGGER_LOG_EVENT) is switched on,
 * as a careless deployment might. The captured output must hold no API key, no email address and no
 * value from an event's payload, and still tell an operator what happened (reason codes, counts, ids).
 */

const captured: string[] = [];
const restores: (() => void)[] = [];

/** Values only an event payload carries: none may reach a log line. */
const PAYLOAD = {
  userId: 'canary-user-5b1e9d',
  groupId: 'canary-group-7c2f0a',
  feature: 'canary-feature-31d8e4',
  unknownUsageType: 'canary-usage-type-a94c21',
  longUserId: `canary-long-user-${'x'.repeat(300)}`,
  notJson: 'canary-not-json-0e77b3 {',
  unknownSubject: 'ws_canary_unknown_6f0d',
  notJsonEmail: 'someone.private@canary-mail.example',
} as const;

const EMAIL = /[\w.+-]+@[\w-]+(?:\.[\w-]+)+/g;

let stack: LocalStack;
let client: StackClient;
const faults = { sesRejections: 0, keyLookupFailures: 0, commitFailures: 0 };
const secrets: string[] = [ADMIN_KEY];
const messageIds: Record<string, string> = {};
let presignedUrl = '';

async function call(method: string, path: string, key: string | undefined, body?: unknown, authorization?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(key ? bearer(key) : {}), ...(authorization ? { authorization } : {}) };
  const response = await fetch(`${stack.ready.api}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function capture(): void {
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
    const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      captured.push(format(...args));
    });
    restores.push(() => spy.mockRestore());
  }
  // Outside POWERTOOLS_DEV the logger and the metrics write to the process streams instead.
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      captured.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof stream.write;
    restores.push(() => {
      stream.write = write;
    });
  }
}

const event = (id: string, subject: string, data: Record<string, unknown>) => ({
  specversion: '1.0',
  id,
  source: '//log-scrubbing',
  type: 'com.example.usage',
  subject,
  time: stack.clock.now().toISOString(),
  data,
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

beforeAll(async () => {
  // As a deployment might have it: every invocation's event logged, metrics printed.
  process.env.POWERTOOLS_LOGGER_LOG_EVENT = 'true';
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  capture();
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/alert-config.json', logLevel: 'DEBUG' });
  client = new StackClient(stack);
  secrets.push(...stack.config.subjects.flatMap((s) => s.contacts ?? []));

  // SES refusing a send as SES does, naming the addresses in its message (not a throttle: notify retries the alert).
  const sender = appContext.email() as SesEmailSender;
  sender.client.middlewareStack.add(
    (next) => async (args) => {
      const input = (args as { input?: { Destination?: { ToAddresses?: string[] }; Source?: string } }).input;
      if (faults.sesRejections > 0) {
        faults.sesRejections -= 1;
        const to = input?.Destination?.ToAddresses?.join(', ') ?? '';
        throw Object.assign(new Error(`Email address is not verified. The following identities failed the check in region US-EAST-1: ${input?.Source ?? ''}, ${to}`), {
          name: 'MessageRejected',
          $fault: 'client',
          $metadata: { httpStatusCode: 400 },
        });
      }
      return next(args);
    },
    { step: 'initialize', name: 'rejectOnce' },
  );
  // A key lookup that DynamoDB throttles: the API answers 500 and logs the error.
  const keys = appContext.apiKeys();
  const get = keys.get.bind(keys);
  keys.get = async (id) => {
    if (faults.keyLookupFailures > 0) {
      faults.keyLookupFailures -= 1;
      throw Object.assign(new Error('Throughput exceeds the current capacity of your table or index.'), { name: 'ProvisionedThroughputExceededException', $metadata: { httpStatusCode: 400 } });
    }
    return get(id);
  };
  // A rollup commit that DynamoDB cancels: the aggregator logs it and resumes from the failed chunk.
  const rollups = appContext.rollups();
  const commitChunk = rollups.commitChunk.bind(rollups);
  rollups.commitChunk = async (shardId, chunk) => {
    if (faults.commitFailures > 0) {
      faults.commitFailures -= 1;
      throw Object.assign(new Error('Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]'), {
        name: 'TransactionCanceledException',
        CancellationReasons: [{ Code: 'ThrottlingError', Message: 'Throughput exceeds the current capacity for one or more global secondary indexes.' }],
      });
    }
    return commitChunk(shardId, chunk);
  };

  // Ingest: malformed events beside good ones, in one batch.
  faults.commitFailures = 1;
  const bodies = {
    not_json: `${PAYLOAD.notJson} ${PAYLOAD.notJsonEmail}`,
    unknown_usage_type: JSON.stringify(event('bad-type', 'ws_steps', { usageType: PAYLOAD.unknownUsageType, quantity: 1 })),
    invalid_dimension: JSON.stringify(event('bad-dim', 'ws_steps', { usageType: 'tokens', quantity: 1, userId: PAYLOAD.longUserId })),
    unknown_subject: JSON.stringify(event('bad-subject', PAYLOAD.unknownSubject, { usageType: 'tokens', quantity: 1, userId: PAYLOAD.userId })),
    good: JSON.stringify(
      [1, 2, 3].map((i) => event(`good-${i}`, 'ws_steps', { usageType: 'tokens', quantity: 300, userId: PAYLOAD.userId, groupId: PAYLOAD.groupId, feature: PAYLOAD.feature, channel: 'api' })),
    ),
  };
  // ws_steps crosses 80% of 1,000 tokens: one alert, an email to each of its two contacts; SES refuses the first.
  faults.sesRejections = 1;
  const ids = await client.send(Object.values(bodies));
  Object.keys(bodies).forEach((reason, i) => {
    messageIds[reason] = ids[i] ?? '';
  });
  await stack.settle();
  await waitFor('both threshold emails', async () => {
    const { emails } = (await (await fetch(stack.ready.ses.store)).json()) as { emails: unknown[] };
    return emails.length >= 2 ? emails : undefined;
  });

  // The API, with keys in headers.
  const created = await call('POST', '/v1/keys', ADMIN_KEY, { scope: 'workspace', subject: 'ws_steps', name: 'log scrubbing' });
  const workspaceKey = String(created.body.key);
  const unusedKey = String((await call('POST', '/v1/keys', ADMIN_KEY, { scope: 'admin', name: 'first use fails' })).body.key);
  const offByOne = `${workspaceKey.slice(0, -1)}${workspaceKey.endsWith('A') ? 'B' : 'A'}`;
  const unknown = `upk_${'0'.repeat(16)}_${'Z'.repeat(43)}`;
  secrets.push(workspaceKey, unusedKey, offByOne, unknown);
  expect((await call('GET', '/v1/workspaces/ws_steps/quotas', workspaceKey)).status).toBe(200);
  expect((await call('GET', '/v1/workspaces/ws_jump/quotas', workspaceKey)).status).toBe(403);
  expect((await call('GET', '/v1/workspaces/ws_steps/quotas', offByOne)).status).toBe(401);
  expect((await call('GET', '/v1/workspaces/ws_steps/quotas', unknown)).status).toBe(401);
  expect((await call('GET', '/v1/workspaces/ws_steps/quotas', undefined, undefined, `Basic ${Buffer.from(`me:${workspaceKey}`).toString('base64')}`)).status).toBe(401);
  expect((await call('GET', '/v1/workspaces/ws_steps/quotas', undefined, undefined, `Token ${workspaceKey}`)).status).toBe(401);
  faults.keyLookupFailures = 1;
  expect(await call('GET', '/v1/usage-types', unusedKey)).toMatchObject({ status: 500, body: { error: { code: 'internal_error' } } });
  const rejected = await call('POST', '/v1/workspaces/ws_steps/usages', workspaceKey, event('api-bad', 'ws_steps', { usageType: 'tokens', quantity: -5, userId: PAYLOAD.userId }));
  expect(rejected).toMatchObject({ status: 400, body: { error: { code: 'invalid_quantity' } } });

  // An export, downloaded through the URL the API presigns.
  const day = stack.clock.now().toISOString().slice(0, 10);
  const requested = await call('POST', '/v1/exports', ADMIN_KEY, { from: `${day}T00:00:00Z`, to: `${day}T23:00:00Z`, granularity: 'hour', subjects: ['ws_steps'] });
  expect(requested.status).toBe(202);
  presignedUrl = await waitFor('the export', async () => {
    const view = await call('GET', `/v1/exports/${String(requested.body.id)}`, ADMIN_KEY);
    if (view.body.status === 'failed' || view.status !== 200) throw new Error(`export: ${JSON.stringify(view)}`);
    return typeof view.body.url === 'string' ? view.body.url : undefined;
  });
  await stack.settle();
}, 300_000);

afterAll(async () => {
  client?.close();
  await stack?.stop();
  for (const restore of restores.reverse()) restore();
  delete process.env.POWERTOOLS_LOGGER_LOG_EVENT;
  delete process.env.POWERTOOLS_METRICS_DISABLED;
});

const output = () => captured.join('\n');
/** The JSON log items the logger wrote (pretty-printed in POWERTOOLS_DEV, one line each otherwise). */
function logItems(): Record<string, unknown>[] {
  const items: Record<string, unknown>[] = [];
  for (const text of captured) {
    try {
      const parsed = JSON.parse(text) as unknown;
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) items.push(parsed as Record<string, unknown>);
    } catch {
      // Not a structured log line (a local runtime message).
    }
  }
  return items;
}
const withMessage = (message: string) => logItems().filter((item) => item.message === message);

describe('captured log output', () => {
  test('is not empty: the handlers logged, and invocation events were switched on', () => {
    expect(withMessage('Lambda invocation event').length).toBeGreaterThan(3);
    expect(withMessage('event quarantined').length).toBeGreaterThan(0);
  });

  test('holds no API key, in any form it was presented', () => {
    for (const secret of secrets.filter((s) => s.startsWith('upk_') || s === ADMIN_KEY)) expect(output()).not.toContain(secret);
    // Not even the secret part of a key after its public id.
    for (const secret of secrets.filter((s) => s.startsWith('upk_'))) expect(output()).not.toContain(secret.slice(21));
  });

  test('holds no email address: not the contacts, not the sender, not one inside a rejected message', () => {
    expect(secrets.filter((s) => s.includes('@')).length).toBeGreaterThan(3);
    expect(output().match(EMAIL) ?? []).toEqual([]);
  });

  test('holds no value of an event payload, valid or quarantined', () => {
    for (const value of Object.values(PAYLOAD)) expect([value, output().includes(value)]).toEqual([value, false]);
    expect(output()).not.toContain('canary-');
  });

  test('holds no presigned URL signature', () => {
    const signature = new URL(presignedUrl).searchParams.get('X-Amz-Signature');
    expect(signature).toMatch(/^[0-9a-f]{64}$/);
    expect(output()).not.toContain(signature);
  });

  test('still tells an operator which message was quarantined, and why', () => {
    const quarantined = withMessage('event quarantined').map((item) => [item.reason, item.messageId]);
    for (const reason of ['not_json', 'unknown_usage_type', 'invalid_dimension', 'unknown_subject']) expect(quarantined).toContainEqual([reason, messageIds[reason]]);
    // The event logged at invocation is withheld, not dropped silently.
    expect(withMessage('Lambda invocation event').every((item) => item.event === '[withheld]')).toBe(true);
  });

  test('prints the counts the quarantine-rate alarm reads: the total, and one per reason', () => {
    const emf = logItems().filter((item) => item._aws !== undefined);
    const total = emf.find(
      (item) => item.EventsQuarantined === 4 && JSON.stringify((item._aws as { CloudWatchMetrics: { Dimensions: string[][] }[] }).CloudWatchMetrics[0]?.Dimensions) === '[["service"]]',
    );
    expect(total).toMatchObject({ service: 'usage-pipeline', EventsAccepted: 3 });
    for (const reason of ['not_json', 'unknown_usage_type', 'invalid_dimension', 'unknown_subject']) {
      expect(emf).toContainEqual(expect.objectContaining({ reason, EventsQuarantined: 1 }));
    }
  });

  test('still names the failure of each handler without its secrets', () => {
    const [apiFailure] = withMessage('request failed');
    expect(apiFailure).toMatchObject({ level: 'ERROR', error: { name: 'ProvisionedThroughputExceededException' } });
    const [sesFailure] = withMessage('threshold email failed; retrying from this alert');
    expect(sesFailure).toMatchObject({ error: { name: 'MessageRejected' }, threshold: 80, usageType: 'tokens' });
    // SES's own words survive, the addresses do not.
    expect((sesFailure?.error as { message: string }).message).toBe('Email address is not verified. The following identities failed the check in region US-EAST-1: [email], [email]');
    const [commitFailure] = withMessage('rollup commit failed; the batch resumes from the failed chunk');
    expect(commitFailure).toMatchObject({ error: { name: 'TransactionCanceledException', CancellationReasons: [{ Code: 'ThrottlingError' }] } });
    expect(String(commitFailure?.sequenceNumber)).toMatch(/^\d+$/);
  });
});

describe('presigned download URLs', () => {
  test(`expire after at most ${PRESIGNED_URL_SECONDS} seconds, and work until then`, async () => {
    const url = new URL(presignedUrl);
    const expires = Number(url.searchParams.get('X-Amz-Expires'));
    expect(expires).toBeGreaterThan(0);
    expect(expires).toBeLessThanOrEqual(300);
    expect(expires).toBe(PRESIGNED_URL_SECONDS);
    // Signed for GET of one object under exports/ only.
    expect(url.pathname).toMatch(/\/exports\/[^/]+\.json$/);
    const download = await fetch(presignedUrl);
    expect(download.status).toBe(200);
  });
});
