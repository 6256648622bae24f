import { isLosslessNumber, LosslessNumber, parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';

/**
 * JSON whose numbers keep every digit. A double holds any decimal of up to 15 significant digits exactly
 * (it reads back as the same decimal), so text without a longer number literal is read with JSON.parse,
 * at native speed. A longer literal (a sum past 2^53, a 9-decimal credit amount) is kept as its text, a
 * LosslessNumber, and written back as the same bare number token.
 */

export { isLosslessNumber, LosslessNumber };

/** The most significant digits a decimal may have and still come back from a double unchanged. */
export const DOUBLE_EXACT_DIGITS = 15;

// A number literal of 16 or more significant digits holds a run of 16 digits and points; one pass of a
// single character class is the cheapest test of it (a third of JSON.parse's time on a typical event).
const MAYBE_LONG_NUMBER = /[\d.]{16}/;
// Strings are matched whole so that digits inside them are not taken for numbers.
const STRING_OR_NUMBER = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** Parses JSON text; numbers of more than 15 significant digits become LosslessNumber, the rest numbers, as JSON.parse makes them. */
export function parseExactJson(text: string): unknown {
  if (!hasLongNumber(text)) return JSON.parse(text);
  // JSON.parse lets the last of duplicate keys win; so does this.
  return parseLossless(text, null, { parseNumber: numberOrLossless, onDuplicateKey: ({ newValue }) => newValue });
}

/** JSON text of a value that may hold LosslessNumber values, each written as its own number token. */
export function stringifyExactJson(value: unknown): string {
  let exact = false;
  const text = JSON.stringify(value, function (this: Record<string, unknown>, key: string, held: unknown) {
    // `this[key]` is the value before any toJSON: a LosslessNumber has none, but look at the original anyway.
    if (!exact && isLosslessNumber(this[key])) exact = true;
    return held;
  });
  return exact ? (stringifyLossless(value) ?? text) : text;
}

/** Whether the text holds a number literal (outside strings) of more than 15 significant digits. */
export function hasLongNumber(text: string): boolean {
  if (!MAYBE_LONG_NUMBER.test(text)) return false;
  for (const [token] of text.matchAll(STRING_OR_NUMBER)) {
    if (!token.startsWith('"') && significantDigits(token) > DOUBLE_EXACT_DIGITS) return true;
  }
  return false;
}

/** Significant digits of a JSON number literal: "0.000120" → 2, "1.5e300" → 2, "9007199254740993" → 16. */
export function significantDigits(literal: string): number {
  const mantissa = /^-?(\d+)(?:\.(\d+))?/.exec(literal);
  const digits = `${mantissa?.[1] ?? ''}${mantissa?.[2] ?? ''}`.replace(/^0+/, '').replace(/0+$/, '');
  return digits.length;
}

function numberOrLossless(literal: string): number | LosslessNumber {
  return significantDigits(literal) > DOUBLE_EXACT_DIGITS ? new LosslessNumber(literal) : Number(literal);
}
