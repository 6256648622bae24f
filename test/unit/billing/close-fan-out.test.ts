import { describe, expect, test } from '@jest/globals';
import { closeClaimed, closeSubject, dispatchDueCloses, writeDueSummaries } from '../../../functions/core/billing/closes';
import { type Config, configSchema } from '../../../functions/core/config';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryAccounts, InMemoryCloseClaims, InMemoryReports, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * The parts of the fanned-out close: what the scheduler sends, the claim a worker closes under, when a workspace
 * is next due, and the summary marks that a close noting them keeps due. Expected instants are worked out by
 * hand from the time zones' rules (in the comments), not by calling the code under test.
 */

const config: Config = configSchema.parse({
  usageTypes: [{ id: 'tokens', unit: 'token' }],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1000 } } }],
  closes: { graceMinutes: 60 },
});
const MINUTE = 60_000;

const workspace = (id: string, timeZone: string, createdAt: string): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone, contacts: [], createdAt });

function world(subjects: Subject[], now: string) {
  const store = new InMemorySubjectStore(subjects);
  const clock = new FixedClock(now);
  const deps = { config, rollups: new InMemoryRollupReader(), accounts: new InMemoryAccounts(), reports: new InMemoryReports(), clock, claims: new InMemoryCloseClaims(store) };
  return { store, clock, deps };
}

describe('when a workspace is next due', () => {
  test.each([
    // Created on Feb 28 2028 (UTC), closed on Mar 1 at 01:00: Feb 28 and the leap day Feb 29 close; Mar 1 is open and ends at Mar 2 00:00Z.
    ['UTC over a leap day', 'UTC', '2028-02-28T10:00:00.000Z', '2028-03-01T01:00:00.000Z', 2, '2028-03-02T00:00:00.000Z'],
    // New York leaves daylight time at 02:00 on Nov 1 2026 (EDT, UTC−4 → EST, UTC−5). Created Oct 31 (EDT); at 06:00Z on Nov 2
    // Oct 31 (ends 04:00Z Nov 1) and Nov 1 (25 hours, ends 05:00Z Nov 2) are closed; Nov 2 ends at 05:00Z Nov 3.
    ['New York across the end of daylight time', 'America/New_York', '2026-10-31T15:00:00.000Z', '2026-11-02T06:00:00.000Z', 2, '2026-11-03T05:00:00.000Z'],
    // Berlin starts summer time at 02:00 on Mar 28 2027 (CET, UTC+1 → CEST, UTC+2). Created Mar 27 (CET); at 23:00Z on Mar 28
    // Mar 27 (ends 23:00Z Mar 27) closes, Mar 28 (23 hours) ends at 22:00Z Mar 28 but is in its grace hour until 23:00Z: closed at 23:00Z.
    ['Berlin across the start of summer time', 'Europe/Berlin', '2027-03-27T09:00:00.000Z', '2027-03-28T23:00:00.000Z', 2, '2027-03-29T22:00:00.000Z'],
  ])('%s: the end of the first day still open', async (_label, timeZone, createdAt, now, daysClosed, nextDueAt) => {
    // Arrange
    const subject = workspace('ws_next', timeZone, createdAt);
    const { deps } = world([subject], now);

    // Act
    const close = await closeSubject(subject, deps);

    // Assert
    expect(close.daysClosed).toBe(daysClosed);
    expect(close.nextDueAt).toBe(nextDueAt);
  });
});

describe('the scheduler run', () => {
  test('sends exactly the workspaces whose next day ended before now minus the grace period', async () => {
    // Arrange: now 10:00Z, grace 60 min → due if nextDueAt ≤ 09:00Z
    const now = '2027-06-10T10:00:00.000Z';
    const ids = ['ws_a', 'ws_b', 'ws_c', 'ws_d'];
    const { deps } = world(
      ids.map((id) => workspace(id, 'UTC', '2027-06-01T00:00:00.000Z')),
      now,
    );
    deps.claims.nextDueAt.set('ws_a', '2027-06-10T00:00:00.000Z'); // due
    deps.claims.nextDueAt.set('ws_b', '2027-06-10T09:00:00.000Z'); // due at exactly the bound
    deps.claims.nextDueAt.set('ws_c', '2027-06-10T09:00:00.001Z'); // still in its grace
    deps.claims.nextDueAt.set('ws_d', '2027-06-11T00:00:00.000Z'); // not ended
    const sent: string[] = [];

    // Act
    const run = await dispatchDueCloses({ ...deps, queue: { send: async (batch) => void sent.push(...batch) } });

    // Assert
    expect(sent.sort()).toEqual(['ws_a', 'ws_b']);
    expect(run).toEqual({ now, dispatched: 2, summaries: [] });
  });
});

