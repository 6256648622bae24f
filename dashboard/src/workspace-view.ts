import { type Api, ApiError } from './api';
import { allowanceBar, chartRows, creditFigures, cycleCards, formatAmount, formatDate, runOutWarning } from './cards';
import { channelName, usageChart } from './chart';
import { append, h, replace } from './dom';
import { rankingTable } from './ranking';
import type { CreditUsage, QuotaView, SeriesWindow, Summary, SummaryEntry, UsageType } from './types';

const WINDOWS: { id: SeriesWindow; label: string; caption: string }[] = [
  { id: '24h', label: '24 hours', caption: 'per hour' },
  { id: '7d', label: '7 days', caption: 'per day' },
  { id: '30d', label: '30 days', caption: 'per week' },
];
const RANKING_PAGE = 5;

/** A workspace's cycle: its credit balance, allowance, cards, warning, usage chart, top users and groups, the report. */
export async function workspaceView(api: Api, workspace: string, usageTypes: UsageType[]): Promise<HTMLElement> {
  // The balance is an extra: a page whose API cannot answer it (or answers it with no rate card) shows no Credits card.
  // The quota view says only whether the balance is an enterprise account's (its `pool`), so it is read only when there is a balance.
  const balance = api
    .creditUsage()
    .then(async (usage) => (usage.credits ? { usage, quotas: await api.quotas(workspace).catch(() => null) } : null))
    .catch(() => null);
  const [summary, credits] = await Promise.all([api.summary(workspace), balance]);
  const root = h('div', { class: 'workspace' });
  if (credits) append(root, creditsPanel(credits.usage, credits.quotas));
  // Usage types this workspace has a quota or credits for, in the configured order (the first is the main one).
  const order = (usageType: string) => usageTypes.findIndex((u) => u.id === usageType) >>> 0;
  const entries = [...summary.summary].sort((a, b) => order(a.usageType) - order(b.usageType));
  const first = entries[0];
  if (!first) return h('p', { class: 'panel' }, 'This workspace has no usage types in its plan yet.');
  const unitOf = (usageType: string) => usageTypes.find((u) => u.id === usageType)?.unit ?? usageType;

  const picker = h('select', { id: 'usage-type', name: 'usage-type' }, ...entries.map((e) => h('option', { value: e.usageType }, titleCase(e.usageType))));
  const download = h('button', { type: 'button', class: 'button secondary', 'data-action': 'download-report' }, 'Download cycle report (JSON)');
  const downloadStatus = h('span', { class: 'muted', role: 'status' });
  const body = h('div', { class: 'stack' });
  root.append(
    h('div', { class: 'toolbar' }, h('div', { class: 'field inline' }, h('label', { for: 'usage-type' }, 'Usage type'), picker), h('div', { class: 'toolbar-end' }, downloadStatus, download)),
    body,
  );

  download.addEventListener('click', async () => {
    download.disabled = true;
    downloadStatus.textContent = 'Preparing the report…';
    try {
      const text = await api.reportText(workspace);
      const link = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/json' })), download: `usage-report-${workspace}-${first.cycleStart.slice(0, 10)}.json` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
      downloadStatus.textContent = 'Report downloaded.';
    } catch (error) {
      downloadStatus.textContent = error instanceof ApiError ? error.message : 'The report could not be downloaded.';
    } finally {
      download.disabled = false;
    }
  });

  let destroyChart: (() => void) | undefined;
  const render = (usageType: string) => {
    const entry = entries.find((e) => e.usageType === usageType) ?? first;
    destroyChart?.();
    const chart = chartPanel(api, workspace, entry.usageType, unitOf(entry.usageType));
    destroyChart = chart.destroy;
    replace(
      body,
      warning(entry, summary, unitOf(entry.usageType)),
      allowancePanel(entry, summary, unitOf(entry.usageType)),
      cards(entry, summary, unitOf(entry.usageType)),
      chart.element,
      h(
        'div',
        { class: 'grid two' },
        rankingTable({
          id: 'top-users',
          title: 'Top users',
          noun: 'User',
          unit: unitOf(entry.usageType),
          empty: 'No use by a named user this cycle.',
          load: (cursor) => api.topMembers(workspace, 'user', entry.usageType, RANKING_PAGE, cursor),
        }),
        rankingTable({
          id: 'top-groups',
          title: 'Top groups',
          noun: 'Group',
          unit: unitOf(entry.usageType),
          empty: 'No use by a named group this cycle.',
          load: (cursor) => api.topMembers(workspace, 'group', entry.usageType, RANKING_PAGE, cursor),
        }),
      ),
    );
  };
  picker.addEventListener('change', () => render(picker.value));
  render(first.usageType);
  return root;
}

