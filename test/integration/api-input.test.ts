import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { LedgerStreamEvent, LedgerStreamResponse } from '../../functions/aggregate.handler';
import { FUNCTIONS } from '../../functions/contract/resources';
import { lambdaContext } from '../../local/lambda-context';
import { type Invoke, type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse, templateOf } from '../support/api-contract';

/**
 * Edges of the HTTP API on the local stack (over HTTP, as a client sees it): instants and dates that would
 * leave four-digit years, workspace ids the config could not name, unknown query parameters, an oversized
 * cursor, a bad test-clock move while a shard is stuck, and unknown paths outside /v1. Each bad request gets
 * its exact 4xx and documented code; every /v1 response is checked against openapi.json.
 */

const CONFIG = 'test/fixtures/api-config.json';
const ADMIN = 'test-admin-key-000000000000';
const FINANCE = 'finance-key-one-0000000000000';
const WS_ONE = 'ws-one-key-a-00000000000000000';
const HOUR_MS = 3_600_000;

let stack: LocalStack;

/** While closed, every aggregate invocation waits: the ledger's shard is stuck. */
let gate: Promise<void> = Promise.resolve();
let openGate: () => void = () => undefined;
let entered: () => void = () => undefined;

function closeGate(): Promise<void> {
  gate = new Promise((resolve) => (openGate = resolve));
  return new Promise((resolve) => (entered = resolve));
}

const stallable =
  (invoke: Invoke<LedgerStreamEvent, LedgerStreamResponse>): Invoke<LedgerStreamEvent, LedgerStreamResponse> =>
  async (event) => {
    entered();
    await gate;
    return invoke(event);
  };

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: CONFIG, onError: () => undefined, wrapAggregate: stallable });
}, 300_000);

afterAll(async () => {
  openGate();
  await stack?.stop();
});

interface Answer {
  status: number;
  code?: string;
  message?: string;
  body: unknown;
  contentType: string | null;
}

