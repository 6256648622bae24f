import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import fc from 'fast-check';
import { ERROR_CODES } from '../../functions/core/errors';
import { REJECTION_REASONS } from '../../functions/core/metering/envelope';
import { lambdaContext } from '../../local/lambda-context';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse, templateOf } from '../support/api-contract';
import { envelopeViolations, instantOf, isObject } from '../support/envelope-rules';

/**
 * Every route of the API handler (functions/api.handler.ts, its middy chain as deployed) called in-process with
 * generated API Gateway v2 events: valid requests with one to three parts broken (path parameter, query
 * parameters, JSON body, the Authorization header). It never answers 5xx; every refusal is a 4xx
 * `{"error":{"code","message"}}` with a code of the documented lists and the status README gives it;
 * everything it accepts meets the rules restated here; and valid requests are accepted. The stores are
 * DynamoDB Local and the SQS stand-in of the local stack. Seeded; a failure prints the seed.
 */

const SEED = Number(process.env.FC_SEED ?? 20261125);
const CONFIG = 'test/fixtures/api-config.json';
const KEYS = { admin: 'test-admin-key-000000000000', finance: 'finance-key-one-0000000000000', wsOne: 'ws-one-key-a-00000000000000000', wsTwo: 'ws-two-key-000000000000000000' } as const;
const USAGE_TYPES = { tokens: { allowFractions: false }, images: { allowFractions: false } };
const DAY = 86_400_000;

type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResultV2>;
let stack: LocalStack;
let handler: Handler;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: CONFIG, onError: () => undefined });
  ({ handler } = (await import('../../functions/api.handler')) as unknown as { handler: Handler });
});

afterAll(async () => {
  await stack?.stop();
});

interface Request {
  method: string;
  /** Path template, and the raw (encoded) value of its parameter. */
  route: string;
  param?: string;
  query: Record<string, string>;
  body?: string;
  key?: string;
  /** A whole Authorization header, instead of `Bearer <key>`. */
  authorization?: string;
}

const pathOf = (r: Request) => r.route.replace(/\{\w+\}/, r.param ?? '');

async function call(r: Request): Promise<{ status: number; body: unknown; headers: Record<string, unknown> }> {
  const path = pathOf(r);
  const authorization = r.authorization ?? (r.key === undefined ? undefined : `Bearer ${r.key}`);
  const now = new Date();
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: new URLSearchParams(r.query).toString(),
    headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
    ...(Object.keys(r.query).length > 0 ? { queryStringParameters: { ...r.query } } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'test',
      domainName: 'localhost',
      domainPrefix: 'test',
      http: { method: r.method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'property-test' },
      requestId: String(now.getTime()),
      routeKey: '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    ...(r.body === undefined ? {} : { body: r.body }),
    isBase64Encoded: false,
  };
  const result = (await handler(event, lambdaContext('api', 29))) as APIGatewayProxyStructuredResultV2;
  return { status: result.statusCode ?? 200, body: JSON.parse(result.body ?? 'null') as unknown, headers: result.headers ?? {} };
}

// ------------------------------------------------------------------------------------------------
// What README says: who may call what, and the status of each code.

type Access = 'workspace-read' | 'workspace-write' | 'finance' | 'admin' | 'any' | 'public';
const ACCESS: Record<string, Access> = {
  'GET /v1/workspaces/{id}/usage': 'workspace-read',
  'GET /v1/workspaces/{id}/quotas': 'workspace-read',
  'GET /v1/workspaces/{id}/usage/summary': 'workspace-read',
  'GET /v1/workspaces/{id}/usage/series': 'workspace-read',
  'GET /v1/workspaces/{id}/usage/top': 'workspace-read',
  'GET /v1/usage/top': 'finance',
  'GET /v1/workspaces/{id}/report': 'workspace-read',
  'POST /v1/exports': 'any',
  'GET /v1/exports/{exportId}': 'any',
  'POST /v1/workspaces/{id}/usages': 'workspace-write',
  'PUT /v1/workspaces/{id}': 'admin',
  'GET /v1/workspaces/{id}/grants': 'workspace-read',
  'POST /v1/workspaces/{id}/grants': 'admin',
  'GET /v1/workspaces/{id}/closes': 'workspace-read',
  'GET /v1/usage-types': 'any',
  'GET /v1/quarantine': 'admin',
  'POST /v1/keys': 'admin',
  'GET /v1/keys': 'admin',
  'DELETE /v1/keys/{keyId}': 'admin',
  'GET /openapi.json': 'public',
};

