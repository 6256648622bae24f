import { readFileSync } from 'node:fs';
import { ConfigError, formatPath, parseConfig } from '../../functions/core/config';

const exampleText = readFileSync(new URL('../../config/example.json', import.meta.url), 'utf8');

type Json = Record<string, unknown>;

/** A small valid config as plain JSON, to be broken one key at a time. */
const valid = (): { usageTypes: Json[]; plans: Json[]; subjects: Json[]; ingest?: Json } & Json => ({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [
    { id: 'free', quotas: { tokens: { monthlyLimit: 1000 } } },
    { id: 'pro', quotas: { tokens: { monthlyLimit: 100000, dailyLimit: 5000 }, credits: { monthlyLimit: 50 } } },
  ],
  subjects: [
    { id: 'ws_a', plan: 'free', billingAnchorDay: 1 },
    { id: 'ws_b', plan: 'pro', billingAnchorDay: 31, timeZone: 'Europe/Berlin', contacts: ['ops@b.example'] },
  ],
});

/** Parses and returns the ConfigError, failing the test if none is thrown. */
function configError(input: unknown, source?: string): ConfigError {
  const text = typeof input === 'string' ? input : JSON.stringify(input);
  try {
    parseConfig(text, source);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig with a valid file', () => {
  test('parses config/example.json', () => {
    // Act
    const config = parseConfig(exampleText, 'config/example.json');

    // Assert
    expect(config.usageTypes.map((u) => u.id)).toEqual(['tokens', 'images', 'credits']);
    expect(config.plans.map((p) => p.id)).toEqual(['free', 'pro']);
    expect(config.plans[1]?.quotas).toEqual({
      tokens: { monthlyLimit: 1000000, dailyLimit: 50000, fairUseLimit: 1500000, spillover: { policy: 'capped', cap: 250000 }, overage: 'allow', thresholds: [80, 100, 110] },
      images: { monthlyLimit: 1000, spillover: { policy: 'all' }, overage: 'block', thresholds: [50, 80, 100] },
      credits: { monthlyLimit: 5000, spillover: { policy: 'all' }, overage: 'allow', thresholds: [80, 100, 110] },
    });
    expect(config.plans[0]?.quotas.images).toEqual({ monthlyLimit: 50, spillover: { policy: 'none' }, overage: 'block', thresholds: [80, 100, 110] });
    expect(config.closes).toEqual({ graceMinutes: 60 });
    expect(config.subjects).toEqual([
      { id: 'ws_acme', name: 'Acme Corp', plan: 'pro', billingAnchorDay: 15, timeZone: 'UTC', contacts: ['billing@acme.example'] },
      { id: 'ws_globex', name: 'Globex', plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: ['finance@globex.example'] },
      { id: 'ws_initech', name: 'Initech', plan: 'free', billingAnchorDay: 31, timeZone: 'UTC', contacts: [] },
    ]);
    expect(config.ingest).toEqual({ maxFutureSeconds: 300, retentionDays: 400 });
  });

  test('fills defaults: allowFractions false, timeZone UTC, contacts [], ingest 300 s / 400 days', () => {
    // Act
    const config = parseConfig(JSON.stringify(valid()));

    // Assert
    expect(config.usageTypes).toEqual([
      { id: 'tokens', unit: 'token', allowFractions: false },
      { id: 'credits', unit: 'credit', allowFractions: true },
    ]);
    expect(config.subjects[0]).toEqual({ id: 'ws_a', plan: 'free', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] });
    expect(config.subjects[1]).toEqual({ id: 'ws_b', plan: 'pro', billingAnchorDay: 31, timeZone: 'Europe/Berlin', contacts: ['ops@b.example'] });
    expect(config.ingest).toEqual({ maxFutureSeconds: 300, retentionDays: 400 });
  });

  test('fills the ingest default left out of a partial ingest block, and subjects default to []', () => {
    // Arrange
    const raw: Json = { ...valid(), ingest: { retentionDays: 30 } };
    delete raw.subjects;

    // Act
    const config = parseConfig(JSON.stringify(raw));

    // Assert
    expect(config.ingest).toEqual({ maxFutureSeconds: 300, retentionDays: 30 });
    expect(config.subjects).toEqual([]);
  });
});

