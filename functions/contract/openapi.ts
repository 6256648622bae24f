import { z } from 'zod';
import { keyBodySchema } from '../core/access/api-keys';
import type { Access } from '../core/access/scopes';
import { SCOPES } from '../core/access/scopes';
import { grantBodySchema, workspaceBodySchema } from '../core/access/workspaces';
import { idSchema } from '../core/config';
import { EARLIEST_INSTANT, LATEST_INSTANT } from '../core/instants';
import { activityQuerySchema } from '../core/metering/activity';
import { quarantineQuerySchema } from '../core/metering/ingest';
import { memberTopQuerySchema, reportQuerySchema, seriesQuerySchema, summaryQuerySchema, workspaceTopQuerySchema } from '../core/reporting/analytics';
import { exportRequestSchema } from '../core/reporting/exports';
import { cycleReportSchema } from '../core/reporting/report-schema';
import { usageQuerySchema } from '../core/reporting/usage';

/**
 * The OpenAPI 3.1 document of the HTTP API. Request parameters and bodies are the very zod schemas the
 * handlers validate with; responses are described here, and the tests check every response against them.
 * `npm run openapi` writes it to openapi.json; GET /openapi.json serves it.
 */

const amount = z
  .number()
  .describe(
    "exact decimal amount in the usage type's unit, up to 9 decimals; the number in the JSON text is exact even past 2^53, so read it with a lossless JSON parser where a sum can pass 9007199254740991",
  );
const instant = z.string().describe('UTC ISO 8601 instant');
const decimal = z.string().describe('exact decimal string');

const errorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

const subjectSchema = z.object({
  id: z.string(),
  plan: z.string(),
  billingAnchorDay: z.number().int(),
  timeZone: z.string(),
  contacts: z.array(z.string()),
  name: z.string().optional(),
  createdAt: instant.optional(),
  kind: z.literal('account').optional(),
  account: z.string().optional(),
  workspaceGroup: z.string().optional(),
});

const grantSchema = z.object({
  subject: z.string(),
  id: z.string(),
  kind: z.enum(['spillover', 'bonus', 'topup']),
  usageType: z.string(),
  amount: decimal,
  grantedAt: instant,
  cycleStart: instant.optional(),
  expiresAt: instant.optional(),
});

const usageSnapshotSchema = z.object({
  limit: decimal,
  spilloverIn: decimal,
  used: decimal,
  overflow: decimal,
  drawn: z.record(z.string(), decimal),
  uncovered: decimal,
  spilloverOut: decimal,
});

const cycleSnapshotSchema = z.object({
  subject: z.string(),
  cycleStart: instant,
  cycleEnd: instant,
  plan: z.string(),
  status: z.enum(['closing', 'closed']),
  frozenAt: instant,
  usage: z.record(z.string(), usageSnapshotSchema),
  expired: z.record(z.string(), decimal),
});

const adjustmentSchema = z.object({ subject: z.string(), cycleStart: instant, usageType: z.string(), delta: decimal, totalAfter: decimal, detectedAt: instant });

const quotaEntrySchema = z.object({
  usageType: z.string(),
  limitAmount: amount,
  dailyLimitAmount: amount.nullable(),
  usedAmount: amount,
  usedAmountDaily: amount,
  availableAmount: amount,
  bonusAmount: amount.describe('bonus and purchased top-up credits still available'),
  topupAmount: amount.describe('the purchased top-up part of bonusAmount'),
  spilloverAmount: amount,
  requests: z.number().int().describe('events counted this cycle'),
  fairUseLimitReached: z.boolean(),
  canUse: z.boolean(),
  cycleStart: instant,
  cycleEnd: instant,
});

const summaryEntrySchema = z.object({
  usageType: z.string(),
  cycleStart: instant,
  cycleEnd: instant,
  usedAmount: amount,
  allowanceAmount: amount.describe('plan allowance plus spillover carried in'),
  limitAmount: amount,
  spilloverAmount: amount,
  bonusAmount: amount.describe('bonus and top-up credits still available'),
  availableAmount: amount,
  requests: z.number().int().describe('events counted this cycle'),
  usedPercent: z.number().nullable(),
  daysElapsed: z.number().int(),
  daysRemaining: z.number().int(),
  avgPerDay: z.number(),
  runOutInDays: z.number().nullable(),
  projectedToRunOut: z.boolean(),
});

const seriesBucketSchema = z.object({
  start: instant,
  end: instant,
  total: amount,
  requests: z.number().int().nonnegative().describe('events in the bucket'),
  byChannel: z.record(z.string(), amount),
});
const rankedEntrySchema = z.object({ rank: z.number().int(), id: z.string(), amount, share: z.number(), requests: z.number().int().describe('events counted for the entry this cycle') });

