import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Page } from 'playwright-core';
import { type DashboardEvent, loadDashboardUsage } from '../../local/demo';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { checkResponse } from '../support/api-contract';
import { DashboardBrowser, numberIn, problemsOf, rowsOf, shot } from './pages';
import { type BucketTruth, cardTruth, dailyTruth, rankingTruth, seriesRequestsTruth, seriesTruth, workspaceTotals } from './truth';

/**
 * The dashboard in a real browser (Debian's Chromium, driven by playwright-core), served by the local
 * runtime at / with the example config and the demo's dashboard data. Every number on the page is
 * compared with the API's own answer, fetched here, and with what the test computes from the events it sent.
 */

const KEYS = { acme: 'local_acme_key_for_this_laptop_only', globex: 'local_globex_key_for_this_laptop_only', finance: 'local_finance_key_for_this_laptop_only' };
const ANCHORS: Record<string, number> = { ws_acme: 15, ws_globex: 1, ws_initech: 31 };
const TOKEN_LIMIT: Record<string, number> = { ws_acme: 1_000_000, ws_globex: 1_000_000 };

let stack: LocalStack;
let dashboard: DashboardBrowser;
let sent: DashboardEvent[];

type Body = Record<string, unknown>;

async function api<T = Body>(path: string, key: string): Promise<T> {
  const response = await fetch(`${stack.ready.api}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const body = (await response.json()) as T;
  checkResponse('GET', path, response.status, body);
  expect(response.status).toBe(200);
  return body;
}

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), onError: () => undefined });
  sent = await loadDashboardUsage(stack);
  dashboard = await DashboardBrowser.launch(stack.ready.api);
}, 300_000);

afterAll(async () => {
  await dashboard?.close();
  await stack?.stop();
});

describe('serving', () => {
  test('/ and any page path answer the page, assets carry their types, /v1 stays the API, nothing outside the build is served', async () => {
    const root = await fetch(`${stack.ready.api}/`);
    const html = await root.text();
    expect(root.status).toBe(200);
    expect(root.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(root.headers.get('content-security-policy')).toContain("default-src 'self'");
    const page = await fetch(`${stack.ready.api}/workspaces/ws_acme`);
    expect([page.status, await page.text()]).toEqual([200, html]);
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    const style = /href="(\/assets\/[^"]+\.css)"/.exec(html)?.[1];
    expect(script && style).toBeTruthy();
    for (const [path, type] of [
      [script, 'text/javascript; charset=utf-8'],
      [style, 'text/css; charset=utf-8'],
    ] as const) {
      const asset = await fetch(`${stack.ready.api}${path}`);
      expect([asset.status, asset.headers.get('content-type'), asset.headers.get('cache-control')]).toEqual([200, type, 'public, max-age=31536000, immutable']);
    }
    // A missing asset is a 404, not the page; the API's own 404 is JSON.
    expect((await fetch(`${stack.ready.api}/assets/missing.js`)).status).toBe(404);
    const unknownApi = await fetch(`${stack.ready.api}/v1/nothing-here`, { headers: { authorization: `Bearer ${KEYS.acme}` } });
    expect([unknownApi.status, ((await unknownApi.json()) as { error: { code: string } }).error.code]).toEqual([404, 'route_not_found']);
    expect((await fetch(`${stack.ready.api}/openapi.json`)).headers.get('content-type')).toBe('application/json');
    // Traversal, raw and encoded: fetch() would normalise "..", so these go over a plain socket.
    for (const path of ['/../package.json', '/%2e%2e/package.json', '/assets/..%2f..%2fpackage.json', '/..%2f..%2fconfig/example.json']) {
      const { status, body } = await rawGet(stack.ready.api, path);
      expect({ path, leaked: body.includes('"name": "usage-pipeline"') || body.includes('local_admin_key') }).toEqual({ path, leaked: false });
      expect({ path, status: [200, 404].includes(status) }).toEqual({ path, status: true });
    }
  });
});

describe('a workspace key', () => {
  let page: Page;
  beforeAll(async () => {
    page = await dashboard.newPage({ acceptDownloads: true });
  });

  test('a wrong key gets a clear message and stays on the sign-in form; an empty one is asked for', async () => {
    await page.goto(`${stack.ready.api}/`);
    await shot(page, '01-sign-in');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.locator('#sign-in-error').textContent()).resolves.toBe('Enter your API key.');
    await page.getByLabel('API key').fill('not-a-key-of-this-system-000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#sign-in-error', { hasText: 'not recognised' }).waitFor();
    await expect(page.getByLabel('API key').getAttribute('aria-invalid')).resolves.toBe('true');
    await expect(page.evaluate('sessionStorage.length')).resolves.toBe(0);
    await shot(page, '02-sign-in-wrong-key');
    // Chromium logs the refused request (401) as a console error: expected here, and here only.
    problemsOf(page).length = 0;
  });

  test("signs in with the key (kept for the tab only) and shows each card with the API's number, which is the ground truth's", async () => {
    await dashboard.signIn(page, KEYS.acme);
    await page.locator('[data-card="run-out"]').waitFor();
    await page.locator('#top-users tbody tr').first().waitFor();
    await page.locator('table.data tbody tr').first().waitFor({ state: 'attached' });
    await shot(page, '03-workspace-acme');
    await expect(page.evaluate('sessionStorage.getItem("usage-dashboard.api-key")')).resolves.toBe(KEYS.acme);
    await expect(page.locator('.who').textContent()).resolves.toBe('ws_acme');

    const { summary, asOf } = await api<{ asOf: string; summary: Body[] }>('/v1/workspaces/ws_acme/usage/summary?usageType=tokens', KEYS.acme);
    const fromApi = summary[0] as Record<string, number | boolean | null>;
    const truth = cardTruth(sent, 'ws_acme', 'tokens', ANCHORS.ws_acme ?? 0, TOKEN_LIMIT.ws_acme ?? 0, new Date(asOf));
    const card = async (id: string) => numberIn(await page.locator(`[data-card="${id}"] .number`).textContent());

    const shown = {
      daysRemaining: await card('days-remaining'),
      daysElapsed: await card('days-elapsed'),
      avgPerDay: await card('avg-per-day'),
      runOutInDays: await card('run-out'),
      used: numberIn(await page.locator('[data-value="used"]').textContent()),
      requests: numberIn(await page.locator('#allowance [data-value="requests"]').textContent()),
      banner: await page.locator('[data-banner="run-out"]').count(),
      creditsCard: await page.locator('#credits').count(),
    };
    // The example config has no credit rate card: GET /v1/usage answers credits null, and the page shows no Credits card.
    const balance = await api<{ credits: unknown }>('/v1/usage', KEYS.acme);
    expect(balance.credits).toBeNull();
    expect(shown).toEqual({
      daysRemaining: fromApi.daysRemaining,
      daysElapsed: fromApi.daysElapsed,
      avgPerDay: fromApi.avgPerDay,
      runOutInDays: fromApi.runOutInDays,
      used: fromApi.usedAmount,
      requests: fromApi.requests,
      banner: fromApi.projectedToRunOut ? 1 : 0,
      creditsCard: 0,
    });
    expect({ ...fromApi, usedAmount: fromApi.usedAmount, availableAmount: fromApi.availableAmount }).toMatchObject({
      usedAmount: truth.used,
      availableAmount: truth.available,
      daysElapsed: truth.daysElapsed,
      daysRemaining: truth.daysRemaining,
      avgPerDay: truth.avgPerDay,
      runOutInDays: truth.runOutInDays,
      projectedToRunOut: truth.projectedToRunOut,
      requests: truth.requests,
    });
    // Acme spends at 1.3 times the pace its allowance allows: the warning must be up.
    expect(truth.projectedToRunOut).toBe(true);
    await expect(page.locator('[data-banner="run-out"]').textContent()).resolves.toContain(`about ${String(truth.runOutInDays)} day`);
    // The allowance bar: used of used + available.
    const bar = page.getByRole('progressbar');
    await expect(Promise.all([bar.getAttribute('aria-valuenow'), bar.getAttribute('aria-valuemax')])).resolves.toEqual([String(truth.used), String(truth.used + truth.available)]);
    expect(problemsOf(page)).toEqual([]);
  });

  test('a reload keeps the session; another workspace with room to spare has no warning', async () => {
    await page.reload();
    await page.locator('[data-card="days-elapsed"]').waitFor();
    const other = await dashboard.newPage({ acceptDownloads: true });
    await dashboard.signIn(other, KEYS.globex);
    await other.locator('[data-card="run-out"]').waitFor();
    const { summary, asOf } = await api<{ asOf: string; summary: Body[] }>('/v1/workspaces/ws_globex/usage/summary?usageType=tokens', KEYS.globex);
    const truth = cardTruth(sent, 'ws_globex', 'tokens', ANCHORS.ws_globex ?? 0, TOKEN_LIMIT.ws_globex ?? 0, new Date(asOf));
    expect([truth.projectedToRunOut, (summary[0] as Body).projectedToRunOut, await other.locator('[data-banner="run-out"]').count()]).toEqual([false, false, 0]);
    expect(numberIn(await other.locator('[data-card="avg-per-day"] .number').textContent())).toBe(truth.avgPerDay);
    await other.locator('#top-users tbody tr').first().waitFor();
    await shot(other, '04-workspace-globex');
  });

  test('the chart toggle shows hourly, daily and weekly buckets split by channel, as the API and the ground truth have them', async () => {
    await page.getByText('Show the numbers as a table').click();
    const canvas = page.locator('#usage-chart');
    let previous: Buffer | undefined;
    for (const [window, rows] of [
      ['24h', 24],
      ['30d', 5],
      ['7d', 7],
    ] as const) {
      const button = page.locator(`button[data-window="${window}"]`);
      // Keyboard for one, the mouse for the others.
      if (window === '30d') {
        await button.focus();
        await page.keyboard.press('Space');
      } else {
        await button.click();
      }
      await page.locator(`table.data[data-window="${window}"]`).waitFor();
      await expect(button.getAttribute('aria-pressed')).resolves.toBe('true');
      const shown = await chartTable(page);
      const series = await api<{ asOf: string; series: { buckets: { start: string; total: number; requests: number; byChannel: Record<string, number> }[] }[] }>(
        `/v1/workspaces/ws_acme/usage/series?window=${window}&usageType=tokens`,
        KEYS.acme,
      );
      const buckets = series.series[0]?.buckets ?? [];
      const fromApi = buckets.map((b) => {
        const named = Object.values(b.byChannel).reduce((x, y) => x + y, 0);
        return { start: b.start, total: b.total, byChannel: { ...b.byChannel, ...(b.total > named ? { other: b.total - named } : {}) } };
      });
      expect(shown).toHaveLength(rows);
      expect(shown).toEqual(fromApi);
      expect(shown).toEqual(seriesTruth(sent, 'ws_acme', 'tokens', window, new Date(series.asOf)));
      // The chart does not show requests; the API's series has them, one per event sent.
      expect(buckets.map((b) => ({ start: b.start, requests: b.requests }))).toEqual(seriesRequestsTruth(sent, 'ws_acme', 'tokens', window, new Date(series.asOf)));
      // The chart itself was redrawn with the new buckets.
      const image = await canvas.screenshot();
      expect(previous === undefined || !image.equals(previous)).toBe(true);
      previous = image;
      if (window === '24h') await shot(page, '05-chart-24h');
    }
  });

  test('"Show more" pages through the top users and groups, in the API\'s order and with the ground truth\'s amounts', async () => {
    const asOf = new Date((await api<{ asOf: string }>('/v1/workspaces/ws_acme/usage/summary', KEYS.acme)).asOf);
    for (const [table, by, key] of [
      ['#top-users', 'user', 'userId'],
      ['#top-groups', 'group', 'groupId'],
    ] as const) {
      const truth = rankingTruth(sent, 'ws_acme', 'tokens', key, ANCHORS.ws_acme ?? 0, asOf);
      const more = page.locator(`${table} [data-action="show-more"]`);
      let pages = 1;
      await expect(rowsOf(page, table)).resolves.toHaveLength(Math.min(5, truth.length));
      while (await more.isVisible()) {
        const before = (await rowsOf(page, table)).length;
        if (pages === 1) await more.click();
        else {
          await more.focus();
          await page.keyboard.press('Enter');
        }
        await page
          .locator(`${table} tbody tr`)
          .nth(Math.min(before + 5, truth.length) - 1)
          .waitFor();
        pages++;
      }
      const shown = await rowsOf(page, table);
      // The API's own pages of five, fetched here with its cursors.
      const fromApi: { rank: number; id: string; amount: number; share: number; requests: number }[] = [];
      let cursor: string | null = null;
      do {
        const next: { entries: typeof fromApi; nextCursor: string | null } = await api(
          `/v1/workspaces/ws_acme/usage/top?by=${by}&usageType=tokens&limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          KEYS.acme,
        );
        fromApi.push(...next.entries);
        cursor = next.nextCursor;
      } while (cursor);
      expect(pages).toBe(Math.ceil(truth.length / 5));
      expect(shown).toEqual(fromApi.map((e) => ({ rank: e.rank, id: e.id, amount: e.amount, share: `${(e.share * 100).toFixed(1)}%`, requests: e.requests })));
      expect(shown).toEqual(truth.map((e, i) => ({ rank: i + 1, id: e.id, amount: e.amount, share: `${(e.share * 100).toFixed(1)}%`, requests: e.requests })));
    }
    await shot(page, '06-rankings-expanded');
  });

  test("the report button downloads the cycle report: the file parses and equals the API's report", async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-action="download-report"]').click()]);
    const file = JSON.parse(readFileSync(await download.path(), 'utf8')) as { generatedAt: string; usage: { usageType: string; total: string }[]; cycle: { start: string } };
    const report = await api<typeof file>('/v1/workspaces/ws_acme/report?cycle=current', KEYS.acme);
    expect(download.suggestedFilename()).toBe(`usage-report-ws_acme-${report.cycle.start.slice(0, 10)}.json`);
    // Generated a moment apart: everything but the time of generation is equal.
    expect({ ...file, generatedAt: 'x' }).toEqual({ ...report, generatedAt: 'x' });
    const truth = cardTruth(sent, 'ws_acme', 'tokens', ANCHORS.ws_acme ?? 0, TOKEN_LIMIT.ws_acme ?? 0, new Date(report.generatedAt));
    expect(Number(file.usage.find((u) => u.usageType === 'tokens')?.total)).toBe(truth.used);
  });

  test('sign out forgets the key', async () => {
    await page.locator('[data-action="sign-out"]').click();
    await page.getByLabel('API key').waitFor();
    await expect(page.evaluate('sessionStorage.length')).resolves.toBe(0);
  });
});

