import { type EnvelopeRules, envelopeSchema, eventKey, MAX_MESSAGE_BYTES, parseMessageBody, REJECTION_REASONS, type RejectionReason, validateEvent } from '../../../functions/core/metering/envelope';

const NOW = '2026-11-22T12:00:00.000Z';

const rules = (overrides: Partial<EnvelopeRules> = {}): EnvelopeRules => ({
  usageTypes: new Map([
    ['tokens', { allowFractions: false }],
    ['credits', { allowFractions: true }],
    ['images', { allowFractions: false }],
  ]),
  now: new Date(NOW),
  maxFutureSeconds: 300,
  retentionDays: 400,
  // Images are priced from 1 November 2026, generation only.
  credits: { usageType: 'credits', rates: { images: [{ from: '2026-11-01T00:00:00Z', rules: [{ when: { feature: 'generate' }, credits: 1_000_000_000n }], surcharges: [] }] } },
  ...overrides,
});

type Json = Record<string, unknown>;

/** A valid event; `data` is merged, and a field set to undefined is left out. */
const event = (overrides: Json = {}, data: Json = {}): Json => {
  const merged: Json = {
    specversion: '1.0',
    id: 'evt-1',
    source: 'app/chat',
    type: 'com.example.usage',
    subject: 'ws_acme',
    time: '2026-11-22T10:00:00Z',
    ...overrides,
    data: { usageType: 'tokens', quantity: 3, ...data },
  };
  if ('data' in overrides) merged.data = overrides.data;
  return JSON.parse(JSON.stringify(merged)) as Json;
};

