import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpRouterHandler from '@middy/http-router';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { appContext } from './adapters/app-context';
import { decodedBody, httpErrors, json } from './adapters/http';
import { logger } from './adapters/observability';
import { presignDownload } from './adapters/s3';
import { buildOpenApi } from './contract/openapi';
import { DEPLOYED_ROUTES, ROUTES, type RouteKey } from './contract/routes';
import { authenticate, authorize, createKey, keyBodySchema, listKeys, type Principal, revokeKey } from './core/access/api-keys';
import type { Access } from './core/access/scopes';
import { addGrant, grantBodySchema, parseBody, parseQuery, parseWorkspaceId, putWorkspace, recordUsages, testClockBodySchema, workspaceBodySchema } from './core/access/workspaces';
import { creditBalance, creditHeaders } from './core/billing/credit-balance';
import { quotaView } from './core/billing/quotas';
import { ForbiddenError, InvalidRequestError, NotFoundError } from './core/errors';
import { activityQuerySchema, recentActivity } from './core/metering/activity';
import { quarantineQuerySchema } from './core/metering/ingest';
import {
  memberTopQuerySchema,
  reportQuerySchema,
  resolveCycle,
  seriesQuerySchema,
  summaryQuerySchema,
  topMembers,
  topWorkspaces,
  usageSeries,
  usageSummary,
  workspaceTopQuerySchema,
} from './core/reporting/analytics';
import { exportRequestSchema, exportView, requestExport } from './core/reporting/exports';
import { buildCycleReport } from './core/reporting/reports';
import { parseUsageQuery, queryUsage } from './core/reporting/usage';

/** A route gets the caller whose key the guard checked (none on a public route). */
type Route = (event: APIGatewayProxyEventV2, caller: Principal | undefined) => Promise<APIGatewayProxyResultV2>;

/** The caller of a route that requires a key (the guard has checked it). */
function callerOf(caller: Principal | undefined): Principal {
  if (!caller) throw new Error('a keyed route ran without a caller');
  return caller;
}

/** The workspace of the path, decoded and held to the config's id rule (400 invalid_parameter otherwise). */
function workspaceId(event: APIGatewayProxyEventV2): string {
  const id = event.pathParameters?.id;
  if (!id) throw new NotFoundError('unknown_workspace', 'workspace id is missing');
  return parseWorkspaceId(pathParameter(id));
}

/** A path parameter as the caller meant it; a malformed percent-encoding is the caller's mistake, not a 500. */
function pathParameter(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidRequestError('invalid_parameter', 'a path parameter has a malformed percent-encoding');
  }
}

const getUsage: Route = async (event) => {
  const query = parseUsageQuery(event.queryStringParameters ?? {});
  return json(200, await queryUsage(workspaceId(event), query, { subjects: appContext.subjects(), rollups: appContext.rollups() }));
};

const quotaDeps = () => ({ config: appContext.config(), subjects: appContext.subjects(), rollups: appContext.rollups(), accounts: appContext.accounts(), clock: appContext.clock() });

const getQuotas: Route = async (event) => json(200, await quotaView(workspaceId(event), quotaDeps()));

/** The calling workspace key's own balance. */
const getCreditBalance: Route = async (_event, caller) => {
  const { scope, subject } = callerOf(caller);
  if (!subject) throw new ForbiddenError('forbidden_scope', `a ${scope} key has no workspace of its own: GET /v1/workspaces/{id}/quotas reads any workspace's`);
  return json(200, await creditBalance(subject, quotaDeps()));
};

const listUsageTypes: Route = async () => json(200, { usageTypes: appContext.config().usageTypes.map(({ id, unit, allowFractions }) => ({ id, unit, allowFractions })) });

/** Queues the events, and answers with the workspace's credit balance as it stands before they are counted. */
const postUsages: Route = async (event) => {
  const id = workspaceId(event);
  const recorded = await recordUsages(id, event.body, { config: appContext.config(), subjects: appContext.subjects(), queue: appContext.usageQueue(), clock: appContext.clock() });
  const response = json(202, recorded);
  if (!appContext.config().credits) return response;
  return { ...response, headers: { ...response.headers, ...creditHeaders(await creditBalance(id, quotaDeps())) } };
};

const putWorkspaceRoute: Route = async (event) => {
  const { created, workspace } = await putWorkspace(workspaceId(event), parseBody(workspaceBodySchema, event.body), {
    config: appContext.config(),
    subjects: appContext.subjects(),
    clock: appContext.clock(),
  });
  return json(created ? 201 : 200, workspace);
};

