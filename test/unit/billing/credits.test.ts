import { describe, expect, test } from '@jest/globals';
import { type CreditsConfig, pricedFields, priceInCredits } from '../../../functions/core/billing/credits';
import { configSchema } from '../../../functions/core/config';
import { LosslessNumber } from '../../../functions/core/exact-json';

/**
 * The credit rate card: pricing one event (the version in effect at its time, the first matching rule, every
 * matching surcharge, rounding half up to the nano-credit), the config's refusals with the path of the bad key,
 * and the data fields a priced event must carry on. Every expected figure is worked out by hand here.
 */

type Json = Record<string, unknown>;

/** A minimal config around a credits section: images and agent_tokens priced, credits counted under `credits`. */
const configWith = (credits: unknown) => ({
  usageTypes: [
    { id: 'images', unit: 'image' },
    { id: 'agent_tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'p', quotas: {} }],
  credits,
});

const parse = (credits: unknown) => configSchema.safeParse(configWith(credits));

/** The credits section as the config parses it (credits per unit in nano-units); fails the test if refused. */
function card(credits: unknown): CreditsConfig {
  const result = parse(credits);
  if (!result.success) throw new Error(`config refused: ${JSON.stringify(result.error.issues)}`);
  if (!result.data.credits) throw new Error('config has no credits section');
  return result.data.credits;
}

/** A card pricing images with one version (from 2020) of these rules and surcharges. */
const imagesCard = (rules: Json[], surcharges: Json[] = []) => card({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules, surcharges }] } });

const event = (quantity: string, data: Json = {}, time = '2026-11-22T10:00:00.000Z', usageType = 'images') => ({ usageType, time, quantity, data: { usageType, quantity, ...data } });

/** The credits a priced event counts, failing the test if it was not priced. */
function creditsOf(config: CreditsConfig | undefined, e: ReturnType<typeof event>): string | undefined {
  const pricing = priceInCredits(config, e);
  if (!pricing.ok) throw new Error(`unpriced: ${pricing.detail}`);
  return pricing.credits?.quantity;
}

/** The paths of the issues of a refused config. */
function issuePaths(credits: unknown): PropertyKey[][] {
  const result = parse(credits);
  if (result.success) throw new Error('expected the config to be refused');
  return result.error.issues.map((issue) => issue.path);
}

describe('priceInCredits: what is priced', () => {
  test('a usage type the card does not price gets no credits', () => {
    // Arrange
    const config = imagesCard([{ when: {}, credits: 1 }]);

    // Act
    const pricing = priceInCredits(config, event('100', { model: 'large' }, undefined, 'agent_tokens'));

    // Assert
    expect(pricing).toStrictEqual({ ok: true });
    expect('credits' in pricing).toBe(false);
  });

  test('without a credits section nothing is priced', () => {
    // Act
    const pricing = priceInCredits(undefined, event('4', { feature: 'generate' }));

    // Assert
    expect(pricing).toStrictEqual({ ok: true });
  });

  test('a priced event counts its credits under the credits usage type', () => {
    // Arrange
    const config = imagesCard([{ when: { feature: 'generate' }, credits: 2 }]);

    // Act
    const pricing = priceInCredits(config, event('4', { feature: 'generate' }));

    // Assert: 4 × 2
    expect(pricing).toStrictEqual({ ok: true, credits: { usageType: 'credits', quantity: '8' } });
  });

  test('an event no rule matches is unpriced, and the detail names its usage type', () => {
    // Arrange
    const config = imagesCard([{ when: { feature: 'generate' }, credits: 1 }]);

    // Act
    const pricing = priceInCredits(config, event('7', { feature: 'colorize' }));

    // Assert
    expect(pricing).toEqual({ ok: false, detail: expect.stringContaining('"images"') });
  });
});

