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
