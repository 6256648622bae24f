import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import type { AccountStore } from '../../functions/core/billing/billing-ports';
import { runDueCloses } from '../../functions/core/billing/closes';
import type { Subject } from '../../functions/core/ports';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import type { TestEvent } from '../../testkit/ground-truth';
import { utcCycleStart } from '../../testkit/ground-truth';
import { checkResponse } from '../support/api-contract';
import { FixedClock } from '../support/fakes';
import { ADMIN_KEY, bearer, StackClient } from '../support/local-stack';

/**
 * Quotas across two cycle closes, driven like a customer would: events over SQS and the API, grants over
 * the API, the test clock moved forward over HTTP. After each step every quota field must equal this
 * file's own computation from the formulas (written here again, not imported).
 */

const MINUTE = 60_000;
const DAY = 86_400_000;

interface PlanQuota {
  limit: number;
  daily?: number;
  fairUse?: number;
  spillover: 'all' | 'none' | { cap: number };
  overage: 'block' | 'allow';
}
/** test/fixtures/quota-config.json, restated. */
const PLANS: Record<string, Record<string, PlanQuota>> = {
  starter: {
    credits: { limit: 10, fairUse: 12, spillover: { cap: 4 }, overage: 'allow' },
    tokens: { limit: 1000, daily: 400, spillover: 'all', overage: 'block' },
  },
  flex: { tokens: { limit: 500, fairUse: 600, spillover: { cap: 200 }, overage: 'allow' } },
};
const WORKSPACES = { ws_q1: { plan: 'starter', anchor: 1 }, ws_q31: { plan: 'flex', anchor: 31 } } as const;
type Workspace = keyof typeof WORKSPACES;

/** Amounts in thousandths, so that sums of the fractional credits stay exact. */
const k = (n: number) => Math.round(n * 1000);
const fromK = (n: number) => n / 1000;

function cycleOf(instant: Date, anchor: number) {
  const start = utcCycleStart(instant, anchor);
  return { start: start.toISOString(), end: utcCycleStart(new Date(start.getTime() + 32 * DAY), anchor).toISOString() };
}

/** What the workspace holds going into a cycle: spillover carried in and bonus credits, per usage type. */
type Holdings = Record<string, { spilloverIn: number; bonus: number }>;

/** The quota entry the formulas give, for one usage type. */
function expectedQuota(quota: PlanQuota, used: number, usedDaily: number, held: { spilloverIn: number; bonus: number }, cycle: { start: string; end: string }, requests: number) {
  const L = k(quota.limit);
  const S = held.spilloverIn;
  const overflow = Math.max(0, used - (L + S));
  const bonus = Math.max(0, held.bonus - overflow);
  const available = Math.max(0, L + S - used) + bonus;
  return {
    limitAmount: quota.limit,
    dailyLimitAmount: quota.daily ?? null,
    usedAmount: fromK(used),
    usedAmountDaily: fromK(usedDaily),
    availableAmount: fromK(available),
    bonusAmount: fromK(bonus),
    // Only bonus credits are granted here, no top-up.
    topupAmount: 0,
    spilloverAmount: fromK(S),
    requests,
    fairUseLimitReached: quota.fairUse !== undefined && used >= k(quota.fairUse),
    canUse: !(available === 0 && quota.overage === 'block') && !(quota.daily !== undefined && usedDaily >= k(quota.daily)),
    cycleStart: cycle.start,
    cycleEnd: cycle.end,
  };
}

/** Holdings carried into the next cycle: spillover by policy, bonus less what the overflow drew. */
function carryOver(quota: PlanQuota, used: number, held: { spilloverIn: number; bonus: number }) {
  const L = k(quota.limit);
  const unused = Math.max(0, L - Math.max(0, used - held.spilloverIn));
  const spilloverOut = quota.spillover === 'all' ? unused : quota.spillover === 'none' ? 0 : Math.min(k(quota.spillover.cap), unused);
  return { spilloverIn: spilloverOut, bonus: Math.max(0, held.bonus - Math.max(0, used - (L + held.spilloverIn))) };
}

let stack: LocalStack;
let client: StackClient;
let documents: ReturnType<typeof createDocumentClient> | undefined;
const sent: TestEvent[] = [];
let sequence = 0;

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/quota-config.json', visibilityTimeoutSeconds: 8, onError: () => undefined });
  client = new StackClient(stack);
});

afterAll(async () => {
  documents?.destroy();
  client?.close();
  await stack?.stop();
});