const eventCases: [string, unknown, RejectionReason][] = [
  // invalid_envelope
  ['specversion missing', event({ specversion: undefined }), 'invalid_envelope'],
  ['specversion "0.3"', event({ specversion: '0.3' }), 'invalid_envelope'],
  ['specversion as a number', event({ specversion: 1.0 }), 'invalid_envelope'],
  ['type missing', event({ type: undefined }), 'invalid_envelope'],
  ['data missing', event({ data: undefined }), 'invalid_envelope'],
  ['data not an object', event({ data: 'tokens:3' }), 'invalid_envelope'],
  ['an event that is a number', 42, 'invalid_envelope'],
  ['an event that is a string', 'hello', 'invalid_envelope'],
  ['an event that is null', null, 'invalid_envelope'],
  ['an event that is an array', [], 'invalid_envelope'],
  // missing_id / missing_source / missing_subject
  ['id missing', event({ id: undefined }), 'missing_id'],
  ['id empty', event({ id: '' }), 'missing_id'],
  ['id blank', event({ id: '   ' }), 'missing_id'],
  ['source missing', event({ source: undefined }), 'missing_source'],
  ['source empty', event({ source: '' }), 'missing_source'],
  ['subject missing', event({ subject: undefined }), 'missing_subject'],
  ['subject empty', event({ subject: '' }), 'missing_subject'],
  // unknown_usage_type
  ['usageType missing', event({}, { usageType: undefined }), 'unknown_usage_type'],
  ['usageType not configured', event({}, { usageType: 'videos' }), 'unknown_usage_type'],
  // invalid_quantity
  ['quantity missing', event({}, { quantity: undefined }), 'invalid_quantity'],
  ['quantity 0', event({}, { quantity: 0 }), 'invalid_quantity'],
  ['quantity negative', event({}, { quantity: -1 }), 'invalid_quantity'],
  ['quantity a string', event({}, { quantity: '5' }), 'invalid_quantity'],
  ['a fraction for a usage type without fractions', event({}, { quantity: 1.5 }), 'invalid_quantity'],
  ['10 decimal places for a fractional usage type', event({}, { usageType: 'credits', quantity: 0.0000000001 }), 'invalid_quantity'],
  ['10 significant decimal places', event({}, { usageType: 'credits', quantity: 1.0000000001 }), 'invalid_quantity'],
  ['more than MAX_SAFE_INTEGER', event({}, { quantity: 9_007_199_254_740_992 }), 'invalid_quantity'],
  ['more than MAX_SAFE_INTEGER (fractional type)', event({}, { usageType: 'credits', quantity: 1e20 }), 'invalid_quantity'],
  // invalid_time
  ['time missing', event({ time: undefined }), 'invalid_time'],
  ['time a number', event({ time: 1_795_341_600_000 }), 'invalid_time'],
  ['time not RFC 3339', event({ time: '22 Nov 2026 10:00:00 GMT' }), 'invalid_time'],
  ['time with a space for T', event({ time: '2026-11-22 10:00:00Z' }), 'invalid_time'],
  ['time without an offset', event({ time: '2026-11-22T10:00:00' }), 'invalid_time'],
  ['time without seconds', event({ time: '2026-11-22T10:00Z' }), 'invalid_time'],
  ['a date only', event({ time: '2026-11-22' }), 'invalid_time'],
  ['February 30th', event({ time: '2026-02-30T00:00:00Z' }), 'invalid_time'],
  ['month 13', event({ time: '2026-13-01T00:00:00Z' }), 'invalid_time'],
  ['hour 24', event({ time: '2026-11-22T24:00:00Z' }), 'invalid_time'],
  // future_time / too_old (now is 2026-11-22T12:00:00Z, 300 s ahead allowed, 400 days back)
  ['1 ms more than maxFutureSeconds ahead', event({ time: '2026-11-22T12:05:00.001Z' }), 'future_time'],
  ['1 ms more than maxFutureSeconds ahead, with an offset', event({ time: '2026-11-22T14:05:00.001+02:00' }), 'future_time'],
  ['next year', event({ time: '2027-01-01T00:00:00Z' }), 'future_time'],
  ['1 ms older than the retention window', event({ time: '2025-10-18T11:59:59.999Z' }), 'too_old'],
  ['years old', event({ time: '2020-01-01T00:00:00Z' }), 'too_old'],
  // invalid_dimension
  ['userId a number', event({}, { userId: 42 }), 'invalid_dimension'],
  ['groupId an object', event({}, { groupId: { id: 'g' } }), 'invalid_dimension'],
  ['channel empty', event({}, { channel: '' }), 'invalid_dimension'],
  ['feature too long', event({}, { feature: 'x'.repeat(257) }), 'invalid_dimension'],
  // Within the character limits, over the UTF-8 byte limits ("€" is 3 bytes, "😀" 4 in 2 UTF-16 units).
  ['source of 1,024 "€": 3,072 bytes', event({ source: '€'.repeat(1024) }), 'field_too_long'],
  ['source of 342 "€": 1,026 bytes', event({ source: '€'.repeat(342) }), 'field_too_long'],
  ['id of 86 "€": 258 bytes', event({ id: '€'.repeat(86) }), 'field_too_long'],
  ['type of 86 "€": 258 bytes', event({ type: '€'.repeat(86) }), 'field_too_long'],
  ['subject of 33 "😀": 132 bytes', event({ subject: '😀'.repeat(33) }), 'field_too_long'],
  ['usageType of 43 "€": 129 bytes', event({}, { usageType: '€'.repeat(43) }), 'field_too_long'],
  ['userId of 129 "é": 258 bytes', event({}, { userId: 'é'.repeat(129) }), 'field_too_long'],
  ['groupId of 65 "😀": 260 bytes', event({}, { groupId: '😀'.repeat(65) }), 'field_too_long'],
  ['channel of 86 "€": 258 bytes', event({}, { channel: '€'.repeat(86) }), 'field_too_long'],
  ['feature of 86 "€": 258 bytes', event({}, { feature: '€'.repeat(86) }), 'field_too_long'],
  // Each within its limit, but ["source","id"] escaped as JSON is 2 × (1,000 + 200) + 7 = 2,407 bytes.
  ['source and id of quotes: a 2,407-byte key', event({ source: '"'.repeat(1000), id: '"'.repeat(200) }), 'field_too_long'],
  ['source and id of control characters: a 7,687-byte key', event({ source: '\u0001'.repeat(1024), id: '\u0001'.repeat(256) }), 'field_too_long'],
  // unpriced: the credit rate card prices images, and no rule of it matches
  ['an image of a feature no credit rule prices', event({}, { usageType: 'images', feature: 'upscale' }), 'unpriced'],
  ['an image from before the first credit rates', event({ time: '2026-10-31T23:59:59.999Z' }, { usageType: 'images', feature: 'generate' }), 'unpriced'],
];

