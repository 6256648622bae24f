import { z } from 'zod';

/**
 * The published shape of every file finance downloads: cycle reports, per-cycle summaries and exports.
 * `schemas/usage-report.schema.json` is generated from these (`npm run report-schema`) and is what clients
 * validate against. A change that breaks a reader raises REPORT_SCHEMA_VERSION.
 *
 * Quantities are exact decimal strings (no float ever touches them); money is integer minor units.
 */

export const REPORT_SCHEMA_VERSION = 1;

const quantity = z
  .string()
  .regex(/^-?\d+(\.\d{1,9})?$/)
  .describe('exact decimal quantity');
const instant = z.iso.datetime({ offset: false }).describe('UTC ISO 8601 instant');
const date = z.iso.date();
const minorUnits = z.number().int().describe('integer minor units of `currency`');
const schemaVersion = z.literal(REPORT_SCHEMA_VERSION);

const moneyLine = z.strictObject({
  feature: z.string().nullable().describe('the priced feature or variant; null for the base price'),
  quantity,
  unitPrice: z.number().int().nonnegative(),
  per: z.number().int().positive(),
  amount: minorUnits,
});

const lateEvent = z.strictObject({
  source: z.string(),
  id: z.string(),
  delta: quantity.describe('what the event changed in the closed cycle (negative: a correction lowered it)'),
  appliedAt: instant,
});

const ranked = z.strictObject({ id: z.string(), amount: quantity });
const breakdown = (key: string) => z.array(z.strictObject({ [key]: z.string().nullable(), amount: quantity }));

export const usageReportSchema = z.strictObject({
  usageType: z.string(),
  unit: z.string(),
  /** Everything counted in the cycle now, late events included. */
  total: quantity,
  /** What the close froze; null while the cycle is open. total = closedTotal + adjustments.total. */
  closedTotal: quantity.nullable(),
  /** Events counted in the cycle, late ones included (a priced event counts under its usage type and its credits'). */
  requests: z.number().int().nonnegative(),
  /** Every local day of the cycle (up to today for an open cycle); sums to total. */
  daily: z.array(z.strictObject({ day: date, amount: quantity })),
  /** Sums to total; `null` holds events that named no channel. */
  byChannel: breakdown('channel'),
  /** Sums to total; `null` holds events that named no feature. */
  byFeature: breakdown('feature'),
  topUsers: z.array(ranked),
  topGroups: z.array(ranked),
  allowance: z.strictObject({ limit: quantity, spilloverIn: quantity }),
  /** How the use was covered (closed cycle: as frozen; open: so far); the parts sum to closedTotal (or total while open). */
  grantsUsed: z.strictObject({ plan: quantity, spillover: quantity, bonus: quantity, topup: quantity, uncovered: quantity }),
  spilloverOut: quantity,
  /** Late events and corrections applied after the close; total = sum of the events' deltas. */
  adjustments: z.strictObject({ total: quantity, events: z.array(lateEvent) }),
  money: z.strictObject({ lines: z.array(moneyLine), amount: minorUnits }).nullable(),
});

export const cycleReportSchema = z.strictObject({
  schemaVersion,
  kind: z.literal('cycle-report'),
  generatedAt: instant,
  subject: z.strictObject({ id: z.string(), name: z.string().nullable(), plan: z.string(), timeZone: z.string(), billingAnchorDay: z.number().int() }),
  cycle: z.strictObject({ start: instant, end: instant, status: z.enum(['open', 'closed']), closedAt: instant.nullable() }),
  currency: z.string().length(3).nullable(),
  usage: z.array(usageReportSchema),
  /** Late events and corrections to earlier, closed cycles applied during this cycle. */
  earlierCycleAdjustments: z.array(lateEvent.extend({ cycleStart: instant, usageType: z.string() })),
  /** Sum of every usage type's money; null without a rate card. */
  amount: minorUnits.nullable(),
});

export const cycleSummarySchema = z.strictObject({
  schemaVersion,
  kind: z.literal('cycle-summary'),
  generatedAt: instant,
  cycleStart: instant,
  currency: z.string().length(3).nullable(),
  subjects: z.array(z.strictObject({ subject: z.string(), cycleEnd: instant, totals: z.record(z.string(), quantity), amount: minorUnits.nullable(), report: z.string() })),
  totals: z.record(z.string(), quantity),
  amount: minorUnits.nullable(),
});

export const exportBucketSchema = z.strictObject({
  subject: z.string(),
  usageType: z.string(),
  /** UTC hour start, or the first instant of the subject's local day. */
  start: instant,
  end: instant,
  /** The subject's local date for a day bucket; null for an hour bucket. */
  day: date.nullable(),
  quantity,
  /** Events in the bucket (a correction is the same event). */
  requests: z.number().int().nonnegative(),
  byChannel: z.record(z.string(), quantity),
});

const exportHeader = {
  schemaVersion,
  kind: z.literal('usage-export'),
  id: z.string(),
  generatedAt: instant,
  from: instant,
  to: instant,
  granularity: z.enum(['hour', 'day']),
  subjects: z.array(z.string()),
};

/** format "json": one document. */
export const exportDocumentSchema = z.strictObject({ ...exportHeader, buckets: z.array(exportBucketSchema) });
/** format "jsonl": the header line, then one bucket per line. */
export const exportHeaderLineSchema = z.strictObject(exportHeader);

export type CycleReport = z.infer<typeof cycleReportSchema>;
export type UsageReport = z.infer<typeof usageReportSchema>;
export type CycleSummary = z.infer<typeof cycleSummarySchema>;
export type ExportBucket = z.infer<typeof exportBucketSchema>;

/** One JSON Schema document with every shape under $defs. */
export function reportJsonSchema(): Record<string, unknown> {
  const defs = { cycleReport: cycleReportSchema, cycleSummary: cycleSummarySchema, exportDocument: exportDocumentSchema, exportHeaderLine: exportHeaderLineSchema, exportBucket: exportBucketSchema };
  const registry = z.registry<{ id: string }>();
  // Shared leaves get their own definitions, so each pattern is written once.
  for (const [id, schema] of Object.entries({ ...defs, quantity, instant, date, moneyLine, lateEvent })) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', uri: (id) => `#/$defs/${id}` }) as { schemas: Record<string, Record<string, unknown>> };
  const $defs = Object.fromEntries(Object.entries(schemas).map(([id, schema]) => [id, stripMeta(schema)]));
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: `https://usage-pipeline.dev/schemas/usage-report.v${REPORT_SCHEMA_VERSION}.json`,
    title: 'usage-pipeline reports and exports',
    description: `Schema version ${REPORT_SCHEMA_VERSION}. Quantities are exact decimal strings; money is integer minor units of the ISO 4217 currency.`,
    $defs,
  };
}

function stripMeta(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _schema, $id: _id, id: _name, ...rest } = schema;
  return rest;
}