/** May this key call this route on this workspace? (README: "API keys", scopes.) */
function allowed(r: Request): boolean {
  const access = ACCESS[`${r.method} ${r.route}`];
  if (access === 'public') return true;
  if (r.authorization !== undefined) return false; // every generated whole header is malformed or unknown
  const workspace = r.route.startsWith('/v1/workspaces/{id}') ? decodeURIComponent(r.param ?? '') : undefined;
  switch (r.key) {
    case KEYS.admin:
      return true;
    case KEYS.finance:
      return access === 'workspace-read' || access === 'finance' || access === 'any';
    case KEYS.wsOne:
      return access === 'any' || ((access === 'workspace-read' || access === 'workspace-write') && workspace === 'ws_one');
    case KEYS.wsTwo:
      return access === 'any' || ((access === 'workspace-read' || access === 'workspace-write') && workspace === 'ws_two');
    default:
      return false;
  }
}

const STATUS: Record<string, number[]> = {
  ...Object.fromEntries(REJECTION_REASONS.map((reason) => [reason, [400]])),
  invalid_parameter: [400],
  invalid_json: [400],
  range_too_large: [400],
  invalid_cursor: [400],
  subject_mismatch: [400],
  too_many_events: [400],
  unknown_plan: [400],
  unknown_usage_type: [400],
  clock_backwards: [400],
  missing_api_key: [401],
  invalid_api_key: [401],
  forbidden_scope: [403],
  forbidden_workspace: [403],
  unknown_workspace: [400, 404],
  unknown_api_key: [404],
  unknown_export: [404],
  route_not_found: [404],
  billing_anchor_fixed: [409],
};

// ------------------------------------------------------------------------------------------------
// What each input-heavy route accepts, restated from README and the OpenAPI document.

const NOW = () => stack.clock.now().getTime();
const isInstant = (value: string | undefined) => value !== undefined && instantOf(value) !== undefined;
// README: instants and dates a request names lie in 0001-01-01T00:00:00Z … 9999-01-01T00:00:00Z.
const KEY_RANGE = [Date.parse('0001-01-01T00:00:00Z'), Date.parse('9999-01-01T00:00:00Z')] as const;
const inKeyRange = (ms: number | undefined) => ms !== undefined && ms >= KEY_RANGE[0] && ms <= KEY_RANGE[1];
const isKeyInstant = (value: string | undefined) => isInstant(value) && inKeyRange(instantOf(value ?? ''));
const isDate = (value: string) => /^\d{4}-\d{2}-\d{2}$/.test(value) && inKeyRange(instantOf(`${value}T00:00:00Z`));
/** README: a workspace id in a path is 1-128 of A-Z a-z 0-9 _ . : - and starts with a letter or digit. */
const isWorkspaceId = (param: string | undefined) => {
  try {
    return /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/.test(decodeURIComponent(param ?? ''));
  } catch {
    return false;
  }
};
const keysWithin = (query: Record<string, string>, names: string[]) => Object.keys(query).every((k) => names.includes(k));
const usageTypeOk = (value: string | undefined) => value === undefined || Object.hasOwn(USAGE_TYPES, value);
const limitOk = (value: string | undefined) => value === undefined || (Number.isInteger(Number(value)) && Number(value) >= 1 && Number(value) <= 100);
const cycleOk = (value: string | undefined) => value === undefined || value === 'current' || value === 'previous' || isDate(value);

