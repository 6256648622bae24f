import { describe, expect, test } from '@jest/globals';
import type { Grant } from '../../../functions/core/billing/balance';
import { creditBalance, creditHeaders } from '../../../functions/core/billing/credit-balance';
import { quotaView } from '../../../functions/core/billing/quotas';
import { type Config, configSchema } from '../../../functions/core/config';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryAccounts, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * The credit balance of a credit-selling product: the quota view's top-up part of the credits held, the
 * requests counted this cycle, plan exclusions, and creditBalance / creditHeaders on top of them (in-memory
 * fakes, at a fixed instant inside the November 2026 cycle, anchor 1, UTC). Every expected figure is worked
 * out by hand from the burn order (billing/balance.ts):
 *   overflow  = max(0, U − (L + S)), drawn from bonus and top-up credits soonest expiry first, never-expiring last
 *   available = max(0, L + S − U) + (credits held − drawn)
 * and the view: included = available − credits left, purchased = top-ups left, bonus = credits left − top-ups left,
 * cents = credits × unitPrice / per rounded half up, estimate = floor(balance × requests / used).
 */

const NOV = { start: '2026-11-01T00:00:00.000Z', end: '2026-12-01T00:00:00.000Z' };
const NOW = '2026-11-20T12:00:00.000Z';
const CREDITS = { usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: {}, credits: 2 }] }] } };

const raw = (extra: Record<string, unknown> = {}) => ({
  usageTypes: [
    { id: 'credits', unit: 'credit', allowFractions: true },
    { id: 'images', unit: 'image' },
    { id: 'tokens', unit: 'token' },
  ],
  plans: [
    { id: 'credit', quotas: { credits: { monthlyLimit: 100, overage: 'allow' }, images: { monthlyLimit: 1000, overage: 'allow' } } },
    { id: 'free', quotas: { credits: { monthlyLimit: 100, overage: 'allow' } }, excludes: ['images'] },
    { id: 'paid', quotas: { credits: { monthlyLimit: 100, overage: 'allow' } } },
  ],
  closes: { graceMinutes: 60 },
  ...extra,
});

/** No credit rate card, no money. */
const PLAIN: Config = configSchema.parse(raw());
/** 5 cents a credit. */
const PRICED: Config = configSchema.parse(raw({ rateCard: { currency: 'USD', prices: { credits: { unitPrice: 5, per: 1 } } }, credits: CREDITS }));
/** 1 cent per 3 credits. */
const THIRDS: Config = configSchema.parse(raw({ rateCard: { currency: 'USD', prices: { credits: { unitPrice: 1, per: 3 } } }, credits: CREDITS }));
/** A rate card that prices images but not credits. */
const UNPRICED: Config = configSchema.parse(raw({ rateCard: { currency: 'USD', prices: { images: { unitPrice: 10, per: 1 } } }, credits: CREDITS }));

const workspace = (id: string, plan: string): Subject => ({ id, plan, billingAnchorDay: 1, timeZone: 'UTC', contacts: [], createdAt: '2026-11-02T09:00:00.000Z' });
// Created inside the current cycle, so no earlier cycle is waiting for its close.
const WORKSPACES = [workspace('ws_c', 'credit'), workspace('ws_free', 'free'), workspace('ws_paid', 'paid')];

function world(config: Config = PRICED) {
  const clock = new FixedClock(NOW);
  const accounts = new InMemoryAccounts();
  const rollups = new InMemoryRollupReader();
  const subjects = new InMemorySubjectStore(WORKSPACES);
  const deps = { config, subjects, rollups, accounts, clock };
  const use = (subject: string, usageType: string, total: string, requests?: string) =>
    rollups.set(subject, { usageType, kind: 'cycle', period: NOV.start, total, counters: {}, ...(requests === undefined ? {} : { requests }) });
  const entry = async (subject: string, usageType = 'credits') => (await quotaView(subject, deps)).quotas.find((q) => q.usageType === usageType);
  const grant = (g: Grant) => accounts.putGrant(g);
  return { deps, use, entry, grant };
}

