import type { CycleSnapshot, Grant } from '../../functions/core/billing/balance';
import type { Adjustment } from '../../functions/core/billing/billing-ports';
import type { RollupRow } from '../../functions/core/metering/metering-ports';
import type { AuditResult } from '../../functions/core/reporting/audit';
import { utcCycleStart } from '../ground-truth';
import type { DuplicateWindow } from './injector';
import { cycleEnd, type Expected, nano, PLANS, THRESHOLDS } from './scenarios';

/**
 * The invariants a run must keep, checked against the scenario's own expectations (scenarios.ts), never
 * against what the code computes. Each check returns the violations it found; none means the run kept them.
 */

/** How a run's results are read: through the adapters in process, or through the API and the stand-ins from outside. */
export interface Observer {
  /** Day and cycle items of a subject (the day items carry their hour counters as `h#YYYY-MM-DDTHH`). */
  rollups(subject: string, kind: 'day' | 'cycle'): Promise<RollupRow[]>;
  /** Member items (user or group) of a cycle, or undefined where the observer cannot see them. */
  members?(subject: string, kind: 'user' | 'group', cycleStart: string, usageType: string): Promise<RollupRow[]>;
  /** Quarantined events, each as the identity `quarantineIdentity` gives an expected one. */
  quarantine(): Promise<string[]>;
  quarantineIdentity(expected: { key: string; index: number; reason: string; body: string }): string;
  alerts(subject: string): Promise<{ sk: string; notify: boolean }[]>;
  emails(): Promise<{ to: string; subject: string; text: string }[]>;
  snapshots(subject: string): Promise<CycleSnapshot[]>;
  grants(subject: string): Promise<Grant[]>;
  adjustments(subject: string): Promise<Adjustment[]>;
  audit(): Promise<AuditResult>;
}

export interface Stage {
  /** Phases processed so far (1: before the close; 2: late events after it). */
  phases: number;
  /** Expectations after the first phase alone: what the close froze. */
  beforeClose: Expected;
  /** Whether the adjustments of the late events must be recorded by now. */
  adjustmentsDue: boolean;
}

export interface CheckReport {
  checks: number;
  violations: string[];
}

