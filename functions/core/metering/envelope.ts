import { z } from 'zod';
import { type CreditsConfig, type EventCredits, priceInCredits } from '../billing/credits';
import { isLosslessNumber, LosslessNumber, parseExactJson, stringifyExactJson } from '../exact-json';
import { FRACTION_DIGITS, type NanoUnits, toDecimalString, toNanoUnits } from '../quantity';

/**
 * CloudEvents 1.0 structured-mode usage events: what a valid one is, and for an invalid one
 * the machine-readable reason it is quarantined with.
 */

export const REJECTION_REASONS = [
  'not_json',
  'payload_too_large',
  'invalid_envelope',
  'missing_id',
  'missing_source',
  'missing_subject',
  'unknown_subject',
  'unknown_usage_type',
  'invalid_quantity',
  'invalid_time',
  'future_time',
  'too_old',
  'invalid_dimension',
  'field_too_long',
  'unpriced',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

export interface Rejection {
  reason: RejectionReason;
  detail: string;
}

/** SQS's largest message (1 MiB): the usage queue is set to take it, and a body over it is refused whole. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

export interface Dimensions {
  userId?: string;
  groupId?: string;
  channel?: string;
  feature?: string;
}

/** A validated event, normalized: time in UTC ISO with milliseconds, quantity as an exact decimal string. */
export interface UsageEvent {
  source: string;
  id: string;
  type: string;
  subject: string;
  time: string;
  usageType: string;
  quantity: string;
  dimensions: Dimensions;
  /** What the credit rate card charges for it, when it prices the usage type. */
  credits?: EventCredits;
}

/** What validation needs to know about usage types and the clock. */
export interface EnvelopeRules {
  usageTypes: ReadonlyMap<string, { allowFractions: boolean }>;
  now: Date;
  maxFutureSeconds: number;
  retentionDays: number;
  credits?: CreditsConfig;
}

/** A config's rules at an instant: ingest, `POST …/usages` and replay all validate with these. */
export function envelopeRules(
  config: { usageTypes: readonly { id: string; allowFractions: boolean }[]; ingest: { maxFutureSeconds: number; retentionDays: number }; credits?: CreditsConfig },
  now: Date,
): EnvelopeRules {
  return {
    usageTypes: new Map(config.usageTypes.map((u) => [u.id, u])),
    now,
    maxFutureSeconds: config.ingest.maxFutureSeconds,
    retentionDays: config.ingest.retentionDays,
    ...(config.credits ? { credits: config.credits } : {}),
  };
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;
// Identities are compared exactly, so they are not trimmed; a blank one is missing.
const text = (max: number) => z.string().min(1).max(max).regex(/\S/, 'must not be blank');
const dimension = z.string().min(1).max(256).optional();

/** The CloudEvents envelope of a usage event: what the schema accepts is what ingest accepts (before usage types and the clock). */
export const envelopeSchema = z.object({
  specversion: z.literal('1.0'),
  id: text(256),
  source: text(1024),
  type: text(256),
  subject: text(128),
  time: z.string().regex(RFC3339),
  data: z.object({
    usageType: z.string().min(1).max(128),
    // A literal of more than 15 significant digits arrives as its text (core/exact-json.ts); anything else is refused in z.number()'s words.
    quantity: z.union([z.number(), z.custom<LosslessNumber>(isLosslessNumber)], { error: (issue) => z.number().safeParse(issue.input).error?.issues[0]?.message }),
    userId: dimension,
    groupId: dimension,
    channel: dimension,
    feature: dimension,
  }),
});

/**
 * Every string that becomes part of a DynamoDB key or item, limited in UTF-8 bytes (a character may take
 * up to 4): within these no item, key or expression an event touches can reach a DynamoDB limit.
 */
export const FIELD_BYTE_LIMITS = { id: 256, source: 1024, type: 256, subject: 128, usageType: 128, userId: 256, groupId: 256, channel: 256, feature: 256 } as const;
/** DynamoDB's limit on a partition key; the ledger's is the event's identity, `eventKey`. */
export const MAX_PARTITION_KEY_BYTES = 2048;

/** The first schema problem decides the reason; the path says which field. */
const REASON_BY_FIELD: Record<string, RejectionReason> = {
  id: 'missing_id',
  source: 'missing_source',
  subject: 'missing_subject',
  time: 'invalid_time',
  'data.usageType': 'unknown_usage_type',
  'data.quantity': 'invalid_quantity',
  'data.userId': 'invalid_dimension',
  'data.groupId': 'invalid_dimension',
  'data.channel': 'invalid_dimension',
  'data.feature': 'invalid_dimension',
};

export type Validated = { ok: true; event: UsageEvent } | { ok: false; rejection: Rejection };

type Envelope = z.infer<typeof envelopeSchema>;

/** Validates one event against the envelope, the usage types and the clock. */
export function validateEvent(raw: unknown, rules: EnvelopeRules): Validated {
  // Almost every event is valid: a plain check of exactly the schema's rules accepts those; anything it does
  // not accept goes through the schema, which names the first problem.
  let envelope = wellFormed(raw);
  if (!envelope) {
    const parsed = envelopeSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = (issue?.path ?? []).map(String).join('.');
      const reason = REASON_BY_FIELD[field] ?? 'invalid_envelope';
      return reject(reason, field ? `${field}: ${issue?.message ?? 'invalid'}` : (issue?.message ?? 'invalid'));
    }
    envelope = parsed.data;
  }
  const { data } = envelope;

  const tooLong = overByteLimit(envelope);
  if (tooLong) return reject('field_too_long', tooLong);

  const usageType = rules.usageTypes.get(data.usageType);
  if (!usageType) return reject('unknown_usage_type', `usage type "${data.usageType}" is not configured`);

  const quantityProblem = checkQuantity(data.quantity, usageType.allowFractions);
  if (quantityProblem) return reject('invalid_quantity', quantityProblem);

  const millis = Date.parse(envelope.time);
  if (Number.isNaN(millis) || !isCalendarTime(envelope.time)) return reject('invalid_time', `time "${envelope.time}" is not a valid RFC 3339 instant`);
  const now = rules.now.getTime();
  if (millis > now + rules.maxFutureSeconds * 1000) {
    return reject('future_time', `time ${envelope.time} is more than ${rules.maxFutureSeconds}s ahead of ${rules.now.toISOString()}`);
  }
  if (millis < now - rules.retentionDays * 86_400_000) {
    return reject('too_old', `time ${envelope.time} is older than the ${rules.retentionDays}-day retention window`);
  }

  const dimensions: Dimensions = {};
  for (const key of ['userId', 'groupId', 'channel', 'feature'] as const) {
    const value = data[key];
    if (value !== undefined) dimensions[key] = value;
  }
  const time = CANONICAL_TIME.test(envelope.time) ? envelope.time : new Date(millis).toISOString();
  const quantity = quantityText(data.quantity);
  // Rules may name any field of `data` (model, token kind, options), so they read it as sent.
  const pricing = priceInCredits(rules.credits, { usageType: data.usageType, time, quantity, data: (raw as { data: Record<string, unknown> }).data });
  if (!pricing.ok) return reject('unpriced', pricing.detail);
  const event: UsageEvent = { source: envelope.source, id: envelope.id, type: envelope.type, subject: envelope.subject, time, usageType: data.usageType, quantity, dimensions };
  if (pricing.credits) event.credits = pricing.credits;
  return { ok: true, event };
}

/** An SQS message body holds one event or a JSON array of events. */
export function parseMessageBody(body: string): { ok: true; events: unknown[] } | { ok: false; rejection: Rejection } {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > MAX_MESSAGE_BYTES) return reject('payload_too_large', `message is ${bytes} bytes; the limit is ${MAX_MESSAGE_BYTES}`);
  let parsed: unknown;
  try {
    parsed = parseExactJson(body);
  } catch (error) {
    return reject('not_json', (error as Error).message);
  }
  if (Array.isArray(parsed)) {
    if (parsed.length === 0) return reject('invalid_envelope', 'empty array of events');
    return { ok: true, events: parsed };
  }
  return { ok: true, events: [parsed] };
}

