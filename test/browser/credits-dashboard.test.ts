import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Page } from 'playwright-core';
import type { LocalStack } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { ADMIN_KEY, bearer, StackClient, startLocalWithConfig } from '../support/local-stack';
import { imageRates, PRICE_LIST } from '../support/price-list';
import { DashboardBrowser, numberIn, problemsOf, rowsOf, shot } from './pages';

/**
 * The dashboard of a product that sells credits, in a real browser (Debian's Chromium, driven by playwright-core),
 * against its own local stack and config: a workspace key's Credits card (the balance and its three parts, in
 * credits and money, requests and the estimate) and finance's rankings of an enterprise account. Every expected
 * figure is worked out here from the events sent, the grants made and the price list below, never read from the code.
 */

const HOUR = 3_600_000;

/** Noon UTC of the suite's date; every event falls three hours before it, inside a cycle anchored on the 1st. */
const START = (() => {
  const day = suiteClockStart();
  return Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 12);
})();
const SENT_AT = new Date(START - 3 * HOUR).toISOString();
const PERIOD_START = new Date(Date.UTC(new Date(START).getUTCFullYear(), new Date(START).getUTCMonth(), 1)).toISOString();

/** The price list, in credits per image. */
const CENTS_PER_CREDIT = 5;
/** The starter plan's monthly credits, and ws_burn's bonus and top-up. */
const MONTHLY = 50;
const BONUS = 30;
const TOPUP = 50;
const ENTERPRISE_MONTHLY = 1000;

const BURN_KEY = 'burn-workspace-key-browser-00000';
const ENT_C_KEY = 'ent-c-workspace-key-browser-0000';
const FINANCE_KEY = 'finance-key-browser-000000000000';

const GROUPS: Record<string, string> = { ws_ent_a: 'design', ws_ent_b: 'design', ws_ent_c: 'design', ws_ent_d: 'research', ws_ent_e: 'research', ws_ent_f: 'research' };

