import { z } from 'zod';
import { SCOPES } from './access/scopes';
import { creditsIssues, creditsSchema } from './billing/credits';
import { rateCardSchema } from './billing/rates';

/**
 * The configuration file: usage types, plans and the subjects that seed the subjects table.
 * Validated once at start; an invalid file stops start-up with the path of the bad key.
 */

/**
 * The id rule of usage types, plans, subjects (workspaces) and grants: the config's ids, and every workspace
 * id a request names in its path (so the API never creates or reads a workspace the config could not name).
 */
export const idSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'must be 1-128 of A-Z a-z 0-9 _ . : - and start with a letter or digit');
const id = idSchema;
const timeZone = z.string().refine(isTimeZone, 'must be an IANA time zone such as "UTC" or "Europe/Berlin"');

export const usageTypeSchema = z.strictObject({
  id,
  unit: z.string().min(1),
  /** Whether a quantity may have a fractional part (at most 9 decimal places). */
  allowFractions: z.boolean().default(false),
});

export const DEFAULT_THRESHOLDS = [80, 100, 110];

export const spilloverSchema = z.discriminatedUnion('policy', [
  z.strictObject({ policy: z.literal('none') }),
  z.strictObject({ policy: z.literal('all') }),
  z.strictObject({ policy: z.literal('capped'), cap: z.number().int().nonnegative() }),
]);

export const quotaSchema = z.strictObject({
  /** The plan allowance per cycle (L). */
  monthlyLimit: z.number().int().nonnegative(),
  /** Use per local day above which `canUse` turns false. */
  dailyLimit: z.number().int().nonnegative().optional(),
  /** Use per cycle at which `fairUseLimitReached` turns true (informational; does not block). */
  fairUseLimit: z.number().int().nonnegative().optional(),
  /** What part of an unused allowance carries into the next cycle. */
  spillover: spilloverSchema.default({ policy: 'none' }),
  /** Whether use may go on once nothing is available (`allow`) or `canUse` turns false (`block`). */
  overage: z.enum(['block', 'allow']).default('block'),
  /** Percentages of the cycle allowance (L + S) that send a threshold email, ascending. */
  thresholds: z
    .array(z.number().int().min(1).max(1000))
    .min(1)
    .refine((t) => t.every((v, i) => i === 0 || v > (t[i - 1] ?? 0)), 'must be strictly ascending')
    .default(DEFAULT_THRESHOLDS),
});

export const planSchema = z.strictObject({
  id,
  quotas: z.record(z.string(), quotaSchema),
  /** Usage types the plan leaves out: their `canUse` is false whatever the credits (a free plan without images). */
  excludes: z.array(z.string()).default([]),
});

export const subjectSchema = z.strictObject({
  id,
  plan: id,
  billingAnchorDay: z.number().int().min(1).max(31),
  timeZone: timeZone.default('UTC'),
  contacts: z.array(z.email()).default([]),
  name: z.string().max(200).optional(),
  /** `account`: an enterprise account whose credit balance its pooled workspaces share (ports Subject). */
  kind: z.literal('account').optional(),
  /** The account whose credit balance this workspace draws on. */
  account: id.optional(),
  /** The workspace's group within its account. */
  workspaceGroup: id.optional(),
});

/** A key for the local runtime only: it is stored hashed at start, and never bundled into a deployment. */
export const apiKeyConfigSchema = z
  .strictObject({
    key: z.string().min(16).max(256).regex(/^\S+$/, 'must have no spaces'),
    scope: z.enum(SCOPES),
    subject: id.optional(),
    name: z.string().min(1).max(200).optional(),
  })
  .refine((k) => (k.scope === 'workspace') === (k.subject !== undefined), { message: 'required for a workspace key, and only for one', path: ['subject'] });

