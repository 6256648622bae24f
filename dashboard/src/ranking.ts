import { ApiError } from './api';
import { formatAmount, formatDate } from './cards';
import { h, replace } from './dom';
import type { RankedEntry, RankingPage } from './types';

/**
 * A ranking table that fetches one page at a time: "Show more" asks for the next page with the API's
 * cursor and appends it, and disappears on the last page.
 */
export function rankingTable(options: {
  id: string;
  title: string;
  /** The first column's heading: User, Group, Workspace. */
  noun: string;
  unit: string;
  empty: string;
  load: (cursor?: string) => Promise<RankingPage>;
  withCycle?: boolean;
}): HTMLElement {
  const body = h('tbody');
  const status = h('p', { class: 'table-status', role: 'status' });
  const more = h('button', { type: 'button', class: 'button secondary', 'data-action': 'show-more' }, 'Show more');
  let cursor: string | undefined;
  let shown = 0;

  const row = (e: RankedEntry) =>
    h(
      'tr',
      {},
      h('td', { class: 'rank' }, e.rank),
      h('th', { scope: 'row' }, e.name ? h('span', { class: 'name' }, e.name, h('span', { class: 'muted id' }, e.id)) : e.id),
      h('td', { class: 'number' }, formatAmount(e.amount)),
      h('td', { class: 'share' }, shareBar(e.share), h('span', { class: 'share-value' }, `${(e.share * 100).toFixed(1)}%`)),
      h('td', { class: 'number', 'data-value': 'requests' }, formatAmount(e.requests)),
      options.withCycle && e.cycleStart && e.cycleEnd ? h('td', { class: 'muted' }, `${formatDate(e.cycleStart, 'UTC')} – ${formatDate(Date.parse(e.cycleEnd) - 1, 'UTC')}`) : null,
    );

  // Widths are set through the CSSOM: the page's content security policy allows no inline style attributes.
  const shareBar = (share: number) => {
    const fill = h('span');
    fill.style.width = `${Math.min(100, share * 100)}%`;
    return h('span', { class: 'share-bar', 'aria-hidden': 'true' }, fill);
  };

  const load = async () => {
    more.disabled = true;
    status.textContent = shown === 0 ? 'Loading…' : 'Loading more…';
    try {
      const page = await options.load(cursor);
      body.append(...page.entries.map(row));
      shown += page.entries.length;
      cursor = page.nextCursor ?? undefined;
      more.hidden = page.nextCursor === null;
      status.textContent =
        shown === 0
          ? options.empty
          : `Showing ${shown} ${shown === 1 ? options.noun.toLowerCase() : `${options.noun.toLowerCase()}s`} of ${formatAmount(page.totalAmount)} ${options.unit}s used in all`;
    } catch (error) {
      status.textContent = error instanceof ApiError ? error.message : 'Something went wrong loading this table.';
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', () => void load());
  more.hidden = true;

  const headings = ['#', options.noun, `Usage (${options.unit}s)`, 'Share', 'Requests', ...(options.withCycle ? ['Cycle'] : [])];
  const table = h(
    'table',
    { class: 'ranking', 'aria-describedby': `${options.id}-status` },
    h('thead', {}, h('tr', {}, ...headings.map((t, i) => h('th', { scope: 'col', class: i === 2 || i === 4 ? 'number' : i === 0 ? 'rank' : '' }, t)))),
    body,
  );
  status.id = `${options.id}-status`;
  const section = h(
    'section',
    { class: 'panel', id: options.id, 'aria-labelledby': `${options.id}-title` },
    h('h2', { id: `${options.id}-title` }, options.title),
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'table-footer' }, status, more),
  );
  replace(body);
  void load();
  return section;
}
