import { describe, expect, test } from '@jest/globals';
import { units } from '../../../functions/core/billing/balance';
import { lineAmount, type Price, priceSchema, priceUsage, rateCardSchema } from '../../../functions/core/billing/rates';
import { ConfigError, parseConfig } from '../../../functions/core/config';

/**
 * Money from the rate card: exact integer arithmetic on nano-units, rounded half up once per line.
 * Every expected amount is worked out by hand in the comments.
 */

const N = 1_000_000_000n; // nano-units per unit

/** An independent formatter for whole and half quantities (exact in a double for the values used here). */
const fmt = (q: bigint): string => String(Number(q) / 1e9);

describe('lineAmount rounds quantity × unitPrice / per half up, once', () => {
  // [label, quantity in nano-units, unitPrice, per, expected minor units]
  const cases: [string, bigint, number, number, bigint][] = [
    ['exactly .5 rounds up: 1 × 1 / 2 = 0.5', 1n * N, 1, 2, 1n],
    ['exactly .5 rounds up, not to even: 5 × 1 / 2 = 2.5', 5n * N, 1, 2, 3n],
    ['exactly .5 rounds up: 250 tokens at 2 per 1000 = 0.5', 250n * N, 2, 1000, 1n],
    ['just below .5 rounds down: 249 tokens at 2 per 1000 = 0.498', 249n * N, 2, 1000, 0n],
    ['just above .5 rounds up: 251 tokens at 2 per 1000 = 0.502', 251n * N, 2, 1000, 1n],
    ['one nano-unit below .5 rounds down: 0.999999999 × 1 / 2 = 0.4999999995', N - 1n, 1, 2, 0n],
    ['one nano-unit above .5 rounds up: 1.000000001 × 1 / 2 = 0.5000000005', N + 1n, 1, 2, 1n],
    ['a whole result is exact: 3000 tokens at 2 per 1000 = 6', 3000n * N, 2, 1000, 6n],
    ['below .5 of a larger amount: 1.4 × 10 = 14, 0.14 × 10 = 1.4 → 1', 140_000_000n, 10, 1, 1n],
    ['nothing costs nothing', 0n, 7, 3, 0n],
  ];
  test.each(cases)('%s', (_label, quantity, unitPrice, per, expected) => {
    // Act
    const amount = lineAmount(quantity, unitPrice, per);

    // Assert
    expect(amount).toBe(expected);
  });

  test('big quantities stay exact: 10^12 tokens at 2 per 1000 = 2,000,000,000', () => {
    // Act
    const amount = lineAmount(1_000_000_000_000n * N, 2, 1000);

    // Assert
    expect(amount).toBe(2_000_000_000n);
  });

  test('beyond 2^53 the bigint result is exact: 10^18 units at 7 per 3 = 2,333,333,333,333,333,333.33 → …333', () => {
    // Act
    const amount = lineAmount(10n ** 18n * N, 7, 3);

    // Assert: a double would give 2333333333333333500
    expect(amount).toBe(2_333_333_333_333_333_333n);
    expect(amount > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
  });

  test('10^15 + 1 tokens at 1 per 2: 500,000,000,000,000.5 rounds up to …001', () => {
    expect(lineAmount((10n ** 15n + 1n) * N, 1, 2)).toBe(500_000_000_000_001n);
  });

  // [label, decimal quantity, hand-written nano-units, unitPrice, per, expected]
  const fractions: [string, string, bigint, number, number, bigint][] = [
    ['0.5 × 3 = 1.5 → 2', '0.5', 500_000_000n, 3, 1, 2n],
    ['0.25 × 2 = 0.5 → 1', '0.25', 250_000_000n, 2, 1, 1n],
    ['0.25 × 1 = 0.25 → 0', '0.25', 250_000_000n, 1, 1, 0n],
    ['0.000000001 × 500,000,000 = 0.5 → 1', '0.000000001', 1n, 500_000_000, 1, 1n],
    ['0.000000001 × 499,999,999 = 0.499999999 → 0', '0.000000001', 1n, 499_999_999, 1, 0n],
    ['2.75 credits at 3 per 2 = 4.125 → 4', '2.75', 2_750_000_000n, 3, 2, 4n],
  ];
  test.each(fractions)('fractional quantity %s', (_label, decimal, nanoUnits, unitPrice, per, expected) => {
    // Arrange
    const quantity = units(decimal);
    expect(quantity).toBe(nanoUnits);

    // Act
    const amount = lineAmount(quantity, unitPrice, per);

    // Assert
    expect(amount).toBe(expected);
  });
});

describe('priceUsage', () => {
  const price: Price = priceSchema.parse({ unitPrice: 2, per: 1000, features: { sd: 4, hd: 8 } });

  test('priced features get their own lines; unpriced features and plain events go to the base line', () => {
    // Arrange: 10,000 tokens: hd 1,500, sd 0, 'draft' (unpriced) 2,000, the rest named no feature
    const byFeature = new Map([
      ['hd', 1500n * N],
      ['sd', 0n],
      ['draft', 2000n * N],
    ]);

    // Act
    const lines = priceUsage(price, 10_000n * N, byFeature, fmt);

    // Assert: base 10,000 − 1,500 = 8,500 at 2/1000 = 17; hd 1,500 at 8/1000 = 12; sd has nothing and is left out
    expect(lines).toEqual([
      { feature: null, quantity: '8500', unitPrice: 2, per: 1000, amount: 17 },
      { feature: 'hd', quantity: '1500', unitPrice: 8, per: 1000, amount: 12 },
    ]);
    expect(lines.reduce((sum, l) => sum + l.amount, 0)).toBe(29);
  });

  test('features are listed in name order after the base line', () => {
    // Arrange: sd 1,000 at 4/1000 = 4; hd 1,000 at 8/1000 = 8; base 500 at 2/1000 = 1
    const byFeature = new Map([
      ['sd', 1000n * N],
      ['hd', 1000n * N],
    ]);

    // Act
    const lines = priceUsage(price, 2500n * N, byFeature, fmt);

    // Assert
    expect(lines.map((l) => [l.feature, l.quantity, l.amount])).toEqual([
      [null, '500', 1],
      ['hd', '1000', 8],
      ['sd', '1000', 4],
    ]);
  });

  test('when every unit is of a priced feature there is no base line', () => {
    // Act
    const lines = priceUsage(price, 750n * N, new Map([['hd', 750n * N]]), fmt);

    // Assert: 750 at 8/1000 = 6
    expect(lines).toEqual([{ feature: 'hd', quantity: '750', unitPrice: 8, per: 1000, amount: 6 }]);
  });

  test('no use gives no lines', () => {
    expect(priceUsage(price, 0n, new Map(), fmt)).toEqual([]);
  });

  test('each line rounds on its own: two half minor units make two, the amount is the sum of the lines', () => {
    // Arrange: per 1: base 0.5 × 1 = 0.5 → 1; 'x' 0.25 × 2 = 0.5 → 1. Rounded once on the whole it would be 1.
    const halves: Price = priceSchema.parse({ unitPrice: 1, features: { x: 2 } });

    // Act
    const lines = priceUsage(halves, units('0.75'), new Map([['x', units('0.25')]]), fmt);

    // Assert
    expect(lines).toEqual([
      { feature: null, quantity: '0.5', unitPrice: 1, per: 1, amount: 1 },
      { feature: 'x', quantity: '0.25', unitPrice: 2, per: 1, amount: 1 },
    ]);
    expect(lines.reduce((sum, l) => sum + l.amount, 0)).toBe(2);
  });

  test('a price without features prices the whole total at the base price', () => {
    // Arrange: per defaults to 1, features to {}
    const plain = priceSchema.parse({ unitPrice: 5 });

    // Act
    const lines = priceUsage(plain, 3n * N, new Map([['hd', 1n * N]]), fmt);

    // Assert: 3 × 5 = 15
    expect(plain).toEqual({ unitPrice: 5, per: 1, features: {} });
    expect(lines).toEqual([{ feature: null, quantity: '3', unitPrice: 5, per: 1, amount: 15 }]);
  });
});

describe('rateCardSchema', () => {
  test.each(['usd', 'XXY', 'US', 'USDX', ''])('rejects the currency %p', (currency) => {
    // Act
    const result = rateCardSchema.safeParse({ currency, prices: {} });

    // Assert
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['currency']);
  });

  test.each(['JPY', 'USD', 'EUR'])('accepts the ISO 4217 code %p and defaults prices to none', (currency) => {
    // Act
    const result = rateCardSchema.safeParse({ currency });

    // Assert
    expect(result.success).toBe(true);
    expect(result.data).toEqual({ currency, prices: {} });
  });

  test('rejects negative, fractional and unknown price keys, and a per of 0', () => {
    const bad = [{ unitPrice: -1 }, { unitPrice: 1.5 }, { unitPrice: 1, per: 0 }, { unitPrice: 1, features: { hd: 0.5 } }, { unitPrice: 1, tiers: [] }];
    for (const tokens of bad) expect(rateCardSchema.safeParse({ currency: 'USD', prices: { tokens } }).success).toBe(false);
  });
});

