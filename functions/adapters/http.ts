import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { ConflictError, DomainError, ForbiddenError, InvalidRequestError, NotFoundError, UnauthorizedError } from '../core/errors';
import { stringifyExactJson } from '../core/exact-json';
import { logger } from './observability';

/** The one place where errors become HTTP responses. Anything unknown is a 500 that reveals nothing. */
export function statusOf(error: unknown): number {
  if (error instanceof InvalidRequestError) return 400;
  if (error instanceof UnauthorizedError) return 401;
  if (error instanceof ForbiddenError) return 403;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof ConflictError) return 409;
  return 500;
}

export function errorResponse(error: unknown): APIGatewayProxyResultV2 {
  const status = statusOf(error);
  if (status === 500 || !(error instanceof DomainError)) {
    logger.error('request failed', { error: error as Error });
    return json(500, { error: { code: 'internal_error', message: 'The request could not be completed.' } });
  }
  const response = json(status, { error: { code: error.code, message: error.message } });
  if (status === 401) response.headers = { ...response.headers, 'www-authenticate': 'Bearer' };
  return response;
}

/** Amounts past what a double holds exactly are written as their exact number tokens (core/quantity.ts, toAmount). */
export function json(statusCode: number, body: unknown): APIGatewayProxyStructuredResultV2 {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: stringifyExactJson(body) };
}

export function httpErrors(): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    onError: async (request) => {
      request.response = errorResponse(request.error);
    },
  };
}
