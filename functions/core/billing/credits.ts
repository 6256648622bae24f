import { z } from 'zod';
import { isLosslessNumber } from '../exact-json';
import { FRACTION_DIGITS, type NanoUnits, toDecimalString, toNanoUnits } from '../quantity';

/**
 * The credit rate card: what an action costs in credits, by usage type and by what the event says of it
 * (feature, model, token kind, options such as `transparent: true`). Credits are a usage type of their own
 * (`credits.usageType`): ingest prices each event of a priced usage type and the fold counts the credits under
 * that usage type, in the same transaction as the event's own quantity. So plans put quotas, thresholds and
 * carry-over on credits exactly as on any usage type, and the rate card prices a credit in money.
 *
 * Prices change by version: an event is priced by the version in effect at its `time`, so a new version applies
 * from its date on and never reprices an event before it (nor a closed cycle).
 * Within a version the first rule whose `when` matches sets the credits per unit; every matching surcharge adds
 * its own (transparent background +1). The event's credits are its quantity times that, rounded half up to
 * the ninth decimal (a nano-credit): exact for whole quantities and rates of up to nine decimals.
 */

/** Field values a rule compares with the event's `data` fields; a field the event does not have never matches. */
const matchValue = z.union([z.string().max(256), z.number(), z.boolean()]);
/** A data field a rule matches on: `feature`, `model`, `tokenKind`, `quality`, … (not the quantity). */
const FIELD_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
function fieldNameProblem(name: string): string | undefined {
  if (name === 'quantity' || name === 'usageType') return 'the quantity and usage type are not matched on';
  if (!FIELD_NAME.test(name)) return 'must be a data field name: a letter, then up to 63 letters, digits or _';
  return undefined;
}

/** At most 1,000,000 credits a unit with 9 decimals: a safe quantity's credits stay within 31 digits, inside DynamoDB's 38. */
const MAX_CREDITS_PER_UNIT = 1_000_000;
const creditsPerUnit = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const units = toNanoUnits(value);
  if (units === undefined || units < 0n || units > BigInt(MAX_CREDITS_PER_UNIT) * NANO) {
    ctx.addIssue({ code: 'custom', message: `must be a decimal from 0 to ${MAX_CREDITS_PER_UNIT} with at most ${FRACTION_DIGITS} decimal places` });
    return z.NEVER;
  }
  return units;
});

const ruleSchema = z.strictObject({
  /** Data fields and the values they must hold; `{}` matches every event. */
  when: z
    .record(z.string(), matchValue)
    .superRefine((when, ctx) => {
      // Named here rather than by the record's key schema, so that the message says what is wrong with the name.
      for (const name of Object.keys(when)) {
        const problem = fieldNameProblem(name);
        if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
      }
    })
    .refine((when) => Object.keys(when).length <= 10, 'at most 10 fields per rule')
    .default({}),
  /** Credits per unit of quantity. */
  credits: creditsPerUnit,
});

const versionSchema = z.strictObject({
  /** When this version starts to apply, by event time (an RFC 3339 instant). */
  from: z.iso.datetime({ offset: true }),
  /** The first rule that matches sets the credits per unit; an event no rule matches is quarantined (`unpriced`). */
  rules: z.array(ruleSchema).min(1).max(200),
  /** Every surcharge that matches adds its credits per unit. */
  surcharges: z.array(ruleSchema).max(50).default([]),
});

export const creditsSchema = z.strictObject({
  /** The usage type credits are counted under (configured in `usageTypes`, with `allowFractions` if rates have decimals). */
  usageType: z.string().min(1),
  /** Versions by priced usage type, in ascending `from`. */
  rates: z.record(z.string(), z.array(versionSchema).min(1).max(50)),
});

export type CreditsConfig = z.infer<typeof creditsSchema>;
type Rule = z.infer<typeof ruleSchema>;

const NANO = 10n ** BigInt(FRACTION_DIGITS);

