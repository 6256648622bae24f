import { LosslessNumber } from './exact-json';

/**
 * Exact quantities. Rollups must add up to the event, so quantities are folded as integer
 * nano-units (bigint) and written to DynamoDB as decimal strings, which DynamoDB adds exactly.
 * A float sum would drift (0.1 + 0.2 !== 0.3).
 */
export const FRACTION_DIGITS = 9;
const SCALE = 10n ** BigInt(FRACTION_DIGITS);

export type NanoUnits = bigint;

/** Parses a JSON number or DynamoDB number string; undefined when it has more than 9 decimals. */
export function toNanoUnits(value: number | string): NanoUnits | undefined {
  // Most quantities are whole numbers: no text to parse.
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value) * SCALE;
  const text = typeof value === 'number' ? numberToPlainString(value) : value.trim();
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) return undefined;
  const [, sign, whole, fraction = ''] = match;
  const trimmed = fraction.replace(/0+$/, '');
  if (trimmed.length > FRACTION_DIGITS) return undefined;
  const units = BigInt(whole ?? '0') * SCALE + BigInt(trimmed.padEnd(FRACTION_DIGITS, '0'));
  return sign === '-' ? -units : units;
}

/** Decimal string without exponent and without trailing zeros: 1500000000n → "1.5". */
export function toDecimalString(units: NanoUnits): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const whole = abs / SCALE;
  const fraction = (abs % SCALE).toString().padStart(FRACTION_DIGITS, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

/**
 * An amount as the API answers it: a number where the double prints as the exact decimal (almost always),
 * else the decimal's text, which the HTTP adapter writes as the same bare number token. Either way the
 * JSON text is exact, past 2^53 and to the 9th decimal.
 */
export type Amount = number | LosslessNumber;

export function toAmount(units: NanoUnits): Amount {
  const text = toDecimalString(units);
  const value = Number(text);
  return String(value) === text ? value : new LosslessNumber(text);
}

function numberToPlainString(value: number): string {
  if (!Number.isFinite(value)) return 'NaN';
  const text = String(value);
  if (!/e/i.test(text)) return text;
  // Beyond 1e21 a double no longer holds a whole number of units anyone meant: refused, as its text is not plain.
  if (Math.abs(value) >= 1e21) return text;
  // Shift the decimal point of the shortest round-trip form by its exponent, digit by digit:
  // 1e-7 → "0.0000001", 1.5e-21 → "0.0000000000000000000015" (too precise, so refused), 1e21 → "1" + 21 zeros.
  const [mantissa = '', exponent = '0'] = text.toLowerCase().split('e');
  const negative = mantissa.startsWith('-');
  const [whole = '', fraction = ''] = mantissa.replace('-', '').split('.');
  const digits = whole + fraction;
  const point = whole.length + Number(exponent);
  const plain = point <= 0 ? `0.${'0'.repeat(-point)}${digits}` : point >= digits.length ? digits + '0'.repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return `${negative ? '-' : ''}${plain}`;
}