describe('priceInCredits: rules and surcharges', () => {
  const specificFirst = [
    { when: { feature: 'generate', quality: 'high' }, credits: 2 },
    { when: {}, credits: 1 },
  ];

  test('the first matching rule wins: a more specific rule listed first', () => {
    // Arrange
    const config = imagesCard(specificFirst);

    // Act / Assert: 3 × 2, and the catch-all for the rest: 3 × 1
    expect(creditsOf(config, event('3', { feature: 'generate', quality: 'high' }))).toBe('6');
    expect(creditsOf(config, event('3', { feature: 'generate', quality: 'low' }))).toBe('3');
    expect(creditsOf(config, event('3', { feature: 'ocr' }))).toBe('3');
  });

  test('a rule listed after a catch-all never applies', () => {
    // Arrange: the same rules, the catch-all first
    const config = imagesCard([specificFirst[1] as Json, specificFirst[0] as Json]);

    // Act / Assert: 3 × 1, not 3 × 2
    expect(creditsOf(config, event('3', { feature: 'generate', quality: 'high' }))).toBe('3');
  });

  test('a rule without `when` matches every event', () => {
    // Arrange
    const config = imagesCard([{ credits: 5 }]);

    // Act / Assert: 2 × 5
    expect(creditsOf(config, event('2', {}))).toBe('10');
  });

  test('every matching surcharge adds its credits; one that does not match adds nothing', () => {
    // Arrange
    const config = imagesCard(
      [{ when: { feature: 'upscale' }, credits: 4 }],
      [
        { when: { transparent: true }, credits: 1 },
        { when: { hdr: true }, credits: '0.5' },
        { when: { feature: 'generate' }, credits: 100 },
      ],
    );

    // Act / Assert: 2 × (4 + 1 + 0.5) = 11; one surcharge only: 2 × (4 + 1) = 10; none: 2 × 4 = 8
    expect(creditsOf(config, event('2', { feature: 'upscale', transparent: true, hdr: true }))).toBe('11');
    expect(creditsOf(config, event('2', { feature: 'upscale', transparent: true }))).toBe('10');
    expect(creditsOf(config, event('2', { feature: 'upscale' }))).toBe('8');
  });

  test('a surcharge alone does not price an event no rule matches', () => {
    // Arrange
    const config = imagesCard([{ when: { feature: 'upscale' }, credits: 4 }], [{ when: { transparent: true }, credits: 1 }]);

    // Act
    const pricing = priceInCredits(config, event('2', { feature: 'colorize', transparent: true }));

    // Assert
    expect(pricing.ok).toBe(false);
  });

  test('a field the event lacks never matches, in a rule or a surcharge', () => {
    // Arrange
    const config = imagesCard(
      [
        { when: { model: 'large' }, credits: 7 },
        { when: { feature: 'generate' }, credits: 1 },
      ],
      [{ when: { transparent: false }, credits: 3 }],
    );

    // Act / Assert: no model, no transparent: the second rule, no surcharge: 1 × 1
    expect(creditsOf(config, event('1', { feature: 'generate' }))).toBe('1');
    expect(priceInCredits(config, event('1', {})).ok).toBe(false);
  });

  test('values match by strict equality: a string is not the number, nor the boolean, it spells', () => {
    // Arrange
    const config = imagesCard([
      { when: { level: 1 }, credits: 1 },
      { when: { transparent: true }, credits: 2 },
      { when: { size: '4' }, credits: 3 },
    ]);

    // Act / Assert
    expect(creditsOf(config, event('1', { level: 1 }))).toBe('1');
    expect(priceInCredits(config, event('1', { level: '1' })).ok).toBe(false);
    expect(creditsOf(config, event('1', { transparent: true }))).toBe('2');
    expect(priceInCredits(config, event('1', { transparent: 'true' })).ok).toBe(false);
    expect(priceInCredits(config, event('1', { transparent: 1 })).ok).toBe(false);
    expect(creditsOf(config, event('1', { size: '4' }))).toBe('3');
    expect(priceInCredits(config, event('1', { size: 4 })).ok).toBe(false);
  });

  test('a long number kept as its digits matches a rule number of the same digits, never a string', () => {
    // Arrange
    const config = imagesCard([{ when: { seed: 42 }, credits: 1 }], [{ when: { seedText: '42' }, credits: 1 }]);

    // Act / Assert: 1 × 1, the surcharge not matched by a number of the same digits
    expect(creditsOf(config, event('1', { seed: new LosslessNumber('42'), seedText: new LosslessNumber('42') }))).toBe('1');
    expect(priceInCredits(config, event('1', { seed: new LosslessNumber('43') })).ok).toBe(false);
  });
});