function warning(entry: SummaryEntry, summary: Summary, unit: string): HTMLElement | null {
  const text = runOutWarning(entry, summary.asOf, unit);
  return text ? h('div', { class: 'banner warning', role: 'alert', 'data-banner': 'run-out' }, h('strong', {}, 'Heads up: '), text) : null;
}

function allowancePanel(entry: SummaryEntry, summary: Summary, unit: string): HTMLElement {
  const bar = allowanceBar(entry);
  const zone = (cls: string, percent: number, fill: number) => {
    const element = h('div', { class: `zone ${cls}` }, h('div', { class: 'fill' }));
    element.style.width = `${percent}%`;
    (element.firstElementChild as HTMLElement).style.width = percent > 0 ? `${(fill / percent) * 100}%` : '0';
    return element;
  };
  const percent = entry.usedPercent === null ? '' : `${formatAmount(entry.usedPercent)}% of the monthly allowance`;
  return h(
    'section',
    { class: 'panel', id: 'allowance', 'aria-labelledby': 'allowance-title' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', { id: 'allowance-title' }, 'This cycle'),
      h('p', { class: 'muted' }, `${formatDate(entry.cycleStart)} – ${formatDate(Date.parse(entry.cycleEnd) - 1)} · ${titleCase(summary.plan)} plan`),
    ),
    h(
      'p',
      { class: 'headline' },
      h('span', { class: 'big', 'data-value': 'used' }, formatAmount(entry.usedAmount)),
      ` of ${formatAmount(bar.capacity)} ${unit}s used`,
      percent ? h('span', { class: 'muted', 'data-value': 'used-percent' }, ` · ${percent}`) : null,
      h('span', { class: 'muted', 'data-value': 'requests' }, ` · ${formatAmount(entry.requests)} ${entry.requests === 1 ? 'request' : 'requests'}`),
    ),
    h(
      'div',
      {
        class: 'allowance-bar',
        role: 'progressbar',
        'aria-label': `${titleCase(unit)}s used this cycle`,
        'aria-valuemin': 0,
        'aria-valuemax': bar.capacity,
        'aria-valuenow': Math.min(bar.used, bar.capacity),
        'aria-valuetext': `${formatAmount(bar.used)} of ${formatAmount(bar.capacity)} ${unit}s used`,
      },
      zone('monthly', bar.monthlyPercent, bar.usedMonthlyPercent),
      bar.bonus > 0 ? zone('bonus', 100 - bar.monthlyPercent, bar.usedBonusPercent) : null,
    ),
    h(
      'dl',
      { class: 'legend' },
      h(
        'div',
        { 'data-part': 'monthly' },
        h('dt', {}, h('span', { class: 'swatch monthly', 'aria-hidden': 'true' }), 'Monthly allowance'),
        h(
          'dd',
          {},
          formatAmount(entry.allowanceAmount),
          entry.spilloverAmount > 0 ? h('span', { class: 'muted' }, ` (plan ${formatAmount(entry.limitAmount)} + ${formatAmount(entry.spilloverAmount)} carried over)`) : null,
        ),
      ),
      h('div', { 'data-part': 'bonus' }, h('dt', {}, h('span', { class: 'swatch bonus', 'aria-hidden': 'true' }), 'Bonus credits left'), h('dd', {}, formatAmount(entry.bonusAmount))),
      h('div', { 'data-part': 'available' }, h('dt', {}, 'Available now'), h('dd', {}, formatAmount(entry.availableAmount))),
    ),
  );
}

/** The credit balance of `GET /v1/usage` (a pooled workspace's is its account's): in credits and money, its three parts apart. */
function creditsPanel(usage: CreditUsage, quotas: QuotaView | null): HTMLElement | null {
  const figures = creditFigures(usage);
  if (!figures) return null;
  const money = (text: string | null, part: string) => (text === null ? null : h('span', { class: 'money', 'data-money': part }, text));
  const card = (id: string, label: string, value: string, unit: string, detail: string) =>
    h(
      'article',
      { class: 'card', 'data-card': id },
      h('h3', {}, label),
      h('p', { class: 'value' }, h('span', { class: 'number' }, value), unit ? h('span', { class: 'unit' }, unit) : null),
      h('p', { class: 'detail' }, detail),
    );
  return h(
    'section',
    { class: 'panel', id: 'credits', 'aria-labelledby': 'credits-title' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', { id: 'credits-title' }, 'Credits'),
      h('p', { class: 'muted' }, `This period, since ${formatDate(figures.periodStart)}${quotas?.pool ? ` · shared with the enterprise account ${quotas.pool}` : ''}`),
    ),
    h(
      'p',
      { class: 'headline' },
      h('span', { class: 'big', 'data-value': 'credits-balance' }, figures.balance),
      ' credits available',
      figures.balanceMoney === null ? null : h('span', { class: 'muted' }, ' · worth ', money(figures.balanceMoney, 'balance')),
    ),
    h(
      'dl',
      { class: 'balances' },
      ...figures.parts.map((part) =>
        h(
          'div',
          { class: 'balance', 'data-part': part.id },
          h('dt', {}, part.label),
          h('dd', {}, h('span', { class: 'credits', 'data-credits': part.id }, `${part.credits} credits`), money(part.money, part.id)),
          h('dd', { class: 'detail' }, part.detail),
        ),
      ),
    ),
    h(
      'div',
      { class: 'cards' },
      card('credits-requests', 'Requests this period', figures.requests, Number(usage.requests) === 1 ? 'request' : 'requests', 'Requests that billed credits'),
      card('credits-billed', 'Credits billed', figures.billed, 'credits', 'A request may bill several credits'),
      card(
        'credits-estimate',
        'Estimated requests remaining',
        figures.estimate,
        figures.estimate === '—' ? '' : 'requests',
        figures.estimate === '—' ? 'Estimated once a request has billed credits' : "At this period's average credits per request",
      ),
    ),
  );
}

