import type { PlanConfig } from '../config';
import type { Cycle } from '../cycles';
import type { RollupRow } from '../metering/metering-ports';
import type { Subject } from '../ports';
import { toDecimalString } from '../quantity';
import { type CycleSnapshot, cycleBalance, type Grant, heldCredits, spilloverInto, type UsageSnapshot, units } from './balance';

export interface SnapshotInput {
  subject: Subject;
  cycle: Cycle;
  plan: PlanConfig | undefined;
  /** The cycle's rollup items (what they hold as `late` arrived after the close and is not part of the snapshot). */
  rows: readonly RollupRow[];
  grants: readonly Grant[];
  /** Snapshots of earlier cycles (later ones are ignored). */
  snapshots: readonly CycleSnapshot[];
  frozenAt: string;
}

/** What a close of the cycle freezes, per usage type: the balance at the cycle end and the credits expiring with it. */
export function cycleSnapshot({ subject, cycle, plan, rows, grants, snapshots, frozenAt }: SnapshotInput): CycleSnapshot {
  const used = new Map(rows.map((row) => [row.usageType, units(row.total) - units(row.late ?? '0')]));
  const usageTypes = new Set([...Object.keys(plan?.quotas ?? {}), ...used.keys(), ...grantsOf(grants, cycle).map((g) => g.usageType)]);
  const usage: Record<string, UsageSnapshot> = {};
  const expired: Record<string, string> = {};
  for (const usageType of [...usageTypes].sort()) {
    const credits = heldCredits(grants, snapshots, usageType, cycle, cycle.end);
    const balance = cycleBalance({ quota: plan?.quotas[usageType], used: used.get(usageType) ?? 0n, spilloverIn: spilloverInto(grants, usageType, cycle), credits });
    usage[usageType] = {
      limit: toDecimalString(balance.limit),
      spilloverIn: toDecimalString(balance.spilloverIn),
      used: toDecimalString(balance.used),
      overflow: toDecimalString(balance.overflow),
      drawn: Object.fromEntries([...balance.drawn].map(([id, amount]) => [id, toDecimalString(amount)])),
      uncovered: toDecimalString(balance.uncovered),
      spilloverOut: toDecimalString(balance.spilloverOut),
    };
    // Credits whose expiry falls within this cycle are forfeited with it, whatever is left of them.
    for (const { grant } of credits) {
      if (grant.expiresAt !== undefined && grant.expiresAt <= cycle.end) expired[grant.id] = toDecimalString(balance.creditsLeft.get(grant.id) ?? 0n);
    }
  }
  return { subject: subject.id, cycleStart: cycle.start, cycleEnd: cycle.end, plan: subject.plan, status: 'closing', frozenAt, usage, expired };
}

function grantsOf(grants: readonly Grant[], cycle: Cycle): Grant[] {
  return grants.filter((g) => g.grantedAt < cycle.end && (g.expiresAt === undefined || g.expiresAt > cycle.start));
}
