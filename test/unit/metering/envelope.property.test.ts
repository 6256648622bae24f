import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { isLosslessNumber } from '../../../functions/core/exact-json';
import { type EnvelopeRules, envelopeSchema, MAX_MESSAGE_BYTES, parseMessageBody, REJECTION_REASONS, validateEvent, wellFormed } from '../../../functions/core/metering/envelope';
import { envelopeViolations, isObject } from '../../support/envelope-rules';

/**
 * Properties of the envelope parser over generated events, most of them valid events with one to three
 * fields broken or removed. Whether an event is valid, and for which reasons it is not, is decided by an
 * oracle written here from the rules docs/events.md states, not from the code. A failure prints fast-check's seed
 * and the shrunk counterexample; the seed is fixed, so every run checks the same cases.
 */

/** Fixed, so every run checks the same cases; FC_SEED=n explores others. */
const SEED = Number(process.env.FC_SEED ?? 20261124);
const NOW = Date.parse('2026-11-22T12:00:00.000Z');
const MAX_FUTURE_SECONDS = 300;
const RETENTION_DAYS = 400;
const DAY = 86_400_000;
const USAGE_TYPES = { tokens: { allowFractions: false }, credits: { allowFractions: true } } as const;
const rules: EnvelopeRules = { usageTypes: new Map(Object.entries(USAGE_TYPES)), now: new Date(NOW), maxFutureSeconds: MAX_FUTURE_SECONDS, retentionDays: RETENTION_DAYS };

type Json = Record<string, unknown>;

const violations = (raw: unknown) => envelopeViolations(raw, { usageTypes: USAGE_TYPES, now: NOW, maxFutureSeconds: MAX_FUTURE_SECONDS, retentionDays: RETENTION_DAYS });

// ------------------------------------------------------------------------------------------------
// Generators: valid events, and near-valid ones.

const nonBlank = (max: number) => fc.string({ minLength: 1, maxLength: max, unit: 'grapheme-ascii' }).filter((s) => s.trim() !== '');
const pad2 = (n: number) => String(n).padStart(2, '0');

/** A time inside the window, written in one of the forms RFC 3339 allows; with the instant it names. */
const validTime = fc
  .record({
    // Whole seconds from the oldest allowed to the last before the newest, so any fraction stays inside.
    seconds: fc.integer({ min: (NOW - RETENTION_DAYS * DAY) / 1000, max: (NOW + MAX_FUTURE_SECONDS * 1000) / 1000 - 1 }),
    fraction: fc.constantFrom('', '.000', '.5', '.123', '.123456789'),
    zone: fc.constantFrom('Z', 'z', '+01:00', '-05:00', '+05:30', '+05:45', '-09:30', '+14:00', '-12:00', '-00:00'),
    separator: fc.constantFrom('T', 't'),
  })
  .map(({ seconds, fraction, zone, separator }) => {
    const sign = zone.startsWith('-') ? -1 : 1;
    const shiftMinutes = zone.length === 6 ? sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) : 0;
    const local = new Date(seconds * 1000 + shiftMinutes * 60_000);
    const stamp = `${local.getUTCFullYear()}-${pad2(local.getUTCMonth() + 1)}-${pad2(local.getUTCDate())}${separator}${pad2(local.getUTCHours())}:${pad2(local.getUTCMinutes())}:${pad2(local.getUTCSeconds())}`;
    return { time: `${stamp}${fraction}${zone}`, millis: seconds * 1000 + Number(fraction.slice(1).padEnd(3, '0').slice(0, 3)) };
  });

/** A quantity with its exact decimal text: whole numbers for tokens, up to 9 decimals for credits. */
const validQuantity = fc.oneof(
  fc.record({ usageType: fc.constant('tokens'), quantity: fc.oneof(fc.integer({ min: 1, max: 1_000_000 }), fc.constant(Number.MAX_SAFE_INTEGER)) }).map((q) => ({ ...q, text: String(q.quantity) })),
  fc.record({ usageType: fc.constant('credits'), units: fc.integer({ min: 1, max: 999_999_999_999 }), scale: fc.integer({ min: 0, max: 9 }) }).map(({ usageType, units, scale }) => {
    const whole = String(units).padStart(scale + 1, '0');
    const text = scale === 0 ? whole : `${whole.slice(0, -scale)}.${whole.slice(-scale)}`.replace(/\.?0+$/, '');
    return { usageType, quantity: Number(text), text };
  }),
);