/** For the routes with rules on their input: does the input meet them? (Other routes: undefined.) */
function inputMeetsRules(r: Request): boolean | undefined {
  const q = r.query;
  switch (`${r.method} ${r.route}`) {
    case 'GET /v1/workspaces/{id}/usage': {
      if (!keysWithin(q, ['granularity', 'from', 'to', 'usageType'])) return false;
      if (!['hour', 'day', 'cycle'].includes(q.granularity ?? '') || !isKeyInstant(q.from) || !isKeyInstant(q.to)) return false;
      const days = ((instantOf(q.to ?? '') ?? 0) - (instantOf(q.from ?? '') ?? 0)) / DAY;
      return days > 0 && days <= (q.granularity === 'hour' ? 93 : 3660) && (q.usageType === undefined || (q.usageType.length >= 1 && q.usageType.length <= 128));
    }
    case 'GET /v1/workspaces/{id}/usage/series':
      return keysWithin(q, ['window', 'usageType']) && ['24h', '7d', '30d'].includes(q.window ?? '') && usageTypeOk(q.usageType);
    case 'GET /v1/workspaces/{id}/usage/summary':
      return keysWithin(q, ['usageType']) && usageTypeOk(q.usageType);
    case 'GET /v1/workspaces/{id}/usage/top':
      return (
        keysWithin(q, ['by', 'cycle', 'usageType', 'limit', 'cursor']) &&
        ['user', 'group'].includes(q.by ?? '') &&
        cycleOk(q.cycle) &&
        usageTypeOk(q.usageType) &&
        limitOk(q.limit) &&
        q.cursor === undefined
      );
    case 'POST /v1/workspaces/{id}/usages': {
      let raw: unknown;
      try {
        raw = JSON.parse(r.body ?? '');
      } catch {
        return false;
      }
      const items = Array.isArray(raw) ? raw : [raw];
      if (items.length === 0 || items.length > 500) return false;
      const workspace = decodeURIComponent(r.param ?? '');
      return items.every((item) => {
        if (!isObject(item)) return false;
        const filled = { source: '//api', id: 'generated', ...item, subject: item.subject ?? workspace };
        return filled.subject === workspace && envelopeViolations(filled, { usageTypes: USAGE_TYPES, now: NOW(), maxFutureSeconds: 300, retentionDays: 400 }).size === 0;
      });
    }
    case 'PUT /v1/workspaces/{id}': {
      let body: unknown;
      try {
        body = JSON.parse(r.body ?? '');
      } catch {
        return false;
      }
      if (!isWorkspaceId(r.param)) return false;
      if (!isObject(body) || !keysWithin(body as Record<string, string>, ['plan', 'billingAnchorDay', 'timeZone', 'contacts', 'name'])) return false;
      const { plan, billingAnchorDay, timeZone } = body;
      return plan === 'pro' && Number.isInteger(billingAnchorDay) && (billingAnchorDay as number) >= 1 && (billingAnchorDay as number) <= 31 && (timeZone === undefined || timeZone === 'UTC');
    }
    default:
      return undefined;
  }
}

// ------------------------------------------------------------------------------------------------
// Valid requests, and mutations of them.

const recentInstant = fc.integer({ min: 60_000, max: 30 * DAY }).map((back) => new Date(NOW() - back).toISOString());
const validEvent = fc.record({
  id: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme-ascii' }).filter((s) => s.trim() !== ''),
  time: recentInstant,
  usageType: fc.constantFrom('tokens', 'images'),
  quantity: fc.integer({ min: 1, max: 10_000 }),
  channel: fc.constantFrom('ui', 'api', 'cli', 'mcp'),
});

