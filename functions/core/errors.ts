import type { RejectionReason } from './metering/envelope';

/**
 * Every code a request can be refused with, beside the reasons an event is rejected for (REJECTION_REASONS,
 * which POST …/usages answers with too). The bad-input catalog in docs/events.md lists each; a test holds the two together.
 */
export const ERROR_CODES = [
  'invalid_parameter',
  'invalid_json',
  'range_too_large',
  'invalid_cursor',
  'subject_mismatch',
  'too_many_events',
  'unknown_plan',
  'unknown_usage_type',
  'clock_backwards',
  'missing_api_key',
  'invalid_api_key',
  'forbidden_scope',
  'forbidden_workspace',
  'unknown_workspace',
  'unknown_api_key',
  'unknown_export',
  'unknown_clock_move',
  'route_not_found',
  'billing_anchor_fixed',
  'queue_refused',
  'queue_unavailable',
  'internal_error',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number] | RejectionReason;

/** Errors that cross into responses carry a stable machine-readable code; the HTTP edge maps them to status. */
export abstract class DomainError extends Error {
  abstract readonly code: ErrorCode;
}

export class InvalidRequestError extends DomainError {
  override readonly name = 'InvalidRequestError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class NotFoundError extends DomainError {
  override readonly name = 'NotFoundError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class ConflictError extends DomainError {
  override readonly name = 'ConflictError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** No key, or a key that is unknown or revoked. */
export class UnauthorizedError extends DomainError {
  override readonly name = 'UnauthorizedError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A valid key whose scope or workspace does not cover the request. */
export class ForbiddenError extends DomainError {
  override readonly name = 'ForbiddenError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A service the request depends on refused it or could not be reached; nothing in the request was wrong.
 * Retryable: the same request may get through later (503); otherwise the service refused what it was sent (502).
 */
export class DependencyError extends DomainError {
  override readonly name = 'DependencyError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}