async function call(method: string, path: string, options: { key?: string; body?: unknown; timeoutMs?: number } = {}): Promise<Answer> {
  const key = options.key ?? ADMIN;
  const response = await fetch(`${stack.ready.api}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(options.body === undefined ? {} : { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
    ...(options.timeoutMs ? { signal: AbortSignal.timeout(options.timeoutMs) } : {}),
  });
  const contentType = response.headers.get('content-type');
  const text = await response.text();
  const body: unknown = contentType?.startsWith('application/json') ? JSON.parse(text) : text;
  if (templateOf(path) && path !== '/v1/test-clock') checkResponse(method, path, response.status, body);
  const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
  return { status: response.status, ...(error?.code ? { code: error.code } : {}), ...(error?.message ? { message: error.message } : {}), body, contentType };
}

const refusal = (answer: Answer) => ({ status: answer.status, code: answer.code });

describe('instants and dates stay within four-digit years', () => {
  test.each([
    ['day in December 9999 (sort key D#10000-01-01)', 'granularity=day&from=9999-12-01T00:00:00Z&to=9999-12-31T23:59:59Z'],
    ['hour at the end of 9999', 'granularity=hour&from=9999-12-30T00:00:00Z&to=9999-12-31T23:59:59Z'],
    ['cycle at the end of 9999', 'granularity=cycle&from=9999-12-01T00:00:00Z&to=9999-12-31T23:59:59Z'],
    ['an offset that carries 9999 into 10000', 'granularity=day&from=9998-12-31T00:00:00Z&to=9999-12-31T23:00:00-05:00'],
    ['year 0000', 'granularity=day&from=0000-01-01T00:00:00Z&to=0000-01-31T00:00:00Z'],
  ])('GET …/usage, %s → 400 invalid_parameter', async (_label, query) => {
    // Act
    const answer = await call('GET', `/v1/workspaces/ws_two/usage?${query}`);

    // Assert
    expect(refusal(answer)).toEqual({ status: 400, code: 'invalid_parameter' });
    expect(answer.message).toMatch(/^(from|to): must be between 0001-01-01T00:00:00Z and 9999-01-01T00:00:00Z$/);
  });

  test('GET …/usage up to the last instant of the range is answered', async () => {
    // Act
    const answer = await call('GET', '/v1/workspaces/ws_two/usage?granularity=day&from=9998-12-01T00:00:00Z&to=9999-01-01T00:00:00Z');

    // Assert
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ subject: 'ws_two', granularity: 'day', buckets: [] });
  });

  test.each([
    ['/v1/workspaces/ws_two/report?cycle=9999-12-31'],
    ['/v1/workspaces/ws_one/report?cycle=0000-01-01'],
    ['/v1/workspaces/ws_two/usage/top?by=user&cycle=9999-12-31'],
    ['/v1/usage/top?by=workspace&cycle=9999-12-31'],
  ])('GET %s → 400 invalid_parameter naming cycle', async (path) => {
    // Act
    const answer = await call('GET', path);

    // Assert
    expect(refusal(answer)).toEqual({ status: 400, code: 'invalid_parameter' });
    expect(answer.message?.startsWith('cycle: ')).toBe(true);
  });

  test('POST /v1/exports and POST …/grants refuse instants past the range', async () => {
    // Act
    const exported = await call('POST', '/v1/exports', { body: { from: '9999-12-01', to: '9999-12-31T23:00:00-05:00', granularity: 'day', subjects: ['ws_one'] } });
    const granted = await call('POST', '/v1/workspaces/ws_one/grants', { body: { id: 'far-future', kind: 'topup', usageType: 'tokens', amount: 5, expiresAt: '9999-12-31T23:00:00-05:00' } });

    // Assert
    expect([refusal(exported), exported.message?.split(':')[0]]).toEqual([{ status: 400, code: 'invalid_parameter' }, 'from']);
    expect([refusal(granted), granted.message?.split(':')[0]]).toEqual([{ status: 400, code: 'invalid_parameter' }, 'expiresAt']);
  });
});

describe("workspace ids in the path follow the config's id rule", () => {
  const badIds = ['%20', 'a'.repeat(129), 'ws%2Fslash', '-leading-dash', 'ws%C3%A9'];

  test.each(badIds)('PUT /v1/workspaces/%s → 400 invalid_parameter, nothing created', async (id) => {
    // Act
    const answer = await call('PUT', `/v1/workspaces/${id}`, { body: { plan: 'pro', billingAnchorDay: 1 } });

    // Assert
    expect(refusal(answer)).toEqual({ status: 400, code: 'invalid_parameter' });
    expect(answer.message?.startsWith('id: must be 1-128 of')).toBe(true);
  });

  test.each(['quotas', 'usage?granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z', 'usage/summary', 'usage/series?window=24h', 'usage/top?by=user', 'report', 'grants', 'closes'])(
    'GET /v1/workspaces/ws%%2Fslash/%s → 400 invalid_parameter',
    async (rest) => {
      // Act
      const answer = await call('GET', `/v1/workspaces/ws%2Fslash/${rest}`);

      // Assert
      expect(refusal(answer)).toEqual({ status: 400, code: 'invalid_parameter' });
    },
  );

  test('POST …/usages and POST …/grants on a bad id → 400 invalid_parameter', async () => {
    // Act
    const usages = await call('POST', '/v1/workspaces/%20/usages', { body: { specversion: '1.0', type: 'usage', time: stack.clock.now().toISOString(), data: { usageType: 'tokens', quantity: 1 } } });
    const grants = await call('POST', `/v1/workspaces/${'a'.repeat(129)}/grants`, { body: { id: 'g1', kind: 'bonus', usageType: 'tokens', amount: 1 } });

    // Assert
    expect([refusal(usages), refusal(grants)]).toEqual([
      { status: 400, code: 'invalid_parameter' },
      { status: 400, code: 'invalid_parameter' },
    ]);
  });

  test('an id of exactly 128 characters is a workspace', async () => {
    // Act
    const answer = await call('PUT', `/v1/workspaces/${'b'.repeat(128)}`, { body: { plan: 'pro', billingAnchorDay: 1 } });

    // Assert
    expect(answer.status).toBe(201);
  });
});

describe('unknown query parameters are refused, named', () => {
  test.each([
    ['/v1/workspaces/ws_one/usage?granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&bogus=1', 'bogus'],
    ['/v1/workspaces/ws_one/usage?granularity=day&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&usagetype=tokens', 'usagetype'],
    ['/v1/workspaces/ws_one/usage/summary?window=7d', 'window'],
    ['/v1/workspaces/ws_one/usage/series?window=7d&channel=api', 'channel'],
    ['/v1/workspaces/ws_one/usage/top?by=user&page=2', 'page'],
    ['/v1/usage/top?by=workspace&offset=10', 'offset'],
    ['/v1/workspaces/ws_one/report?cycle=current&format=csv', 'format'],
    ['/v1/quarantine?limit=5&reason=too_old', 'reason'],
  ])('GET %s → 400 invalid_parameter naming %s', async (path, name) => {
    // Act
    const answer = await call('GET', path);

    // Assert
    expect([refusal(answer), answer.message]).toEqual([{ status: 400, code: 'invalid_parameter' }, `${name}: unknown parameter`]);
  });
});

describe('cursors', () => {
  test.each([
    ['/v1/workspaces/ws_one/usage/top?by=user', WS_ONE],
    ['/v1/usage/top?by=workspace', FINANCE],
  ])('%s with a 5,000-character cursor → 400 invalid_cursor', async (path, key) => {
    // Act
    const answer = await call('GET', `${path}&cursor=${'A'.repeat(5000)}`, { key });

    // Assert
    expect(refusal(answer)).toEqual({ status: 400, code: 'invalid_cursor' });
  });
});

describe('POST /v1/test-clock validates before it waits for the pipeline', () => {
  test('a move back or a malformed body is refused at once while a shard is stuck; a good move then waits for it', async () => {
    // Arrange: one event in the ledger whose aggregate invocation cannot finish
    const stuck = closeGate();
    const time = new Date(stack.clock.now().getTime() - HOUR_MS).toISOString();
    const sent = await call('POST', '/v1/workspaces/ws_one/usages', { body: { specversion: '1.0', id: 'stuck-shard-1', type: 'usage', time, data: { usageType: 'tokens', quantity: 3 } } });
    expect(sent.status).toBe(202);
    await stuck;

    // Act
    const backwards = await call('POST', '/v1/test-clock', { body: { advanceTo: new Date(stack.clock.now().getTime() - HOUR_MS).toISOString() }, timeoutMs: 10_000 });
    const malformed = await call('POST', '/v1/test-clock', { body: { advanceTo: 'tomorrow' }, timeoutMs: 10_000 });
    const pastTheRange = await call('POST', '/v1/test-clock', { body: { advanceTo: '9999-12-31T00:00:00Z' }, timeoutMs: 10_000 });
    const unknownKey = await call('POST', '/v1/test-clock', { body: { advanceTo: stack.clock.now().toISOString(), by: '1h' }, timeoutMs: 10_000 });
    const forward = call('POST', '/v1/test-clock', { body: { advanceTo: new Date(stack.clock.now().getTime() + 60_000).toISOString() } });
    let forwardDone = false;
    void forward.then(() => (forwardDone = true));
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const doneWhileStuck = forwardDone;
    openGate();
    const moved = await forward;

    // Assert
    expect([refusal(backwards), refusal(malformed), refusal(pastTheRange), refusal(unknownKey)]).toEqual([
      { status: 400, code: 'clock_backwards' },
      { status: 400, code: 'invalid_parameter' },
      { status: 400, code: 'invalid_parameter' },
      { status: 400, code: 'invalid_parameter' },
    ]);
    expect(doneWhileStuck).toBe(false);
    expect(moved.status).toBe(200);
  }, 180_000);
});

describe('paths outside /v1', () => {
  test.each([['/api/usage'], ['/api'], ['/v2/workspaces/ws_one/usage'], ['/workspace/ws_one'], ['/assets/missing.js'], ['/favicon.ico'], ['/financial']])(
    'GET %s → 404 route_not_found (JSON)',
    async (path) => {
      // Act
      const answer = await call('GET', path);

      // Assert
      expect([answer.status, answer.contentType, answer.code]).toEqual([404, 'application/json', 'route_not_found']);
    },
  );

  test('HEAD and POST of an unknown path → 404 route_not_found', async () => {
    // Act
    const head = await fetch(`${stack.ready.api}/api/usage`, { method: 'HEAD' });
    const post = await call('POST', '/api/usage', { body: {} });

    // Assert
    expect([head.status, head.headers.get('content-type')]).toEqual([404, 'application/json']);
    expect(refusal(post)).toEqual({ status: 404, code: 'route_not_found' });
  });

  test.each([['/'], ['/finance'], ['/workspaces/ws_one'], ['/workspaces/ws_one/usage']])('GET %s → the dashboard page', async (path) => {
    // Act
    const answer = await call('GET', path);

    // Assert
    expect([answer.status, answer.contentType]).toEqual([200, 'text/html; charset=utf-8']);
    expect(String(answer.body)).toContain('<title>Usage dashboard</title>');
  });
});

/**
 * An HTTP API (payload format 2.0) event as AWS documents it ("Create AWS Lambda proxy integrations for HTTP
 * APIs in API Gateway", section "Payload format version", the 2.0 example), for one route of this API: no
 * cookies, authorizer or client certificate, which this API does not use.
 */
function httpApiEvent(options: {
  method: string;
  route: string;
  path: string;
  pathParameters: Record<string, string>;
  contentType: string;
  body: string;
  isBase64Encoded: boolean;
}): APIGatewayProxyEventV2 {
  const now = stack.clock.now();
  return {
    version: '2.0',
    routeKey: `${options.method} ${options.route}`,
    rawPath: options.path,
    rawQueryString: '',
    headers: {
      accept: '*/*',
      authorization: `Bearer ${ADMIN}`,
      'content-length': String(options.body.length),
      'content-type': options.contentType,
      host: 'id.execute-api.us-east-1.amazonaws.com',
      'user-agent': 'agent',
      'x-amzn-trace-id': 'Root=1-5e723a3a-58b1a0c8f4d2e6a6b6a2b6f4',
      'x-forwarded-for': '192.0.2.1',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
    },
    requestContext: {
      accountId: '123456789012',
      apiId: 'api-id',
      domainName: 'id.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'id',
      http: { method: options.method, path: options.path, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'agent' },
      requestId: 'id',
      routeKey: `${options.method} ${options.route}`,
      stage: '$default',
      time: '12/Mar/2020:19:03:58 +0000',
      timeEpoch: now.getTime(),
    },
    body: options.body,
    pathParameters: options.pathParameters,
    isBase64Encoded: options.isBase64Encoded,
  };
}

async function invokeApi(event: APIGatewayProxyEventV2): Promise<{ status: number; body: Record<string, unknown> }> {
  const { handler } = await import('../../functions/api.handler');
  const result = (await handler(event, lambdaContext('api', FUNCTIONS.api.timeoutSeconds))) as APIGatewayProxyStructuredResultV2;
  return { status: result.statusCode ?? 0, body: JSON.parse(result.body ?? 'null') as Record<string, unknown> };
}

describe('bodies the HTTP API passes base64-encoded (isBase64Encoded: true)', () => {
  const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

  test('POST …/usages with a CloudEvents body is decoded, accepted and counted', async () => {
    // Arrange: a content type API Gateway does not treat as text, and a non-ASCII value that must survive the decoding
    const time = stack.clock.now().toISOString();
    const event = { specversion: '1.0', id: 'base64-body-1', source: '//base64', type: 'usage', subject: 'ws_three', time, data: { usageType: 'tokens', quantity: 7, feature: 'résumé' } };
    const request = httpApiEvent({
      method: 'POST',
      route: '/v1/workspaces/{id}/usages',
      path: '/v1/workspaces/ws_three/usages',
      pathParameters: { id: 'ws_three' },
      contentType: 'application/cloudevents+json; charset=utf-8',
      body: base64(JSON.stringify(event)),
      isBase64Encoded: true,
    });

    // Act
    const answer = await invokeApi(request);
    await stack.settle();
    const usage = await call(
      'GET',
      `/v1/workspaces/ws_three/usage?granularity=hour&from=${new Date(Date.parse(time) - HOUR_MS).toISOString()}&to=${new Date(Date.parse(time) + HOUR_MS).toISOString()}`,
    );

    // Assert
    expect(answer).toEqual({ status: 202, body: { events: [{ source: '//base64', id: 'base64-body-1' }] } });
    const buckets = (usage.body as { buckets: { usageType: string; quantity: number }[] }).buckets;
    expect(buckets.filter((b) => b.usageType === 'tokens').map((b) => b.quantity)).toEqual([7]);
  });

  test('PUT /v1/workspaces/{id} with a base64 JSON body is decoded like any other route', async () => {
    // Arrange
    const body = JSON.stringify({ plan: 'pro', billingAnchorDay: 3, timeZone: 'UTC', name: 'Ünïcode Ltd' });
    const request = httpApiEvent({
      method: 'PUT',
      route: '/v1/workspaces/{id}',
      path: '/v1/workspaces/ws_base64',
      pathParameters: { id: 'ws_base64' },
      contentType: 'application/octet-stream',
      body: base64(body),
      isBase64Encoded: true,
    });

    // Act
    const answer = await invokeApi(request);

    // Assert
    expect(answer.status).toBe(201);
    expect(answer.body).toMatchObject({ id: 'ws_base64', plan: 'pro', billingAnchorDay: 3, name: 'Ünïcode Ltd' });
  });

  test('a base64 body that is not UTF-8 → 400 invalid_json; the same JSON sent as text still works', async () => {
    // Arrange
    const notUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]).toString('base64');
    const event = {
      specversion: '1.0',
      id: 'base64-body-2',
      source: '//base64',
      type: 'usage',
      subject: 'ws_three',
      time: stack.clock.now().toISOString(),
      data: { usageType: 'tokens', quantity: 1 },
    };
    const route = { method: 'POST', route: '/v1/workspaces/{id}/usages', path: '/v1/workspaces/ws_three/usages', pathParameters: { id: 'ws_three' }, contentType: 'application/json' };

    // Act
    const refused = await invokeApi(httpApiEvent({ ...route, body: notUtf8, isBase64Encoded: true }));
    const plain = await invokeApi(httpApiEvent({ ...route, body: JSON.stringify(event), isBase64Encoded: false }));

    // Assert
    expect([refused.status, (refused.body.error as { code?: string } | undefined)?.code]).toEqual([400, 'invalid_json']);
    expect(plain.status).toBe(202);
  });
});