describe('priceInCredits: versions by event time', () => {
  const config = card({
    usageType: 'credits',
    rates: {
      images: [
        { from: '2026-01-01T00:00:00Z', rules: [{ credits: 2 }] },
        // 2026-03-01T00:00:00Z, written with an offset
        { from: '2026-03-01T01:00:00+01:00', rules: [{ credits: 3 }] },
      ],
    },
  });

  test("an event exactly at a version's start is priced by it", () => {
    expect(creditsOf(config, event('10', {}, '2026-03-01T00:00:00.000Z'))).toBe('30');
  });

  test('an event a millisecond before it is priced by the version before', () => {
    expect(creditsOf(config, event('10', {}, '2026-02-28T23:59:59.999Z'))).toBe('20');
  });

  test("an event at the first version's start is priced by it", () => {
    expect(creditsOf(config, event('10', {}, '2026-01-01T00:00:00.000Z'))).toBe('20');
  });

  test('an event before the first version is unpriced, and the detail names its usage type', () => {
    // Act
    const pricing = priceInCredits(config, event('10', {}, '2025-12-31T23:59:59.999Z'));

    // Assert
    expect(pricing).toEqual({ ok: false, detail: expect.stringContaining('"images"') });
  });
});

describe('priceInCredits: rounding half up to the nano-credit', () => {
  const nanoCard = imagesCard([{ credits: '0.000000001' }]);

  test('a whole quantity at a nano-credit a unit is exact', () => {
    expect(creditsOf(nanoCard, event('3'))).toBe('0.000000003');
  });

  test('half a nano-credit rounds up', () => {
    // 0.5 × 0.000000001 = 0.0000000005
    expect(creditsOf(nanoCard, event('0.5'))).toBe('0.000000001');
  });

  test('under half a nano-credit rounds down to zero', () => {
    // 0.4 × 0.000000001 = 0.0000000004; 0.499999999 × 0.000000001 = 0.000000000499999999
    expect(creditsOf(nanoCard, event('0.4'))).toBe('0');
    expect(creditsOf(nanoCard, event('0.499999999'))).toBe('0');
  });

  test('just over half a unit of the ninth decimal rounds up', () => {
    // Arrange
    const config = imagesCard([{ credits: '0.00375' }]);

    // Act / Assert: 0.333333333 × 0.00375 = 0.00124999999875 → 0.001249999|99875 → 0.00125
    expect(creditsOf(config, event('0.333333333'))).toBe('0.00125');
  });

  test('surcharges add to the rate before the product is rounded', () => {
    // Arrange
    const config = imagesCard([{ credits: '0.000000001' }], [{ credits: '0.000000001' }]);

    // Act / Assert: 0.25 × 0.000000002 = 0.0000000005 → 0.000000001 (rounded apart, each would be 0)
    expect(creditsOf(config, event('0.25'))).toBe('0.000000001');
  });

  test('a safe quantity at the highest rate is exact', () => {
    // Arrange
    const config = imagesCard([{ credits: '1000000' }]);
    const expected = (9_007_199_254_740_991n * 1_000_000n).toString();

    // Act / Assert
    expect(expected).toBe('9007199254740991000000');
    expect(creditsOf(config, event('9007199254740991'))).toBe(expected);
  });

  test('token rates of the price list: 12,000 input tokens at 0.003 are 36 credits', () => {
    // Arrange
    const config = imagesCard([{ credits: '0.003' }]);

    // Act / Assert
    expect(creditsOf(config, event('12000'))).toBe('36');
  });
});