/** The issues of a credits section against the usage types it names (paths below `credits`). */
export function creditsIssues(credits: CreditsConfig, usageTypes: ReadonlySet<string>): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  if (!usageTypes.has(credits.usageType)) issues.push({ path: ['usageType'], message: `unknown usage type "${credits.usageType}"` });
  for (const [usageType, versions] of Object.entries(credits.rates)) {
    if (!usageTypes.has(usageType)) issues.push({ path: ['rates', usageType], message: `unknown usage type "${usageType}"` });
    if (usageType === credits.usageType) issues.push({ path: ['rates', usageType], message: 'credits are not priced in credits' });
    versions.forEach((version, i) => {
      const before = versions[i - 1];
      if (before && Date.parse(version.from) <= Date.parse(before.from)) issues.push({ path: ['rates', usageType, i, 'from'], message: 'must be later than the version before' });
    });
  }
  return issues;
}

/** An event's credits: the usage type they count under and how many (an exact decimal string). */
export interface EventCredits {
  usageType: string;
  quantity: string;
  /** Of a pooled workspace's event: the account whose balance it draws on, and the event's period there. */
  pool?: CreditPool;
}

/** Where a pooled workspace's credits count too: its account, in the account's own day and cycle. */
export interface CreditPool {
  subject: string;
  day: string;
  cycleStart: string;
  /** The workspace's group within the account. */
  group?: string;
}

export type Pricing = { ok: true; credits?: EventCredits } | { ok: false; detail: string };

/**
 * Prices one event: no credits for a usage type the card does not price; its credits when a rule matches;
 * else why it is unpriced. `data` is the event's data object as sent (rules may name any of its fields).
 */
export function priceInCredits(credits: CreditsConfig | undefined, event: { usageType: string; time: string; quantity: string; data: Readonly<Record<string, unknown>> }): Pricing {
  const versions = credits?.rates[event.usageType];
  if (!credits || !versions) return { ok: true };
  const at = Date.parse(event.time);
  const version = versions.findLast((v) => Date.parse(v.from) <= at);
  if (!version) return { ok: false, detail: `no credit rates for "${event.usageType}" at ${event.time}; the first apply from ${versions[0]?.from}` };
  const rule = version.rules.find((r) => matches(r, event.data));
  if (!rule) return { ok: false, detail: `no credit rule of "${event.usageType}" (from ${version.from}) matches the event` };
  const perUnit = version.surcharges.reduce((sum, s) => (matches(s, event.data) ? sum + s.credits : sum), rule.credits);
  const quantity = toNanoUnits(event.quantity) ?? 0n;
  return { ok: true, credits: { usageType: credits.usageType, quantity: toDecimalString(roundHalfUp(quantity * perUnit, NANO)) } };
}

/**
 * The fields of `data` the usage type's rules name, with values a rule could match (a string of at most 256
 * characters, a number, a boolean): what an event must carry on for ingest to price it as it was checked.
 */
export function pricedFields(credits: CreditsConfig | undefined, usageType: string, data: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const version of credits?.rates[usageType] ?? []) {
    for (const rule of [...version.rules, ...version.surcharges]) {
      for (const field of Object.keys(rule.when)) {
        const value = data[field];
        const matchable = typeof value === 'number' || typeof value === 'boolean' || isLosslessNumber(value) || (typeof value === 'string' && value.length <= 256);
        if (matchable) fields[field] = value;
      }
    }
  }
  return fields;
}

function matches(rule: Rule, data: Readonly<Record<string, unknown>>): boolean {
  for (const [field, expected] of Object.entries(rule.when)) {
    const value = data[field];
    const same = isLosslessNumber(value) ? typeof expected === 'number' && value.toString() === String(expected) : value === expected;
    if (!same) return false;
  }
  return true;
}

/** numerator / denominator, rounded half up (never negative here). */
function roundHalfUp(numerator: bigint, denominator: bigint): NanoUnits {
  const whole = numerator / denominator;
  return (numerator % denominator) * 2n >= denominator ? whole + 1n : whole;
}
