import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { hasLongNumber, LosslessNumber, parseExactJson, significantDigits, stringifyExactJson } from '../../functions/core/exact-json';
import { packEvents, parseMessageBody, validateEvent } from '../../functions/core/metering/envelope';

/**
 * Numbers read from JSON text without loss. Up to 15 significant digits JSON.parse is exact (a double
 * prints back as the same decimal), so that text takes the native path; a longer literal is kept as text.
 */

/** The exact value of a decimal literal as [digits, power of ten], both normalized, by string arithmetic alone. */
function exactValue(literal: string): [string, number] {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal);
  if (!match) throw new Error(`not a literal: ${literal}`);
  const [, sign = '', whole = '', fraction = '', power = '0'] = match;
  let digits = `${whole}${fraction}`.replace(/^0+/, '');
  let exponent = Number(power) - fraction.length;
  while (digits.endsWith('0')) {
    digits = digits.slice(0, -1);
    exponent += 1;
  }
  return digits === '' ? ['0', 0] : [`${sign}${digits}`, exponent];
}

const literalOf = (body: string) => {
  const parsed = parseExactJson(body);
  return parsed instanceof LosslessNumber ? `lossless ${parsed.toString()}` : `number ${String(parsed)}`;
};

describe('the boundary between JSON.parse and the lossless parser', () => {
  test.each([
    // 15 significant digits: a double, exactly the decimal written
    ['123456789012345', 'number 123456789012345'],
    ['-123456789012.345', 'number -123456789012.345'],
    ['0.000000123456789012345', 'number 1.23456789012345e-7'],
    ['1.23456789012345e5', 'number 123456.789012345'],
    ['12345678.1234567', 'number 12345678.1234567'],
    // leading and trailing zeros are not significant
    ['1.50000000000000000000', 'number 1.5'],
    ['100000000000000000000', 'number 100000000000000000000'],
    ['-0.0000000000000000001', 'number -1e-19'],
    // 16 or more: kept as written, whatever the form
    ['1234567890123456', 'lossless 1234567890123456'],
    ['9007199254740993', 'lossless 9007199254740993'],
    ['-9007199254740993', 'lossless -9007199254740993'],
    ['12345678.123456789', 'lossless 12345678.123456789'],
    ['100000000.000000001', 'lossless 100000000.000000001'],
    ['0.0001234567890123456', 'lossless 0.0001234567890123456'],
    ['1.234567890123456e5', 'lossless 1.234567890123456e5'],
    ['-1.234567890123456E-5', 'lossless -1.234567890123456E-5'],
  ])('%s is read as the %s', (literal, expected) => {
    expect(literalOf(literal)).toBe(expected);
    expect(hasLongNumber(`[${literal}]`)).toBe(expected.startsWith('lossless'));
  });

  test('significant digits: zeros at either end do not count, the exponent does not either', () => {
    expect(['0', '-0.0', '7', '0.0012', '1200', '1.5e300', '9007199254740993', '12345678.123456789'].map(significantDigits)).toEqual([0, 0, 1, 2, 2, 2, 16, 17]);
  });

  test('digits inside strings are not numbers: a long numeric id leaves the body on the native path', () => {
    const body = '{"id":"12345678901234567890","source":"//a.b/12345678.123456789","data":{"quantity":5}}';
    expect(hasLongNumber(body)).toBe(false);
    expect(parseExactJson(body)).toEqual(JSON.parse(body));
  });

  test('up to 15 significant digits, a double reads back as the very decimal written (2,000 literals)', () => {
    // The claim the native path rests on, tested without the code under test: the literal and String(double) are the same decimal.
    const literal = fc
      .tuple(fc.boolean(), fc.bigInt({ min: 1n, max: 10n ** 15n - 1n }), fc.integer({ min: 0, max: 15 }), fc.integer({ min: -30, max: 30 }), fc.boolean())
      .map(([negative, digits, point, power, withExponent]) => {
        const text = digits.toString().padStart(point + 1, '0');
        const decimal = `${negative ? '-' : ''}${text.slice(0, text.length - point)}${point > 0 ? `.${text.slice(text.length - point)}` : ''}`;
        return withExponent ? `${decimal}e${power}` : decimal;
      });
    fc.assert(
      fc.property(literal, (text) => {
        const parsed = parseExactJson(`{"q":${text}}`) as { q: unknown };
        expect(typeof parsed.q).toBe('number');
        expect(exactValue(String(parsed.q))).toEqual(exactValue(text));
      }),
      { numRuns: 2_000, seed: 20261124 },
    );
  });

  test('past 15 digits a double may not: the parser keeps the literal where JSON.parse changes it', () => {
    for (const text of ['9007199254740993', '12345678.123456789', '0.1000000000000000055511151231257827']) {
      expect(exactValue(String(JSON.parse(text)))).not.toEqual(exactValue(text));
      expect(String(parseExactJson(text))).toBe(text);
    }
  });

  test('duplicate keys: the last wins, as with JSON.parse', () => {
    expect(parseExactJson('{"q":1,"q":12345678.123456789}')).toEqual({ q: new LosslessNumber('12345678.123456789') });
  });
});