describe('the credits section of the config', () => {
  test('credits per unit become nano-units, and `when` and surcharges default to empty', () => {
    // Act
    const credits = card({
      usageType: 'credits',
      rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { feature: 'generate' }, credits: 2 }, { credits: '0.003' }] }] },
    });

    // Assert
    expect(credits).toEqual({
      usageType: 'credits',
      rates: {
        images: [
          {
            from: '2020-01-01T00:00:00Z',
            rules: [
              { when: { feature: 'generate' }, credits: 2_000_000_000n },
              { when: {}, credits: 3_000_000n },
            ],
            surcharges: [],
          },
        ],
      },
    });
  });

  test('the edges of a rate: 0, nine decimals and 1,000,000 are accepted', () => {
    // Act
    const credits = card({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ credits: 0 }, { credits: '0.000000001' }, { credits: 1_000_000 }] }] } });

    // Assert
    expect(credits.rates.images?.[0]?.rules.map((r) => r.credits)).toEqual([0n, 1n, 1_000_000_000_000_000n]);
  });

  test('a credits usage type that is not configured is refused at credits.usageType', () => {
    expect(issuePaths({ usageType: 'tokens', rates: {} })).toEqual([['credits', 'usageType']]);
  });

  test('a priced usage type that is not configured is refused at its key', () => {
    expect(issuePaths({ usageType: 'credits', rates: { videos: [{ from: '2020-01-01T00:00:00Z', rules: [{ credits: 1 }] }] } })).toEqual([['credits', 'rates', 'videos']]);
  });

  test('the credits usage type priced in credits is refused', () => {
    expect(issuePaths({ usageType: 'credits', rates: { credits: [{ from: '2020-01-01T00:00:00Z', rules: [{ credits: 1 }] }] } })).toEqual([['credits', 'rates', 'credits']]);
  });

  test('versions out of ascending order are refused at the later one', () => {
    // Arrange
    const versions = [
      { from: '2026-03-01T00:00:00Z', rules: [{ credits: 1 }] },
      { from: '2026-01-01T00:00:00Z', rules: [{ credits: 2 }] },
    ];

    // Act / Assert
    expect(issuePaths({ usageType: 'credits', rates: { images: versions } })).toEqual([['credits', 'rates', 'images', 1, 'from']]);
  });

  test('two versions from the same instant are refused, however it is written', () => {
    // Arrange: 2026-03-01T00:00:00Z twice, the second with an offset
    const versions = [
      { from: '2026-01-01T00:00:00Z', rules: [{ credits: 1 }] },
      { from: '2026-03-01T00:00:00Z', rules: [{ credits: 2 }] },
      { from: '2026-03-01T01:00:00+01:00', rules: [{ credits: 3 }] },
    ];

    // Act / Assert
    expect(issuePaths({ usageType: 'credits', rates: { images: versions } })).toEqual([['credits', 'rates', 'images', 2, 'from']]);
  });

  test('versions are ordered by instant, not by text', () => {
    // Arrange: the second reads later but is 2026-02-28T23:30:00Z
    const versions = [
      { from: '2026-03-01T00:00:00Z', rules: [{ credits: 1 }] },
      { from: '2026-03-01T00:30:00+01:00', rules: [{ credits: 2 }] },
    ];

    // Act / Assert
    expect(issuePaths({ usageType: 'credits', rates: { images: versions } })).toEqual([['credits', 'rates', 'images', 1, 'from']]);
  });

  test.each([
    ['ten decimals', '0.0000000001'],
    ['ten decimals as a number', 0.0000000001],
    ['negative', -1],
    ['negative as text', '-0.5'],
    ['above 1,000,000', 1_000_001],
    ['a nano-credit above 1,000,000', '1000000.000000001'],
    ['not a number', 'two'],
  ])('a rate %s is refused at its credits', (_, credits) => {
    expect(issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ credits: 1 }, { credits }] }] } })).toEqual([
      ['credits', 'rates', 'images', 0, 'rules', 1, 'credits'],
    ]);
  });

  test('a surcharge rate is checked as a rule rate', () => {
    expect(issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ credits: 1 }], surcharges: [{ credits: -1 }] }] } })).toEqual([
      ['credits', 'rates', 'images', 0, 'surcharges', 0, 'credits'],
    ]);
  });

  test.each(['quantity', 'usageType'])('a `when` naming %s is refused', (field) => {
    // Act
    const paths = issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { [field]: 1 }, credits: 1 }] }] } });

    // Assert: at the key itself
    expect(paths).toEqual([['credits', 'rates', 'images', 0, 'rules', 0, 'when', field]]);
  });

  test('a `when` field that is not a data field name is refused', () => {
    // Act
    const paths = issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { '1st': 'x' }, credits: 1 }] }] } });

    // Assert
    expect(paths).toEqual([['credits', 'rates', 'images', 0, 'rules', 0, 'when', '1st']]);
  });

  test('ten fields in a `when` are accepted, eleven refused', () => {
    // Arrange
    const fields = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i]));
    const credits = (n: number) => ({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: fields(n), credits: 1 }] }] } });

    // Act / Assert
    expect(parse(credits(10)).success).toBe(true);
    expect(issuePaths(credits(11))).toEqual([['credits', 'rates', 'images', 0, 'rules', 0, 'when']]);
  });

  test('a `when` value of an object, or a string over 256 characters, is refused', () => {
    // Arrange
    const withWhen = (when: Json) => ({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when, credits: 1 }] }] } });

    // Act / Assert
    expect(parse(withWhen({ feature: 'x'.repeat(256) })).success).toBe(true);
    expect(issuePaths(withWhen({ feature: 'x'.repeat(257) }))).toEqual([['credits', 'rates', 'images', 0, 'rules', 0, 'when', 'feature']]);
    expect(issuePaths(withWhen({ feature: { a: 1 } }))).toEqual([['credits', 'rates', 'images', 0, 'rules', 0, 'when', 'feature']]);
  });

  test('a version with no rule is refused', () => {
    expect(issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [] }] } })).toEqual([['credits', 'rates', 'images', 0, 'rules']]);
  });

  test('a version start without an offset is refused', () => {
    expect(issuePaths({ usageType: 'credits', rates: { images: [{ from: '2020-01-01', rules: [{ credits: 1 }] }] } })).toEqual([['credits', 'rates', 'images', 0, 'from']]);
  });
});

