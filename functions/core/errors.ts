/** Errors that cross into responses carry a stable machine-readable code; the HTTP edge maps them to status. */
export abstract class DomainError extends Error {
  abstract readonly code: string;
}

export class InvalidRequestError extends DomainError {
  override readonly name = 'InvalidRequestError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class NotFoundError extends DomainError {
  override readonly name = 'NotFoundError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class ConflictError extends DomainError {
  override readonly name = 'ConflictError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** No key, or a key that is unknown or revoked. */
export class UnauthorizedError extends DomainError {
  override readonly name = 'UnauthorizedError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A valid key whose scope or workspace does not cover the request. */
export class ForbiddenError extends DomainError {
  override readonly name = 'ForbiddenError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