const dimension = fc.option(fc.string({ minLength: 1, maxLength: 256 }), { nil: undefined });

const validEvent = fc
  .record({
    id: nonBlank(256),
    source: nonBlank(64),
    type: nonBlank(64),
    subject: nonBlank(128),
    time: validTime,
    quantity: validQuantity,
    userId: dimension,
    groupId: dimension,
    channel: fc.option(fc.constantFrom('ui', 'api', 'cli', 'mcp'), { nil: undefined }),
    feature: dimension,
    extra: fc.option(fc.jsonValue({ maxDepth: 1 }), { nil: undefined }),
  })
  .map(({ time, quantity, extra, userId, groupId, channel, feature, ...identity }) => {
    const data: Json = { usageType: quantity.usageType, quantity: quantity.quantity, userId, groupId, channel, feature };
    const raw: Json = { specversion: '1.0', ...identity, time: time.time, data, ...(extra === undefined ? {} : { extension: extra }) };
    // As ingest sees it: parsed from JSON, so absent dimensions are absent (not undefined).
    return { raw: JSON.parse(JSON.stringify(raw)) as Json, millis: time.millis, quantityText: quantity.text };
  });

const REMOVE = Symbol('remove');
/** Values at and around every rule's edge. */
const edgeValue = fc.constantFrom<unknown>(
  REMOVE,
  '',
  ' ',
  '\t\n',
  '\u00a0\u2003',
  'x',
  'x'.repeat(128),
  'x'.repeat(129),
  'x'.repeat(256),
  'x'.repeat(257),
  'x'.repeat(1024),
  'x'.repeat(1025),
  '1.0',
  '1',
  1,
  0,
  -0,
  -1,
  0.5,
  1.5,
  0.1 + 0.2,
  1e-9,
  1.5e-10,
  1e-7,
  2 ** 53 - 1,
  2 ** 53,
  1e21,
  '5',
  null,
  true,
  [],
  {},
  ['a'],
  'tokens',
  'credits',
  'TOKENS',
  'unknown',
  new Date(NOW).toISOString(),
  new Date(NOW + MAX_FUTURE_SECONDS * 1000).toISOString(),
  new Date(NOW + MAX_FUTURE_SECONDS * 1000 + 1).toISOString(),
  new Date(NOW - RETENTION_DAYS * DAY).toISOString(),
  new Date(NOW - RETENTION_DAYS * DAY - 1).toISOString(),
  '2026-11-22T10:00:00',
  '2026-11-22 10:00:00Z',
  '2026-11-22T10:00Z',
  '2026-02-29T10:00:00Z',
  '2026-02-30T10:00:00Z',
  '2024-02-29T10:00:00Z',
  '2026-04-31T10:00:00Z',
  '2026-13-01T10:00:00Z',
  '2026-11-22T24:00:00Z',
  '2026-11-22T23:60:00Z',
  '2026-11-22T10:00:60Z',
  '2026-11-22T10:00:00+24:00',
  '2026-11-22T10:00:00+23:59',
  '2026-11-22T10:00:00-00:00',
  '2026-11-22T10:00:00.9999999999Z',
  '+02026-11-22T10:00:00Z',
);

const TOP = ['specversion', 'id', 'source', 'type', 'subject', 'time', 'data'] as const;
const DATA = ['usageType', 'quantity', 'userId', 'groupId', 'channel', 'feature'] as const;

const mutation = fc.record({
  inData: fc.boolean(),
  top: fc.constantFrom(...TOP),
  field: fc.constantFrom(...DATA),
  value: fc.oneof(
    { weight: 4, arbitrary: edgeValue },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.double() },
  ),
});

/** A valid event with one to three fields replaced by edge values or removed; now and then no event at all. */
const nearValidEvent = fc
  .oneof(
    { weight: 12, arbitrary: fc.tuple(validEvent, fc.array(mutation, { minLength: 1, maxLength: 3 })) },
    {
      weight: 1,
      arbitrary: fc.tuple(
        fc.jsonValue().map((raw) => ({ raw, millis: 0, quantityText: '' })),
        fc.constant([]),
      ),
    },
  )
  .map(([valid, mutations]) => {
    const raw = structuredClone(valid.raw) as Json;
    for (const { inData, top, field, value } of mutations) {
      const target = inData && isObject(raw.data) ? raw.data : raw;
      const key = inData && isObject(raw.data) ? field : top;
      if (value === REMOVE) delete target[key];
      else target[key] = value;
    }
    // What JSON can carry: NaN and Infinity become null, as they would on the wire.
    return JSON.parse(JSON.stringify(raw) ?? 'null') as unknown;
  });