describe('a finance key', () => {
  test('shows the workspaces ranked by use in their own cycle, as the API and the ground truth have them', async () => {
    const page = await dashboard.newPage({ acceptDownloads: true });
    await dashboard.signIn(page, KEYS.finance);
    await page.locator('#top-workspaces tbody tr').nth(2).waitFor();
    const shown = await rowsOf(page, '#top-workspaces');
    const ranking = await api<{ entries: { rank: number; id: string; amount: number; share: number; requests: number }[] }>('/v1/usage/top?by=workspace&usageType=tokens&limit=10', KEYS.finance);
    const asOf = new Date((await api<{ asOf: string }>('/v1/workspaces/ws_acme/usage/summary', KEYS.finance)).asOf);
    const totals = workspaceTotals(sent, 'tokens', ANCHORS, asOf);
    expect(shown.map((r) => ({ rank: r.rank, id: r.id, amount: r.amount, requests: r.requests }))).toEqual(
      ranking.entries.map((e) => ({ rank: e.rank, id: e.id, amount: e.amount, requests: e.requests })),
    );
    // Each workspace's requests are the events it was sent this cycle.
    expect(shown.map((r) => r.requests)).toEqual(shown.map((r) => cardTruth(sent, r.id, 'tokens', ANCHORS[r.id] ?? 0, 0, asOf).requests));
    expect(shown.map((r) => [r.id, r.amount])).toEqual([...totals].filter(([, amount]) => amount > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
    await expect(page.locator('[data-card]').count()).resolves.toBe(0);
    await shot(page, '07-finance');
    expect(problemsOf(page)).toEqual([]);
  });

  test("the export form starts an export and links the file, which holds the ground truth's daily buckets", async () => {
    const page = await dashboard.newPage({ acceptDownloads: true });
    await dashboard.signIn(page, KEYS.finance);
    const asOf = stack.clock.now().getTime();
    const from = new Date(asOf - 6 * 86_400_000).toISOString().slice(0, 10);
    const to = new Date(asOf + 86_400_000).toISOString().slice(0, 10);
    await page.getByLabel('From (UTC, inclusive)').fill(from);
    await page.getByLabel('To (UTC, exclusive)').fill(to);
    await page.getByLabel('Buckets').selectOption('day');
    await page.getByLabel('Format').selectOption('json');
    await page.getByLabel('Workspaces', { exact: true }).fill('ws_acme');
    await page.getByRole('button', { name: 'Start export' }).click();
    const link = page.locator('a[data-export-id]');
    await link.waitFor({ timeout: 60_000 });
    await shot(page, '08-finance-export-ready');
    // The link is the export's presigned S3 URL (S3 itself makes it a download; the local stand-in just serves the file).
    const href = (await link.getAttribute('href')) ?? '';
    const view = await api<{ status: string; bucketCount: number; url: string }>(`/v1/exports/${(await link.getAttribute('data-export-id')) ?? ''}`, KEYS.finance);
    expect(new URL(href).pathname).toBe(new URL(view.url).pathname);
    const file = (await (await fetch(href)).json()) as { kind: string; subjects: string[]; buckets: { subject: string; usageType: string; day: string; quantity: string; requests: number }[] };
    expect([file.kind, file.subjects, view.status, view.bucketCount]).toEqual(['usage-export', ['ws_acme'], 'ready', file.buckets.length]);
    const shown = new Map(file.buckets.map((b) => [`${b.usageType}|${b.day}`, Number(b.quantity)]));
    expect(shown).toEqual(dailyTruth(sent, 'ws_acme', Date.parse(`${from}T00:00:00Z`), Date.parse(`${to}T00:00:00Z`)));
    expect(new Map(file.buckets.map((b) => [`${b.usageType}|${b.day}`, b.requests]))).toEqual(dailyTruth(sent, 'ws_acme', Date.parse(`${from}T00:00:00Z`), Date.parse(`${to}T00:00:00Z`), 'requests'));
  });

  test("a bad export request shows the API's reason", async () => {
    const page = await dashboard.newPage({ acceptDownloads: true });
    await dashboard.signIn(page, KEYS.finance);
    await page.getByLabel('From (UTC, inclusive)').fill('2026-03-01');
    await page.getByLabel('To (UTC, exclusive)').fill('2026-02-01');
    await page.getByRole('button', { name: 'Start export' }).click();
    const error = page.locator('#exports .error');
    await error.waitFor();
    expect((await error.textContent())?.length).toBeGreaterThan(10);
    await expect(page.locator('a[data-export-id]').count()).resolves.toBe(0);
  });
});

/** The chart's table: per bucket, its start, its use per channel and its total. */
async function chartTable(page: Page): Promise<BucketTruth[]> {
  const channels = await page.locator('table.data thead th[data-channel]').evaluateAll((cells) => cells.map((c) => c.getAttribute('data-channel') ?? ''));
  const rows = await page
    .locator('table.data tbody tr')
    .evaluateAll((trs) => trs.map((tr) => ({ start: tr.getAttribute('data-start') ?? '', cells: [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '') })));
  return rows.map(({ start, cells }) => {
    const byChannel: Record<string, number> = {};
    channels.forEach((channel, i) => {
      const value = numberIn(cells[i] ?? '0');
      if (value !== 0) byChannel[channel] = value;
    });
    return { start, byChannel, total: numberIn(cells.at(-1) ?? '0') };
  });
}

/** A GET with the path exactly as written (fetch would resolve "." and ".." first). */
async function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  const { request } = await import('node:http');
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}