const apiKeyViewSchema = z.object({
  id: z.string(),
  scope: z.enum(SCOPES),
  subject: z.string().optional(),
  name: z.string().optional(),
  createdAt: instant,
  revokedAt: instant.optional(),
});

/** A usage event as POST /v1/workspaces/{id}/usages takes it (validated by the same rules as the queue's). */
const usageEventBody = z.object({
  specversion: z.literal('1.0'),
  id: z.string().optional().describe('filled in when left out'),
  source: z.string().optional().describe('filled in ("//api") when left out'),
  type: z.string(),
  subject: z.string().optional().describe('must be the workspace in the path'),
  time: instant,
  data: z.object({
    usageType: z.string(),
    quantity: z.number().describe('positive, at most 9007199254740991 and 9 decimals; read from the JSON text exactly (12345678.123456789 is counted as written)'),
    userId: z.string().optional(),
    groupId: z.string().optional(),
    channel: z.string().optional(),
    feature: z.string().optional(),
  }),
});

const exportViewSchema = z.object({
  id: z.string(),
  status: z.enum(['queued', 'running', 'ready', 'failed']),
  request: z.object({ from: instant, to: instant, granularity: z.enum(['hour', 'day']), subjects: z.array(z.string()).optional(), format: z.enum(['json', 'jsonl']) }),
  createdAt: instant,
  completedAt: instant.nullable(),
  bucketCount: z.number().int().nullable(),
  bytes: z.number().int().nullable(),
  url: z.string().nullable().describe('presigned GET URL of the file, valid for a few minutes; present once ready'),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});

/** What the document says of one route; keyed by "METHOD path" as in ROUTES. */
interface RouteDoc {
  summary: string;
  query?: z.ZodObject;
  body?: z.ZodType;
  responses: Record<number, { description: string; schema: z.ZodType }>;
}

/**
 * The body a route answers with, by status, as this document describes it (and the tests check every answer
 * against): the one declaration of the API's response types, which the dashboard reads too.
 */
export type ResponseOf<K extends keyof typeof ROUTE_DOCS, S extends keyof (typeof ROUTE_DOCS)[K]['responses']> = (typeof ROUTE_DOCS)[K]['responses'][S] extends { schema: infer T extends z.ZodType }
  ? z.output<T>
  : never;

