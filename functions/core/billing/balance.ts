import type { QuotaConfig, SpilloverPolicy } from '../config';
import type { Cycle } from '../cycles';
import { type Amount, type NanoUnits, toNanoUnits } from '../quantity';

/**
 * Grants and the arithmetic of a cycle's balance. Pure: callers pass what the rollups and the
 * account store hold, and get the same answer for the live quota view and for a cycle close.
 *
 * With L = plan limit, S = spillover carried in, U = used, X = bonus and top-up credits held:
 *   overflow         = max(0, U − (L + S)), drawn from X soonest expiry first, then oldest
 *   available        = max(0, L + S − U) + (X − drawn)
 *   spillover out    = max(0, L − max(0, U − S)) under `all`, capped at N under `capped`, 0 under `none`
 * Spillover burns first (it is the older credit), then the plan allowance, then X.
 */

export type GrantKind = 'spillover' | 'bonus' | 'topup';
/** Kinds a client grants; spillover is only ever written by a cycle close. */
export const CLIENT_GRANT_KINDS = ['bonus', 'topup'] as const;

export interface Grant {
  subject: string;
  /** Unique per subject; client-given for bonus and top-up, derived for spillover. */
  id: string;
  kind: GrantKind;
  usageType: string;
  /** Exact decimal string. */
  amount: string;
  /** UTC ISO instant the grant was made. */
  grantedAt: string;
  /** Spillover: the start of the cycle it was carried into (it belongs to that cycle only). */
  cycleStart?: string;
  /** UTC ISO instant after which what is left is forfeited; absent means it never expires. */
  expiresAt?: string;
}

/** What a closed cycle froze per usage type: the inputs and the outcome of its balance. */
export interface UsageSnapshot {
  limit: string;
  spilloverIn: string;
  used: string;
  overflow: string;
  /** Bonus and top-up credits drawn in this cycle, by grant id. */
  drawn: Record<string, string>;
  /** Overflow no credit covered (use beyond everything available, under `overage: "allow"`). */
  uncovered: string;
  spilloverOut: string;
}

export interface CycleSnapshot {
  subject: string;
  cycleStart: string;
  cycleEnd: string;
  plan: string;
  /** `closing` until every step of the close has been applied. */
  status: 'closing' | 'closed';
  /** When the snapshot was frozen. */
  frozenAt: string;
  usage: Record<string, UsageSnapshot>;
  /** Bonus and top-up credits that expired with this cycle, by grant id: what was left of them. */
  expired: Record<string, string>;
}

/** A bonus or top-up credit as it stands at the start of a cycle. */
export interface HeldCredit {
  grant: Grant;
  remaining: NanoUnits;
}

export interface BalanceInput {
  /** The plan's quota for the usage type; absent when the plan does not include it (L = 0). */
  quota: QuotaConfig | undefined;
  used: NanoUnits;
  spilloverIn: NanoUnits;
  credits: readonly HeldCredit[];
}

export interface Balance {
  limit: NanoUnits;
  spilloverIn: NanoUnits;
  used: NanoUnits;
  overflow: NanoUnits;
  /** Plan allowance and spillover not yet used: max(0, L + S − U). */
  allowanceLeft: NanoUnits;
  /** Credits drawn by the overflow, by grant id (only non-zero draws). */
  drawn: Map<string, NanoUnits>;
  /** What is left of each held credit after the draw, by grant id. */
  creditsLeft: Map<string, NanoUnits>;
  uncovered: NanoUnits;
  spilloverOut: NanoUnits;
}

const max0 = (value: NanoUnits) => (value > 0n ? value : 0n);
const min = (a: NanoUnits, b: NanoUnits) => (a < b ? a : b);

export function units(value: string | Amount): NanoUnits {
  const result = toNanoUnits(typeof value === 'object' ? value.toString() : value);
  if (result === undefined) throw new RangeError(`invalid amount "${value}"`);
  return result;
}

