/**
 * The price list a credit-selling product publishes, as the credits suites price their events by hand, and the
 * credit rate card (config `credits.rates.images`) that says the same: one source for both sides of a test.
 */
export const PRICE_LIST = {
  generate: 1,
  generateHighQuality: 2,
  generateHighResolution: 9,
  removeBackground: 2,
  /** Background removal from a price change on. */
  removeBackgroundFromPriceChange: 3,
  ocr: 1,
  upscale2x: 1,
  upscale4x: 4,
  upscale8x: 9,
  transparent: 1,
  /** Credits per token of the large model, by token kind. */
  large: { input: '0.003', output: '0.015', cache_read: '0.0003', cache_write: '0.00375' },
} as const;

/** The rules and surcharges of an image rate card version, background removal at the given price. */
export function imageRates(removeBackground: number = PRICE_LIST.removeBackground) {
  return {
    rules: [
      { when: { feature: 'generate', resolution: 'high' }, credits: PRICE_LIST.generateHighResolution },
      { when: { feature: 'generate', quality: 'high' }, credits: PRICE_LIST.generateHighQuality },
      { when: { feature: 'generate' }, credits: PRICE_LIST.generate },
      { when: { feature: 'remove_background' }, credits: removeBackground },
      { when: { feature: 'ocr' }, credits: PRICE_LIST.ocr },
      { when: { feature: 'upscale', output: '8x' }, credits: PRICE_LIST.upscale8x },
      { when: { feature: 'upscale', output: '4x' }, credits: PRICE_LIST.upscale4x },
      { when: { feature: 'upscale' }, credits: PRICE_LIST.upscale2x },
    ],
    surcharges: [{ when: { transparent: true }, credits: PRICE_LIST.transparent }],
  };
}