/** A JSON response body; each use states the shape it expects. */
type Body = Record<string, unknown>;

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Body }> {
  const response = await fetch(`${stack.ready.api}${path}`, { method, headers: bearer(ADMIN_KEY), ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const parsed = (await response.json()) as Body;
  if (path !== '/v1/test-clock') checkResponse(method, path, response.status, parsed);
  return { status: response.status, body: parsed };
}

/** Splits `total` (thousandths) into `parts` events at times spread over [from, to]. */
function eventsFor(subject: string, usageType: string, total: number, parts: number, from: number, to: number): TestEvent[] {
  const events: TestEvent[] = [];
  let left = total;
  for (let i = 0; i < parts; i++) {
    const quantity = i === parts - 1 ? left : Math.floor(total / parts / (usageType === 'tokens' ? 1000 : 250)) * (usageType === 'tokens' ? 1000 : 250);
    left -= quantity;
    sequence += 1;
    const time = new Date(from + Math.floor(((to - from) * ((i * 7919) % parts)) / Math.max(1, parts - 1)));
    events.push(usageEvent({ id: `q-${sequence}`, source: '//test/quotas', subject, time, usageType, quantity: fromK(quantity) }));
  }
  return events;
}

/** Sends over SQS (with a duplicate of every fifth event) and, for a few, through POST /usages. */
async function send(events: TestEvent[]): Promise<void> {
  const viaApi = events.filter((_, i) => i % 4 === 0);
  const viaSqs = events.filter((_, i) => i % 4 !== 0);
  await client.send([...viaSqs, ...viaSqs.filter((_, i) => i % 5 === 0)].map((e) => JSON.stringify(e)));
  for (const event of viaApi) {
    // The workspace comes from the path; the event leaves `subject` out.
    const response = await call('POST', `/v1/workspaces/${event.subject}/usages`, { ...event, subject: undefined });
    expect(response).toEqual({ status: 202, body: { events: [{ source: event.source, id: event.id }] } });
  }
  sent.push(...events);
}

function sentIn(subject: string, usageType: string, cycle: { start: string; end: string }, day?: string): TestEvent[] {
  return sent.filter((e) => e.subject === subject && e.data.usageType === usageType && e.time >= cycle.start && e.time < cycle.end && (!day || e.time.startsWith(day)));
}

function usedIn(subject: string, usageType: string, cycle: { start: string; end: string }, day?: string): number {
  return sentIn(subject, usageType, cycle, day).reduce((sum, e) => sum + k(e.data.quantity), 0);
}

async function expectQuotas(subject: Workspace, holdings: Holdings): Promise<void> {
  await stack.settle();
  const now = stack.clock.now();
  const cycle = cycleOf(now, WORKSPACES[subject].anchor);
  const today = now.toISOString().slice(0, 10);
  const plan = PLANS[WORKSPACES[subject].plan] ?? {};
  const expected = Object.entries(plan)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([usageType, quota]) => ({
      usageType,
      ...expectedQuota(
        quota,
        usedIn(subject, usageType, cycle),
        usedIn(subject, usageType, cycle, today),
        holdings[usageType] ?? { spilloverIn: 0, bonus: 0 },
        cycle,
        sentIn(subject, usageType, cycle).length,
      ),
    }));
  const { status, body } = await call('GET', `/v1/workspaces/${subject}/quotas`);
  expect(status).toBe(200);
  expect({ subject, quotas: (body as { quotas: unknown }).quotas }).toEqual({ subject, quotas: expected });
}

function carryAll(subject: Workspace, holdings: Holdings, cycle: { start: string; end: string }): Holdings {
  const plan = PLANS[WORKSPACES[subject].plan] ?? {};
  return Object.fromEntries(Object.entries(plan).map(([usageType, quota]) => [usageType, carryOver(quota, usedIn(subject, usageType, cycle), holdings[usageType] ?? { spilloverIn: 0, bonus: 0 })]));
}

/** Every Accounts item of a subject, as stored, with the subject's id taken out so two subjects compare. */
async function accountItems(subject: string): Promise<unknown[]> {
  documents ??= createDocumentClient();
  const { Items = [] } = await documents.send(
    new QueryCommand({ TableName: stack.tables.accounts, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': subject }, ConsistentRead: true }),
  );
  return JSON.parse(JSON.stringify(Items).replaceAll(`"${subject}"`, '"<subject>"'));
}

/** The store with a crash injected right after its n-th write. */
function crashAfterWrite(inner: AccountStore, n: number): AccountStore {
  let writes = 0;
  const written = async <T>(result: Promise<T>): Promise<T> => {
    const value = await result;
    if (++writes === n) throw new Error(`injected crash after write ${n}`);
    return value;
  };
  return {
    listGrants: (s) => inner.listGrants(s),
    balanceRecords: (s) => inner.balanceRecords(s),
    listCycleSnapshots: (s) => inner.listCycleSnapshots(s),
    lastDaySnapshot: (s) => inner.lastDaySnapshot(s),
    listAdjustments: (s) => inner.listAdjustments(s),
    putGrant: (g) => written(inner.putGrant(g)),
    freezeCycle: (s) => written(inner.freezeCycle(s)),
    markCycleClosed: (s, c) => written(inner.markCycleClosed(s, c)),
    freezeDay: (s) => written(inner.freezeDay(s)),
    putAdjustment: (a) => written(inner.putAdjustment(a)),
    summariesDue: () => inner.summariesDue(),
    markSummaryDue: (c, s) => written(inner.markSummaryDue(c, s)),
    clearSummaryDue: (c) => written(inner.clearSummaryDue(c)),
  };
}

// Runs first, while the clock is still at the wall clock and the local scheduler has closed nothing.
describe('a cycle close on DynamoDB Local', () => {
  test('a crash after any of its writes, then a re-run, leaves what an uninterrupted close leaves; a second run changes nothing', async () => {
    // Arrange: five workspaces with the same usage
    const start = stack.clock.now().getTime();
    const cycle = cycleOf(new Date(start), 1);
    const twins = ['ws_crash_ref', 'ws_crash_1', 'ws_crash_2', 'ws_crash_3', 'ws_crash_4'];
    for (const subject of twins) {
      await send([...eventsFor(subject, 'tokens', k(600), 4, Date.parse(cycle.start), start - MINUTE), ...eventsFor(subject, 'credits', k(3), 2, Date.parse(cycle.start), start - MINUTE)]);
    }
    await stack.settle();
    const clock = new FixedClock(new Date(Date.parse(cycle.end) + 61 * MINUTE).toISOString());
    const closeOnly = async (subject: string, accounts: AccountStore) => {
      const found = (await appContext.subjects().get(subject)) as Subject;
      return runDueCloses({ config: stack.config, subjects: { list: async () => [found] }, rollups: appContext.rollups(), accounts, reports: appContext.reports(), clock });
    };

    // Act
    await closeOnly('ws_crash_ref', appContext.accounts());
    const reference = await accountItems('ws_crash_ref');
    await closeOnly('ws_crash_ref', appContext.accounts());
    // writes 1-4: the cycle snapshot, spillover of credits and of tokens, the closed mark
    for (const [n, subject] of ['ws_crash_1', 'ws_crash_2', 'ws_crash_3', 'ws_crash_4'].entries()) {
      await expect(closeOnly(subject, crashAfterWrite(appContext.accounts(), n + 1))).rejects.toThrow('injected crash');
      await closeOnly(subject, appContext.accounts());
    }

    // Assert
    expect(await accountItems('ws_crash_ref')).toEqual(reference);
    type Usage = Record<string, { used: string; spilloverIn: string; spilloverOut: string }>;
    const usage = (reference as { sk: string; snapshot?: { usage: Usage } }[]).find((i) => i.sk === `C#${cycle.start}`)?.snapshot?.usage ?? {};
    for (const [usageType, used] of [
      ['tokens', 600],
      ['credits', 3],
    ] as const) {
      const quota = PLANS.starter?.[usageType] as PlanQuota;
      const spilloverIn = k(Number(usage[usageType]?.spilloverIn));
      expect({ usageType, used: usage[usageType]?.used, spilloverOut: usage[usageType]?.spilloverOut }).toEqual({
        usageType,
        used: String(used),
        spilloverOut: String(fromK(carryOver(quota, k(used), { spilloverIn, bonus: 0 }).spilloverIn)),
      });
    }
    for (const subject of ['ws_crash_1', 'ws_crash_2', 'ws_crash_3', 'ws_crash_4']) expect({ subject, items: await accountItems(subject) }).toEqual({ subject, items: reference });
  });
});

describe('quotas through two cycle closes on the local stack', () => {
  test('every quota field equals its own computation after each step', async () => {
    // Arrange, cycle 1: ws_q1 goes over its daily token limit today and over its credit allowance into
    // its bonus; ws_q31 uses its whole allowance and its bonus and goes on (overage allow).
    const start = stack.clock.now().getTime();
    const c1 = { ws_q1: cycleOf(new Date(start), 1), ws_q31: cycleOf(new Date(start), 31) };
    const earlier = (cycle: { start: string }) => [Date.parse(cycle.start), Math.max(Date.parse(cycle.start), start - 10 * MINUTE)] as const;
    const todayStart = Math.max(Date.parse(`${new Date(start).toISOString().slice(0, 10)}T00:00:00.000Z`), Date.parse(c1.ws_q1.start));
    await send([
      ...eventsFor('ws_q1', 'tokens', k(280), 6, ...earlier(c1.ws_q1)),
      ...eventsFor('ws_q1', 'tokens', k(420), 5, Math.max(todayStart, start - 5 * MINUTE), start - MINUTE),
      ...eventsFor('ws_q1', 'credits', k(13.5), 7, ...earlier(c1.ws_q1)),
      ...eventsFor('ws_q31', 'tokens', k(650), 9, ...earlier(c1.ws_q31)),
    ]);
    const grant = { id: 'welcome', kind: 'bonus', usageType: 'credits', amount: 5 };
    expect(await call('POST', '/v1/workspaces/ws_q1/grants', grant)).toMatchObject({ status: 201, body: { id: 'welcome', amount: '5' } });
    expect(await call('POST', '/v1/workspaces/ws_q1/grants', { ...grant, amount: 500 })).toMatchObject({ status: 200, body: { amount: '5' } });
    expect(await call('POST', '/v1/workspaces/ws_q31/grants', { id: 'promo', kind: 'bonus', usageType: 'tokens', amount: 100 })).toMatchObject({ status: 201 });
    let held: Record<Workspace, Holdings> = {
      ws_q1: { tokens: { spilloverIn: 0, bonus: 0 }, credits: { spilloverIn: 0, bonus: k(5) } },
      ws_q31: { tokens: { spilloverIn: 0, bonus: k(100) } },
    };

    // Assert: cycle 1
    await expectQuotas('ws_q1', held.ws_q1);
    await expectQuotas('ws_q31', held.ws_q31);

    // Act: close cycle 1 of both (an hour of grace after the later end)
    const t1 = new Date(Math.max(Date.parse(c1.ws_q1.end), Date.parse(c1.ws_q31.end)) + 61 * MINUTE);
    const advanced = await call('POST', '/v1/test-clock', { advanceTo: t1.toISOString() });
    expect(advanced.status).toBe(200);
    expect((advanced.body as { closes: { cyclesClosed: unknown } }).closes.cyclesClosed).toEqual(
      expect.arrayContaining([
        { subject: 'ws_q1', cycleStart: c1.ws_q1.start, report: `reports/${c1.ws_q1.start}/ws_q1.json` },
        { subject: 'ws_q31', cycleStart: c1.ws_q31.start, report: `reports/${c1.ws_q31.start}/ws_q31.json` },
      ]),
    );
    held = { ws_q1: carryAll('ws_q1', held.ws_q1, c1.ws_q1), ws_q31: carryAll('ws_q31', held.ws_q31, c1.ws_q31) };

    // Assert: the new cycle starts with the spillover and what is left of the bonus
    expect(held.ws_q1.tokens).toEqual({ spilloverIn: k(300), bonus: 0 });
    await expectQuotas('ws_q1', held.ws_q1);
    await expectQuotas('ws_q31', held.ws_q31);

    // Arrange, cycle 2: use within the spillover, some credits, and a late event for the closed cycle 1
    const now1 = stack.clock.now().getTime();
    const c2 = { ws_q1: cycleOf(new Date(now1), 1), ws_q31: cycleOf(new Date(now1), 31) };
    const late = eventsFor('ws_q1', 'tokens', k(30), 1, Date.parse(c1.ws_q1.start) + DAY, Date.parse(c1.ws_q1.start) + DAY);
    await send([
      ...eventsFor('ws_q1', 'tokens', k(1250), 8, Date.parse(c2.ws_q1.start), now1 - 2 * MINUTE),
      ...eventsFor('ws_q1', 'credits', k(2.25), 3, Date.parse(c2.ws_q1.start), now1 - 2 * MINUTE),
      ...eventsFor('ws_q31', 'tokens', k(120), 4, Date.parse(c2.ws_q31.start), now1 - 2 * MINUTE),
      ...late,
    ]);
    await expectQuotas('ws_q1', held.ws_q1);
    await expectQuotas('ws_q31', held.ws_q31);

    // Act: close cycle 2
    const t2 = new Date(Math.max(Date.parse(c2.ws_q1.end), Date.parse(c2.ws_q31.end)) + 61 * MINUTE);
    expect((await call('POST', '/v1/test-clock', { advanceTo: t2.toISOString() })).status).toBe(200);
    held = { ws_q1: carryAll('ws_q1', held.ws_q1, c2.ws_q1), ws_q31: carryAll('ws_q31', held.ws_q31, c2.ws_q31) };

    // Assert: cycle 3, and the late event: in cycle 1's rollup, not in its frozen snapshot, listed as an adjustment
    expect(held.ws_q31.tokens).toEqual({ spilloverIn: k(200), bonus: 0 });
    await expectQuotas('ws_q1', held.ws_q1);
    await expectQuotas('ws_q31', held.ws_q31);
    const closes = (await call('GET', '/v1/workspaces/ws_q1/closes')).body as {
      cycles: { cycleStart: string; usage: Record<string, { used: string }> }[];
      adjustments: { cycleStart: string; usageType: string; delta: string }[];
    };
    const firstClose = closes.cycles.find((c) => c.cycleStart === c1.ws_q1.start);
    expect(firstClose?.usage.tokens?.used).toBe('700');
    expect(closes.adjustments.map((a) => [a.cycleStart, a.usageType, a.delta])).toEqual([[c1.ws_q1.start, 'tokens', '30']]);
    const cycleBuckets = await client.buckets('ws_q1', 'cycle', new Date(c1.ws_q1.start), new Date(c1.ws_q1.end));
    expect(cycleBuckets.find((b) => b.usageType === 'tokens')?.quantity).toBe(730);

    // Act: run the closes again (the clock moves a minute; nothing new is due)
    const before = await accountItems('ws_q1');
    const rerun = await call('POST', '/v1/test-clock', { advanceTo: new Date(stack.clock.now().getTime() + MINUTE).toISOString() });

    // Assert: nothing changed
    expect(rerun.body.closes).toMatchObject({ cyclesClosed: [], adjustments: [] });
    expect(await accountItems('ws_q1')).toEqual(before);
  });

  test('the test clock only moves forward, and bad admin requests get a reason', async () => {
    expect(await call('POST', '/v1/test-clock', { advanceTo: '2020-01-01T00:00:00Z' })).toMatchObject({ status: 400, body: { error: { code: 'clock_backwards' } } });
    expect(await call('POST', '/v1/test-clock', { advanceTo: 'soon' })).toMatchObject({ status: 400, body: { error: { code: 'invalid_parameter' } } });
    expect(await call('POST', '/v1/workspaces/ws_q1/grants', { id: 'x', kind: 'spillover', usageType: 'tokens', amount: 1 })).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_parameter' } },
    });
    expect(await call('POST', '/v1/workspaces/ws_q1/grants', { id: 'x', kind: 'bonus', usageType: 'tokens', amount: 1.5 })).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_parameter' } },
    });
    expect(await call('POST', '/v1/workspaces/ws_nope/grants', { id: 'x', kind: 'bonus', usageType: 'tokens', amount: 1 })).toMatchObject({
      status: 404,
      body: { error: { code: 'unknown_workspace' } },
    });
    expect(await call('PUT', '/v1/workspaces/ws_q1', { plan: 'starter', billingAnchorDay: 15 })).toMatchObject({ status: 409, body: { error: { code: 'billing_anchor_fixed' } } });
    expect(await call('PUT', '/v1/workspaces/ws_q1', { plan: 'gold', billingAnchorDay: 1 })).toMatchObject({ status: 400, body: { error: { code: 'unknown_plan' } } });
    expect(
      await call('POST', '/v1/workspaces/ws_q1/usages', { specversion: '1.0', type: 't', time: new Date(stack.clock.now().getTime() + DAY).toISOString(), data: { usageType: 'tokens', quantity: 1 } }),
    ).toMatchObject({
      status: 400,
      body: { error: { code: 'future_time' } },
    });
    expect(
      await call('POST', '/v1/workspaces/ws_q1/usages', { specversion: '1.0', subject: 'ws_q31', type: 't', time: stack.clock.now().toISOString(), data: { usageType: 'tokens', quantity: 1 } }),
    ).toMatchObject({
      status: 400,
      body: { error: { code: 'subject_mismatch' } },
    });
    const types = await call('GET', '/v1/usage-types');
    expect((types.body as { usageTypes: { id: string }[] }).usageTypes.map((t) => t.id)).toEqual(['tokens', 'credits']);
  });
});