const validRequest: fc.Arbitrary<Request> = fc.oneof(
  fc
    .record({ granularity: fc.constantFrom('hour', 'day', 'cycle'), back: fc.integer({ min: 1, max: 90 }), key: fc.constantFrom(KEYS.admin, KEYS.finance, KEYS.wsOne) })
    .map(({ granularity, back, key }) => ({
      method: 'GET',
      route: '/v1/workspaces/{id}/usage',
      param: 'ws_one',
      query: { granularity, from: new Date(NOW() - back * DAY).toISOString(), to: new Date(NOW()).toISOString() },
      key,
    })),
  fc.constantFrom('quotas', 'grants', 'closes').map((what) => ({ method: 'GET', route: `/v1/workspaces/{id}/${what}`, param: 'ws_one', query: {}, key: KEYS.wsOne })),
  fc.constantFrom('tokens', 'images').map((usageType) => ({ method: 'GET', route: '/v1/workspaces/{id}/usage/summary', param: 'ws_two', query: { usageType }, key: KEYS.wsTwo })),
  fc.constantFrom('24h', '7d', '30d').map((window) => ({ method: 'GET', route: '/v1/workspaces/{id}/usage/series', param: 'ws_one', query: { window }, key: KEYS.finance })),
  fc.record({ by: fc.constantFrom('user', 'group'), limit: fc.integer({ min: 1, max: 100 }), cycle: fc.constantFrom('current', 'previous') }).map(({ by, limit, cycle }) => ({
    method: 'GET',
    route: '/v1/workspaces/{id}/usage/top',
    param: 'ws_one',
    query: { by, limit: String(limit), cycle },
    key: KEYS.wsOne,
  })),
  fc.constant({ method: 'GET', route: '/v1/usage/top', query: { by: 'workspace' }, key: KEYS.finance }),
  fc.constantFrom('current', 'previous').map((cycle) => ({ method: 'GET', route: '/v1/workspaces/{id}/report', param: 'ws_one', query: { cycle }, key: KEYS.admin })),
  fc.array(validEvent, { minLength: 1, maxLength: 5 }).map((events) => ({
    method: 'POST',
    route: '/v1/workspaces/{id}/usages',
    param: 'ws_one',
    query: {},
    body: JSON.stringify(
      events.map(({ id, time, usageType, quantity, channel }) => ({
        specversion: '1.0',
        id: `prop-${id}`,
        source: '//property',
        type: 'com.example.usage',
        time,
        data: { usageType, quantity, channel },
      })),
    ),
    key: KEYS.wsOne,
  })),
  fc
    .integer({ min: 1, max: 31 })
    .map((anchor) => ({ method: 'PUT', route: '/v1/workspaces/{id}', param: `ws_prop_${anchor}`, query: {}, body: JSON.stringify({ plan: 'pro', billingAnchorDay: anchor }), key: KEYS.admin })),
  fc.record({ id: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}$/), amount: fc.integer({ min: 1, max: 1000 }) }).map(({ id, amount }) => ({
    method: 'POST',
    route: '/v1/workspaces/{id}/grants',
    param: 'ws_three',
    query: {},
    body: JSON.stringify({ id, kind: 'bonus', usageType: 'tokens', amount }),
    key: KEYS.admin,
  })),
  fc.integer({ min: 1, max: 60 }).map((days) => ({
    method: 'POST',
    route: '/v1/exports',
    query: {},
    body: JSON.stringify({ from: new Date(NOW() - days * DAY).toISOString(), to: new Date(NOW()).toISOString(), granularity: 'day', subjects: ['ws_one'] }),
    key: KEYS.wsOne,
  })),
  fc.constantFrom('/v1/usage-types', '/openapi.json').map((route) => ({ method: 'GET', route, query: {}, key: KEYS.wsTwo })),
  fc.constantFrom('/v1/keys', '/v1/quarantine').map((route) => ({ method: 'GET', route, query: (route === '/v1/quarantine' ? { limit: '5' } : {}) as Record<string, string>, key: KEYS.admin })),
  fc.constant({ method: 'POST', route: '/v1/keys', query: {}, body: JSON.stringify({ scope: 'workspace', subject: 'ws_three', name: 'property' }), key: KEYS.admin }),
);

const edgeText = fc.constantFrom(
  '',
  ' ',
  'x',
  '0',
  '-1',
  '1.5',
  '101',
  '1e1',
  'NaN',
  'true',
  'null',
  'hour',
  'minute',
  'user',
  'workspace',
  '24h',
  '1y',
  'current',
  'previous',
  'tokens',
  'videos',
  '2026-02-30',
  '2026-02-28',
  '2026-11-22T10:00:00Z',
  '2026-11-22T10:00:00',
  'x'.repeat(129),
  'x'.repeat(1025),
  '%',
  '\u0000',
  'é',
);
const edgeParam = fc.constantFrom('', 'ws_one', 'ws_two', 'ws_unknown', 'ws%20one', '%2F', 'x'.repeat(200), '%C3%A9', '..', 'ws_one%00', '%', '%E0%A4%A');
const edgeJson = fc.constantFrom<unknown>(null, true, 0, -1, 1.5, 2 ** 53, '', 'x', [], {}, ['a'], 'pro', 'bonus', 'tokens', 'videos', '2026-11-22T10:00:00Z', 1e-10, 'x'.repeat(300));
// (The scheme is case-insensitive, so `bearer <key>` is a valid header, not a bad one.)
const badAuthorization = fc.constantFrom(
  'Basic dGVzdDp0ZXN0',
  'Bearer',
  'Bearer ',
  'Basic test-admin-key-000000000000',
  'Bearer test-admin-key-00000000000X',
  'Bearer upk_0000000000000000_abc',
  `Bearer ${'k'.repeat(300)}`,
);