function cards(entry: SummaryEntry, summary: Summary, unit: string): HTMLElement {
  return h(
    'section',
    { class: 'cards', 'aria-label': 'Cycle at a glance' },
    ...cycleCards(entry, summary.asOf, unit).map((card) =>
      h(
        'article',
        { class: 'card', 'data-card': card.id },
        h('h3', {}, card.label),
        h('p', { class: 'value' }, h('span', { class: 'number' }, card.value), card.unit ? h('span', { class: 'unit' }, card.unit) : null),
        h('p', { class: 'detail' }, card.detail),
      ),
    ),
  );
}

function chartPanel(api: Api, workspace: string, usageType: string, unit: string): { element: HTMLElement; destroy(): void } {
  const canvas = h('canvas', { role: 'img', id: 'usage-chart' });
  const caption = h('p', { class: 'muted', id: 'chart-caption' });
  const tableWrap = h('div', { class: 'table-wrap' });
  const status = h('p', { class: 'table-status', role: 'status' });
  const buttons = WINDOWS.map((w) => h('button', { type: 'button', class: 'segment', 'aria-pressed': 'false', 'data-window': w.id }, w.label));
  const element = h(
    'section',
    { class: 'panel', id: 'usage', 'aria-labelledby': 'usage-title' },
    h(
      'div',
      { class: 'panel-head' },
      h('div', {}, h('h2', { id: 'usage-title' }, 'Usage by channel'), caption),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time range' }, ...buttons),
    ),
    h('div', { class: 'chart-box' }, canvas),
    status,
    h('details', { class: 'chart-data' }, h('summary', {}, 'Show the numbers as a table'), tableWrap),
  );
  const chart = usageChart(canvas);
  let request = 0;
  const show = async (window: SeriesWindow) => {
    const mine = ++request;
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.window === window));
    status.textContent = 'Loading…';
    try {
      const series = await api.series(workspace, window, usageType);
      if (mine !== request) return; // a later click won
      const buckets = series.series.find((s) => s.usageType === usageType)?.buckets ?? [];
      const rows = chartRows(buckets, window);
      chart.show(rows, unit);
      element.dataset.window = window;
      const spec = WINDOWS.find((w) => w.id === window);
      caption.textContent = `${titleCase(unit)}s ${spec?.caption ?? ''}, last ${spec?.label ?? ''}`;
      const total = rows.totals.reduce((a, b) => a + b, 0);
      status.textContent = total === 0 ? `No ${unit}s used in the last ${spec?.label ?? ''}.` : '';
      replace(
        tableWrap,
        h(
          'table',
          { class: 'data', 'data-window': window },
          h('caption', {}, caption.textContent),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { scope: 'col' }, 'Period'),
              ...rows.channels.map((c) => h('th', { scope: 'col', class: 'number', 'data-channel': c.channel }, channelName(c.channel))),
              h('th', { scope: 'col', class: 'number' }, 'Total'),
            ),
          ),
          h(
            'tbody',
            {},
            ...rows.labels.map((label, i) =>
              h(
                'tr',
                { 'data-start': buckets[i]?.start ?? '' },
                h('th', { scope: 'row' }, label),
                ...rows.channels.map((c) => h('td', { class: 'number' }, formatAmount(c.values[i] ?? 0))),
                h('td', { class: 'number' }, formatAmount(rows.totals[i] ?? 0)),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (mine === request) status.textContent = error instanceof ApiError ? error.message : 'The chart could not be loaded.';
    }
  };
  for (const b of buttons) b.addEventListener('click', () => void show(b.dataset.window as SeriesWindow));
  void show('7d');
  return { element, destroy: chart.destroy };
}

export const titleCase = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