describe('parseConfig with a rate card', () => {
  const base = {
    usageTypes: [{ id: 'tokens', unit: 'token' }],
    plans: [{ id: 'free', quotas: { tokens: { monthlyLimit: 1000 } } }],
  };

  test('a price for a usage type the config does not define names rateCard.prices.<type>', () => {
    // Arrange
    const text = JSON.stringify({ ...base, rateCard: { currency: 'USD', prices: { tokens: { unitPrice: 2, per: 1000 }, videos: { unitPrice: 9 } } } });

    // Act
    let error: unknown;
    try {
      parseConfig(text, 'cfg.json');
    } catch (e) {
      error = e;
    }

    // Assert
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe('rateCard.prices.videos');
    expect((error as ConfigError).reason).toMatch(/unknown usage type "videos"/);
    expect((error as ConfigError).message).toMatch(/^cfg\.json: rateCard\.prices\.videos: /);
  });

  test('a bad currency names rateCard.currency', () => {
    // Act / Assert
    expect(() => parseConfig(JSON.stringify({ ...base, rateCard: { currency: 'usd' } }))).toThrow(expect.objectContaining({ key: 'rateCard.currency' }));
  });

  test('a valid rate card is parsed with its defaults', () => {
    // Act
    const config = parseConfig(JSON.stringify({ ...base, rateCard: { currency: 'JPY', prices: { tokens: { unitPrice: 3 } } } }));

    // Assert
    expect(config.rateCard).toEqual({ currency: 'JPY', prices: { tokens: { unitPrice: 3, per: 1, features: {} } } });
  });
});