export const ROUTE_DOCS = {
  'GET /v1/workspaces/{id}/usage': {
    summary: 'Usage buckets of a workspace (hour, day or cycle) in [from, to)',
    query: usageQuerySchema,
    responses: {
      200: {
        description: 'buckets',
        schema: z.object({
          subject: z.string(),
          granularity: z.enum(['hour', 'day', 'cycle']),
          buckets: z.array(z.object({ start: instant, usageType: z.string(), quantity: amount, requests: z.number().int().nonnegative().describe('events in the bucket') })),
        }),
      },
    },
  },
  'GET /v1/workspaces/{id}/quotas': {
    summary: 'What is left this cycle, per usage type',
    responses: {
      200: {
        description: "quota view (of a pooled workspace: its account's, `pool` naming the account)",
        schema: z.object({ subject: z.string(), plan: z.string(), pool: z.string().optional(), quotas: z.array(quotaEntrySchema) }),
      },
    },
  },
  'GET /v1/workspaces/{id}/usage/summary': {
    summary: 'Cycle progress and when the allowance runs out at the current rate',
    query: summaryQuerySchema,
    responses: { 200: { description: 'summary', schema: z.object({ subject: z.string(), plan: z.string(), asOf: instant, summary: z.array(summaryEntrySchema) }) } },
  },
  'GET /v1/workspaces/{id}/usage/series': {
    summary: 'Usage over 24 hours (hourly), 7 days (daily) or 30 days (weekly), split by channel',
    query: seriesQuerySchema,
    responses: {
      200: {
        description: 'series',
        schema: z.object({
          subject: z.string(),
          asOf: instant,
          window: z.enum(['24h', '7d', '30d']),
          granularity: z.enum(['hour', 'day', 'week']),
          series: z.array(z.object({ usageType: z.string(), buckets: z.array(seriesBucketSchema) })),
        }),
      },
    },
  },
  'GET /v1/workspaces/{id}/usage/top': {
    summary: 'Users or groups of a workspace ranked by use in a cycle, in pages',
    query: memberTopQuerySchema,
    responses: {
      200: {
        description: 'one page of the ranking',
        schema: z.object({
          subject: z.string(),
          by: z.enum(['user', 'group', 'workspace']),
          usageType: z.string(),
          cycleStart: instant,
          cycleEnd: instant,
          totalAmount: amount,
          entries: z.array(rankedEntrySchema),
          nextCursor: z.string().nullable(),
        }),
      },
    },
  },
  'GET /v1/usage/top': {
    summary: 'Workspaces ranked by use in their own cycle (finance, admin)',
    query: workspaceTopQuerySchema,
    responses: {
      200: {
        description: 'one page of the ranking',
        schema: z.object({
          by: z.literal('workspace'),
          usageType: z.string(),
          cycle: z.string(),
          totalAmount: amount,
          entries: z.array(rankedEntrySchema.extend({ name: z.string().optional(), cycleStart: instant, cycleEnd: instant })),
          nextCursor: z.string().nullable(),
        }),
      },
    },
  },
  'GET /v1/workspaces/{id}/report': {
    summary: 'The cycle report (schemas/usage-report.schema.json, cycleReport): totals, breakdowns, grants, adjustments, money',
    query: reportQuerySchema,
    responses: { 200: { description: 'cycle report', schema: cycleReportSchema } },
  },
  'POST /v1/exports': {
    summary: 'Start an export of hourly or daily usage; a workspace key exports its own workspace only',
    body: exportRequestSchema,
    responses: { 202: { description: 'queued', schema: z.object({ id: z.string(), status: z.enum(['queued', 'running', 'ready', 'failed']) }) } },
  },
  'GET /v1/exports/{exportId}': {
    summary: "An export's status and, once ready, a short-lived download URL",
    responses: { 200: { description: 'export', schema: exportViewSchema } },
  },
  'POST /v1/workspaces/{id}/usages': {
    summary: 'Record usage: one event or an array of up to 500',
    body: z.union([usageEventBody, z.array(usageEventBody)]),
    responses: {
      202: { description: 'queued', schema: z.object({ events: z.array(z.object({ source: z.string(), id: z.string() })) }) },
      502: { description: '`queue_refused`: the usage queue refused a message (its reason in the message); events queued before it count once when sent again', schema: errorSchema },
      503: { description: '`queue_unavailable`: the usage queue could not be reached or kept failing; retry later, events already queued count once', schema: errorSchema },
    },
  },
  'PUT /v1/workspaces/{id}': {
    summary: 'Create or change a workspace (admin)',
    body: workspaceBodySchema,
    responses: { 200: { description: 'changed', schema: subjectSchema }, 201: { description: 'created', schema: subjectSchema } },
  },
  'GET /v1/workspaces/{id}/grants': {
    summary: 'Grants of a workspace',
    responses: { 200: { description: 'grants', schema: z.object({ grants: z.array(grantSchema) }) } },
  },
  'POST /v1/workspaces/{id}/grants': {
    summary: 'Grant bonus or top-up credits, idempotent by id (admin)',
    body: grantBodySchema,
    responses: { 200: { description: 'already granted', schema: grantSchema }, 201: { description: 'granted', schema: grantSchema } },
  },
  'GET /v1/workspaces/{id}/closes': {
    summary: 'Closed cycles and adjustments to them',
    responses: { 200: { description: 'closes', schema: z.object({ cycles: z.array(cycleSnapshotSchema), adjustments: z.array(adjustmentSchema) }) } },
  },
  'GET /v1/workspaces/{id}/activity': {
    summary: "The workspace's newest events, newest first (best effort, kept 7 days)",
    query: activityQuerySchema,
    responses: {
      200: {
        description: 'recent activity',
        schema: z.object({
          subject: z.string(),
          events: z.array(
            z.object({
              time: instant.describe("the event's time"),
              usageType: z.string(),
              feature: z.string().optional(),
              quantity: amount,
              credits: amount.optional(),
            }),
          ),
        }),
      },
    },
  },
  'GET /v1/usage-types': {
    summary: 'Configured usage types',
    responses: { 200: { description: 'usage types', schema: z.object({ usageTypes: z.array(z.object({ id: z.string(), unit: z.string(), allowFractions: z.boolean() })) }) } },
  },
  'GET /v1/me': {
    summary: 'The calling key: its scope and, for a workspace key, its workspace',
    responses: { 200: { description: 'the key', schema: z.object({ keyId: z.string(), scope: z.enum(SCOPES), subject: z.string().optional() }) } },
  },
  'GET /v1/usage': {
    summary: "The calling workspace key's credit balance: included, purchased and bonus, in credits and in minor units (read only)",
    responses: {
      200: {
        description: 'credit balance',
        schema: z.object({
          period_start: instant,
          requests: z.number().int(),
          billable_units: amount.nullable(),
          credits: z
            .object({
              balance: amount,
              balance_cents: z.number().int().nullable(),
              currency: z.string().nullable(),
              included: amount,
              included_cents: z.number().int().nullable(),
              purchased: amount,
              purchased_cents: z.number().int().nullable(),
              bonus: amount,
              bonus_cents: z.number().int().nullable(),
              estimated_requests_remaining: z.number().int().nullable(),
              auto_reload_enabled: z.boolean(),
            })
            .nullable(),
        }),
      },
    },
  },
  'GET /v1/quarantine': {
    summary: 'Rejected events with their reason (admin)',
    query: quarantineQuerySchema,
    responses: {
      200: {
        description: 'quarantined events',
        schema: z.object({ items: z.array(z.object({ reason: z.string(), detail: z.string(), receivedAt: instant, subject: z.string().optional(), body: z.string() })) }),
      },
    },
  },
  'POST /v1/keys': {
    summary: 'Create an API key; the key is in this response only (admin)',
    body: keyBodySchema,
    responses: { 201: { description: 'created', schema: apiKeyViewSchema.extend({ key: z.string() }) } },
  },
  'GET /v1/keys': {
    summary: 'API keys, without the keys (admin)',
    responses: { 200: { description: 'keys', schema: z.object({ keys: z.array(apiKeyViewSchema) }) } },
  },
  'DELETE /v1/keys/{keyId}': {
    summary: 'Revoke an API key (admin)',
    responses: { 200: { description: 'revoked', schema: apiKeyViewSchema } },
  },
  'GET /openapi.json': {
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document', schema: z.object({ openapi: z.string() }).loose() } },
  },
} satisfies Record<string, RouteDoc>;