describe('parseConfig reports the first bad key with its path', () => {
  const cases: [string, (c: ReturnType<typeof valid>) => unknown, string, RegExp][] = [
    ['an unknown usage type in a plan', (c) => ((c.plans[0] as { quotas: Json }).quotas.tokenz = { monthlyLimit: 1 }), 'plans[0].quotas.tokenz', /unknown usage type "tokenz"/],
    ['an unknown plan', (c) => ((c.subjects[1] as Json).plan = 'gold'), 'subjects[1].plan', /unknown plan "gold"/],
    ['billingAnchorDay 32', (c) => ((c.subjects[0] as Json).billingAnchorDay = 32), 'subjects[0].billingAnchorDay', /31/],
    ['billingAnchorDay 0', (c) => ((c.subjects[1] as Json).billingAnchorDay = 0), 'subjects[1].billingAnchorDay', /1/],
    ['billingAnchorDay 1.5', (c) => ((c.subjects[0] as Json).billingAnchorDay = 1.5), 'subjects[0].billingAnchorDay', /int/],
    ['an unknown time zone', (c) => ((c.subjects[0] as Json).timeZone = 'Mars/Base'), 'subjects[0].timeZone', /IANA time zone/],
    ['a duplicate usage type id', (c) => ((c.usageTypes[1] as Json).id = 'tokens'), 'usageTypes[1].id', /duplicate id "tokens"/],
    ['a duplicate plan id', (c) => ((c.plans[1] as Json).id = 'free'), 'plans[1].id', /duplicate id "free"/],
    ['a duplicate subject id', (c) => ((c.subjects[1] as Json).id = 'ws_a'), 'subjects[1].id', /duplicate id "ws_a"/],
    ['an id with a space', (c) => ((c.usageTypes[0] as Json).id = 'my tokens'), 'usageTypes[0].id', /must be 1-128/],
    ['a bad contact email', (c) => ((c.subjects[1] as Json).contacts = ['ops@b.example', 'not-an-email']), 'subjects[1].contacts[1]', /email/i],
    ['a negative monthly limit', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.monthlyLimit = -1), 'plans[1].quotas.tokens.monthlyLimit', /0/],
    ['allowFractions as a string', (c) => ((c.usageTypes[1] as Json).allowFractions = 'yes'), 'usageTypes[1].allowFractions', /boolean/],
    ['a missing unit', (c) => delete (c.usageTypes[0] as Json).unit, 'usageTypes[0].unit', /string/],
    ['no usage types', (c) => (c.usageTypes = []), 'usageTypes', /1/],
    ['retentionDays 0', (c) => (c.ingest = { retentionDays: 0 }), 'ingest.retentionDays', /1/],
    ['maxFutureSeconds negative', (c) => (c.ingest = { maxFutureSeconds: -5 }), 'ingest.maxFutureSeconds', /0/],
    ['an unknown spillover policy', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.spillover = { policy: 'some' }), 'plans[1].quotas.tokens.spillover.policy', /none|all|capped/],
    ['a capped spillover without a cap', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.spillover = { policy: 'capped' }), 'plans[1].quotas.tokens.spillover.cap', /number/],
    ['an overage that is neither block nor allow', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.overage = 'warn'), 'plans[1].quotas.tokens.overage', /block|allow/],
    ['thresholds out of order', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.thresholds = [100, 80]), 'plans[1].quotas.tokens.thresholds', /ascending/],
    ['a negative fair-use limit', (c) => ((c.plans[1] as { quotas: { tokens: Json } }).quotas.tokens.fairUseLimit = -1), 'plans[1].quotas.tokens.fairUseLimit', /0/],
    ['a negative grace period', (c) => (c.closes = { graceMinutes: -1 }), 'closes.graceMinutes', /0/],
    // DynamoDB's floor for an on-demand table's warm writes is 4,000 a second: less is refused at start, not at deploy.
    ['warm writes below 4,000 a second', (c) => (c.closes = { graceMinutes: 60, warmWritesPerSecond: 3999 }), 'closes.warmWritesPerSecond', /4000/],
  ];

  test.each(cases.map(([label, breakIt, path, reason]) => ({ label, breakIt, path, reason })))('$label → $path', ({ breakIt, path, reason }) => {
    // Arrange
    const raw = valid();
    breakIt(raw);

    // Act
    const error = configError(raw, 'config/test.json');

    // Assert
    expect(error.name).toBe('ConfigError');
    expect(error.key).toBe(path);
    expect(error.message.startsWith(`config/test.json: ${path}: `)).toBe(true);
    expect(error.reason).toMatch(reason);
  });

  test.each([
    ['at the root', (c: ReturnType<typeof valid>) => (c.owner = 'me'), 'owner'],
    ['in a subject', (c: ReturnType<typeof valid>) => ((c.subjects[1] as Json).colour = 'blue'), 'subjects[1].colour'],
    ['in a plan quota', (c: ReturnType<typeof valid>) => ((c.plans[0] as { quotas: { tokens: Json } }).quotas.tokens.weeklyLimit = 5), 'plans[0].quotas.tokens.weeklyLimit'],
    ['in ingest', (c: ReturnType<typeof valid>) => (c.ingest = { maxFutureSecs: 5 }), 'ingest.maxFutureSecs'],
  ])('an unknown extra key %s is rejected (strict objects), named by its full path', (_label, breakIt, path) => {
    // Arrange
    const raw = valid();
    breakIt(raw);

    // Act
    const error = configError(raw);

    // Assert
    expect(error.key).toBe(path);
    expect(error.message).toBe(`config: ${path}: unknown key`);
  });

  test.each([['{"usageTypes": ['], [''], ['usageTypes: []'], ["{'a': 1}"]])('text that is not JSON (%p) is reported at the root', (text) => {
    // Act
    const error = configError(text, 'config.json');

    // Assert
    expect(error.key).toBe('');
    expect(error.message).toMatch(/^config\.json: \(root\): not valid JSON \(.+\)$/);
  });

  test.each([['null'], ['[]'], ['42']])('JSON that is not an object (%s) is reported at the root', (text) => {
    // Act
    const error = configError(text);

    // Assert
    expect(error.key).toBe('');
    expect(error.message).toMatch(/^config: \(root\): /);
  });

  test.each([
    [200, undefined],
    [201, 'rateCard.prices.tokens.features'],
  ])('a rate card with %i priced features of one usage type: refused past 200, naming the key', (count, key) => {
    // Arrange: priced features are kept apart in every cycle item, so their number is bounded.
    const features = Object.fromEntries(Array.from({ length: count }, (_, i) => [`feature-${i}`, 1]));
    const input = { ...valid(), rateCard: { currency: 'USD', prices: { tokens: { unitPrice: 1, features } } } };

    // Act / Assert
    if (key === undefined) expect(Object.keys(parseConfig(JSON.stringify(input)).rateCard?.prices.tokens?.features ?? {})).toHaveLength(count);
    else expect([configError(input).key, configError(input).message]).toEqual([key, expect.stringContaining('at most 200 priced features')]);
  });

  test('the default source name is "config"', () => {
    expect(configError('nope').source).toBe('config');
  });
});

describe('formatPath', () => {
  test.each<[PropertyKey[], string]>([
    [['plans', 0, 'quotas', 'tokens'], 'plans[0].quotas.tokens'],
    [['subjects', 12, 'contacts', 3], 'subjects[12].contacts[3]'],
    [['ingest', 'retentionDays'], 'ingest.retentionDays'],
    [['usageTypes'], 'usageTypes'],
    [[0, 'id'], '[0].id'],
    [[], ''],
  ])('%p → %p', (path, expected) => {
    expect(formatPath(path)).toBe(expected);
  });
});
