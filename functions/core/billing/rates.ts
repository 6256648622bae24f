import { z } from 'zod';
import type { NanoUnits } from '../quantity';

/**
 * The rate card: what a unit of each usage type costs, in integer minor units of one currency.
 * A price is `unitPrice` minor units per `per` units (2 per 1,000 tokens: `{"unitPrice":2,"per":1000}`);
 * a feature or variant may have its own price (image generation by quality, background removal, …).
 * Money is computed per line (usage type × priced feature) with exact integers and rounded half up to
 * a whole minor unit once per line; a report's amount is the sum of its lines.
 */

/** Keeps a cycle item's feature counters well under DynamoDB's 400 KB item (docs/counting.md "Bounded by design"). */
export const MAX_PRICED_FEATURES = 200;

const minorUnits = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const priceSchema = z.strictObject({
  /** Minor units per `per` units of the usage type. */
  unitPrice: minorUnits,
  /** How many units `unitPrice` pays for. */
  per: z.number().int().min(1).max(1_000_000_000).default(1),
  /** Prices of features or variants (the event's `data.feature`), per `per` units; other features pay `unitPrice`. */
  // Priced features are kept apart in every cycle item whatever the breakdown limit (rollups BREAKDOWN_LIMITS): bounded here.
  features: z
    .record(z.string().min(1).max(128), minorUnits)
    .refine((features) => Object.keys(features).length <= MAX_PRICED_FEATURES, `at most ${MAX_PRICED_FEATURES} priced features per usage type`)
    .default({}),
});

export const rateCardSchema = z.strictObject({
  /** ISO 4217 code; amounts are in its minor unit (cents for USD, yen for JPY). */
  currency: z.string().refine(isCurrency, 'must be an ISO 4217 currency code such as "USD" or "EUR"'),
  /** Prices by usage type; a usage type without a price has no money lines. */
  prices: z.record(z.string(), priceSchema).default({}),
});

export type Price = z.infer<typeof priceSchema>;
export type RateCard = z.infer<typeof rateCardSchema>;

export interface MoneyLine {
  /** The feature this line prices, or null for the usage type's base price. */
  feature: string | null;
  /** Exact decimal string of the quantity priced. */
  quantity: string;
  unitPrice: number;
  per: number;
  /** Integer minor units. */
  amount: number;
}

const NANO = 1_000_000_000n;

/** quantity × unitPrice / per, in minor units, rounded half up (quantities are never negative in a line). */
export function lineAmount(quantity: NanoUnits, unitPrice: number, per: number): bigint {
  const numerator = quantity * BigInt(unitPrice);
  const denominator = BigInt(per) * NANO;
  const whole = numerator / denominator;
  const rest = numerator % denominator;
  return rest * 2n >= denominator ? whole + 1n : whole;
}

/**
 * The money lines of one usage type: each priced feature at its price, and the rest of the total (events
 * without a feature, or with an unpriced one) at the base price. Lines with no quantity are left out.
 */
export function priceUsage(price: Price, total: NanoUnits, byFeature: ReadonlyMap<string, NanoUnits>, format: (q: NanoUnits) => string): MoneyLine[] {
  const lines: MoneyLine[] = [];
  let rest = total;
  for (const [feature, unitPrice] of Object.entries(price.features).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const quantity = byFeature.get(feature) ?? 0n;
    if (quantity <= 0n) continue;
    rest -= quantity;
    lines.push({ feature, quantity: format(quantity), unitPrice, per: price.per, amount: Number(lineAmount(quantity, unitPrice, price.per)) });
  }
  if (rest > 0n) lines.unshift({ feature: null, quantity: format(rest), unitPrice: price.unitPrice, per: price.per, amount: Number(lineAmount(rest, price.unitPrice, price.per)) });
  return lines;
}

function isCurrency(code: string): boolean {
  return /^[A-Z]{3}$/.test(code) && Intl.supportedValuesOf('currency').includes(code);
}