describe('pricedFields', () => {
  const config = card({
    usageType: 'credits',
    rates: {
      images: [
        { from: '2020-01-01T00:00:00Z', rules: [{ when: { feature: 'generate', legacy: 'yes' }, credits: 1 }] },
        {
          from: '2026-01-01T00:00:00Z',
          rules: [{ when: { feature: 'generate', quality: 'high' }, credits: 2 }, { credits: 1 }],
          surcharges: [{ when: { transparent: true }, credits: 1 }],
        },
      ],
      agent_tokens: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { model: 'large', tokenKind: 'input' }, credits: '0.003' }] }],
    },
  });

  test("keeps only the fields the usage type's rules and surcharges name, of any version", () => {
    // Act
    const fields = pricedFields(config, 'images', { usageType: 'images', quantity: 1, feature: 'generate', quality: 'high', transparent: true, legacy: 'yes', model: 'large', channel: 'web' });

    // Assert: not model (named by agent_tokens only), nor channel, usageType or quantity (named by none)
    expect(fields).toStrictEqual({ feature: 'generate', quality: 'high', transparent: true, legacy: 'yes' });
  });

  test('keeps numbers and booleans, and strings of up to 256 characters', () => {
    // Act
    const fields = pricedFields(config, 'images', { feature: 'x'.repeat(256), quality: 3, transparent: false, legacy: new LosslessNumber('12345678901234567890') });

    // Assert
    expect(fields).toStrictEqual({ feature: 'x'.repeat(256), quality: 3, transparent: false, legacy: new LosslessNumber('12345678901234567890') });
  });

  test('drops objects, arrays, null and strings over 256 characters', () => {
    // Act
    const fields = pricedFields(config, 'images', { feature: 'x'.repeat(257), quality: { level: 'high' }, transparent: [true], legacy: null });

    // Assert
    expect(fields).toStrictEqual({});
  });

  test('a usage type the card does not price, or no card, names no field', () => {
    expect(pricedFields(config, 'videos', { feature: 'generate' })).toStrictEqual({});
    expect(pricedFields(undefined, 'images', { feature: 'generate' })).toStrictEqual({});
  });
});