type Mutation = (r: Request) => Request;
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  edgeParam.map(
    (param): Mutation =>
      (r) =>
        r.route.includes('{') ? { ...r, param } : r,
  ),
  fc.constantFrom('granularity', 'from', 'to', 'usageType', 'window', 'by', 'limit', 'cycle', 'cursor', 'subject', 'extra').chain((name) =>
    fc.oneof(
      fc.constant<Mutation>((r) => {
        const query = { ...r.query };
        delete query[name];
        return { ...r, query };
      }),
      fc.oneof(edgeText, fc.string({ maxLength: 40 })).map(
        (value): Mutation =>
          (r) => ({ ...r, query: { ...r.query, [name]: value } }),
      ),
    ),
  ),
  fc
    .oneof(
      fc.string({ maxLength: 60 }),
      fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    )
    .map(
      (body): Mutation =>
        (r) => ({ ...r, body }),
    ),
  fc
    .tuple(
      fc.constantFrom(
        'id',
        'time',
        'subject',
        'specversion',
        'data',
        'usageType',
        'quantity',
        'channel',
        'plan',
        'billingAnchorDay',
        'timeZone',
        'kind',
        'amount',
        'from',
        'to',
        'granularity',
        'subjects',
        'scope',
        'extra',
      ),
      fc.option(edgeJson),
    )
    .map(
      ([field, value]): Mutation =>
        (r) => {
          let body: unknown;
          try {
            body = JSON.parse(r.body ?? '');
          } catch {
            return r;
          }
          const set = (target: Record<string, unknown>) => {
            const into = ['usageType', 'quantity', 'channel'].includes(field) && isObject(target.data) ? target.data : target;
            if (value === null) delete into[field];
            else into[field] = value;
          };
          if (Array.isArray(body) && isObject(body[0])) set(body[0]);
          else if (isObject(body)) set(body);
          return { ...r, body: JSON.stringify(body) };
        },
    ),
  fc.oneof(
    badAuthorization.map(
      (authorization): Mutation =>
        (r) => ({ ...r, authorization }),
    ),
    fc.constantFrom<string | undefined>(undefined, ...Object.values(KEYS)).map(
      (key): Mutation =>
        (r) => ({ ...r, key, authorization: undefined }),
    ),
  ),
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH').map(
    (method): Mutation =>
      (r) => ({ ...r, method }),
  ),
);

const nearValidRequest = fc.tuple(validRequest, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([r, ms]) => ms.reduce((acc, m) => m(acc), r));

function expectWellFormedAnswer(r: Request, response: { status: number; body: unknown; headers: Record<string, unknown> }): void {
  expect(response.status).toBeGreaterThanOrEqual(200);
  expect(response.status).toBeLessThan(500);
  const path = pathOf(r);
  if (templateOf(path) && ACCESS[`${r.method} ${templateOf(path)}`]) checkResponse(r.method, path, response.status, response.body);
  if (response.status >= 400) {
    const { error } = response.body as { error: { code: string; message: string } };
    expect(Object.keys(response.body as object)).toEqual(['error']);
    expect(Object.keys(error).sort()).toEqual(['code', 'message']);
    expect([...ERROR_CODES, ...REJECTION_REASONS]).toContain(error.code);
    expect({ code: error.code, status: STATUS[error.code]?.includes(response.status) }).toEqual({ code: error.code, status: true });
    expect(typeof error.message === 'string' && error.message.length > 0).toBe(true);
    if (response.status === 401) expect(response.headers['www-authenticate']).toBe('Bearer');
  }
}

describe('the API handler, over generated requests', () => {
  test('never fails, refuses with a documented code and status, and accepts only what the rules allow (2,500 near-valid requests)', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(nearValidRequest, async (r) => {
        // Act
        const response = await call(r);

        // Assert
        expectWellFormedAnswer(r, response);
        if (response.status < 300) {
          accepted += 1;
          expect({ route: `${r.method} ${r.route}`, allowed: allowed(r) }).toEqual({ route: `${r.method} ${r.route}`, allowed: true });
          const rules = inputMeetsRules(r);
          if (rules !== undefined) expect({ request: r, meetsRules: rules }).toEqual({ request: r, meetsRules: true });
        }
      }),
      { numRuns: 2_500, seed: SEED },
    );
    expect(accepted).toBeGreaterThan(50);
  });

  test('accepts every valid request (500 requests)', async () => {
    await fc.assert(
      fc.asyncProperty(validRequest, async (r) => {
        // Act
        const response = await call(r);

        // Assert
        expectWellFormedAnswer(r, response);
        expect({ route: `${r.method} ${r.route}`, status: response.status < 300 ? 'accepted' : response.body }).toEqual({ route: `${r.method} ${r.route}`, status: 'accepted' });
      }),
      { numRuns: 500, seed: SEED },
    );
  });
});
