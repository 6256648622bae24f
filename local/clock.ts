import { randomUUID } from 'node:crypto';
import type { TestClockMove } from '../functions/adapters/app-context';
import { DomainError, InvalidRequestError } from '../functions/core/errors';

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

/** Moves of the test clock kept for a caller to ask how they ended; older ones are forgotten. */
export const MOVES_KEPT = 100;

/**
 * Moves of the test clock as jobs, run one at a time in the order asked: a move that closes a month of many
 * workspaces outlasts any HTTP timeout, so `POST /v1/test-clock` can answer with the job and let the caller poll.
 */
export class TestClockMoves {
  private readonly moves = new Map<string, TestClockMove>();
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly move: (instant: Date) => Promise<unknown>) {}

  /** Queues a move; `finished` resolves with its result or rejects with its error. */
  start(instant: Date): { move: TestClockMove; finished: Promise<unknown> } {
    const move: TestClockMove = { id: randomUUID(), advanceTo: instant.toISOString(), status: 'running' };
    this.moves.set(move.id, move);
    for (const id of this.moves.keys()) if (this.moves.size > MOVES_KEPT) this.moves.delete(id);
    const finished = this.last.then(() => this.move(instant));
    this.last = finished.then(
      (result) => Object.assign(move, { status: 'done', result }),
      (error: unknown) => Object.assign(move, { status: 'failed', error: errorBody(error) }),
    );
    return { move, finished };
  }

  get(id: string): TestClockMove | undefined {
    return this.moves.get(id);
  }
}

function errorBody(error: unknown): { code: string; message: string } {
  return { code: error instanceof DomainError ? error.code : 'internal_error', message: error instanceof Error ? error.message : String(error) };
}

/**
 * Moves the test clock through the API as a client would, and resolves with what the move closed: at once on a
 * 200, or by polling the move a 202 answered with until it is done.
 */
export async function moveTestClock(api: string, key: string, advanceTo: string, pollMs = 500): Promise<unknown> {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const response = await fetch(`${api}/v1/test-clock`, { method: 'POST', headers, body: JSON.stringify({ advanceTo }) });
  const body = (await response.json()) as { move?: TestClockMove & { location: string } };
  if (response.status === 200) return body;
  if (response.status !== 202 || !body.move) throw new Error(`POST /v1/test-clock: ${response.status} ${JSON.stringify(body)}`);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    const { move } = (await (await fetch(`${api}${body.move.location}`, { headers })).json()) as { move: TestClockMove };
    if (move.status === 'done') return move.result;
    if (move.status === 'failed') throw new Error(`the test clock move to ${advanceTo} failed: ${move.error?.code}: ${move.error?.message}`);
  }
}