const credit = (subject: string, id: string, fields: Partial<Grant>): Grant => ({
  subject,
  id,
  kind: 'bonus',
  usageType: 'credits',
  amount: '30',
  grantedAt: '2026-11-05T00:00:00.000Z',
  ...fields,
});
/** Bonus 30, never expires. */
const BONUS = (subject = 'ws_c') => credit(subject, 'B', { amount: '30' });
/** Top-up 50, expires 12 months after it was bought. */
const TOPUP = (subject = 'ws_c') => credit(subject, 'T', { kind: 'topup', amount: '50', expiresAt: '2027-11-05T00:00:00.000Z' });

describe('quotaView: top-ups and requests', () => {
  test('overflow is drawn from the expiring top-up before the never-expiring bonus', async () => {
    // Arrange: L 100, bonus B 30 (no expiry), top-up T 50 (expires 2027-11-05); U 120 over 7 requests
    const { use, entry, grant } = world();
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '120', '7');

    // Act
    const credits = await entry('ws_c');

    // Assert: overflow = 120 − 100 = 20, all from T (it expires, B never does) → T 30, B 30
    //   topupAmount 30; bonusAmount 30 + 30 = 60; available max(0, 100 − 120) + 60 = 60
    expect(credits).toEqual({
      usageType: 'credits',
      limitAmount: 100,
      dailyLimitAmount: null,
      usedAmount: 120,
      usedAmountDaily: 0,
      availableAmount: 60,
      bonusAmount: 60,
      topupAmount: 30,
      spilloverAmount: 0,
      requests: 7,
      fairUseLimitReached: false,
      canUse: true,
      cycleStart: NOV.start,
      cycleEnd: NOV.end,
    });
  });

  test('within the allowance nothing is drawn; requests are 0 when the row does not keep them', async () => {
    // U 90 ≤ L 100: overflow 0 → T 50, B 30: topupAmount 50, bonusAmount 80, available 10 + 80 = 90
    const { use, entry, grant } = world();
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '90');

    expect(await entry('ws_c')).toMatchObject({ usedAmount: 90, availableAmount: 90, bonusAmount: 80, topupAmount: 50, requests: 0 });
  });

  test('of two top-ups the sooner to expire is drawn first', async () => {
    // T1 10 expires 2027-01-01, T2 50 expires 2027-11-05, B 30 never. U 125: overflow 25 → T1 10 (all), T2 15 → T2 35
    //   topupAmount 0 + 35 = 35; bonusAmount 35 + 30 = 65; available 0 + 65 = 65
    const { use, entry, grant } = world();
    await grant(BONUS());
    await grant(credit('ws_c', 'T1', { kind: 'topup', amount: '10', expiresAt: '2027-01-01T00:00:00.000Z' }));
    await grant(credit('ws_c', 'T2', { kind: 'topup', amount: '50', expiresAt: '2027-11-05T00:00:00.000Z' }));
    use('ws_c', 'credits', '125', '50');

    expect(await entry('ws_c')).toMatchObject({ usedAmount: 125, availableAmount: 65, bonusAmount: 65, topupAmount: 35, requests: 50 });
  });

  test('a bonus that expires before the top-up is drawn before it (expiry, not kind, sets the order)', async () => {
    // B2 30 expires 2026-12-15, T 50 expires 2027-11-05. U 120: overflow 20 from B2 → B2 10, T 50
    //   topupAmount 50; bonusAmount 10 + 50 = 60; available 60
    const { use, entry, grant } = world();
    await grant(credit('ws_c', 'B2', { amount: '30', expiresAt: '2026-12-15T00:00:00.000Z' }));
    await grant(TOPUP());
    use('ws_c', 'credits', '120', '40');

    expect(await entry('ws_c')).toMatchObject({ availableAmount: 60, bonusAmount: 60, topupAmount: 50 });
  });
});

