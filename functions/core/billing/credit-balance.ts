import type { Config } from '../config';
import { cycleContaining } from '../cycles';
import { type Amount, type NanoUnits, toAmount } from '../quantity';
import { units } from './balance';
import { type QuotaDeps, quotaView } from './quotas';
import { lineAmount } from './rates';

/**
 * A workspace's credit balance as a credit-selling product shows it (`GET /v1/usage`, and the `X-Credits-*`
 * headers of `POST …/usages`): the quota view of the credits usage type (config `credits.usageType`), split
 * into its three sources, which burn in the quota view's order (the plan's monthly allowance with its spillover
 * first, then granted credits by soonest expiry: a top-up expires in 12 months, a bonus usually never, so it
 * goes last), and priced in minor units of the
 * rate card's currency by the credits usage type's price (`rateCard.prices.{credits}`). Read only: it reads
 * what the quota view reads and writes nothing.
 */

export interface CreditBalanceView {
  /** The start of the workspace's current cycle. */
  period_start: string;
  /** Events this cycle that billed credits (all events of the plan's usage types without a credit rate card). */
  requests: number;
  /** Credits billed this cycle: a request may bill several. Null without a credit rate card. */
  billable_units: Amount | null;
  credits: {
    /** Credits available now: included + purchased + bonus. */
    balance: Amount;
    balance_cents: number | null;
    currency: string | null;
    /** What is left of the monthly allowance (and the spillover carried into it). */
    included: Amount;
    included_cents: number | null;
    /** What is left of purchased top-ups. */
    purchased: Amount;
    purchased_cents: number | null;
    /** What is left of bonus credits (referrals, promotions). */
    bonus: Amount;
    bonus_cents: number | null;
    /** The balance at this cycle's average credits per request; null before any request bills credits. */
    estimated_requests_remaining: number | null;
    /** Automatic reloads are not offered: always false. */
    auto_reload_enabled: false;
  } | null;
}

export async function creditBalance(subjectId: string, deps: QuotaDeps): Promise<CreditBalanceView> {
  const view = await quotaView(subjectId, deps);
  const creditsType = deps.config.credits?.usageType;
  const entry = view.quotas.find((q) => q.usageType === creditsType);
  const periodStart = entry?.cycleStart ?? view.quotas[0]?.cycleStart ?? (await currentCycleStart(subjectId, deps));
  if (!creditsType) return { period_start: periodStart, requests: view.quotas.reduce((sum, q) => sum + q.requests, 0), billable_units: null, credits: null };

  const nano = (amount: Amount | undefined) => units(String(amount ?? 0));
  const balance = nano(entry?.availableAmount);
  const held = nano(entry?.bonusAmount);
  const purchased = nano(entry?.topupAmount);
  const used = nano(entry?.usedAmount);
  const requests = entry?.requests ?? 0;
  const money = moneyOf(deps.config, creditsType);
  return {
    period_start: periodStart,
    requests,
    billable_units: toAmount(used),
    credits: {
      balance: toAmount(balance),
      balance_cents: money.cents(balance),
      currency: money.currency,
      included: toAmount(balance - held),
      included_cents: money.cents(balance - held),
      purchased: toAmount(purchased),
      purchased_cents: money.cents(purchased),
      bonus: toAmount(held - purchased),
      bonus_cents: money.cents(held - purchased),
      estimated_requests_remaining: requests > 0 && used > 0n ? Number((balance * BigInt(requests)) / used) : null,
      auto_reload_enabled: false,
    },
  };
}

/** A plan with no quota, no grant and no exclusion has no entry to read the cycle from. */
async function currentCycleStart(subjectId: string, deps: QuotaDeps): Promise<string> {
  const subject = (await deps.subjects.getMany([subjectId])).get(subjectId);
  return subject ? cycleContaining(deps.clock.now(), subject).start : '';
}

/** The two headers a billable response carries, from the same view; none without a credit rate card. */
export function creditHeaders(view: CreditBalanceView): Record<string, string> {
  if (!view.credits) return {};
  const headers: Record<string, string> = { 'x-credits-balance': String(view.credits.balance) };
  if (view.credits.estimated_requests_remaining !== null) headers['x-credits-requests-remaining'] = String(view.credits.estimated_requests_remaining);
  return headers;
}

/** Credits in minor units at the credits usage type's price, rounded half up (as a report's lines); null without a price. */
function moneyOf(config: Config, creditsType: string): { currency: string | null; cents: (credits: NanoUnits) => number | null } {
  const price = config.rateCard?.prices[creditsType];
  if (!config.rateCard || !price) return { currency: null, cents: () => null };
  return { currency: config.rateCard.currency, cents: (credits) => Number(lineAmount(credits, price.unitPrice, price.per)) };
}
