import type { Clock } from './ports';

/**
 * Runs a job only while holding its lease, so that at most one run of it is under way, whatever invokes it
 * and however often.
 * 1. Take the lease: it is free, expired, or already this holder's; else the run does nothing.
 * 2. Run the job.
 * 3. Give the lease back, if it is still this holder's.
 * A run that dies holding it blocks the job until it expires, so a lease must outlast the longest run.
 */

export interface LeaseStore {
  /** Takes `name` for `holder` until `expiresAt` unless another holder's lease is still valid at `now`; true if taken. */
  acquire(name: string, holder: string, now: Date, expiresAt: Date): Promise<boolean>;
  /** Gives `name` back if `holder` still holds it (an expired lease another holder took stays theirs). */
  release(name: string, holder: string): Promise<void>;
}

export type Exclusive<T> = { ran: true; value: T } | { ran: false };

export async function runExclusive<T>(lease: { name: string; holder: string; durationMs: number }, deps: { leases: LeaseStore; clock: Clock }, job: () => Promise<T>): Promise<Exclusive<T>> {
  const now = deps.clock.now();
  if (!(await deps.leases.acquire(lease.name, lease.holder, now, new Date(now.getTime() + lease.durationMs)))) return { ran: false };
  try {
    return { ran: true, value: await job() };
  } finally {
    await deps.leases.release(lease.name, lease.holder);
  }
}