const params = (numRuns: number) => ({ numRuns, seed: SEED });

// ------------------------------------------------------------------------------------------------

describe('validateEvent, over generated events', () => {
  test('accepts exactly what the rules allow, and names a rule the event breaks (5,000 near-valid events)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(nearValidEvent, (raw) => {
        // Act
        const result = validateEvent(raw, rules);

        // Assert
        const broken = violations(raw);
        if (result.ok) {
          accepted += 1;
          expect([...broken]).toEqual([]);
        } else {
          expect(REJECTION_REASONS).toContain(result.rejection.reason);
          expect([...broken]).toContain(result.rejection.reason);
          expect(result.rejection.detail.length).toBeGreaterThan(0);
        }
      }),
      params(5_000),
    );
    // Some mutations leave the event valid (an edge value that is still allowed): acceptance was exercised too.
    expect(accepted).toBeGreaterThan(100);
  });

  test('accepts every valid event and normalizes its time and quantity exactly (1,500 events)', () => {
    fc.assert(
      fc.property(validEvent, ({ raw, millis, quantityText }) => {
        // Act
        const result = validateEvent(raw, rules);

        // Assert
        expect(result).toEqual({
          ok: true,
          event: expect.objectContaining({ id: raw.id, source: raw.source, subject: raw.subject, time: new Date(millis).toISOString(), quantity: quantityText }),
        });
      }),
      params(1_500),
    );
  });

  test('never throws, whatever it is given (1,000 arbitrary values)', () => {
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const result = validateEvent(raw, rules);
        expect(result.ok || REJECTION_REASONS.includes(result.rejection.reason)).toBe(true);
      }),
      params(1_000),
    );
  });
});

describe('the fast path beside envelopeSchema', () => {
  test('takes exactly the events the schema accepts, with the same fields (2,000 near-valid events)', () => {
    fc.assert(
      fc.property(nearValidEvent, (raw) => {
        // Act
        const fast = wellFormed(raw);
        const schema = envelopeSchema.safeParse(raw);

        // Assert
        expect(fast !== undefined).toBe(schema.success);
        if (fast && schema.success) expect(JSON.parse(JSON.stringify(fast))).toEqual(JSON.parse(JSON.stringify(schema.data)));
      }),
      params(2_000),
    );
  });
});

/** The value with every LosslessNumber read as JSON.parse reads its literal. */
function asDoubles(value: unknown): unknown {
  if (isLosslessNumber(value)) return Number(value.toString());
  if (Array.isArray(value)) return value.map(asDoubles);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, asDoubles(v)]));
  return value;
}

describe('parseMessageBody, over generated message bodies', () => {
  const body = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc
      .array(
        validEvent.map((e) => e.raw),
        { maxLength: 5 },
      )
      .map((events) => JSON.stringify(events)),
    validEvent.map((e) => JSON.stringify(e.raw)),
    validEvent.map((e) => JSON.stringify(e.raw).slice(0, -1)),
    // Around the size limit: "é" is 2 bytes, so the body is MAX_MESSAGE_BYTES + 2d bytes.
    fc.integer({ min: -2, max: 2 }).map((d) => `"${'é'.repeat((MAX_MESSAGE_BYTES - 2) / 2 + d)}"`),
  );

  test('splits JSON into events, refuses anything else with its reason, and never throws (1,000 bodies)', () => {
    fc.assert(
      fc.property(body, (text) => {
        // Act
        const result = parseMessageBody(text);

        // Assert: the rules, restated
        const bytes = new TextEncoder().encode(text).length;
        let parsed: unknown;
        let json = true;
        try {
          parsed = JSON.parse(text);
        } catch {
          json = false;
        }
        if (bytes > MAX_MESSAGE_BYTES) expect(result).toMatchObject({ ok: false, rejection: { reason: 'payload_too_large' } });
        else if (!json) expect(result).toMatchObject({ ok: false, rejection: { reason: 'not_json' } });
        else if (Array.isArray(parsed) && parsed.length === 0) expect(result).toMatchObject({ ok: false, rejection: { reason: 'invalid_envelope' } });
        // A number of more than 15 significant digits is kept as its text; as a double it is what JSON.parse reads.
        else expect(result.ok ? { ok: true, events: asDoubles(result.events) } : result).toEqual({ ok: true, events: Array.isArray(parsed) ? parsed : [parsed] });
      }),
      params(1_000),
    );
  });
});
