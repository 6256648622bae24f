import { LosslessNumber } from '../../functions/core/exact-json';
import { FRACTION_DIGITS, toAmount, toDecimalString, toNanoUnits } from '../../functions/core/quantity';
import { random } from './metering/rollup-model';

describe('toNanoUnits and toDecimalString', () => {
  test.each([
    // [input, nano-units, canonical decimal string]
    [1, 1_000_000_000n, '1'],
    [0.5, 500_000_000n, '0.5'],
    [1.5, 1_500_000_000n, '1.5'],
    [2.25, 2_250_000_000n, '2.25'],
    [0.000000001, 1n, '0.000000001'],
    [9_007_199_254_740_991, 9_007_199_254_740_991_000_000_000n, '9007199254740991'],
    ['0', 0n, '0'],
    ['1.500', 1_500_000_000n, '1.5'],
    [' 42 ', 42_000_000_000n, '42'],
    ['123456789.123456789', 123_456_789_123_456_789n, '123456789.123456789'],
    ['1.1234567890', 1_123_456_789n, '1.123456789'], // a trailing zero is not a tenth decimal
    ['100000000000000000000000000', 100_000_000_000_000_000_000_000_000_000_000_000n, '100000000000000000000000000'],
  ])('%p is %p nano-units, written as %p', (input, units, text) => {
    // Act
    const parsed = toNanoUnits(input);

    // Assert
    expect(parsed).toBe(units);
    expect(toDecimalString(units)).toBe(text);
    expect(toNanoUnits(text)).toBe(units);
  });

  test('0.1 + 0.2 summed in nano-units is exactly "0.3"', () => {
    // Arrange
    expect(0.1 + 0.2).not.toBe(0.3); // the float sum drifts

    // Act
    const sum = (toNanoUnits(0.1) ?? 0n) + (toNanoUnits(0.2) ?? 0n);

    // Assert
    expect(sum).toBe(300_000_000n);
    expect(toDecimalString(sum)).toBe('0.3');
  });

  test('ten thousand additions of 0.0001 make exactly 1', () => {
    // Act
    let sum = 0n;
    for (let i = 0; i < 10_000; i++) sum += toNanoUnits(0.0001) ?? 0n;

    // Assert
    expect(toDecimalString(sum)).toBe('1');
  });

  test.each([['0.0000000001'], ['1.1234567891'], [0.0000000001], [1.0000000001], [1e-10], [1e-21], [1.5e-21], [-3e-25], [5e-324]])('%p has more than 9 decimals → undefined', (input) => {
    expect(FRACTION_DIGITS).toBe(9);
    expect(toNanoUnits(input)).toBeUndefined();
  });

  test.each([
    [1e-7, 100n],
    [1.5e-7, 150n],
    [5e-9, 5n],
    [-2.5e-8, -25n],
    [1e20, 100_000_000_000_000_000_000_000_000_000n],
  ])('the number %p, which JavaScript may print with an exponent, is %p nano-units', (input, units) => {
    expect(toNanoUnits(input)).toBe(units);
  });

  test.each([[1e21], ['1e3'], ['1E-7'], [Number.NaN], [Number.POSITIVE_INFINITY], [Number.NEGATIVE_INFINITY], [''], ['abc'], ['.5'], ['1.'], ['+1'], ['1,5'], ['0x10']])(
    '%p is not a plain decimal → undefined',
    (input) => {
      expect(toNanoUnits(input)).toBeUndefined();
    },
  );

  test.each([
    [-1.5, -1_500_000_000n, '-1.5'],
    ['-0.000000001', -1n, '-0.000000001'],
    ['-12', -12_000_000_000n, '-12'],
  ])('negative %p is %p nano-units, written as %p', (input, units, text) => {
    // Act
    const parsed = toNanoUnits(input);

    // Assert
    expect(parsed).toBe(units);
    expect(toDecimalString(units)).toBe(text);
  });

  test('a negative delta and its positive cancel to "0"', () => {
    expect(toDecimalString((toNanoUnits('-2.5') ?? 1n) + (toNanoUnits('2.5') ?? 1n))).toBe('0');
  });

  test('random nano-unit amounts survive a round trip through their decimal string', () => {
    // Arrange
    const next = random(7);
    const amounts = Array.from({ length: 500 }, () => {
      const whole = BigInt(Math.floor(next() * 1e12));
      const nanos = BigInt(Math.floor(next() * 1e9));
      return (whole * 1_000_000_000n + nanos) * (next() < 0.2 ? -1n : 1n);
    });

    // Act / Assert
    for (const units of amounts) expect(toNanoUnits(toDecimalString(units))).toBe(units);
  });
});

describe('toAmount', () => {
  test.each([
    [1_500_000_000n, 1.5],
    [300_000_000n, 0.3],
    [0n, 0],
    [9_007_199_254_740_991_000_000_000n, 9007199254740991],
    [9_007_199_254_740_994_000_000_000n, 9007199254740994], // 2^53 + 2 is a double
  ])('%p nano-units is the number %p, which JSON writes exactly', (units, value) => {
    expect(toAmount(units)).toBe(value);
  });

  test.each([
    // Past 2^53, more digits than a double keeps, or a double that prints with an exponent.
    [9_007_199_254_740_993_000_000_000n, '9007199254740993'],
    [100_000_000_000_000_001n, '100000000.000000001'],
    [12_345_678_123_456_789n, '12345678.123456789'],
    [-1n, '-0.000000001'],
    [1_000_000_000_000_000_000_000_000_000_000n, '1000000000000000000000'],
  ])('%p nano-units is the exact decimal %p, kept as text', (units, text) => {
    expect(toAmount(units)).toEqual(new LosslessNumber(text));
  });
});