const bodyCases: [string, string, RejectionReason][] = [
  ['not JSON', '{"specversion": "1.0",', 'not_json'],
  ['an empty body', '', 'not_json'],
  ['an empty array', '[]', 'invalid_envelope'],
  ['1 byte over 1 MiB', JSON.stringify('a'.repeat(MAX_MESSAGE_BYTES - 1)), 'payload_too_large'],
  ['over 1 MiB in bytes but not in characters', JSON.stringify('é'.repeat(MAX_MESSAGE_BYTES / 2)), 'payload_too_large'],
  ['over 1 MiB and not JSON', `{${'x'.repeat(MAX_MESSAGE_BYTES)}`, 'payload_too_large'],
];

describe('validateEvent rejects with a precise reason', () => {
  test.each(eventCases.map(([label, raw, reason]) => ({ label, raw, reason })))('$label → $reason', ({ raw, reason }) => {
    // Act
    const result = validateEvent(raw, rules());

    // Assert
    expect(result).toEqual({ ok: false, rejection: { reason, detail: expect.any(String) } });
  });

  test('every field at its byte limit is accepted, and the detail of one byte more names the field and both sizes', () => {
    // Arrange: "€" is 3 bytes, "é" 2, "😀" 4; each value is exactly at its limit
    const atLimit = event(
      { source: `${'€'.repeat(341)}a`, id: `${'€'.repeat(85)}a`, type: `${'€'.repeat(85)}a`, subject: '😀'.repeat(32) },
      { userId: 'é'.repeat(128), groupId: '😀'.repeat(64), channel: `${'€'.repeat(85)}a`, feature: `${'€'.repeat(85)}a` },
    );
    const oneOver = event({ source: `${'€'.repeat(341)}é` });

    // Act
    const accepted = validateEvent(atLimit, rules());
    const refused = validateEvent(oneOver, rules());

    // Assert
    expect(accepted.ok).toBe(true);
    expect(refused).toEqual({ ok: false, rejection: { reason: 'field_too_long', detail: 'source: 1025 bytes in UTF-8; the limit is 1024' } });
  });

  test('the ledger key of source and id is refused just past 2,048 bytes, not at it', () => {
    // Arrange: ["<source>","<id>"] is 7 bytes of punctuation; a quote inside escapes to 2 bytes
    const atLimit = event({ source: '"'.repeat(900), id: `${'"'.repeat(120)}a` }); // 7 + 1800 + 241 = 2048
    const past = event({ source: '"'.repeat(900), id: '"'.repeat(121) }); // 7 + 1800 + 242 = 2049

    // Act + Assert
    expect(validateEvent(atLimit, rules()).ok).toBe(true);
    expect(validateEvent(past, rules())).toEqual({ ok: false, rejection: { reason: 'field_too_long', detail: 'source and id make a 2049-byte key (escaped as JSON); the limit is 2048' } });
  });

  test('a schema rejection names the field in its detail', () => {
    // Act
    const result = validateEvent(event({}, { userId: 42 }), rules());

    // Assert
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.rejection.detail).toMatch(/^data\.userId: /);
  });

  test('an unconfigured usage type is named in the detail', () => {
    // Act
    const result = validateEvent(event({}, { usageType: 'videos' }), rules());

    // Assert
    expect(result).toEqual({ ok: false, rejection: { reason: 'unknown_usage_type', detail: expect.stringContaining('"videos"') } });
  });
});