describe('stringifyExactJson', () => {
  test('writes a LosslessNumber as its bare token, and anything else as JSON.stringify does', () => {
    const value = { usedAmount: new LosslessNumber('9007199254740994'), nested: [new LosslessNumber('0.000000001'), 1.5, 'text "quoted"', null] };
    expect(stringifyExactJson(value)).toBe('{"usedAmount":9007199254740994,"nested":[0.000000001,1.5,"text \\"quoted\\"",null]}');
    const plain = { a: [1, 2.5, 'x'], b: { c: true, d: undefined } };
    expect(stringifyExactJson(plain)).toBe(JSON.stringify(plain));
  });
});

describe('quantities at ingest, read from the text', () => {
  const rules = {
    usageTypes: new Map([
      ['credits', { allowFractions: true }],
      ['tokens', { allowFractions: false }],
    ]),
    now: new Date('2026-11-24T10:30:00.000Z'),
    maxFutureSeconds: 300,
    retentionDays: 400,
  };
  const body = (usageType: string, quantity: string) =>
    `{"specversion":"1.0","id":"e1","source":"//test","type":"com.example.usage","subject":"ws_a","time":"2026-11-24T10:00:00.000Z","data":{"usageType":"${usageType}","quantity":${quantity}}}`;
  const judge = (usageType: string, quantity: string) => {
    const split = parseMessageBody(body(usageType, quantity));
    if (!split.ok) return split.rejection.reason;
    const result = validateEvent(split.events[0], rules);
    return result.ok ? result.event.quantity : result.rejection.reason;
  };

  test.each([
    ['credits', '12345678.123456789', '12345678.123456789'],
    ['credits', '100000000.000000001', '100000000.000000001'],
    ['credits', '0.000000001', '0.000000001'],
    ['credits', '1e-9', '0.000000001'],
    ['credits', '1.234567890123456789e8', 'invalid_quantity'], // 10 decimals
    ['credits', '1234567.1234567891', 'invalid_quantity'], // 10 decimals, where the nearest double has 9
    ['credits', '9007199254740990.999999999', '9007199254740990.999999999'],
    ['credits', '9007199254740991.000000001', 'invalid_quantity'], // above 2^53 − 1
    ['tokens', '9007199254740991', '9007199254740991'],
    ['tokens', '9007199254740991.00000000000', '9007199254740991'],
    ['tokens', '9007199254740992', 'invalid_quantity'],
    ['tokens', '9007199254740993', 'invalid_quantity'],
    ['tokens', '1.0000000000000000001', 'invalid_quantity'], // not an integer, though its double is 1
    ['tokens', '-1234567890123456789', 'invalid_quantity'],
    ['tokens', '-0.00000000000000000000', 'invalid_quantity'],
  ])('%s %s → %s', (usageType, quantity, expected) => {
    expect(judge(usageType, quantity)).toBe(expected);
  });

  test('a message packed from parsed events keeps each literal, so the queue carries what was posted', () => {
    const parsed = parseExactJson(`[${body('credits', '12345678.123456789')},${body('tokens', '7')}]`) as unknown[];
    const [packed = ''] = packEvents(parsed);
    expect(packed).toContain('"quantity":12345678.123456789}');
    expect(packed).toContain('"quantity":7}');
  });
});