const postGrant: Route = async (event) => {
  const { created, grant } = await addGrant(workspaceId(event), parseBody(grantBodySchema, event.body), {
    config: appContext.config(),
    subjects: appContext.subjects(),
    accounts: appContext.accounts(),
    clock: appContext.clock(),
  });
  return json(created ? 201 : 200, grant);
};

const listGrants: Route = async (event) => {
  const id = workspaceId(event);
  if (!(await appContext.subjects().get(id))) throw new NotFoundError('unknown_workspace', `workspace "${id}" does not exist`);
  return json(200, { grants: await appContext.accounts().listGrants(id) });
};

const listCloses: Route = async (event) => {
  const id = workspaceId(event);
  if (!(await appContext.subjects().get(id))) throw new NotFoundError('unknown_workspace', `workspace "${id}" does not exist`);
  const [cycles, adjustments] = await Promise.all([appContext.accounts().listCycleSnapshots(id), appContext.accounts().listAdjustments(id)]);
  return json(200, { cycles, adjustments });
};

/** The workspace's newest events (best effort: written beside the rollups, kept 7 days). */
const getActivity: Route = async (event) =>
  json(
    200,
    await recentActivity(workspaceId(event), parseQuery(activityQuerySchema, event.queryStringParameters), {
      subjects: appContext.subjects(),
      activity: appContext.activity(),
      clock: appContext.clock(),
    }),
  );

const listQuarantine: Route = async (event) => {
  const items = await appContext.quarantine().list(parseQuery(quarantineQuerySchema, event.queryStringParameters));
  return json(200, { items: items.map(({ reason, detail, receivedAt, body, subject }) => ({ reason, detail, receivedAt, subject, body })) });
};

const analyticsDeps = () => ({
  subjects: appContext.subjects(),
  rollups: appContext.rollups(),
  clock: appContext.clock(),
  usageTypes: appContext.config().usageTypes.map((u) => u.id),
});

const getSummary: Route = async (event) =>
  json(
    200,
    await usageSummary(workspaceId(event), parseQuery(summaryQuerySchema, event.queryStringParameters), {
      config: appContext.config(),
      subjects: appContext.subjects(),
      rollups: appContext.rollups(),
      accounts: appContext.accounts(),
      clock: appContext.clock(),
    }),
  );

const getSeries: Route = async (event) => json(200, await usageSeries(workspaceId(event), parseQuery(seriesQuerySchema, event.queryStringParameters), analyticsDeps()));

const getMemberTop: Route = async (event) => json(200, await topMembers(workspaceId(event), parseQuery(memberTopQuerySchema, event.queryStringParameters), analyticsDeps()));

const getWorkspaceTop: Route = async (event) => json(200, await topWorkspaces(parseQuery(workspaceTopQuerySchema, event.queryStringParameters), analyticsDeps()));

const getReport: Route = async (event) => {
  const id = workspaceId(event);
  const subject = await appContext.subjects().get(id);
  if (!subject) throw new NotFoundError('unknown_workspace', `workspace "${id}" does not exist`);
  const { cycle } = parseQuery(reportQuerySchema, event.queryStringParameters);
  const deps = { config: appContext.config(), rollups: appContext.rollups(), accounts: appContext.accounts(), clock: appContext.clock() };
  return json(200, await buildCycleReport(subject, resolveCycle(cycle, subject, deps.clock.now()), deps));
};

const postExport: Route = async (event, caller) =>
  json(202, await requestExport(parseBody(exportRequestSchema, event.body), callerOf(caller), { exports: appContext.exports(), subjects: appContext.subjects(), clock: appContext.clock() }));

const getExport: Route = async (event, caller) =>
  json(
    200,
    await exportView(pathParameter(event.pathParameters?.exportId ?? ''), callerOf(caller), {
      exports: appContext.exports(),
      downloadUrl: (job) => presignDownload(appContext.s3(), appContext.reportsBucket(), job.key ?? '', `${job.id}.${job.request.format}`),
    }),
  );

const getOpenApi: Route = async () => json(200, openApiDocument());

/** Who the key is: a client signing in with a key learns its scope and, for a workspace key, its workspace. */
const getMe: Route = async (_event, caller) => {
  const { keyId, scope, subject } = callerOf(caller);
  return json(200, { keyId, scope, ...(subject ? { subject } : {}) });
};

const postKey: Route = async (event) => json(201, await createKey(parseBody(keyBodySchema, event.body), { keys: appContext.apiKeys(), subjects: appContext.subjects(), clock: appContext.clock() }));