describe('validateEvent accepts and normalizes valid events', () => {
  test('time becomes UTC ISO with milliseconds, quantity a decimal string, dimensions are kept', () => {
    // Arrange
    const raw = event({ time: '2026-11-22T10:00:00+02:00' }, { quantity: 3, userId: 'u-1', groupId: 'g-1', channel: 'mcp', feature: 'hd' });

    // Act
    const result = validateEvent(raw, rules());

    // Assert
    expect(result).toEqual({
      ok: true,
      event: {
        source: 'app/chat',
        id: 'evt-1',
        type: 'com.example.usage',
        subject: 'ws_acme',
        time: '2026-11-22T08:00:00.000Z',
        usageType: 'tokens',
        quantity: '3',
        dimensions: { userId: 'u-1', groupId: 'g-1', channel: 'mcp', feature: 'hd' },
      },
    });
  });

  test.each([
    ['tokens', 9_007_199_254_740_991, '9007199254740991'],
    ['credits', 1.5, '1.5'],
    ['credits', 0.000000001, '0.000000001'],
    ['credits', 1e-7, '0.0000001'],
    ['credits', 2.25, '2.25'],
  ])('%s quantity %p is kept exactly as %s', (usageType, quantity, expected) => {
    // Act
    const result = validateEvent(event({}, { usageType, quantity }), rules());

    // Assert
    expect(result).toMatchObject({ ok: true, event: { quantity: expected } });
  });

  test.each([
    ['exactly maxFutureSeconds ahead', '2026-11-22T12:05:00.000Z', '2026-11-22T12:05:00.000Z'],
    ['exactly maxFutureSeconds ahead, with an offset', '2026-11-22T14:05:00+02:00', '2026-11-22T12:05:00.000Z'],
    ['exactly at the edge of the retention window', '2025-10-18T12:00:00Z', '2025-10-18T12:00:00.000Z'],
    ['lower-case t and z', '2026-11-22t10:00:00z', '2026-11-22T10:00:00.000Z'],
    ['a negative offset', '2026-11-21T23:30:00.5-05:00', '2026-11-22T04:30:00.500Z'],
  ])('time %s is accepted (%s)', (_label, time, normalized) => {
    // Act
    const result = validateEvent(event({ time }), rules());

    // Assert
    expect(result).toMatchObject({ ok: true, event: { time: normalized } });
  });

  test('a leap day is a real date, the 29th of February in a common year is not', () => {
    // Arrange
    const in2028 = rules({ now: new Date('2028-03-01T00:00:00Z') });

    // Act
    const leap = validateEvent(event({ time: '2028-02-29T12:00:00Z' }), in2028);
    const common = validateEvent(event({ time: '2027-02-29T12:00:00Z' }), in2028);

    // Assert
    expect(leap).toMatchObject({ ok: true, event: { time: '2028-02-29T12:00:00.000Z' } });
    expect(common).toMatchObject({ ok: false, rejection: { reason: 'invalid_time' } });
  });

  test('unknown data fields are dropped and absent dimensions stay absent', () => {
    // Act
    const result = validateEvent(event({ extension: 'x' }, { userId: 'u-1', color: 'red' }), rules());

    // Assert
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.event.dimensions).toEqual({ userId: 'u-1' });
  });
});

describe('parseMessageBody', () => {
  test('one event becomes a list of one', () => {
    // Act
    const result = parseMessageBody(JSON.stringify(event()));

    // Assert
    expect(result).toEqual({ ok: true, events: [event()] });
  });

  test('an array body is a list of events, valid or not', () => {
    // Arrange
    const body = JSON.stringify([event({ id: 'a' }), 7, event({ id: 'b' })]);

    // Act
    const result = parseMessageBody(body);

    // Assert
    expect(result).toEqual({ ok: true, events: [event({ id: 'a' }), 7, event({ id: 'b' })] });
  });

  test.each(bodyCases.map(([label, body, reason]) => ({ label, body, reason })))('$label → $reason', ({ body, reason }) => {
    // Act
    const result = parseMessageBody(body);

    // Assert
    expect(result).toEqual({ ok: false, rejection: { reason, detail: expect.any(String) } });
  });

  test("exactly 1 MiB, the queue's largest message, is accepted", () => {
    // Arrange: a JSON string of 1,048,574 characters plus its two quotes
    const body = JSON.stringify('a'.repeat(MAX_MESSAGE_BYTES - 2));
    expect(Buffer.byteLength(body)).toBe(1_048_576);

    // Act
    const result = parseMessageBody(body);

    // Assert
    expect(result.ok).toBe(true);
  });
});

