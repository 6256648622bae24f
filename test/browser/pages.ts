import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's Chromium (`.ci/run` installs it), driven by playwright-core: no browser download. */
const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = 'test-artifacts/screenshots';

type CheckedPage = Page & { problems: string[] };

/** One Chromium for a suite, each page in a context of its own that remembers the errors the page logged. */
export class DashboardBrowser {
  private readonly contexts: BrowserContext[] = [];

  private constructor(
    private readonly browser: Browser,
    private readonly baseUrl: string,
  ) {}

  static async launch(baseUrl: string): Promise<DashboardBrowser> {
    mkdirSync(SCREENSHOTS, { recursive: true });
    return new DashboardBrowser(await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] }), baseUrl);
  }

  async newPage(options: { acceptDownloads?: boolean } = {}): Promise<Page> {
    const context = await this.browser.newContext({ ...options, timezoneId: 'UTC', locale: 'en-US', reducedMotion: 'reduce', viewport: { width: 1280, height: 900 } });
    this.contexts.push(context);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    (page as CheckedPage).problems = problems;
    return page;
  }

  async signIn(page: Page, key: string): Promise<void> {
    await page.goto(`${this.baseUrl}/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  async close(): Promise<void> {
    for (const context of this.contexts) await context.close().catch(() => undefined);
    await this.browser.close();
  }
}

/** The errors a page of `DashboardBrowser.newPage` logged. */
export const problemsOf = (page: Page) => (page as CheckedPage).problems;

export const shot = (page: Page, name: string) => page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });

/** A number as the page prints it ("1,234.5 days" → 1234.5). */
export const numberIn = (text: string | null) => Number((text ?? '').replace(/[^0-9.-]/g, ''));

/** The rows of a ranking table as the page shows them. */
export async function rowsOf(page: Page, table: string): Promise<{ rank: number; id: string; amount: number; share: string; requests: number }[]> {
  const rows = await page.locator(`${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.children].map((cell) => cell.querySelector('.id')?.textContent ?? cell.textContent ?? '')));
  return rows.map(([rank, id, amount, share, requests]) => ({
    rank: numberIn(rank ?? ''),
    id: id ?? '',
    amount: numberIn(amount ?? ''),
    share: /[\d.]+%/.exec(share ?? '')?.[0] ?? '',
    requests: numberIn(requests ?? ''),
  }));
}