describe('a close under a claim', () => {
  test('a workspace another worker holds is left to it, untouched; once that claim has expired it is closed', async () => {
    // Arrange
    const subject = workspace('ws_held', 'UTC', '2027-06-01T12:00:00.000Z');
    const { deps, clock } = world([subject], '2027-06-03T01:00:00.000Z');
    await deps.claims.claim('ws_held', 'other-worker', clock.now(), new Date(clock.now().getTime() + 10 * MINUTE));

    // Act
    const whileHeld = await closeClaimed('ws_held', 'this-worker', 5 * MINUTE, deps);
    const snapshotsWhileHeld = await deps.accounts.lastDaySnapshot('ws_held');
    clock.set('2027-06-03T01:10:00.000Z'); // the other claim ends now
    const afterExpiry = await closeClaimed('ws_held', 'this-worker', 5 * MINUTE, deps);

    // Assert: Jun 1 and Jun 2 close; Jun 3 ends at Jun 4 00:00Z
    expect(whileHeld).toBe('held');
    expect(snapshotsWhileHeld).toBeUndefined();
    expect(afterExpiry).toMatchObject({ daysClosed: 2, nextDueAt: '2027-06-04T00:00:00.000Z' });
    expect(deps.claims.nextDueAt.get('ws_held')).toBe('2027-06-04T00:00:00.000Z');
    expect(deps.claims.claims.has('ws_held')).toBe(false);
  });

  test('a close that fails gives its claim back at once and leaves the workspace due, so that a retry closes it', async () => {
    // Arrange: the day close's read fails once
    const subject = workspace('ws_fails', 'UTC', '2027-06-01T12:00:00.000Z');
    const { deps } = world([subject], '2027-06-03T01:00:00.000Z');
    const query = deps.rollups.query.bind(deps.rollups);
    let failures = 1;
    deps.rollups.query = async (...args) => {
      if (failures-- > 0) throw new Error('injected read failure');
      return query(...args);
    };

    // Act
    const failed = await closeClaimed('ws_fails', 'worker-1', 5 * MINUTE, deps).catch((error: unknown) => error);
    const dueAfterFailure = deps.claims.nextDueAt.get('ws_fails');
    const retried = await closeClaimed('ws_fails', 'worker-2', 5 * MINUTE, deps);

    // Assert
    expect(failed).toEqual(new Error('injected read failure'));
    expect(dueAfterFailure).toBe('1970-01-01T00:00:00.000Z');
    expect(retried).toMatchObject({ daysClosed: 2, nextDueAt: '2027-06-04T00:00:00.000Z' });
  });
});

describe('the cycle summaries', () => {
  test('a summary whose cycle start a close notes again while it is written stays due, and the next run writes it whole', async () => {
    // Arrange: two workspaces close the May cycle; the second finishes while the summary of the first is being written
    const may = '2027-05-01T00:00:00.000Z';
    const subjects = [workspace('ws_first', 'UTC', '2027-05-20T00:00:00.000Z'), workspace('ws_second', 'UTC', '2027-05-20T00:00:00.000Z')];
    const { deps } = world(subjects, '2027-06-01T01:00:00.000Z');
    await closeSubject(subjects[0] as Subject, deps);
    const list = deps.reports.listCycleReports.bind(deps.reports);
    let concurrentClose: Promise<unknown> | undefined;
    deps.reports.listCycleReports = (cycleStart) => {
      concurrentClose ??= closeSubject(subjects[1] as Subject, deps); // starts after the marks were read
      return list(cycleStart);
    };

    // Act
    await writeDueSummaries(deps);
    await concurrentClose;
    const dueAfterFirst = (await deps.accounts.summariesDue()).map((d) => d.cycleStart);
    deps.reports.listCycleReports = list;
    await writeDueSummaries(deps);

    // Assert
    expect(dueAfterFirst).toEqual([may]);
    expect(await deps.accounts.summariesDue()).toEqual([]);
    const summary = deps.reports.objects.get(`reports/${may}/_summary.json`) as { subjects?: unknown[]; reports?: unknown[] };
    expect(JSON.stringify(summary)).toContain('ws_first');
    expect(JSON.stringify(summary)).toContain('ws_second');
  });
});
