import { describe, expect, test } from '@jest/globals';
import { type LeaseStore, runExclusive } from '../../functions/core/lease';
import { FixedClock } from '../support/fakes';

/** One lease per name, as the DynamoDB adapter keeps it: held until it expires or its holder gives it back. */
class InMemoryLeases implements LeaseStore {
  readonly held = new Map<string, { holder: string; expiresAt: Date }>();

  async acquire(name: string, holder: string, now: Date, expiresAt: Date): Promise<boolean> {
    const current = this.held.get(name);
    if (current && current.holder !== holder && current.expiresAt > now) return false;
    this.held.set(name, { holder, expiresAt });
    return true;
  }

  async release(name: string, holder: string): Promise<void> {
    if (this.held.get(name)?.holder === holder) this.held.delete(name);
  }
}

const START_ISO = '2028-02-29T23:30:00Z';
const START = new Date(START_ISO);
const LEASE = { name: 'close-due', holder: 'run-a', durationMs: 960_000 };

describe('runExclusive', () => {
  test('runs the job while holding the lease for its duration, then gives it back', async () => {
    // Arrange
    const leases = new InMemoryLeases();
    let heldDuringJob: { holder: string; expiresAt: Date } | undefined;

    // Act
    const result = await runExclusive(LEASE, { leases, clock: new FixedClock(START_ISO) }, async () => {
      heldDuringJob = leases.held.get('close-due');
      return 'closed';
    });

    // Assert
    expect(result).toEqual({ ran: true, value: 'closed' });
    expect(heldDuringJob).toEqual({ holder: 'run-a', expiresAt: new Date('2028-02-29T23:46:00Z') });
    expect(leases.held.size).toBe(0);
  });

  test('does not run the job while another holder has the lease', async () => {
    // Arrange
    const leases = new InMemoryLeases();
    await leases.acquire('close-due', 'run-b', START, new Date(START.getTime() + 60_000));
    let ran = false;

    // Act
    const result = await runExclusive(LEASE, { leases, clock: new FixedClock(START_ISO) }, async () => {
      ran = true;
    });

    // Assert
    expect([result, ran]).toEqual([{ ran: false }, false]);
    expect(leases.held.get('close-due')?.holder).toBe('run-b');
  });

  test('gives the lease back when the job fails, and the failure reaches the caller', async () => {
    // Arrange
    const leases = new InMemoryLeases();

    // Act
    const run = runExclusive(LEASE, { leases, clock: new FixedClock(START_ISO) }, async () => {
      throw new Error('DynamoDB unreachable');
    });

    // Assert
    await expect(run).rejects.toThrow('DynamoDB unreachable');
    expect(leases.held.size).toBe(0);
  });
});