/**
 * Message bodies for events, each a JSON array of as many events as fit in `maxBytes` (UTF-8), in order.
 * An event that cannot fit even alone would be refused by the queue; none can, within the field limits.
 */
export function packEvents(events: readonly unknown[], maxBytes = MAX_MESSAGE_BYTES): string[] {
  const bodies: string[] = [];
  let current: string[] = [];
  let bytes = 2; // `[` and `]`
  for (const event of events) {
    const json = stringifyExactJson(event);
    const size = Buffer.byteLength(json, 'utf8');
    if (current.length > 0 && bytes + 1 + size > maxBytes) {
      bodies.push(`[${current.join(',')}]`);
      current = [];
      bytes = 2;
    }
    bytes += (current.length > 0 ? 1 : 0) + size; // a comma before all but the first
    current.push(json);
  }
  if (current.length > 0) bodies.push(`[${current.join(',')}]`);
  return bodies;
}

/** The event's identity: CloudEvents `source` + `id`, unambiguous whatever characters they hold. */
export function eventKey(event: Pick<UsageEvent, 'source' | 'id'>): string {
  return JSON.stringify([event.source, event.id]);
}

/** The identity an `eventKey` names; undefined for a key that is not one (a hand-written ledger item's). */
export function identityOfKey(key: string): { source: string; id: string } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(key);
  } catch {
    return undefined;
  }
  return Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === 'string' && typeof parsed[1] === 'string' ? { source: parsed[0], id: parsed[1] } : undefined;
}

