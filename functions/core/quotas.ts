import { cycleBalance, heldCredits, spilloverInto, units } from './balance';
import type { Config } from './config';
import { cycleContaining, localDate } from './cycles';
import { NotFoundError } from './errors';
import type { AccountStore, Clock, RollupReader, SubjectDirectory } from './ports';
import { toNumber } from './quantity';
import { dayCounter } from './rollups';

/**
 * How much is left, per usage type, for one workspace right now.
 * 1. Find the subject and its current cycle (in its time zone, from its billing anchor).
 * 2. Read the cycle's rollup items (used this cycle, with day counters), the grants and the closed cycles.
 * 3. Apply the same balance arithmetic a cycle close freezes (core/balance.ts).
 */

export interface QuotaEntry {
  usageType: string;
  limitAmount: number;
  dailyLimitAmount: number | null;
  usedAmount: number;
  usedAmountDaily: number;
  availableAmount: number;
  bonusAmount: number;
  spilloverAmount: number;
  fairUseLimitReached: boolean;
  canUse: boolean;
  cycleStart: string;
  cycleEnd: string;
}

export interface QuotaDeps {
  config: Config;
  subjects: SubjectDirectory;
  rollups: RollupReader;
  accounts: AccountStore;
  clock: Clock;
}

export async function quotaView(subjectId: string, deps: QuotaDeps): Promise<{ subject: string; plan: string; quotas: QuotaEntry[] }> {
  const subject = (await deps.subjects.getMany([subjectId])).get(subjectId);
  if (!subject) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  const now = deps.clock.now();
  const cycle = cycleContaining(now, subject);
  const today = dayCounter(localDate(now, subject.timeZone));
  const plan = deps.config.plans.find((p) => p.id === subject.plan);
  const [rows, grants, snapshots] = await Promise.all([
    deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start),
    deps.accounts.listGrants(subject.id),
    deps.accounts.listCycleSnapshots(subject.id),
  ]);
  const nowIso = now.toISOString();
  // A credit granted at this very millisecond counts.
  const grantedBefore = new Date(now.getTime() + 1).toISOString();
  const held = grants.filter((g) => g.kind !== 'spillover' && g.grantedAt < grantedBefore && (g.expiresAt === undefined || g.expiresAt > nowIso));
  const usageTypes = [...new Set([...Object.keys(plan?.quotas ?? {}), ...held.map((g) => g.usageType)])].sort();

  const quotas = usageTypes.map((usageType): QuotaEntry => {
    const quota = plan?.quotas[usageType];
    const row = rows.find((r) => r.usageType === usageType);
    const credits = heldCredits(grants, snapshots, usageType, cycle, grantedBefore);
    const balance = cycleBalance({ quota, used: units(row?.total ?? '0'), spilloverIn: spilloverInto(grants, usageType, cycle), credits });
    // Credits that expired earlier in this cycle absorbed overflow while they lasted; what is left of them is gone.
    const bonus = credits.reduce((sum, c) => sum + (c.grant.expiresAt === undefined || c.grant.expiresAt > nowIso ? (balance.creditsLeft.get(c.grant.id) ?? 0n) : 0n), 0n);
    const available = balance.allowanceLeft + bonus;
    const usedDaily = units(row?.counters[today] ?? '0');
    const dailyLimit = quota?.dailyLimit;
    const overDaily = dailyLimit !== undefined && usedDaily >= units(dailyLimit);
    const blocked = available === 0n && (quota?.overage ?? 'block') === 'block';
    return {
      usageType,
      limitAmount: toNumber(balance.limit),
      dailyLimitAmount: dailyLimit ?? null,
      usedAmount: toNumber(balance.used),
      usedAmountDaily: toNumber(usedDaily),
      availableAmount: toNumber(available),
      bonusAmount: toNumber(bonus),
      spilloverAmount: toNumber(balance.spilloverIn),
      fairUseLimitReached: quota?.fairUseLimit !== undefined && balance.used >= units(quota.fairUseLimit),
      canUse: !blocked && !overDaily,
      cycleStart: cycle.start,
      cycleEnd: cycle.end,
    };
  });
  return { subject: subject.id, plan: subject.plan, quotas };
}
