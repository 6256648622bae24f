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

export function toNumber(units: NanoUnits): number {
  return Number(toDecimalString(units));
}

function numberToPlainString(value: number): string {
  if (!Number.isFinite(value)) return 'NaN';
  const text = String(value);
  if (!/e/i.test(text)) return text;
  // 1e-7 → "0.0000001"; 1e21 → "1000000000000000000000"
  return value.toFixed(20).replace(/\.?0+$/, '');
}