describe('eventKey', () => {
  test('is unambiguous whatever characters source and id hold', () => {
    // Act / Assert
    expect(eventKey({ source: 'a|b', id: 'c' })).not.toBe(eventKey({ source: 'a', id: 'b|c' }));
    expect(eventKey({ source: 'a","b', id: 'c' })).not.toBe(eventKey({ source: 'a', id: 'b","c' }));
    expect(eventKey({ source: 'a\u0000b', id: 'c' })).not.toBe(eventKey({ source: 'a', id: 'b\u0000c' }));
    expect(eventKey({ source: 'ab', id: '' })).not.toBe(eventKey({ source: 'a', id: 'b' }));
  });

  test('is the same for the same source and id', () => {
    expect(eventKey({ source: 'app/chat', id: 'evt-1' })).toBe(eventKey({ source: 'app/chat', id: 'evt-1' }));
  });
});

describe('REJECTION_REASONS', () => {
  test('every reason is demonstrated by a case above (unknown_subject by ingest, which knows the subjects)', () => {
    // Arrange
    const demonstrated = new Set<RejectionReason>([...eventCases, ...bodyCases].map(([, , reason]) => reason));
    demonstrated.add('unknown_subject');

    // Assert
    expect([...demonstrated].sort()).toEqual([...REJECTION_REASONS].sort());
  });
});

describe('the fast check of well-formed events', () => {
  test("accepts nothing the envelope schema rejects, and gives the schema's reason for what it does not accept (10,000 mutations)", () => {
    // Arrange: a seeded generator replaces or removes one to three fields of a valid event with edge values
    let state = 20261124;
    const next = () => (state = (state * 1664525 + 1013904223) >>> 0) / 2 ** 32;
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
    const REMOVE = Symbol('remove');
    const edge = [
      '',
      ' ',
      '\t\n',
      'x',
      'x'.repeat(128),
      'x'.repeat(129),
      'x'.repeat(256),
      'x'.repeat(257),
      'x'.repeat(1025),
      '1.0',
      '2.0',
      0,
      -1,
      1.5,
      3,
      Number.NaN,
      1e300,
      null,
      true,
      [],
      {},
      ['a'],
      '2026-11-22T10:00:00Z',
      '2026-11-22T10:00:00.000Z',
      '2026-02-30T10:00:00Z',
      '2026-11-22 10:00:00Z',
      'tokens',
      'credits',
      'unknown',
      REMOVE,
    ];
    const top = ['specversion', 'id', 'source', 'type', 'subject', 'time', 'data'];
    const inData = ['usageType', 'quantity', 'userId', 'groupId', 'channel', 'feature'];
    let accepted = 0;

    for (let i = 0; i < 10_000; i++) {
      const raw = event({}, { userId: 'u1', channel: 'api' });
      const data = raw.data as Json;
      for (let m = 1 + Math.floor(next() * 3); m > 0; m--) {
        const inside = next() < 0.6;
        const target = inside ? data : raw;
        const field = pick(inside ? inData : top);
        const value = pick(edge);
        if (value === REMOVE) delete target[field];
        else target[field] = value;
      }

      // Act
      const result = validateEvent(raw, rules());
      const schema = envelopeSchema.safeParse(raw);

      // Assert: accepted ⇒ the schema accepts; rejected by the schema ⇒ rejected, for the schema's field
      if (result.ok) {
        accepted++;
        expect({ raw, schema: schema.success }).toEqual({ raw, schema: true });
      }
      if (!schema.success) expect(result.ok).toBe(false);
    }
    // Enough valid events among the mutations that acceptance was exercised too.
    expect(accepted).toBeGreaterThan(500);
  });

  test('a valid event comes out the same whether its time and quantity take the short way or not', () => {
    // Act
    const canonical = validateEvent(event({ time: '2026-11-22T10:00:00.000Z' }, { quantity: 7 }), rules());
    const other = validateEvent(event({ time: '2026-11-22T11:00:00+01:00' }, { quantity: 7.0 }), rules());
    const fraction = validateEvent(event({}, { usageType: 'credits', quantity: 0.25 }), rules());

    // Assert
    expect(canonical).toMatchObject({ ok: true, event: { time: '2026-11-22T10:00:00.000Z', quantity: '7' } });
    expect(other).toMatchObject({ ok: true, event: { time: '2026-11-22T10:00:00.000Z', quantity: '7' } });
    expect(fraction).toMatchObject({ ok: true, event: { quantity: '0.25' } });
  });
});