export async function checkInvariants(expected: Expected, stage: Stage, observer: Observer, windows: readonly DuplicateWindow[]): Promise<CheckReport> {
  const report: CheckReport = { checks: 0, violations: [] };
  const compare = (what: string, want: Map<string, bigint>, got: Map<string, bigint>) => {
    for (const key of new Set([...want.keys(), ...got.keys()])) {
      report.checks += 1;
      const a = want.get(key) ?? 0n;
      const b = got.get(key) ?? 0n;
      if (a !== b) report.violations.push(`${what} ${key}: expected ${a}, found ${b} (nano-units)`);
    }
  };
  const scenario = expected.scenario;
  const nonZero = (map: Map<string, bigint>) => new Map([...map].filter(([, v]) => v !== 0n));

  // Every valid event counted once in every rollup.
  for (const subject of scenario.subjects) {
    const days = await observer.rollups(subject.id, 'day');
    const cycles = await observer.rollups(subject.id, 'cycle');
    const hours = new Map<string, bigint>();
    for (const row of days) for (const [name, value] of Object.entries(row.counters)) if (name.startsWith('h#')) hours.set(`${subject.id}|${row.usageType}|${name.slice(2)}`, nano(value));
    const mine = (map: Map<string, bigint>) => new Map([...map].filter(([k]) => k.startsWith(`${subject.id}|`)));
    compare('hour', nonZero(mine(expected.hour)), nonZero(hours));
    compare('day', nonZero(mine(expected.day)), nonZero(new Map(days.map((r) => [`${subject.id}|${r.usageType}|${r.period}`, nano(r.total)]))));
    compare('cycle', nonZero(mine(expected.cycle)), nonZero(new Map(cycles.map((r) => [`${subject.id}|${r.usageType}|${r.period}`, nano(r.total)]))));
    if (!observer.members) continue;
    for (const kind of ['user', 'group'] as const) {
      const want = kind === 'user' ? expected.user : expected.group;
      const got = new Map<string, bigint>();
      for (const cycle of cycles) {
        for (const row of await observer.members(subject.id, kind, cycle.period, cycle.usageType)) got.set(`${subject.id}|${row.usageType}|${row.period}|${row.member ?? ''}`, nano(row.total));
      }
      compare(kind, nonZero(mine(want)), nonZero(got));
    }
  }

  // Every invalid event quarantined with its reason, once per message that carried it.
  const counts = (items: string[]) => items.reduce((m, k) => m.set(k, (m.get(k) ?? 0n) + 1n), new Map<string, bigint>());
  compare('quarantined', counts(expected.quarantined().map((q) => observer.quarantineIdentity(q))), counts(await observer.quarantine()));

  // The close: one snapshot per workspace of the cycle that was current, frozen from the first phase's events;
  // spillover granted once into the next cycle, by the plan's policy. Late events are adjustments, never changes.
  const spillover = new Map<string, bigint>();
  for (const subject of scenario.subjects) {
    const c0 = utcCycleStart(new Date(scenario.now), subject.billingAnchorDay);
    const c1 = cycleEnd(c0, subject.billingAnchorDay).toISOString();
    const snapshots = await observer.snapshots(subject.id);
    report.checks += 1;
    if (snapshots.length !== 1 || snapshots[0]?.cycleStart !== c0.toISOString() || snapshots[0]?.status !== 'closed') {
      report.violations.push(`close ${subject.id}: expected one closed snapshot of ${c0.toISOString()}, found ${JSON.stringify(snapshots.map((s) => [s.cycleStart, s.status]))}`);
      continue;
    }
    const snapshot = snapshots[0];
    const grants = await observer.grants(subject.id);
    for (const usageType of ['tokens', 'credits'] as const) {
      const used = stage.beforeClose.cycleTotal(subject.id, usageType, c0.toISOString());
      compare('snapshot used', new Map([[`${subject.id}|${usageType}`, used]]), new Map([[`${subject.id}|${usageType}`, nano(snapshot.usage[usageType]?.used ?? '0')]]));
      const quota: { monthlyLimit: number; spillover?: { policy: string; cap?: number } } = PLANS[subject.plan][usageType];
      const left = nano(quota.monthlyLimit) > used ? nano(quota.monthlyLimit) - used : 0n;
      const policy = quota.spillover?.policy ?? 'none';
      const out = policy === 'all' ? left : policy === 'capped' ? (left < nano(quota.spillover?.cap ?? 0) ? left : nano(quota.spillover?.cap ?? 0)) : 0n;
      spillover.set(`${subject.id}|${usageType}|${c1}`, out);
      const granted = grants.filter((g) => g.kind === 'spillover' && g.usageType === usageType);
      compare('spillover', new Map([[`${subject.id}|${usageType}|${c1}`, out]]), new Map(granted.map((g) => [`${subject.id}|${usageType}|${g.cycleStart ?? ''}`, nano(g.amount)])));
      if (!stage.adjustmentsDue) continue;
      const late = expected.cycleTotal(subject.id, usageType, c0.toISOString()) - used;
      const recorded = (await observer.adjustments(subject.id)).filter((a) => a.usageType === usageType && a.cycleStart === c0.toISOString()).reduce((sum, a) => sum + nano(a.delta), 0n);
      compare('adjustments', new Map([[`${subject.id}|${usageType}`, late]]), new Map([[`${subject.id}|${usageType}`, recorded]]));
    }
  }

  // Threshold alerts: every threshold the final total reached is recorded, none the total never reached; the
  // highest reached notifies. Each notifying alert is emailed once to each contact, plus once for each send
  // whose "sent" mark was never written (the window the README names); nothing else is sent.
  const wantEmails = new Map<string, bigint>();
  for (const subject of scenario.subjects) {
    const recorded = await observer.alerts(subject.id);
    const cycles = [...expected.cycle.keys()].filter((k) => k.startsWith(`${subject.id}|`)).map((k) => k.split('|'));
    for (const [, usageType = '', cycleStart = ''] of cycles) {
      const quota: { monthlyLimit: number } = PLANS[subject.plan][usageType as 'tokens' | 'credits'];
      const allowance = nano(quota.monthlyLimit) + (spillover.get(`${subject.id}|${usageType}|${cycleStart}`) ?? 0n);
      const reached = (total: bigint) => THRESHOLDS.filter((t) => total * 100n >= BigInt(t) * allowance);
      const must = reached(expected.cycleTotal(subject.id, usageType, cycleStart));
      const may = reached(expected.cycleUpper.get(`${subject.id}|${usageType}|${cycleStart}`) ?? 0n);
      const mine = recorded.filter((a) => a.sk.startsWith(`${cycleStart}#${usageType}#`));
      const thresholds = mine.map((a) => Number(a.sk.split('#').at(-1)));
      report.checks += 1;
      if (must.some((t) => !thresholds.includes(t)) || thresholds.some((t) => !may.includes(t)) || new Set(thresholds).size !== thresholds.length) {
        report.violations.push(`alerts ${subject.id} ${usageType} ${cycleStart}: recorded ${JSON.stringify(thresholds)}, must ${JSON.stringify(must)}, may ${JSON.stringify(may)}`);
      }
      const highest = Math.max(0, ...thresholds);
      if (highest > 0 && !mine.some((a) => a.notify && a.sk.endsWith(`#${String(highest).padStart(4, '0')}`)))
        report.violations.push(`alerts ${subject.id} ${usageType} ${cycleStart}: the highest (${highest}%) does not notify`);
      for (const alert of mine.filter((a) => a.notify)) {
        for (const to of subject.contacts) {
          const key = emailKey(to, usageType, Number(alert.sk.split('#').at(-1)), resetsText(cycleEnd(new Date(cycleStart), subject.billingAnchorDay)));
          wantEmails.set(key, (wantEmails.get(key) ?? 0n) + 1n);
        }
      }
    }
  }
  for (const w of windows) {
    const key = w.alert ? windowKey(w, expected) : emailKey(w.to, /monthly (\S+)$/.exec(w.subject ?? '')?.[1] ?? '?', Number(/used (\d+)%/.exec(w.subject ?? '')?.[1]), w.resets ?? '?');
    wantEmails.set(key, (wantEmails.get(key) ?? 0n) + 1n);
  }
  const gotEmails = (await observer.emails()).map((e) =>
    emailKey(e.to, /monthly (\S+)$/.exec(e.subject)?.[1] ?? '?', Number(/used (\d+)%/.exec(e.subject)?.[1]), /resets on (.*)\./.exec(e.text)?.[1] ?? '?'),
  );
  compare('emails', wantEmails, counts(gotEmails));

  // Reports reconcile: the audit finds the ledger, rollups, snapshots, late items and written reports in agreement.
  const audit = await observer.audit();
  report.checks += audit.rows.length;
  for (const row of audit.rows.filter((r) => !r.ok)) report.violations.push(`audit ${row.subject} ${row.cycleStart} ${row.usageType} ${row.check}: ledger ${row.expected}, found ${row.actual}`);
  return report;
}

const emailKey = (to: string, usageType: string, threshold: number, resets: string) => `${to} | ${usageType} ${threshold}% | resets ${resets}`;

/** A window named by its alert key (subject#cycleStart#usageType#threshold) as the email it concerns. */
function windowKey(w: DuplicateWindow, expected: Expected): string {
  const [subject = '', cycleStart = '', usageType = '', threshold = '0'] = (w.alert ?? '').split('#');
  return emailKey(w.to, usageType, Number(threshold), resetsText(cycleEnd(new Date(cycleStart), expected.anchor(subject))));
}

/** "15 December 2026 at 00:00 UTC", as the email states a UTC workspace's reset. */
function resetsText(at: Date): string {
  const month = at.toLocaleString('en-GB', { month: 'long', timeZone: 'UTC' });
  return `${at.getUTCDate()} ${month} ${at.getUTCFullYear()} at 00:00 UTC`;
}