export const configSchema = z
  .strictObject({
    usageTypes: z.array(usageTypeSchema).min(1),
    plans: z.array(planSchema).min(1),
    subjects: z.array(subjectSchema).default([]),
    apiKeys: z.array(apiKeyConfigSchema).default([]),
    /** Prices for reports; without one, reports carry quantities only. */
    rateCard: rateCardSchema.optional(),
    /** Credits per action by usage type and event fields, counted under a usage type of their own (core/billing/credits.ts). */
    credits: creditsSchema.optional(),
    ingest: z
      .strictObject({
        /** Events whose `time` is further ahead of the clock than this are rejected as future_time. */
        maxFutureSeconds: z.number().int().nonnegative().default(300),
        /** Events older than this are rejected as too_old; ledger items expire this long after their time. */
        retentionDays: z.number().int().min(1).max(3650).default(400),
      })
      .prefault({}),
    notifications: z
      .strictObject({
        /** The sender of threshold emails (an address of the SES identity in AWS). */
        from: z.email().default('usage-alerts@example.com'),
        /** Threshold emails link to `{usageBaseUrl}/workspaces/{id}/usage`. */
        usageBaseUrl: z.url({ protocol: /^https?$/ }).default('https://usage.example.com'),
      })
      .prefault({}),
    closes: z
      .strictObject({
        /** How long after a day or cycle ends its close waits for late events. */
        graceMinutes: z
          .number()
          .int()
          .min(0)
          .max(7 * 24 * 60)
          .default(60),
        /**
         * Writes a second the tables a close writes (accounts, subjects, rollups) take from their creation: DynamoDB's
         * warm throughput, for a month close of more workspaces than a new on-demand table's 4,000 writes a second
         * carry within minutes (docs/performance.md, "Closes"). Unset: none bought.
         */
        warmWritesPerSecond: z.number().int().min(4000).max(40_000).optional(),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    const usageTypes = new Set(config.usageTypes.map((u) => u.id));
    const plans = new Set(config.plans.map((p) => p.id));
    reportDuplicates(config.usageTypes, 'usageTypes', ctx);
    reportDuplicates(config.plans, 'plans', ctx);
    reportDuplicates(config.subjects, 'subjects', ctx);
    config.plans.forEach((plan, i) => {
      for (const usageType of Object.keys(plan.quotas)) {
        if (!usageTypes.has(usageType)) {
          ctx.addIssue({ code: 'custom', path: ['plans', i, 'quotas', usageType], message: `unknown usage type "${usageType}"` });
        }
      }
      plan.excludes.forEach((usageType, j) => {
        if (!usageTypes.has(usageType)) ctx.addIssue({ code: 'custom', path: ['plans', i, 'excludes', j], message: `unknown usage type "${usageType}"` });
        else if (plan.quotas[usageType]) ctx.addIssue({ code: 'custom', path: ['plans', i, 'excludes', j], message: `"${usageType}" has a quota in this plan` });
      });
    });
    const keys = new Set<string>();
    config.apiKeys.forEach((apiKey, i) => {
      if (keys.has(apiKey.key)) ctx.addIssue({ code: 'custom', path: ['apiKeys', i, 'key'], message: 'duplicate key' });
      keys.add(apiKey.key);
    });
    for (const usageType of Object.keys(config.rateCard?.prices ?? {})) {
      if (!usageTypes.has(usageType)) ctx.addIssue({ code: 'custom', path: ['rateCard', 'prices', usageType], message: `unknown usage type "${usageType}"` });
    }
    if (config.credits) for (const issue of creditsIssues(config.credits, usageTypes)) ctx.addIssue({ code: 'custom', path: ['credits', ...issue.path], message: issue.message });
    const accounts = new Set(config.subjects.filter((s) => s.kind === 'account').map((s) => s.id));
    config.subjects.forEach((subject, i) => {
      if (subject.account !== undefined && (subject.kind === 'account' || !accounts.has(subject.account)))
        ctx.addIssue({
          code: 'custom',
          path: ['subjects', i, 'account'],
          message: subject.kind === 'account' ? 'an account draws on no other account' : `"${subject.account}" is not an account of this file`,
        });
      if (subject.workspaceGroup !== undefined && subject.account === undefined)
        ctx.addIssue({ code: 'custom', path: ['subjects', i, 'workspaceGroup'], message: 'a workspace group belongs to an account: set account' });
      if (!plans.has(subject.plan)) {
        ctx.addIssue({ code: 'custom', path: ['subjects', i, 'plan'], message: `unknown plan "${subject.plan}"` });
      }
    });
  });

export type Config = z.infer<typeof configSchema>;
export type UsageTypeConfig = z.infer<typeof usageTypeSchema>;
export type PlanConfig = z.infer<typeof planSchema>;
export type QuotaConfig = z.infer<typeof quotaSchema>;
export type SpilloverPolicy = z.infer<typeof spilloverSchema>;
export type SubjectConfig = z.infer<typeof subjectSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly key: string,
    readonly reason: string,
  ) {
    super(`${source}: ${key || '(root)'}: ${reason}`);
  }
}

/** Validates raw JSON text; throws ConfigError naming the first bad key. */
export function parseConfig(text: string, source = 'config'): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(source, '', `not valid JSON (${(error as Error).message})`);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    // An unknown key is reported on its object; name the key itself.
    if (issue?.code === 'unrecognized_keys') throw new ConfigError(source, formatPath([...issue.path, issue.keys[0] ?? '']), 'unknown key');
    throw new ConfigError(source, formatPath(issue?.path ?? []), issue?.message ?? 'invalid');
  }
  return result.data;
}

/** `['plans', 0, 'quotas', 'tokens']` → `plans[0].quotas.tokens` */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part)), '');
}

function reportDuplicates(items: { id: string }[], key: string, ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.id)) ctx.addIssue({ code: 'custom', path: [key, i, 'id'], message: `duplicate id "${item.id}"` });
    seen.add(item.id);
  });
}

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
