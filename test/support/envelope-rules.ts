import type { RejectionReason } from '../../functions/core/metering/envelope';

/**
 * The rules of a usage event as docs/events.md states them, written independently of functions/core: every rule
 * an event breaks, as the reason it gives. Property tests judge the parser and the API by it.
 */

type Json = Record<string, unknown>;

export interface StatedRules {
  usageTypes: Record<string, { allowFractions: boolean }>;
  /** Epoch milliseconds. */
  now: number;
  maxFutureSeconds: number;
  retentionDays: number;
}

export const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
/** 1..max UTF-16 units with something other than whitespace (identities are not trimmed, but a blank one is missing). */
const isText = (value: unknown, max: number) => typeof value === 'string' && value.length >= 1 && value.length <= max && value.trim() !== '';
const isDimension = (value: unknown) => value === undefined || (typeof value === 'string' && value.length >= 1 && value.length <= 256);

const isLeap = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
const daysIn = (year: number, month: number) => [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;

/** An RFC 3339 instant with a zone, naming a real calendar date and clock time: its epoch milliseconds; else undefined. */
export function instantOf(time: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/.exec(time);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const [offsetHours, offsetMinutes] = [Number(m[9] ?? 0), Number(m[10] ?? 0)];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number((m[7] ?? '').padEnd(3, '0').slice(0, 3)));
  return date.getTime() - (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
}

/** Digits after the point in the shortest decimal form of the number (1.5e-7 has 8). */
function decimals(value: number): number {
  const [mantissa = '', exponent = '0'] = String(value).split('e');
  const fraction = mantissa.split('.')[1] ?? '';
  return Math.max(0, fraction.length - Number(exponent));
}

export function envelopeViolations(raw: unknown, rules: StatedRules): Set<RejectionReason> {
  const found = new Set<RejectionReason>();
  if (!isObject(raw)) return new Set(['invalid_envelope']);
  if (raw.specversion !== '1.0' || !isText(raw.type, 256) || !isObject(raw.data)) found.add('invalid_envelope');
  if (!isText(raw.id, 256)) found.add('missing_id');
  if (!isText(raw.source, 1024)) found.add('missing_source');
  if (!isText(raw.subject, 128)) found.add('missing_subject');
  const time = typeof raw.time === 'string' ? instantOf(raw.time) : undefined;
  if (time === undefined) found.add('invalid_time');
  else if (time > rules.now + rules.maxFutureSeconds * 1000) found.add('future_time');
  else if (time < rules.now - rules.retentionDays * 86_400_000) found.add('too_old');
  if (!isObject(raw.data)) return found;
  const { usageType, quantity } = raw.data;
  const type = typeof usageType === 'string' && usageType.length <= 128 && Object.hasOwn(rules.usageTypes, usageType) ? rules.usageTypes[usageType] : undefined;
  if (!type) found.add('unknown_usage_type');
  if (
    typeof quantity !== 'number' ||
    !Number.isFinite(quantity) ||
    quantity <= 0 ||
    quantity > Number.MAX_SAFE_INTEGER ||
    decimals(quantity) > 9 ||
    (type && !type.allowFractions && !Number.isInteger(quantity))
  ) {
    found.add('invalid_quantity');
  }
  if (!['userId', 'groupId', 'channel', 'feature'].every((name) => isDimension((raw.data as Json)[name]))) found.add('invalid_dimension');
  // docs/events.md: each string within its limit in UTF-8 bytes, and source + id within a 2,048-byte key as a JSON array.
  const bytes = (value: unknown) => (typeof value === 'string' ? new TextEncoder().encode(value).length : 0);
  const limits: [unknown, number][] = [
    [raw.id, 256],
    [raw.source, 1024],
    [raw.type, 256],
    [raw.subject, 128],
    [raw.data.usageType, 128],
    ...['userId', 'groupId', 'channel', 'feature'].map((n): [unknown, number] => [(raw.data as Json)[n], 256]),
  ];
  if (limits.some(([value, limit]) => bytes(value) > limit) || bytes(JSON.stringify([raw.source, raw.id])) > 2048) found.add('field_too_long');
  return found;
}
