import { InvalidRequestError } from '../functions/core/errors';

/**
 * The local notion of now: the wall clock plus an offset, set by where the clock starts and grown by
 * `POST /v1/test-clock`, never shrunk. Ingest validation, quotas and closes all read it.
 */
export class LocalClock {
  private offsetMs: number;
  constructor(start?: Date) {
    this.offsetMs = start ? start.getTime() - Date.now() : 0;
  }
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advanceTo(instant: Date): void {
    this.refuseBackwards(instant);
    this.offsetMs = instant.getTime() - Date.now();
  }
  /** Throws clock_backwards if `instant` is before now: a move that advanceTo would refuse, checked before any wait. */
  refuseBackwards(instant: Date): void {
    if (instant.getTime() - Date.now() < this.offsetMs) throw new InvalidRequestError('clock_backwards', `the clock is at ${this.now().toISOString()}; it only moves forward`);
  }
}