/** Burn order for bonus and top-up credits: soonest expiry first (never-expiring last), then oldest, then id. */
export function burnOrder(a: Grant, b: Grant): number {
  const expiry = (g: Grant) => g.expiresAt ?? '\uffff';
  return compare(expiry(a), expiry(b)) || compare(a.grantedAt, b.grantedAt) || compare(a.id, b.id);
}

export function cycleBalance({ quota, used, spilloverIn, credits }: BalanceInput): Balance {
  const limit = units(quota?.monthlyLimit ?? 0);
  const overflow = max0(used - (limit + spilloverIn));
  const drawn = new Map<string, NanoUnits>();
  const creditsLeft = new Map<string, NanoUnits>();
  let left = overflow;
  for (const { grant, remaining } of [...credits].sort((a, b) => burnOrder(a.grant, b.grant))) {
    const take = min(max0(remaining), left);
    left -= take;
    if (take > 0n) drawn.set(grant.id, take);
    creditsLeft.set(grant.id, max0(remaining) - take);
  }
  return {
    limit,
    spilloverIn,
    used,
    overflow,
    allowanceLeft: max0(limit + spilloverIn - used),
    drawn,
    creditsLeft,
    uncovered: left,
    spilloverOut: spilloverOut(quota?.spillover ?? { policy: 'none' }, limit, used, spilloverIn),
  };
}

/** The unused plan allowance carried into the next cycle; spillover carried in is used first and never carries again. */
export function spilloverOut(policy: SpilloverPolicy, limit: NanoUnits, used: NanoUnits, spilloverIn: NanoUnits): NanoUnits {
  const unusedAllowance = max0(limit - max0(used - spilloverIn));
  switch (policy.policy) {
    case 'none':
      return 0n;
    case 'all':
      return unusedAllowance;
    case 'capped':
      return min(unusedAllowance, units(policy.cap));
  }
}

/**
 * Bonus and top-up credits of one usage type as they stand at the start of `cycle`: granted before
 * `grantedBefore` (the cycle end for a close, now for the live view), not expired before the cycle
 * began, less what earlier closed cycles drew from them.
 */
export function heldCredits(grants: readonly Grant[], closes: readonly CycleSnapshot[], usageType: string, cycle: Cycle, grantedBefore: string): HeldCredit[] {
  const drawnBefore = new Map<string, NanoUnits>();
  for (const close of closes) {
    if (close.cycleStart >= cycle.start) continue;
    for (const [grantId, amount] of Object.entries(close.usage[usageType]?.drawn ?? {})) {
      drawnBefore.set(grantId, (drawnBefore.get(grantId) ?? 0n) + units(amount));
    }
  }
  return grants
    .filter((g) => g.kind !== 'spillover' && g.usageType === usageType && g.grantedAt < grantedBefore && (g.expiresAt === undefined || g.expiresAt > cycle.start))
    .map((grant) => ({ grant, remaining: max0(units(grant.amount) - (drawnBefore.get(grant.id) ?? 0n)) }));
}

/** Spillover carried into `cycle` for one usage type. */
export function spilloverInto(grants: readonly Grant[], usageType: string, cycle: Cycle): NanoUnits {
  return grants.filter((g) => g.kind === 'spillover' && g.usageType === usageType && g.cycleStart === cycle.start).reduce((sum, g) => sum + units(g.amount), 0n);
}

/** The id of the spillover grant a close writes: one per subject, usage type and receiving cycle. */
export const spilloverGrantId = (usageType: string, cycleStart: string) => `spillover:${usageType}:${cycleStart}`;

/** A top-up without `expiresAt` expires twelve months after it was granted (same day of month, clamped). */
export function defaultTopUpExpiry(grantedAt: string): string {
  const granted = new Date(grantedAt);
  const target = new Date(Date.UTC(granted.getUTCFullYear() + 1, granted.getUTCMonth(), 1));
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(granted.getUTCDate(), lastDay));
  target.setUTCHours(granted.getUTCHours(), granted.getUTCMinutes(), granted.getUTCSeconds(), granted.getUTCMilliseconds());
  return target.toISOString();
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