/** Date.parse rolls 2026-02-30 over into March; an event time must name a real calendar instant. */
/** The envelope, when `raw` meets every rule of envelopeSchema (and so the schema would accept it); else undefined. */
export function wellFormed(raw: unknown): Envelope | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const e = raw as Record<string, unknown>;
  const data = e.data as Record<string, unknown> | null | undefined;
  if (e.specversion !== '1.0' || typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const { id, source, type, subject, time } = e;
  if (!isText(id, 256) || !isText(source, 1024) || !isText(type, 256) || !isText(subject, 128)) return undefined;
  if (typeof time !== 'string' || !RFC3339.test(time)) return undefined;
  const { usageType, quantity, userId, groupId, channel, feature } = data;
  if (typeof usageType !== 'string' || usageType.length < 1 || usageType.length > 128) return undefined;
  if (typeof quantity !== 'number' && !isLosslessNumber(quantity)) return undefined;
  if (!isDimension(userId) || !isDimension(groupId) || !isDimension(channel) || !isDimension(feature)) return undefined;
  return { specversion: '1.0', id, source, type, subject, time, data: { usageType, quantity, userId, groupId, channel, feature } };
}

const isText = (value: unknown, max: number): value is string => typeof value === 'string' && value.length >= 1 && value.length <= max && /\S/.test(value);
const isDimension = (value: unknown): value is string | undefined => value === undefined || (typeof value === 'string' && value.length >= 1 && value.length <= 256);

/** A time as toISOString writes it: kept as given once it is known to name a real instant. */
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function isCalendarTime(time: string): boolean {
  // RFC3339 (checked first) fixes where each field is.
  const field = (from: number, to: number) => Number(time.slice(from, to));
  const [year, month, day, hour, minute, second] = [field(0, 4), field(5, 7), field(8, 10), field(11, 13), field(14, 16), field(17, 19)];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour < 24 && minute < 60 && second < 60;
}

/** The first field over its limit in UTF-8 bytes, or an identity too long for the ledger's key. */
function overByteLimit(envelope: Envelope): string | undefined {
  const { data } = envelope;
  const fields: Record<string, string | undefined> = { id: envelope.id, source: envelope.source, type: envelope.type, subject: envelope.subject };
  for (const name of ['usageType', 'userId', 'groupId', 'channel', 'feature'] as const) fields[`data.${name}`] = data[name];
  for (const [field, value] of Object.entries(fields)) {
    const limit = FIELD_BYTE_LIMITS[field.replace('data.', '') as keyof typeof FIELD_BYTE_LIMITS];
    // A UTF-16 unit takes at most 3 bytes: only a string over a third of its limit needs counting.
    if (value === undefined || value.length * 3 <= limit) continue;
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > limit) return `${field}: ${bytes} bytes in UTF-8; the limit is ${limit}`;
  }
  // Escaped as JSON, a UTF-16 unit takes at most 6 bytes (\u001f).
  if ((envelope.source.length + envelope.id.length) * 6 + 7 <= MAX_PARTITION_KEY_BYTES) return undefined;
  const keyBytes = Buffer.byteLength(eventKey(envelope), 'utf8');
  if (keyBytes > MAX_PARTITION_KEY_BYTES) return `source and id make a ${keyBytes}-byte key (escaped as JSON); the limit is ${MAX_PARTITION_KEY_BYTES}`;
  return undefined;
}

