import { type Grant, spilloverInto, units } from '../billing/balance';
import type { AccountStore } from '../billing/billing-ports';
import type { Config } from '../config';
import { cycleContaining } from '../cycles';
import type { RollupReader } from '../metering/metering-ports';
import { cycleItemKey, type LedgerImage } from '../metering/rollups';
import type { Clock, SubjectDirectory } from '../ports';
import { type NanoUnits, toDecimalString } from '../quantity';
import type { Alert, AlertStore } from './alerts-ports';

/**
 * Threshold crossings, evaluated after the aggregator has committed a batch.
 * 1. Read the current total of every cycle rollup the batch touched.
 * 2. Compare it with the cycle allowance (plan limit + spillover carried in) and the plan's thresholds.
 * 3. Record each newly crossed threshold once (a conditional put); only the highest crossed in one
 *    evaluation is marked to notify, the lower ones it jumped over are recorded as passed.
 * Reading current totals makes this idempotent: a retried batch re-evaluates and records nothing new.
 */

export interface AlertDeps {
  config: Config;
  subjects: SubjectDirectory;
  rollups: RollupReader;
  accounts: AccountStore;
  alerts: AlertStore;
  clock: Clock;
}

export interface TouchedCycle {
  subject: string;
  usageType: string;
  cycleStart: string;
}

/** The cycle rollups a batch of ledger images added to. */
export function touchedCycles(images: readonly LedgerImage[]): TouchedCycle[] {
  const seen = new Map<string, TouchedCycle>();
  for (const { subject, usageType, cycleStart } of images) seen.set(JSON.stringify([subject, usageType, cycleStart]), { subject, usageType, cycleStart });
  return [...seen.values()];
}

/** Thresholds (percent) that `used` has reached of `allowance`; none when there is no allowance to measure against. */
export function crossedThresholds(used: NanoUnits, allowance: NanoUnits, thresholds: readonly number[]): number[] {
  if (allowance <= 0n) return [];
  return thresholds.filter((t) => used * 100n >= BigInt(t) * allowance);
}

export async function evaluateThresholds(touched: readonly TouchedCycle[], deps: AlertDeps): Promise<Alert[]> {
  const recordedAt = deps.clock.now().toISOString();
  const subjects = await deps.subjects.getMany([...new Set(touched.map((t) => t.subject))]);
  const byCycle = new Map<string, TouchedCycle[]>();
  for (const t of touched) byCycle.set(`${t.subject}|${t.cycleStart}`, [...(byCycle.get(`${t.subject}|${t.cycleStart}`) ?? []), t]);
  const planOf = (subjectId: string) => deps.config.plans.find((p) => p.id === subjects.get(subjectId)?.plan);
  // One batched read for every cycle item with a quota, rather than one query per workspace and cycle.
  const totals = await deps.rollups.cycleItems(touched.filter((t) => planOf(t.subject)?.quotas[t.usageType] !== undefined));
  const recorded: Alert[] = [];
  for (const group of byCycle.values()) {
    const { subject: subjectId, cycleStart } = group[0] as TouchedCycle;
    const subject = subjects.get(subjectId);
    const plan = planOf(subjectId);
    if (!subject || !plan) continue;
    const cycle = cycleContaining(cycleStart, subject);
    let grants: Grant[] | undefined;
    for (const { usageType } of group) {
      const quota = plan.quotas[usageType];
      if (!quota) continue;
      const used = units(totals.get(cycleItemKey(subjectId, cycleStart, usageType))?.total ?? '0');
      const limit = units(quota.monthlyLimit);
      // Spillover only raises the allowance: below the lowest threshold of the plan limit alone, nothing can be crossed.
      if (crossedThresholds(used, limit, quota.thresholds.slice(0, 1)).length === 0 && limit > 0n) continue;
      grants ??= await deps.accounts.listGrants(subjectId);
      const allowance = limit + spilloverInto(grants, usageType, cycle);
      const crossed = crossedThresholds(used, allowance, quota.thresholds);
      if (crossed.length === 0) continue;
      const known = await deps.alerts.recorded(subjectId, usageType, cycleStart);
      const fresh = crossed.filter((t) => !known.has(t));
      if (fresh.length === 0) continue;
      const highest = Math.max(...fresh);
      const notify = highest > Math.max(0, ...known);
      // Highest first: a crash between the puts leaves the one that notifies already written.
      for (const threshold of fresh.sort((a, b) => b - a)) {
        const alert: Alert = {
          subject: subjectId,
          usageType,
          cycleStart,
          cycleEnd: cycle.end,
          threshold,
          notify: notify && threshold === highest,
          used: toDecimalString(used),
          allowance: toDecimalString(allowance),
          recordedAt,
        };
        if (await deps.alerts.record(alert)) recorded.push(alert);
      }
    }
  }
  return recorded;
}