describe('quotaView: usage types a plan excludes', () => {
  test('an excluded usage type is listed and cannot be used, even with credits held', async () => {
    // images on "free": L 0, U 0, bonus 50 → available 50, but the plan leaves images out
    const { deps, grant } = world();
    await grant(credit('ws_free', 'img', { usageType: 'images', amount: '50' }));

    const view = await quotaView('ws_free', deps);

    expect(view.quotas.map((q) => q.usageType)).toEqual(['credits', 'images']);
    expect(view.quotas[1]).toMatchObject({ usageType: 'images', limitAmount: 0, usedAmount: 0, bonusAmount: 50, availableAmount: 50, canUse: false });
    expect(view.quotas[0]).toMatchObject({ usageType: 'credits', canUse: true });
  });

  test('an excluded usage type is listed without any credit for it', async () => {
    const { deps } = world();

    const view = await quotaView('ws_free', deps);

    expect(view.quotas.map((q) => [q.usageType, q.availableAmount, q.canUse])).toEqual([
      ['credits', 100, true],
      ['images', 0, false],
    ]);
  });

  test('the same credit on a plan without the exclusion can be used', async () => {
    const { deps, grant } = world();
    await grant(credit('ws_paid', 'img', { usageType: 'images', amount: '50' }));

    const view = await quotaView('ws_paid', deps);

    expect(view.quotas.find((q) => q.usageType === 'images')).toMatchObject({ limitAmount: 0, bonusAmount: 50, availableAmount: 50, canUse: true });
  });
});

describe('creditBalance', () => {
  test('the balance split into included, purchased and bonus, in credits and in cents', async () => {
    // Arrange: L 100, B 30, T 50; 60 images priced at 2 credits = U 120 credits, over 40 requests
    const { deps, use, grant } = world(PRICED);
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '120', '40');
    use('ws_c', 'images', '60', '40');

    // Act
    const view = await creditBalance('ws_c', deps);

    // Assert: as in the quota view, overflow 20 from T → available 60, held 60 (T 30 + B 30)
    //   included 60 − 60 = 0; purchased 30; bonus 60 − 30 = 30; at 5 cents: 300, 0, 150, 150
    //   120 credits over 40 requests = 3 a request → 60 / 3 = 20 requests left
    //   requests are the credits row's 40 (not 40 + the images row's 40)
    expect(view).toEqual({
      period_start: NOV.start,
      requests: 40,
      billable_units: 120,
      credits: {
        balance: 60,
        balance_cents: 300,
        currency: 'USD',
        included: 0,
        included_cents: 0,
        purchased: 30,
        purchased_cents: 150,
        bonus: 30,
        bonus_cents: 150,
        estimated_requests_remaining: 20,
        auto_reload_enabled: false,
      },
    });
    expect(creditHeaders(view)).toEqual({ 'x-credits-balance': '60', 'x-credits-requests-remaining': '20' });
  });

  test('within the allowance: the unused allowance is included, top-up and bonus untouched', async () => {
    // U 90 over 30 requests: available 10 + 80 = 90; included 90 − 80 = 10; purchased 50; bonus 80 − 50 = 30
    //   cents 450, 50, 250, 150; 90 / (90 / 30) = 30 requests left
    const { deps, use, grant } = world(PRICED);
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '90', '30');

    const view = await creditBalance('ws_c', deps);

    expect(view.billable_units).toBe(90);
    expect(view.credits).toMatchObject({
      balance: 90,
      balance_cents: 450,
      included: 10,
      included_cents: 50,
      purchased: 50,
      purchased_cents: 250,
      bonus: 30,
      bonus_cents: 150,
      estimated_requests_remaining: 30,
    });
  });

  test('the estimate is rounded down', async () => {
    // U 120 over 41 requests, balance 60: 60 × 41 / 120 = 20.5 → 20 (a half request is not a request)
    const { deps, use, grant } = world(PRICED);
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '120', '41');

    expect((await creditBalance('ws_c', deps)).credits?.estimated_requests_remaining).toBe(20);
  });

  test('cents of a fractional price are rounded half up', async () => {
    // 1 cent per 3 credits
    const ten = world(THIRDS);
    ten.use('ws_c', 'credits', '90', '9'); // balance 10, all included: 10 / 3 = 3.33… → 3
    const five = world(THIRDS);
    five.use('ws_c', 'credits', '100', '10');
    await five.grant(credit('ws_c', 'B', { amount: '5' })); // allowance used up, bonus 5: 5 / 3 = 1.66… → 2
    const half = world(THIRDS);
    half.use('ws_c', 'credits', '98.5', '9'); // balance 1.5: 1.5 / 3 = 0.5 → 1
    const underHalf = world(THIRDS);
    underHalf.use('ws_c', 'credits', '98.500000001', '9'); // balance 1.499999999: 0.4999999997 → 0

    expect((await creditBalance('ws_c', ten.deps)).credits).toMatchObject({ balance: 10, balance_cents: 3, included: 10, included_cents: 3, purchased_cents: 0, bonus_cents: 0 });
    expect((await creditBalance('ws_c', five.deps)).credits).toMatchObject({ balance: 5, balance_cents: 2, included: 0, included_cents: 0, bonus: 5, bonus_cents: 2 });
    expect((await creditBalance('ws_c', half.deps)).credits).toMatchObject({ balance: 1.5, balance_cents: 1 });
    expect((await creditBalance('ws_c', underHalf.deps)).credits).toMatchObject({ balance: 1.499999999, balance_cents: 0 });
  });

  test('no request yet: no estimate, and only the balance header', async () => {
    // Nothing used: balance = L 100
    const { deps } = world(PRICED);

    const view = await creditBalance('ws_c', deps);

    expect(view).toMatchObject({ period_start: NOV.start, requests: 0, billable_units: 0 });
    expect(view.credits).toMatchObject({ balance: 100, included: 100, balance_cents: 500, estimated_requests_remaining: null });
    expect(creditHeaders(view)).toEqual({ 'x-credits-balance': '100' });
  });

  test('no estimate from credits without requests, nor from requests without credits', async () => {
    // 30 credits on a row written before requests were kept; 5 requests that billed 0 credits
    const noRequests = world(PRICED);
    noRequests.use('ws_c', 'credits', '30');
    const noCredits = world(PRICED);
    noCredits.use('ws_c', 'credits', '0', '5');

    expect((await creditBalance('ws_c', noRequests.deps)).credits).toMatchObject({ balance: 70, estimated_requests_remaining: null });
    expect((await creditBalance('ws_c', noCredits.deps)).credits).toMatchObject({ balance: 100, estimated_requests_remaining: null });
  });

  test('without a price for credits: no cents and no currency, credits as before', async () => {
    // Same as the first case (balance 60 = included 0 + purchased 30 + bonus 30), but the rate card prices only images
    const { deps, use, grant } = world(UNPRICED);
    await grant(BONUS());
    await grant(TOPUP());
    use('ws_c', 'credits', '120', '40');

    const view = await creditBalance('ws_c', deps);

    expect(view.credits).toEqual({
      balance: 60,
      balance_cents: null,
      currency: null,
      included: 0,
      included_cents: null,
      purchased: 30,
      purchased_cents: null,
      bonus: 30,
      bonus_cents: null,
      estimated_requests_remaining: 20,
      auto_reload_enabled: false,
    });
  });

  test('without a credits section: no credits, no billable units, and the requests of every usage type', async () => {
    // credits row 7 requests + images row 5 requests = 12
    const { deps, use } = world(PLAIN);
    use('ws_c', 'credits', '20', '7');
    use('ws_c', 'images', '5', '5');

    const view = await creditBalance('ws_c', deps);

    expect(view).toEqual({ period_start: NOV.start, requests: 12, billable_units: null, credits: null });
    expect(creditHeaders(view)).toEqual({});
  });
});