const CONFIG = {
  usageTypes: [
    { id: 'images', unit: 'image' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [
    { id: 'starter', quotas: { credits: { monthlyLimit: MONTHLY, overage: 'allow' } } },
    { id: 'creator', quotas: { credits: { monthlyLimit: 500, overage: 'allow' }, images: { monthlyLimit: 1000, overage: 'allow' } } },
    { id: 'enterprise', quotas: { credits: { monthlyLimit: ENTERPRISE_MONTHLY, overage: 'allow' } } },
  ],
  subjects: [
    { id: 'ws_burn', plan: 'starter', billingAnchorDay: 1, timeZone: 'UTC' },
    // An enterprise account whose six workspaces, in two workspace groups, share its balance.
    { id: 'acct_ent', kind: 'account', plan: 'enterprise', billingAnchorDay: 1, timeZone: 'UTC' },
    ...Object.entries(GROUPS).map(([id, workspaceGroup]) => ({ id, plan: 'creator', billingAnchorDay: 1, timeZone: 'UTC', account: 'acct_ent', workspaceGroup })),
  ],
  rateCard: { currency: 'USD', prices: { credits: { unitPrice: CENTS_PER_CREDIT } } },
  credits: {
    usageType: 'credits',
    rates: {
      images: [
        {
          from: '2020-01-01T00:00:00Z',
          ...imageRates(),
        },
      ],
    },
  },
  apiKeys: [
    { key: ADMIN_KEY, scope: 'admin', name: 'tests' },
    { key: BURN_KEY, scope: 'workspace', subject: 'ws_burn' },
    { key: ENT_C_KEY, scope: 'workspace', subject: 'ws_ent_c' },
    { key: FINANCE_KEY, scope: 'finance', name: 'finance' },
  ],
};

interface Sent {
  id: string;
  workspace: string;
  user: string;
  data: Record<string, unknown> & { quantity: number };
  /** What it costs by the price list: quantity × (rule + surcharges). */
  credits: number;
}

/** ws_burn's four requests. */
const BURN: Sent[] = [
  { id: 'burn-1', workspace: 'ws_burn', user: 'owner', data: { feature: 'remove_background', quantity: 10 }, credits: 10 * PRICE_LIST.removeBackground },
  { id: 'burn-2', workspace: 'ws_burn', user: 'owner', data: { feature: 'generate', quality: 'high', quantity: 4 }, credits: 4 * PRICE_LIST.generateHighQuality },
  { id: 'burn-3', workspace: 'ws_burn', user: 'owner', data: { feature: 'ocr', quantity: 3 }, credits: 3 * PRICE_LIST.ocr },
  { id: 'burn-4', workspace: 'ws_burn', user: 'owner', data: { feature: 'upscale', output: '4x', transparent: true, quantity: 2 }, credits: 2 * (PRICE_LIST.upscale4x + PRICE_LIST.transparent) },
];

/** The enterprise's requests: six workspaces, seven users (two of them tied), more than a page of each. */
const ENTERPRISE: Sent[] = [
  { id: 'ent-1', workspace: 'ws_ent_a', user: 'u1', data: { feature: 'generate', quality: 'high', quantity: 4 }, credits: 4 * PRICE_LIST.generateHighQuality },
  { id: 'ent-2', workspace: 'ws_ent_a', user: 'u2', data: { feature: 'remove_background', quantity: 10 }, credits: 10 * PRICE_LIST.removeBackground },
  { id: 'ent-3', workspace: 'ws_ent_b', user: 'u1', data: { feature: 'ocr', quantity: 3 }, credits: 3 * PRICE_LIST.ocr },
  { id: 'ent-4', workspace: 'ws_ent_b', user: 'u3', data: { feature: 'upscale', output: '4x', quantity: 2 }, credits: 2 * PRICE_LIST.upscale4x },
  { id: 'ent-5', workspace: 'ws_ent_c', user: 'u4', data: { feature: 'generate', quantity: 5 }, credits: 5 * PRICE_LIST.generate },
  { id: 'ent-6', workspace: 'ws_ent_c', user: 'u4', data: { feature: 'generate', resolution: 'high', quantity: 1 }, credits: PRICE_LIST.generateHighResolution },
  { id: 'ent-7', workspace: 'ws_ent_d', user: 'u5', data: { feature: 'upscale', output: '8x', quantity: 1 }, credits: PRICE_LIST.upscale8x },
  { id: 'ent-8', workspace: 'ws_ent_e', user: 'u6', data: { feature: 'ocr', quantity: 5 }, credits: 5 * PRICE_LIST.ocr },
  { id: 'ent-9', workspace: 'ws_ent_f', user: 'u7', data: { feature: 'generate', transparent: true, quantity: 2 }, credits: 2 * (PRICE_LIST.generate + PRICE_LIST.transparent) },
  { id: 'ent-10', workspace: 'ws_ent_f', user: 'u2', data: { feature: 'remove_background', quantity: 1 }, credits: PRICE_LIST.removeBackground },
  { id: 'ent-11', workspace: 'ws_ent_d', user: 'u6', data: { feature: 'generate', quantity: 3 }, credits: 3 * PRICE_LIST.generate },
];

/** USD cents as a reader sees them. */
const dollars = (cents: number) => `$${(cents / 100).toFixed(2)}`;
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** A ranking as the test works it out: amount, share (4 places, shown as a percent to 1 place) and requests per id, largest first, then by id. */
function ranking(events: readonly Sent[], idOf: (e: Sent) => string, amountOf: (e: Sent) => number) {
  const total = sum(events.map(amountOf));
  const by = new Map<string, { amount: number; requests: number }>();
  for (const e of events) {
    const entry = by.get(idOf(e)) ?? { amount: 0, requests: 0 };
    by.set(idOf(e), { amount: entry.amount + amountOf(e), requests: entry.requests + 1 });
  }
  return [...by]
    .sort(([a, x], [b, y]) => y.amount - x.amount || (a < b ? -1 : 1))
    .map(([id, { amount, requests }], i) => ({ rank: i + 1, id, amount, share: `${(Math.round((amount / total) * 10_000) / 100).toFixed(1)}%`, requests }));
}

let stack: LocalStack;
let client: StackClient;
let dashboard: DashboardBrowser;

const text = async (page: Page, selector: string) => ((await page.locator(selector).textContent()) ?? '').trim();

/** What the Credits card shows, read off the page. */
async function creditsCard(page: Page) {
  const part = async (id: string) => ({ credits: await text(page, `#credits [data-credits="${id}"]`), money: await text(page, `#credits [data-money="${id}"]`) });
  return {
    balance: numberIn(await text(page, '#credits [data-value="credits-balance"]')),
    balanceMoney: await text(page, '#credits [data-money="balance"]'),
    included: await part('included'),
    purchased: await part('purchased'),
    bonus: await part('bonus'),
    requests: numberIn(await text(page, '[data-card="credits-requests"] .number')),
    billed: numberIn(await text(page, '[data-card="credits-billed"] .number')),
    estimate: await text(page, '[data-card="credits-estimate"] .number'),
  };
}

beforeAll(async () => {
  stack = await startLocalWithConfig(CONFIG, new Date(START));
  client = new StackClient(stack);
  for (const grant of [
    { id: 'promo', kind: 'bonus', usageType: 'credits', amount: BONUS },
    { id: 'pack-50', kind: 'topup', usageType: 'credits', amount: TOPUP },
  ]) {
    const response = await fetch(`${stack.ready.api}/v1/workspaces/ws_burn/grants`, { method: 'POST', headers: bearer(ADMIN_KEY), body: JSON.stringify(grant) });
    expect(response.status).toBe(201);
  }
  await client.send(
    [...BURN, ...ENTERPRISE].map((e) =>
      JSON.stringify({ specversion: '1.0', id: e.id, source: '//studio', type: 'com.example.usage', subject: e.workspace, time: SENT_AT, data: { usageType: 'images', userId: e.user, ...e.data } }),
    ),
  );
  await stack.settle();
  dashboard = await DashboardBrowser.launch(stack.ready.api);
}, 300_000);

afterAll(async () => {
  await dashboard?.close();
  client?.close();
  await stack?.stop();
});

describe('a workspace key of a product that sells credits', () => {
  test('the Credits card shows the balance, its included, purchased and bonus parts in credits and money, the requests and the estimate', async () => {
    // Arrange: the burn order takes the monthly allowance first, then top-ups (they expire), then bonus (it never does)
    const used = sum(BURN.map((e) => e.credits));
    const overflow = Math.max(0, used - MONTHLY);
    const included = Math.max(0, MONTHLY - used);
    const purchased = TOPUP - Math.min(TOPUP, overflow);
    const bonus = BONUS - Math.max(0, overflow - TOPUP);
    const balance = included + purchased + bonus;
    const page = await dashboard.newPage();

    // Act
    await dashboard.signIn(page, BURN_KEY);
    await page.locator('#credits [data-card="credits-estimate"]').waitFor();
    await page.locator('[data-card="run-out"]').waitFor();
    await shot(page, '09-credits-card');

    // Assert
    expect([included, purchased, bonus].every((part) => part > 0)).toBe(true);
    expect(await creditsCard(page)).toEqual({
      balance,
      balanceMoney: dollars(balance * CENTS_PER_CREDIT),
      included: { credits: `${included} credits`, money: dollars(included * CENTS_PER_CREDIT) },
      purchased: { credits: `${purchased} credits`, money: dollars(purchased * CENTS_PER_CREDIT) },
      bonus: { credits: `${bonus} credits`, money: dollars(bonus * CENTS_PER_CREDIT) },
      requests: BURN.length,
      billed: used,
      estimate: String(Math.floor((balance * BURN.length) / used)),
    });
    await expect(text(page, '#credits .panel-head .muted')).resolves.toContain(
      new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric', year: 'numeric', timeZone: 'UTC' }).format(new Date(PERIOD_START)),
    );
    // The allowance panel of the credits usage type counts the same requests beside the credits used.
    await expect(text(page, '#allowance [data-value="used"]')).resolves.toBe(String(used));
    await expect(text(page, '#allowance [data-value="requests"]')).resolves.toBe(`· ${BURN.length} requests`);
    expect(problemsOf(page)).toEqual([]);
  });

  test("a pooled workspace's card is its account's balance, and says so", async () => {
    // Arrange
    const pooled = sum(ENTERPRISE.map((e) => e.credits));
    const balance = ENTERPRISE_MONTHLY - pooled;
    const page = await dashboard.newPage();

    // Act
    await dashboard.signIn(page, ENT_C_KEY);
    await page.locator('#credits [data-card="credits-estimate"]').waitFor();

    // Assert
    expect(await creditsCard(page)).toEqual({
      balance,
      balanceMoney: dollars(balance * CENTS_PER_CREDIT),
      included: { credits: `${balance} credits`, money: dollars(balance * CENTS_PER_CREDIT) },
      purchased: { credits: '0 credits', money: dollars(0) },
      bonus: { credits: '0 credits', money: dollars(0) },
      requests: ENTERPRISE.length,
      billed: pooled,
      estimate: String(Math.floor((balance * ENTERPRISE.length) / pooled)),
    });
    await expect(text(page, '#credits .panel-head .muted')).resolves.toContain('shared with the enterprise account acct_ent');
    expect(problemsOf(page)).toEqual([]);
  });
});

describe('a finance key', () => {
  test('the workspaces ranking counts requests beside amounts', async () => {
    const page = await dashboard.newPage();
    await dashboard.signIn(page, FINANCE_KEY);
    const expected = ranking(
      [...BURN, ...ENTERPRISE],
      (e) => e.workspace,
      (e) => e.data.quantity,
    );
    await page
      .locator('#top-workspaces tbody tr')
      .nth(expected.length - 1)
      .waitFor();
    expect(await rowsOf(page, '#top-workspaces')).toEqual(expected);
    expect(problemsOf(page)).toEqual([]);
  });

  test('the enterprise section ranks an account\'s workspaces, workspace groups and users, five at a time with "Show more"', async () => {
    // Arrange
    const page = await dashboard.newPage();
    await dashboard.signIn(page, FINANCE_KEY);
    const expected = {
      '#account-workspaces': ranking(
        ENTERPRISE,
        (e) => e.workspace,
        (e) => e.credits,
      ),
      '#account-groups': ranking(
        ENTERPRISE,
        (e) => GROUPS[e.workspace] ?? '',
        (e) => e.credits,
      ),
      '#account-users': ranking(
        ENTERPRISE,
        (e) => e.user,
        (e) => e.credits,
      ),
    };
    expect([expected['#account-workspaces'].length, expected['#account-groups'].length, expected['#account-users'].length]).toEqual([6, 2, 7]);

    // Act: an empty id is asked for; then the account, in the usage type counted in credits (the default)
    await page.getByRole('button', { name: 'Show rankings' }).click();
    await expect(text(page, '#enterprise-form .error')).resolves.toBe('Enter an account id.');
    await page.locator('#account-id').fill('acct_ent');
    await expect(page.locator('#account-usage-type').inputValue()).resolves.toBe('credits');
    await page.getByRole('button', { name: 'Show rankings' }).click();
    for (const table of Object.keys(expected)) await page.locator(`${table} tbody tr`).first().waitFor();
    await page.locator('#account-users tbody tr').nth(4).waitFor();
    await page.locator('#account-workspaces tbody tr').nth(4).waitFor();

    // Assert: the first page of each
    for (const [table, entries] of Object.entries(expected)) {
      expect({ table, rows: await rowsOf(page, table) }).toEqual({ table, rows: entries.slice(0, 5) });
      await expect(page.locator(`${table} [data-action="show-more"]`).isVisible()).resolves.toBe(entries.length > 5);
    }
    await shot(page, '10-enterprise-first-page');

    // Act: the next page of each that has one
    for (const [table, entries] of Object.entries(expected)) {
      if (entries.length <= 5) continue;
      await page.locator(`${table} [data-action="show-more"]`).click();
      await page
        .locator(`${table} tbody tr`)
        .nth(entries.length - 1)
        .waitFor();
    }

    // Assert: every entry once, in order, and no more pages
    for (const [table, entries] of Object.entries(expected)) {
      expect({ table, rows: await rowsOf(page, table) }).toEqual({ table, rows: entries });
      await expect(page.locator(`${table} [data-action="show-more"]`).isVisible()).resolves.toBe(false);
    }
    await shot(page, '11-enterprise-all-pages');
    expect(problemsOf(page)).toEqual([]);
  });

  test("an unknown account shows the API's reason in each table", async () => {
    const page = await dashboard.newPage();
    await dashboard.signIn(page, FINANCE_KEY);
    await page.locator('#account-id').fill('acct_nobody');
    await page.getByRole('button', { name: 'Show rankings' }).click();
    await page.locator('#account-workspaces-status', { hasText: 'acct_nobody' }).waitFor();
    await expect(page.locator('#account-workspaces tbody tr').count()).resolves.toBe(0);
    // Chromium logs the refused requests (404) as console errors: expected here.
  });
});
