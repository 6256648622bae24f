import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { isLosslessNumber, parse } from 'lossless-json';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { repairSubject } from '../../functions/core/metering/repair';
import { rollupSortKey } from '../../functions/core/metering/rollups';
import { runAudit } from '../../functions/core/reporting/audit';
import type { LocalStack } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse } from '../support/api-contract';
import { ADMIN_KEY, bearer, StackClient, startLocalWithConfig } from '../support/local-stack';
import { imageRates, PRICE_LIST } from '../support/price-list';
import { localRepairDeps } from '../support/repair-deps';

/**
 * The credit rate card end to end: a price list's actions sent over SQS (and one over POST …/usages) are priced
 * at ingest, counted in credits beside their own quantities, corrected, repriced from a version's date on, and
 * refused when no rule prices them. Every expected figure is worked out here from the price list below, in
 * hundred-thousandths of a credit, never read from the code.
 */

const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** Noon UTC of the suite's date: every event of the test falls on that day, inside a cycle anchored on the 1st. */
const START = (() => {
  const day = suiteClockStart();
  return Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 12);
})();
/** Background removal goes from 2 to 3 credits an image at this instant. */
const PRICE_CHANGE = START - 2 * HOUR;
const BEFORE = iso(START - 3 * HOUR);
const AFTER = iso(START - HOUR);

const CENTS_PER_CREDIT = 5;
const BURN_KEY = 'burn-workspace-key-000000000000';
const EMPTY_KEY = 'empty-workspace-key-00000000000';
const FINANCE_KEY = 'finance-key-000000000000000000';
const ENT_C_KEY = 'ent-c-workspace-key-0000000000';
const ENTERPRISE_MONTHLY = 60;