const ERRORS: Record<number, string> = {
  400:
    'invalid request: `error.code` names the problem; `invalid_parameter` for a missing, malformed or out-of-range parameter or body field, an unknown query parameter or body key, ' +
    `a workspace id in the path outside its pattern, or an instant or date outside ${EARLIEST_INSTANT} to ${LATEST_INSTANT}`,
  401: 'missing, unknown or revoked API key',
  403: "the key's scope or workspace does not cover this route",
  404: 'unknown workspace or resource',
  409: 'conflict with the stored state',
};

const WHO: Record<Access, string> = {
  public: 'No key needed.',
  any: 'Any valid key.',
  'workspace-read': 'A key of this workspace, a finance key or an admin key.',
  'workspace-write': 'A key of this workspace or an admin key.',
  finance: 'A finance or admin key.',
  admin: 'An admin key.',
};

/** The JSON Schema of a zod schema; the dialect is the document's (jsonSchemaDialect), not repeated per schema. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const described = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete described.$schema;
  return described;
}

/** The document for the given routes (those the HTTP API exposes). */
export function buildOpenApi(routes: readonly { method: string; path: string; access: Access }[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { method, path, access } of routes) {
    const doc = (ROUTE_DOCS as Record<string, RouteDoc>)[`${method} ${path}`];
    if (!doc) throw new Error(`no OpenAPI description for ${method} ${path}`);
    // A workspace id in the path is held to the config's id rule (400 invalid_parameter otherwise).
    const pathParameters = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => ({ name, in: 'path', required: true, schema: name === 'id' ? jsonSchema(idSchema, 'input') : { type: 'string' } }));
    const queryParameters = Object.entries(doc.query?.shape ?? {}).map(([name, schema]) => {
      const described = jsonSchema(schema as z.ZodType, 'input');
      return { name, in: 'query', required: !(schema as z.ZodType).safeParse(undefined).success, schema: described };
    });
    const responses: Record<string, unknown> = {};
    for (const [status, { description, schema }] of Object.entries(doc.responses)) {
      responses[status] = { description, content: { 'application/json': { schema: jsonSchema(schema, 'output') } } };
    }
    for (const [status, description] of Object.entries(ERRORS)) {
      if (access === 'public' && (status === '401' || status === '403')) continue;
      responses[status] = { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
    paths[path] ??= {};
    paths[path][method.toLowerCase()] = {
      summary: doc.summary,
      description: WHO[access],
      operationId: `${method.toLowerCase()}${path.replace(/\{(\w+)\}/g, 'By_$1').replace(/[^A-Za-z0-9]+(\w)/g, (_, c: string) => c.toUpperCase())}`,
      ...(access === 'public' ? { security: [] } : {}),
      parameters: [...pathParameters, ...queryParameters],
      ...(doc.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(doc.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'usage-pipeline API',
      version: '1',
      description:
        'Exact usage metering: quotas, usage analytics, cycle reports and exports, workspaces, grants and API keys. Amounts are exact in the JSON text: a number token carries every digit of the decimal (to 9 decimals, and past 2^53 for sums), so a client that can meet such sums reads them with a lossless JSON parser. Reports and exports carry quantities as decimal strings.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    security: [{ apiKey: [] }],
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' } },
      schemas: { Error: jsonSchema(errorSchema, 'output') },
    },
    paths,
  };
}
