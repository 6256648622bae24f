import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { ConflictError, DomainError, InvalidRequestError, NotFoundError } from '../core/errors';
import { logger } from './observability';

/** The one place where errors become HTTP responses. Anything unknown is a 500 that reveals nothing. */
export function statusOf(error: unknown): number {
  if (error instanceof InvalidRequestError) return 400;
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
  return json(status, { error: { code: error.code, message: error.message } });
}

export function json(statusCode: number, body: unknown): APIGatewayProxyResultV2 {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

export function httpErrors(): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    onError: async (request) => {
      request.response = errorResponse(request.error);
    },
  };
}