function checkQuantity(quantity: number | LosslessNumber, allowFractions: boolean): string | undefined {
  if (isLosslessNumber(quantity)) return checkQuantityLiteral(quantity.toString(), allowFractions);
  if (!Number.isFinite(quantity)) return 'quantity must be a finite number';
  if (quantity <= 0) return `quantity must be positive, got ${quantity}`;
  if (quantity > Number.MAX_SAFE_INTEGER) return `quantity must be at most ${Number.MAX_SAFE_INTEGER}`;
  if (!allowFractions && !Number.isInteger(quantity)) return `quantity must be an integer for this usage type, got ${quantity}`;
  if (toNanoUnits(quantity) === undefined) return `quantity may have at most 9 decimal places, got ${quantity}`;
  return undefined;
}

/** The same rules as checkQuantity, applied to the literal's exact value rather than to the nearest double. */
function checkQuantityLiteral(literal: string, allowFractions: boolean): string | undefined {
  const { negative, digits, exponent } = decimalParts(literal);
  if (negative || digits === '') return `quantity must be positive, got ${literal}`;
  // digits × 10^exponent, with no zero at either end of digits: a negative exponent means a fraction.
  const wholeDigits = digits.length + exponent;
  const fraction = exponent < 0;
  const tooLarge = wholeDigits > String(Number.MAX_SAFE_INTEGER).length || (wholeDigits > 0 && overMaxSafe(exponent >= 0 ? digits + '0'.repeat(exponent) : digits.slice(0, wholeDigits), fraction));
  if (tooLarge) return `quantity must be at most ${Number.MAX_SAFE_INTEGER}`;
  if (!allowFractions && fraction) return `quantity must be an integer for this usage type, got ${literal}`;
  if (-exponent > FRACTION_DIGITS) return `quantity may have at most ${FRACTION_DIGITS} decimal places, got ${literal}`;
  return undefined;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Whether a number of this whole part (and a fraction, or not) is above 2^53 − 1. */
function overMaxSafe(whole: string, fraction: boolean): boolean {
  const value = BigInt(whole);
  return value > MAX_SAFE || (value === MAX_SAFE && fraction);
}

/** A JSON number literal as sign, significant digits and power of ten: "-0.01250e2" → { true, "125", -2 }. */
function decimalParts(literal: string): { negative: boolean; digits: string; exponent: number } {
  const [, sign = '', whole = '', fraction = '', power = '0'] = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal) ?? [];
  const all = `${whole}${fraction}`.replace(/^0+/, '');
  const digits = all.replace(/0+$/, '');
  return { negative: sign === '-' && digits !== '', digits, exponent: Number(power) - fraction.length + (all.length - digits.length) };
}

/** The quantity as an exact decimal string, once checkQuantity has passed it. */
function quantityText(quantity: number | LosslessNumber): string {
  if (typeof quantity === 'number') return Number.isSafeInteger(quantity) ? String(quantity) : toDecimalString(toNanoUnits(quantity) ?? 0n);
  const { digits, exponent } = decimalParts(quantity.toString());
  // Within the checks, exponent + 9 is between 0 and 25.
  const units: NanoUnits = BigInt(digits) * 10n ** BigInt(exponent + FRACTION_DIGITS);
  return toDecimalString(units);
}

function reject(reason: RejectionReason, detail: string): { ok: false; rejection: Rejection } {
  return { ok: false, rejection: { reason, detail } };
}
