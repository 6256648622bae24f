import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { ConflictError, DependencyError, DomainError, ForbiddenError, InvalidRequestError, NotFoundError, UnauthorizedError } from '../core/errors';
import { stringifyExactJson } from '../core/exact-json';
import { logger } from './observability';

/** The one place where errors become HTTP responses. Anything unknown is a 500 that reveals nothing. */
export function statusOf(error: unknown): number {
  if (error instanceof InvalidRequestError) return 400;
  if (error instanceof UnauthorizedError) return 401;
  if (error instanceof ForbiddenError) return 403;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof ConflictError) return 409;
  if (error instanceof DependencyError) return error.retryable ? 503 : 502;
  return 500;
}

export function errorResponse(error: unknown): APIGatewayProxyResultV2 {
  const status = statusOf(error);
  if (status === 500 || !(error instanceof DomainError)) {
    logger.error('request failed', { error: error as Error });
    return json(500, { error: { code: 'internal_error', message: 'The request could not be completed.' } });
  }
  if (status >= 500) logger.error('a service the request depends on failed', { error });
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

/**
 * API Gateway's HTTP API passes a body whose content type it does not treat as text base64-encoded, with
 * `isBase64Encoded: true`. Decoded here, before any route, so every route reads the text the client sent;
 * bytes that are not UTF-8 are a 400, never text with replacement characters.
 */
export function decodedBody(): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    before: async (request) => {
      const { event } = request;
      if (!event.isBase64Encoded || event.body === undefined) return;
      request.event = { ...event, body: base64Text(event.body), isBase64Encoded: false };
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function base64Text(body: string): string {
  try {
    return utf8.decode(Buffer.from(body, 'base64'));
  } catch {
    throw new InvalidRequestError('invalid_json', 'the request body is not UTF-8 text');
  }
}
