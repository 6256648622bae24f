import type { Config } from '../config';
import { cycleContaining, localDate, previousCycle } from '../cycles';
import { NotFoundError } from '../errors';
import type { RollupReader } from '../metering/metering-ports';
import { dayCounter, requestCount } from '../metering/rollups';
import type { Clock, SubjectDirectory } from '../ports';
import { type Amount, toAmount } from '../quantity';
import { type CycleSnapshot, cycleBalance, heldCredits, spilloverInto, units } from './balance';
import type { AccountStore } from './billing-ports';
import { cycleSnapshot } from './snapshot';

/**
 * How much is left, per usage type, for one workspace right now.
 * 1. Find the subject and its current cycle (in its time zone, from its billing anchor).
 * 2. Read the cycle's rollup items (used this cycle, with day counters), and the grants and closed cycles
 *    (`balanceRecords`, which a warm function answers from memory: the common check is one read).
 * 3. Apply the same balance arithmetic a cycle close freezes (billing/balance.ts). In the grace period after
 *    a cycle ends, before its close, the close it will make is computed here, so that the spillover and
 *    the credits it draws already count: the answer does not change when the close runs.
 */

export interface QuotaEntry {
  usageType: string;
  limitAmount: Amount;
  dailyLimitAmount: number | null;
  usedAmount: Amount;
  usedAmountDaily: Amount;
  availableAmount: Amount;
  /** Bonus and purchased top-up credits still available (both, as before top-ups were told apart). */
  bonusAmount: Amount;
  /** The purchased top-up part of `bonusAmount`. */
  topupAmount: Amount;
  spilloverAmount: Amount;
  /** Events counted this cycle (a priced event counts under its usage type and under the credits usage type). */
  requests: number;
  fairUseLimitReached: boolean;
  canUse: boolean;
  cycleStart: string;
  cycleEnd: string;
}

export interface QuotaDeps {
  config: Config;
  subjects: SubjectDirectory;
  rollups: RollupReader;
  accounts: Pick<AccountStore, 'balanceRecords'>;
  clock: Clock;
}

export async function quotaView(subjectId: string, deps: QuotaDeps): Promise<{ subject: string; plan: string; pool?: string; quotas: QuotaEntry[] }> {
  const subject = (await deps.subjects.getMany([subjectId])).get(subjectId);
  if (!subject) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  // A pooled workspace draws on its account's balance: its view is the account's.
  if (subject.account !== undefined) return { ...(await quotaView(subject.account, deps)), subject: subject.id, pool: subject.account };
  const now = deps.clock.now();
  const cycle = cycleContaining(now, subject);
  const today = dayCounter(localDate(now, subject.timeZone));
  const plan = deps.config.plans.find((p) => p.id === subject.plan);
  const [rows, { grants, snapshots: stored }] = await Promise.all([deps.rollups.query(subject.id, 'cycle', cycle.start, cycle.start), deps.accounts.balanceRecords(subject.id)]);
  const previous = previousCycle(cycle, subject);
  let previousSnapshot = stored.find((s) => s.cycleStart === previous.start);
  // Not closed yet (the grace period), but it will be: the workspace existed then.
  if (!previousSnapshot && (subject.createdAt === undefined || subject.createdAt < previous.end)) {
    const previousRows = await deps.rollups.query(subject.id, 'cycle', previous.start, previous.start);
    previousSnapshot = cycleSnapshot({ subject, cycle: previous, plan, rows: previousRows, grants, snapshots: stored, frozenAt: now.toISOString() });
  }
  const snapshots: CycleSnapshot[] = previousSnapshot && !stored.includes(previousSnapshot) ? [...stored, previousSnapshot] : stored;
  const nowIso = now.toISOString();
  // A credit granted at this very millisecond counts.
  const grantedBefore = new Date(now.getTime() + 1).toISOString();
  const held = grants.filter((g) => g.kind !== 'spillover' && g.grantedAt < grantedBefore && (g.expiresAt === undefined || g.expiresAt > nowIso));
  const excluded = new Set(plan?.excludes ?? []);
  const usageTypes = [...new Set([...Object.keys(plan?.quotas ?? {}), ...held.map((g) => g.usageType), ...excluded])].sort();

  const quotas = usageTypes.map((usageType): QuotaEntry => {
    const quota = plan?.quotas[usageType];
    const row = rows.find((r) => r.usageType === usageType);
    const credits = heldCredits(grants, snapshots, usageType, cycle, grantedBefore);
    // The spillover grant is written by the close; until then, the snapshot says what it will be.
    const granted = grants.some((g) => g.kind === 'spillover' && g.cycleStart === cycle.start && g.usageType === usageType);
    const spilloverIn = granted || previousSnapshot?.status !== 'closing' ? spilloverInto(grants, usageType, cycle) : units(previousSnapshot.usage[usageType]?.spilloverOut ?? '0');
    const balance = cycleBalance({ quota, used: units(row?.total ?? '0'), spilloverIn, credits });
    // Credits that expired earlier in this cycle absorbed overflow while they lasted; what is left of them is gone.
    const left = (c: (typeof credits)[number]) => (c.grant.expiresAt === undefined || c.grant.expiresAt > nowIso ? (balance.creditsLeft.get(c.grant.id) ?? 0n) : 0n);
    const bonus = credits.reduce((sum, c) => sum + left(c), 0n);
    const topup = credits.reduce((sum, c) => sum + (c.grant.kind === 'topup' ? left(c) : 0n), 0n);
    const available = balance.allowanceLeft + bonus;
    const usedDaily = units(row?.counters[today] ?? '0');
    const dailyLimit = quota?.dailyLimit;
    const overDaily = dailyLimit !== undefined && usedDaily >= units(dailyLimit);
    const blocked = available === 0n && (quota?.overage ?? 'block') === 'block';
    return {
      usageType,
      limitAmount: toAmount(balance.limit),
      dailyLimitAmount: dailyLimit ?? null,
      usedAmount: toAmount(balance.used),
      usedAmountDaily: toAmount(usedDaily),
      availableAmount: toAmount(available),
      bonusAmount: toAmount(bonus),
      topupAmount: toAmount(topup),
      spilloverAmount: toAmount(balance.spilloverIn),
      requests: requestCount(row?.requests),
      fairUseLimitReached: quota?.fairUseLimit !== undefined && balance.used >= units(quota.fairUseLimit),
      // A usage type the plan leaves out is never usable, whatever credits the workspace holds.
      canUse: !blocked && !overDaily && !excluded.has(usageType),
      cycleStart: cycle.start,
      cycleEnd: cycle.end,
    };
  });
  return { subject: subject.id, plan: subject.plan, quotas };
}