const CONFIG = {
  usageTypes: [
    { id: 'images', unit: 'image' },
    { id: 'agent_tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [
    { id: 'creator', quotas: { credits: { monthlyLimit: 500, overage: 'allow' }, images: { monthlyLimit: 1000, overage: 'allow' } } },
    // A small plan that leaves the agent out.
    { id: 'starter', quotas: { credits: { monthlyLimit: 10, overage: 'allow' } }, excludes: ['agent_tokens'] },
    { id: 'enterprise', quotas: { credits: { monthlyLimit: ENTERPRISE_MONTHLY, overage: 'allow' } } },
  ],
  subjects: [
    ...['ws_studio', 'ws_variations', 'ws_removal'].map((id) => ({ id, plan: 'creator', billingAnchorDay: 1, timeZone: 'UTC' })),
    ...['ws_burn', 'ws_empty'].map((id) => ({ id, plan: 'starter', billingAnchorDay: 1, timeZone: 'UTC', contacts: [`owner@${id.replace('_', '-')}.example`] })),
    // An enterprise account whose three workspaces, in two workspace groups, share its balance.
    { id: 'acct_ent', kind: 'account', plan: 'enterprise', billingAnchorDay: 1, timeZone: 'UTC', contacts: ['finance@ent.example'] },
    { id: 'ws_ent_a', plan: 'creator', billingAnchorDay: 1, timeZone: 'UTC', account: 'acct_ent', workspaceGroup: 'design' },
    { id: 'ws_ent_b', plan: 'creator', billingAnchorDay: 1, timeZone: 'UTC', account: 'acct_ent', workspaceGroup: 'design' },
    { id: 'ws_ent_c', plan: 'creator', billingAnchorDay: 1, timeZone: 'UTC', account: 'acct_ent', workspaceGroup: 'research' },
  ],
  // 5 cents a credit.
  rateCard: { currency: 'USD', prices: { credits: { unitPrice: CENTS_PER_CREDIT } } },
  credits: {
    usageType: 'credits',
    rates: {
      images: [
        { from: '2020-01-01T00:00:00Z', ...imageRates(PRICE_LIST.removeBackground) },
        { from: iso(PRICE_CHANGE), ...imageRates(PRICE_LIST.removeBackgroundFromPriceChange) },
      ],
      agent_tokens: [
        {
          from: '2020-01-01T00:00:00Z',
          rules: Object.entries(PRICE_LIST.large).map(([tokenKind, credits]) => ({ when: { model: 'large', tokenKind }, credits })),
        },
      ],
    },
  },
  apiKeys: [
    { key: ADMIN_KEY, scope: 'admin', name: 'tests' },
    { key: BURN_KEY, scope: 'workspace', subject: 'ws_burn' },
    { key: EMPTY_KEY, scope: 'workspace', subject: 'ws_empty' },
    { key: FINANCE_KEY, scope: 'finance', name: 'finance' },
    { key: ENT_C_KEY, scope: 'workspace', subject: 'ws_ent_c' },
  ],
};

/** Credits in hundred-thousandths, from a decimal of at most five places (the price list's): exact with integers alone. */
const credits = (decimal: string | number) => {
  const [whole = '0', fraction = ''] = String(decimal).split('.');
  if (fraction.length > 5) throw new Error(`${decimal} has more than 5 decimals`);
  return Number(whole) * 100_000 + Number(fraction.padEnd(5, '0'));
};
/** Hundred-thousandths as the shortest decimal, as the API writes it. */
const decimal = (units: number) => {
  const fraction = String(units % 100_000)
    .padStart(5, '0')
    .replace(/0+$/, '');
  return `${Math.floor(units / 100_000)}${fraction ? `.${fraction}` : ''}`;
};

let stack: LocalStack;
let client: StackClient;

function event(id: string, time: string, data: Record<string, unknown>, subject = 'ws_studio') {
  return JSON.stringify({ specversion: '1.0', id, source: '//studio', type: 'com.example.usage', subject, time, data });
}

async function quota(usageType: string, subject = 'ws_studio'): Promise<{ usedAmount: string }> {
  const response = await fetch(`${stack.ready.api}/v1/workspaces/${subject}/quotas`, { headers: bearer(ADMIN_KEY) });
  const body = parse(await response.text()) as { quotas: { usageType: string; usedAmount: unknown }[] };
  const entry = body.quotas.find((q) => q.usageType === usageType);
  const used = entry?.usedAmount;
  return { usedAmount: isLosslessNumber(used) ? used.toString() : String(used) };
}

/** Adds `delta` to a workspace's credits cycle total behind the pipeline's back: damage a repair must undo. */
function damageCreditsTotal(documents: ReturnType<typeof createDocumentClient>, subject: string, cycleStart: string, delta: number) {
  return documents.send(
    new UpdateCommand({
      TableName: stack.tables.rollups,
      Key: { pk: subject, sk: rollupSortKey('cycle', cycleStart, 'credits') },
      UpdateExpression: 'ADD #t :d',
      ExpressionAttributeNames: { '#t': 'total' },
      ExpressionAttributeValues: { ':d': delta },
    }),
  );
}

beforeAll(async () => {
  stack = await startLocalWithConfig(CONFIG, new Date(START));
  client = new StackClient(stack);
}, 180_000);

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

describe('credits priced by the rate card, counted beside quantities', () => {
  // What each priced event costs, from the price list: quantity × (rule + surcharges).
  const sent = {
    variations: { quantity: 4, credits: 4 * credits(PRICE_LIST.generateHighQuality) },
    removal: { quantity: 10, credits: 10 * credits(PRICE_LIST.removeBackground) },
    ocr: { quantity: 3, credits: 3 * credits(PRICE_LIST.ocr) },
    upscale: { quantity: 2, credits: 2 * (credits(PRICE_LIST.upscale4x) + credits(PRICE_LIST.transparent)) },
    highResolution: { quantity: 1, credits: credits(PRICE_LIST.generateHighResolution) },
    removalAfterChange: { quantity: 5, credits: 5 * credits(PRICE_LIST.removeBackgroundFromPriceChange) },
    viaApi: { quantity: 3, credits: 3 * (credits(PRICE_LIST.generateHighQuality) + credits(PRICE_LIST.transparent)) },
  };
  const tokens = { input: 12_000, output: 3_000, cache_read: 50_000, cache_write: 1_000 };
  const tokenCredits = Object.entries(tokens).reduce((sum, [kind, count]) => sum + count * credits(PRICE_LIST.large[kind as keyof typeof tokens]), 0);
  const imageCount = Object.values(sent).reduce((sum, e) => sum + e.quantity, 0);
  const imageCredits = Object.values(sent).reduce((sum, e) => sum + e.credits, 0);

  test('the worked examples a customer sees: 4 higher-quality variations cost 8 credits, background removal on 10 images 20', async () => {
    // Act
    await client.send([
      event('example-variations', BEFORE, { usageType: 'images', quantity: 4, feature: 'generate', quality: 'high' }, 'ws_variations'),
      event('example-removal', BEFORE, { usageType: 'images', quantity: 10, feature: 'remove_background' }, 'ws_removal'),
    ]);
    await stack.settle();

    // Assert
    expect(await quota('credits', 'ws_variations')).toEqual({ usedAmount: '8' });
    expect(await quota('credits', 'ws_removal')).toEqual({ usedAmount: '20' });
  });

  test('each event adds its credits and its own quantity once; an unpriced event is quarantined with its reason', async () => {
    // Act: over SQS, a duplicate among them, and one event over POST …/usages
    const bodies = [
      event('variations', BEFORE, { usageType: 'images', quantity: 4, feature: 'generate', quality: 'high', channel: 'web' }),
      event('removal', BEFORE, { usageType: 'images', quantity: 10, feature: 'remove_background', channel: 'api' }),
      event('removal', BEFORE, { usageType: 'images', quantity: 10, feature: 'remove_background', channel: 'api' }),
      event('ocr', BEFORE, { usageType: 'images', quantity: 3, feature: 'ocr', languages: ['en', 'fr', 'de'] }),
      event('upscale', BEFORE, { usageType: 'images', quantity: 2, feature: 'upscale', output: '4x', transparent: true }),
      event('high-resolution', BEFORE, { usageType: 'images', quantity: 1, feature: 'generate', resolution: 'high', quality: 'high' }),
      event('removal-after-change', AFTER, { usageType: 'images', quantity: 5, feature: 'remove_background' }),
      event('colorize', BEFORE, { usageType: 'images', quantity: 7, feature: 'colorize' }),
      ...Object.entries(tokens).map(([tokenKind, quantity]) => event(`run-1-${tokenKind}`, BEFORE, { usageType: 'agent_tokens', quantity, model: 'large', tokenKind })),
    ];
    await client.send(bodies);
    const posted = await fetch(`${stack.ready.api}/v1/workspaces/ws_studio/usages`, {
      method: 'POST',
      headers: bearer(ADMIN_KEY),
      body: JSON.stringify({
        specversion: '1.0',
        id: 'via-api',
        time: AFTER,
        type: 'com.example.usage',
        data: { usageType: 'images', quantity: 3, feature: 'generate', quality: 'high', transparent: true },
      }),
    });
    await stack.settle();

    // Assert
    expect(posted.status).toBe(202);
    expect(await quota('credits')).toEqual({ usedAmount: decimal(imageCredits + tokenCredits) });
    expect(await quota('images')).toEqual({ usedAmount: String(imageCount) });
    const quarantined = await client.quarantine('ws_studio');
    expect(quarantined.map((q) => ({ reason: q.reason, id: (JSON.parse(q.body) as { id: string }).id }))).toEqual([{ reason: 'unpriced', id: 'colorize' }]);
  });

  test('POST …/usages refuses an event no rule prices with 400 unpriced, and queues nothing', async () => {
    // Act
    const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_studio/usages`, {
      method: 'POST',
      headers: bearer(ADMIN_KEY),
      body: JSON.stringify([
        { specversion: '1.0', time: AFTER, type: 'com.example.usage', data: { usageType: 'images', quantity: 1, feature: 'generate' } },
        { specversion: '1.0', time: AFTER, type: 'com.example.usage', data: { usageType: 'agent_tokens', quantity: 100, model: 'small', tokenKind: 'input' } },
      ]),
    });
    await stack.settle();

    // Assert
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string; message: string } }).error).toEqual({ code: 'unpriced', message: expect.stringContaining('events[1]') });
    expect(await quota('credits')).toEqual({ usedAmount: decimal(imageCredits + tokenCredits) });
  });

  test("a correction moves the credits with the quantity, and the day's usage reads in credits", async () => {
    // Act: the upscale was to 8x, not 4x, and of 3 images
    await client.send([event('upscale', BEFORE, { usageType: 'images', quantity: 3, feature: 'upscale', output: '8x', transparent: true })]);
    await stack.settle();

    // Assert
    const corrected = 3 * (credits(PRICE_LIST.upscale8x) + credits(PRICE_LIST.transparent));
    expect(await quota('credits')).toEqual({ usedAmount: decimal(imageCredits - sent.upscale.credits + corrected + tokenCredits) });
    expect(await quota('images')).toEqual({ usedAmount: String(imageCount - sent.upscale.quantity + 3) });
    const day = iso(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), new Date(START).getUTCDate()));
    const { body } = await client.get(`/v1/workspaces/ws_studio/usage?granularity=day&from=${day}&to=${iso(Date.parse(day) + 24 * HOUR)}&usageType=credits`);
    const buckets = (body as { buckets: { usageType: string; quantity: number; requests: number }[] }).buckets;
    // Every priced event once under credits: the copy, the correction (the same event) and the unpriced one add none.
    const pricedEvents = Object.keys(sent).length + Object.keys(tokens).length;
    expect(buckets.map((b) => [b.usageType, b.quantity, b.requests])).toEqual([['credits', Number(decimal(imageCredits - sent.upscale.credits + corrected + tokenCredits)), pricedEvents]]);
    // ... and once under its own usage type.
    const all = await client.buckets('ws_studio', 'day', new Date(day), new Date(Date.parse(day) + 24 * HOUR));
    expect(all.map((b) => [b.usageType, b.requests])).toEqual([
      ['agent_tokens', Object.keys(tokens).length],
      ['credits', pricedEvents],
      ['images', Object.keys(sent).length],
    ]);
  });

  test('recent activity lists the last events with their feature and credits, the correction as corrected', async () => {
    // Act
    const { status, body } = await client.get('/v1/workspaces/ws_studio/activity?limit=100');

    // Assert: one entry per event sent (the duplicate once, the unpriced one never), newest first
    expect(status).toBe(200);
    const events = (body as { events: { time: string; usageType: string; feature?: string; quantity: number; credits?: number }[] }).events;
    const byFeature = (feature: string) => events.filter((e) => e.feature === feature).map((e) => [e.usageType, e.quantity, e.credits]);
    expect(byFeature('upscale')).toEqual([['images', 3, Number(decimal(3 * (credits(PRICE_LIST.upscale8x) + credits(PRICE_LIST.transparent))))]]);
    expect(byFeature('remove_background')).toEqual([
      ['images', sent.removalAfterChange.quantity, Number(decimal(sent.removalAfterChange.credits))],
      ['images', sent.removal.quantity, Number(decimal(sent.removal.credits))],
    ]);
    expect(events.filter((e) => e.usageType === 'agent_tokens').map((e) => e.credits)).toEqual(expect.arrayContaining([36, 45, 15, 3.75]));
    expect(events.some((e) => e.feature === 'colorize')).toBe(false);
    expect(events.map((e) => e.time)).toEqual([...events.map((e) => e.time)].sort().reverse());
  });

  test('the audit counts credits from the ledger as the rollups do, and a repair restores a damaged credits total from it', async () => {
    // Arrange: the credits cycle item's total off by 1,000
    const expected = await quota('credits');
    const raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
    const streams = new DynamoDBStreamsClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
    const documents = createDocumentClient(raw);
    const audit = () =>
      runAudit(
        { subject: 'ws_studio' },
        { config: stack.config, subjects: appContext.subjects(), ledger: appContext.ledgerScanner(), rollups: appContext.rollups(), accounts: appContext.accounts(), reports: appContext.reports() },
      );
    const cycleStart = iso(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), 1));
    try {
      expect((await audit()).differences).toBe(0);
      await damageCreditsTotal(documents, 'ws_studio', cycleStart, 1000);
      expect((await audit()).differences).toBeGreaterThan(0);

      // Act
      const repaired = await repairSubject({ subject: 'ws_studio' }, localRepairDeps(stack, raw, streams, appContext.rollups()));

      // Assert: only the damaged item moved, back by 1,000
      expect(repaired.items.map((i) => [i.item, i.total])).toEqual([[rollupSortKey('cycle', cycleStart, 'credits'), '-1000']]);
      expect(await quota('credits')).toEqual(expected);
      expect((await audit()).differences).toBe(0);
    } finally {
      streams.destroy();
      raw.destroy();
    }
  });
});

describe('the balance a credit-selling product shows: GET /v1/usage, its headers, the burn order and plan gating', () => {
  // ws_burn (starter: 10 credits a month) holds a bonus of 30 (never expires) and a top-up of 50 (expires in
  // 12 months), and uses 10 images of background removal (20 credits) and 4 higher-quality variations (8).
  const MONTHLY = 10;
  const BONUS = 30;
  const TOPUP = 50;
  const used = 10 * PRICE_LIST.removeBackground + 4 * PRICE_LIST.generateHighQuality;
  // Burn order: the monthly allowance first, then the top-up (it expires), then the bonus (it never does).
  const overflow = used - MONTHLY;
  const topupLeft = TOPUP - Math.min(TOPUP, overflow);
  const bonusLeft = BONUS - Math.max(0, overflow - TOPUP);
  const balance = topupLeft + bonusLeft;

  async function usage(key: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${stack.ready.api}/v1/usage`, { headers: bearer(key) });
    const body = (await response.json()) as Record<string, unknown>;
    checkResponse('GET', '/v1/usage', response.status, body);
    return { status: response.status, body };
  }

  beforeAll(async () => {
    for (const grant of [
      { id: 'promo', kind: 'bonus', usageType: 'credits', amount: BONUS },
      { id: 'pack-50', kind: 'topup', usageType: 'credits', amount: TOPUP },
      { id: 'agent-trial', kind: 'bonus', usageType: 'agent_tokens', amount: 1000 },
    ]) {
      const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_burn/grants`, { method: 'POST', headers: bearer(ADMIN_KEY), body: JSON.stringify(grant) });
      expect(response.status).toBe(201);
    }
    await client.send([
      event('burn-removal', BEFORE, { usageType: 'images', quantity: 10, feature: 'remove_background' }, 'ws_burn'),
      event('burn-variations', BEFORE, { usageType: 'images', quantity: 4, feature: 'generate', quality: 'high' }, 'ws_burn'),
    ]);
    await stack.settle();
  });

  test('GET /v1/usage splits the balance into included, purchased and bonus, in credits and cents, for the calling key', async () => {
    // Act
    const { status, body } = await usage(BURN_KEY);

    // Assert
    expect(status).toBe(200);
    expect(body).toEqual({
      period_start: iso(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), 1)),
      requests: 2,
      billable_units: used,
      credits: {
        balance,
        balance_cents: balance * CENTS_PER_CREDIT,
        currency: 'USD',
        included: 0,
        included_cents: 0,
        purchased: topupLeft,
        purchased_cents: topupLeft * CENTS_PER_CREDIT,
        bonus: bonusLeft,
        bonus_cents: bonusLeft * CENTS_PER_CREDIT,
        estimated_requests_remaining: Math.floor((balance * 2) / used),
        auto_reload_enabled: false,
      },
    });
  });

  test('an empty workspace reads its whole allowance and no estimate; a key without a workspace is refused', async () => {
    // Act
    const empty = await usage(EMPTY_KEY);
    const admin = await usage(ADMIN_KEY);

    // Assert
    expect(empty.body).toMatchObject({
      requests: 0,
      billable_units: 0,
      credits: { balance: MONTHLY, balance_cents: MONTHLY * CENTS_PER_CREDIT, included: MONTHLY, purchased: 0, bonus: 0, estimated_requests_remaining: null },
    });
    expect(admin.status).toBe(403);
    expect((admin.body.error as { code: string }).code).toBe('forbidden_scope');
  });

  test('POST …/usages answers with the balance in X-Credits-Balance and X-Credits-Requests-Remaining', async () => {
    // Act
    const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_burn/usages`, {
      method: 'POST',
      headers: bearer(BURN_KEY),
      body: JSON.stringify({ specversion: '1.0', time: AFTER, type: 'com.example.usage', data: { usageType: 'images', quantity: 1, feature: 'ocr' } }),
    });
    await stack.settle();

    // Assert: the balance before the request's own event is counted
    expect(response.status).toBe(202);
    expect([response.headers.get('x-credits-balance'), response.headers.get('x-credits-requests-remaining')]).toEqual([String(balance), String(Math.floor((balance * 2) / used))]);
    const after = await usage(BURN_KEY);
    expect(after.body).toMatchObject({ requests: 3, billable_units: used + PRICE_LIST.ocr, credits: { balance: balance - PRICE_LIST.ocr } });
  });

  test('thresholds are on credits as on any usage type: crossing 80%, 100% and 110% at once sends the one email of the highest', async () => {
    // Act
    await stack.settle();
    const response = await fetch(stack.ready.ses.store);
    const { emails } = (await response.json()) as { emails: { destination: { to: string[] }; subject: string }[] };

    // Assert: 28 credits of 10 crosses all three thresholds at once; ws_empty used nothing
    const subjects = emails.filter((e) => e.destination.to.includes('owner@ws-burn.example')).map((e) => e.subject);
    expect(subjects).toEqual(['You have used 110% of your monthly credits']);
    expect(emails.filter((e) => e.destination.to.includes('owner@ws-empty.example'))).toEqual([]);
  });

  test('the quota view counts requests beside units, tells top-ups apart, and a plan that leaves a usage type out never allows it', async () => {
    // Act
    const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_burn/quotas`, { headers: bearer(ADMIN_KEY) });
    const { quotas } = (await response.json()) as { quotas: Record<string, unknown>[] };

    // Assert: 3 priced events by now (the OCR of the test above)
    const byType = Object.fromEntries(quotas.map((q) => [q.usageType, q]));
    expect(byType.credits).toMatchObject({ requests: 3, bonusAmount: topupLeft - PRICE_LIST.ocr + bonusLeft, topupAmount: topupLeft - PRICE_LIST.ocr, canUse: true });
    expect(byType.agent_tokens).toMatchObject({ availableAmount: 1000, canUse: false });
  });
});

describe("an enterprise account pools its workspaces' credits", () => {
  // Three workspaces in two workspace groups, four users across them; every figure from the price list.
  const sent = [
    { id: 'ent-1', workspace: 'ws_ent_a', user: 'u1', data: { feature: 'generate', quality: 'high', quantity: 4 }, credits: 4 * PRICE_LIST.generateHighQuality },
    { id: 'ent-2', workspace: 'ws_ent_a', user: 'u2', data: { feature: 'remove_background', quantity: 10 }, credits: 10 * PRICE_LIST.removeBackground },
    { id: 'ent-3', workspace: 'ws_ent_b', user: 'u1', data: { feature: 'ocr', quantity: 3 }, credits: 3 * PRICE_LIST.ocr },
    { id: 'ent-4', workspace: 'ws_ent_b', user: 'u3', data: { feature: 'upscale', output: '4x', quantity: 2 }, credits: 2 * PRICE_LIST.upscale4x },
    { id: 'ent-5', workspace: 'ws_ent_c', user: 'u4', data: { feature: 'generate', quantity: 5 }, credits: 5 * PRICE_LIST.generate },
    { id: 'ent-6', workspace: 'ws_ent_c', user: 'u4', data: { feature: 'generate', resolution: 'high', quantity: 1 }, credits: PRICE_LIST.generateHighResolution },
  ];
  const GROUPS: Record<string, string> = { ws_ent_a: 'design', ws_ent_b: 'design', ws_ent_c: 'research' };
  const pooled = sent.reduce((sum, e) => sum + e.credits, 0);
  const share = (amount: number) => Math.round((amount / pooled) * 10_000) / 10_000;
  /** The ranking a client works out: amount, share and requests per id, largest first, then by id. */
  function ranking(idOf: (e: (typeof sent)[number]) => string) {
    const by = new Map<string, { amount: number; requests: number }>();
    for (const e of sent) {
      const entry = by.get(idOf(e)) ?? { amount: 0, requests: 0 };
      by.set(idOf(e), { amount: entry.amount + e.credits, requests: entry.requests + 1 });
    }
    return [...by].sort(([a, x], [b, y]) => y.amount - x.amount || (a < b ? -1 : 1)).map(([id, { amount, requests }], i) => ({ rank: i + 1, id, amount, share: share(amount), requests }));
  }
  async function allPages(path: string): Promise<unknown[]> {
    const entries: unknown[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await client.get(`${path}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, FINANCE_KEY);
      expect(status).toBe(200);
      entries.push(...(body as { entries: unknown[] }).entries);
      cursor = (body as { nextCursor: string | null }).nextCursor;
    } while (cursor);
    return entries;
  }

  beforeAll(async () => {
    await client.send(sent.map((e) => event(e.id, BEFORE, { usageType: 'images', userId: e.user, ...e.data }, e.workspace)));
    await stack.settle();
  });

  test("a pooled workspace's quota view and GET /v1/usage are the account's balance", async () => {
    // Act
    const quotas = await client.get('/v1/workspaces/ws_ent_c/quotas');
    const balance = await fetch(`${stack.ready.api}/v1/usage`, { headers: bearer(ENT_C_KEY) });

    // Assert
    const view = quotas.body as { subject: string; pool: string; plan: string; quotas: { usageType: string; usedAmount: number; availableAmount: number; requests: number }[] };
    expect([view.subject, view.pool, view.plan]).toEqual(['ws_ent_c', 'acct_ent', 'enterprise']);
    expect(view.quotas.find((q) => q.usageType === 'credits')).toMatchObject({ usedAmount: pooled, availableAmount: ENTERPRISE_MONTHLY - pooled, requests: sent.length });
    expect(await balance.json()).toMatchObject({
      requests: sent.length,
      billable_units: pooled,
      credits: { balance: ENTERPRISE_MONTHLY - pooled, included: ENTERPRISE_MONTHLY - pooled, balance_cents: (ENTERPRISE_MONTHLY - pooled) * CENTS_PER_CREDIT },
    });
  });

  test('each workspace still counts its own credits', async () => {
    for (const workspace of Object.keys(GROUPS)) {
      // Act
      const from = iso(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), 1));
      const buckets = await client.buckets(workspace, 'cycle', new Date(from), new Date(Date.parse(from) + 32 * 24 * HOUR));

      // Assert
      const mine = sent.filter((e) => e.workspace === workspace);
      const own = mine.reduce((sum, e) => sum + e.credits, 0);
      expect({ workspace, credits: buckets.filter((b) => b.usageType === 'credits').map((b) => [b.quantity, b.requests]) }).toEqual({ workspace, credits: [[own, mine.length]] });
    }
  });

  test("finance ranks the account's workspaces, workspace groups and users, with requests, page by page", async () => {
    // Act
    const [workspaces, groups, users] = await Promise.all(['workspace', 'group', 'user'].map((by) => allPages(`/v1/workspaces/acct_ent/usage/top?by=${by}&usageType=credits`)));

    // Assert
    expect(workspaces).toEqual(ranking((e) => e.workspace));
    expect(groups).toEqual(ranking((e) => GROUPS[e.workspace] as string));
    expect(users).toEqual(ranking((e) => e.user));
  });

  test("the ranking of all workspaces leaves accounts out: their credits are their workspaces'", async () => {
    // Act
    const { body } = await client.get('/v1/usage/top?by=workspace&usageType=credits&limit=100', FINANCE_KEY);

    // Assert
    const ids = (body as { entries: { id: string; amount: number }[] }).entries.map((e) => e.id);
    expect(ids).not.toContain('acct_ent');
    expect(ids).toEqual(expect.arrayContaining(Object.keys(GROUPS)));
  });

  test("a repair of a pooled workspace restores its own items and leaves its account's alone; an account is not repaired", async () => {
    // Arrange: ws_ent_a's credits cycle item off by 500
    const raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
    const streams = new DynamoDBStreamsClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
    const cycleStart = iso(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), 1));
    const accountBefore = await client.get('/v1/workspaces/acct_ent/quotas');
    try {
      await damageCreditsTotal(createDocumentClient(raw), 'ws_ent_a', cycleStart, 500);

      // Act
      const repaired = await repairSubject({ subject: 'ws_ent_a' }, localRepairDeps(stack, raw, streams, appContext.rollups()));
      const refused = await repairSubject({ subject: 'acct_ent' }, localRepairDeps(stack, raw, streams, appContext.rollups())).catch((error: Error) => error);

      // Assert
      expect(repaired.items.map((i) => [i.item, i.total])).toEqual([[rollupSortKey('cycle', cycleStart, 'credits'), '-500']]);
      expect((await client.get('/v1/workspaces/acct_ent/quotas')).body).toEqual(accountBefore.body);
      expect(refused).toBeInstanceOf(Error);
      expect((refused as Error).message).toContain('is an account');
    } finally {
      streams.destroy();
      raw.destroy();
    }
  });

  test('thresholds are on the pool: its contacts get the email of the highest threshold crossed', async () => {
    // Act
    const response = await fetch(stack.ready.ses.store);
    const { emails } = (await response.json()) as { emails: { destination: { to: string[] }; subject: string }[] };

    // Assert: 53 credits of 60 is 88%
    expect(Math.floor((pooled * 100) / ENTERPRISE_MONTHLY)).toBeGreaterThanOrEqual(80);
    expect(emails.filter((e) => e.destination.to.includes('finance@ent.example')).map((e) => e.subject)).toEqual(['You have used 80% of your monthly credits']);
  });
});