describe('config: plan excludes', () => {
  const issuesOf = (plans: unknown[]) => {
    const result = configSchema.safeParse({ ...raw(), plans });
    return result.success ? [] : result.error.issues.map((i) => ({ path: i.path, message: i.message }));
  };

  test('an unknown usage type is refused at its index', () => {
    const issues = issuesOf([
      { id: 'a', quotas: {} },
      { id: 'b', quotas: { credits: { monthlyLimit: 1 } }, excludes: ['images', 'video'] },
    ]);

    expect(issues).toEqual([{ path: ['plans', 1, 'excludes', 1], message: expect.stringContaining('unknown usage type "video"') }]);
  });

  test('a usage type that has a quota in the same plan is refused', () => {
    const issues = issuesOf([{ id: 'a', quotas: { credits: { monthlyLimit: 1 } }, excludes: ['images', 'credits'] }]);

    expect(issues).toEqual([{ path: ['plans', 0, 'excludes', 1], message: expect.stringContaining('credits') }]);
  });

  test('a quota in another plan does not conflict', () => {
    const result = configSchema.safeParse({
      ...raw(),
      plans: [
        { id: 'a', quotas: { images: { monthlyLimit: 1 } } },
        { id: 'b', quotas: {}, excludes: ['images'] },
      ],
    });

    expect(result.success).toBe(true);
    expect(result.data?.plans[0]?.excludes).toEqual([]);
  });
});