const getKeys: Route = async () => json(200, { keys: await listKeys({ keys: appContext.apiKeys() }) });

const deleteKey: Route = async (event) => json(200, await revokeKey(pathParameter(event.pathParameters?.keyId ?? ''), { keys: appContext.apiKeys(), clock: appContext.clock() }));

/** 200 with what the move closed, once done within the clock's `answerWithinMs`; else 202 with the move to poll. */
const advanceTestClock: Route = async (event) => {
  const clock = appContext.testClock();
  if (!clock) throw new NotFoundError('route_not_found', 'no route for POST /v1/test-clock');
  const { advanceTo } = parseBody(testClockBodySchema, event.body);
  const { move, finished } = clock.advance(new Date(advanceTo));
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<'waiting'>((resolve) => {
    timer = setTimeout(() => resolve('waiting'), clock.answerWithinMs);
  });
  try {
    const result = await Promise.race([finished, waited]);
    if (result !== 'waiting') return json(200, result);
  } finally {
    clearTimeout(timer);
  }
  const location = `/v1/test-clock/moves/${move.id}`;
  return { ...json(202, { move: { ...move, location } }), headers: { 'content-type': 'application/json', location } };
};

const getTestClockMove: Route = async (event) => {
  const clock = appContext.testClock();
  if (!clock) throw new NotFoundError('route_not_found', 'no route for GET /v1/test-clock/moves/{moveId}');
  const id = pathParameter(event.pathParameters?.moveId ?? '');
  const move = clock.move(id);
  if (!move) throw new NotFoundError('unknown_clock_move', `no test clock move "${id}" (the last 100 are kept)`);
  return json(200, { move });
};

/** The function that serves each route of the contract (functions/contract/routes.ts); every route has one. */
const HANDLERS: Record<RouteKey, Route> = {
  'GET /v1/workspaces/{id}/usage': getUsage,
  'GET /v1/workspaces/{id}/quotas': getQuotas,
  'GET /v1/workspaces/{id}/usage/summary': getSummary,
  'GET /v1/workspaces/{id}/usage/series': getSeries,
  'GET /v1/workspaces/{id}/usage/top': getMemberTop,
  'GET /v1/usage/top': getWorkspaceTop,
  'GET /v1/workspaces/{id}/report': getReport,
  'POST /v1/exports': postExport,
  'GET /v1/exports/{exportId}': getExport,
  'POST /v1/workspaces/{id}/usages': postUsages,
  'PUT /v1/workspaces/{id}': putWorkspaceRoute,
  'GET /v1/workspaces/{id}/grants': listGrants,
  'POST /v1/workspaces/{id}/grants': postGrant,
  'GET /v1/workspaces/{id}/closes': listCloses,
  'GET /v1/workspaces/{id}/activity': getActivity,
  'GET /v1/usage-types': listUsageTypes,
  'GET /v1/me': getMe,
  'GET /v1/usage': getCreditBalance,
  'GET /v1/quarantine': listQuarantine,
  'POST /v1/keys': postKey,
  'GET /v1/keys': getKeys,
  'DELETE /v1/keys/{keyId}': deleteKey,
  'POST /v1/test-clock': advanceTestClock,
  'GET /v1/test-clock/moves/{moveId}': getTestClockMove,
  'GET /openapi.json': getOpenApi,
};

let document: Record<string, unknown> | undefined;
function openApiDocument(): Record<string, unknown> {
  document ??= buildOpenApi(DEPLOYED_ROUTES);
  return document;
}

/** Checks the caller's key against the route's access before the route runs. */
function guarded(access: Access, path: string, handler: Route): (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyResultV2> {
  if (access === 'public') return (event) => handler(event, undefined);
  const perWorkspace = path.startsWith('/v1/workspaces/{id}');
  return async (event) => {
    const principal = await authenticate(event.headers?.authorization, { keys: appContext.apiKeys() });
    authorize(principal, access, perWorkspace ? workspaceId(event) : undefined);
    return handler(event, principal);
  };
}

const router = httpRouterHandler<APIGatewayProxyEventV2, APIGatewayProxyResultV2>({
  routes: ROUTES.map(({ method, path, access }) => ({ method, path, handler: guarded(access, path, HANDLERS[`${method} ${path}` as RouteKey]) })),
  notFoundResponse: ({ method, path }) => {
    throw new NotFoundError('route_not_found', `no route for ${method} ${path}`);
  },
});

export const handler = middy(router).use(injectLambdaContext(logger)).use(decodedBody()).use(httpErrors());
