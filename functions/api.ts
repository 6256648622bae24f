import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpRouterHandler from '@middy/http-router';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { appContext } from './adapters/app-context';
import { httpErrors, json } from './adapters/http';
import { logger } from './adapters/observability';
import { InvalidRequestError, NotFoundError } from './core/errors';
import { parseUsageQuery, queryUsage } from './core/usage';

type Route = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyResultV2>;

const getUsage: Route = async (event) => {
  const subject = event.pathParameters?.id;
  if (!subject) throw new NotFoundError('unknown_workspace', 'workspace id is missing');
  const query = parseUsageQuery(event.queryStringParameters ?? {});
  return json(200, await queryUsage(decodeURIComponent(subject), query, { subjects: appContext.subjects(), rollups: appContext.rollups() }));
};

const quarantineQuery = z.object({
  subject: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const listQuarantine: Route = async (event) => {
  const parsed = quarantineQuery.safeParse(event.queryStringParameters ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidRequestError('invalid_parameter', `${issue?.path.join('.') || 'query'}: ${issue?.message ?? 'invalid'}`);
  }
  const items = await appContext.quarantine().list(parsed.data);
  return json(200, { items: items.map(({ reason, detail, receivedAt, body, subject }) => ({ reason, detail, receivedAt, subject, body })) });
};

const router = httpRouterHandler<APIGatewayProxyEventV2, APIGatewayProxyResultV2>({
  routes: [
    { method: 'GET', path: '/v1/workspaces/{id}/usage', handler: getUsage },
    { method: 'GET', path: '/v1/quarantine', handler: listQuarantine },
  ],
  notFoundResponse: ({ method, path }) => {
    throw new NotFoundError('route_not_found', `no route for ${method} ${path}`);
  },
});

export const handler = middy(router).use(injectLambdaContext(logger)).use(httpErrors());
