import { type Api, ApiError } from './api';
import { formatAmount } from './cards';
import { h, replace } from './dom';
import { rankingTable } from './ranking';
import type { ExportView, UsageType } from './types';
import { titleCase } from './workspace-view';

const RANKING_PAGE = 10;
/** The enterprise rankings page five at a time, as a workspace's own do. */
const ENTERPRISE_PAGE = 5;
const POLL_MS = 1000;
/** How long the page waits for an export before it says so (the export itself goes on). */
const POLL_LIMIT = 300;

/** Finance: workspaces ranked by use in their own cycle, an enterprise account's rankings, and exports of hourly or daily usage. */
export function financeView(api: Api, usageTypes: UsageType[]): HTMLElement {
  const picker = h('select', { id: 'usage-type', name: 'usage-type' }, ...usageTypes.map((u) => h('option', { value: u.id }, titleCase(u.id))));
  const rankingSlot = h('div');
  const showRanking = () => {
    const unit = usageTypes.find((u) => u.id === picker.value)?.unit ?? picker.value;
    replace(
      rankingSlot,
      rankingTable({
        id: 'top-workspaces',
        title: 'Top workspaces this cycle',
        noun: 'Workspace',
        unit,
        empty: 'No workspace has used this yet this cycle.',
        withCycle: true,
        load: (cursor) => api.topWorkspaces(picker.value, RANKING_PAGE, cursor),
      }),
    );
  };
  picker.addEventListener('change', showRanking);
  showRanking();
  return h(
    'div',
    { class: 'stack' },
    h('div', { class: 'toolbar' }, h('div', { class: 'field inline' }, h('label', { for: 'usage-type' }, 'Usage type'), picker)),
    rankingSlot,
    enterpriseSection(api, usageTypes),
    exportForm(api),
  );
}

/**
 * An enterprise account (a workspace of kind "account") pools its workspaces' credits: its workspaces, workspace
 * groups and users ranked this cycle (`GET /v1/workspaces/{account}/usage/top?by=workspace|group|user`). The API
 * lists no accounts, so the reader names one; the usage type defaults to the one counted in credits.
 */
function enterpriseSection(api: Api, usageTypes: UsageType[]): HTMLElement {
  const account = h('input', {
    id: 'account-id',
    name: 'account',
    type: 'text',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'acct_…',
    'aria-describedby': 'account-id-hint',
  });
  const creditType = usageTypes.find((u) => u.unit === 'credit') ?? usageTypes[0];
  const usageType = h('select', { id: 'account-usage-type', name: 'usage-type' }, ...usageTypes.map((u) => h('option', { value: u.id, selected: u.id === creditType?.id }, titleCase(u.id))));
  const error = h('p', { class: 'error', role: 'alert' });
  const results = h('div', { class: 'enterprise-results', 'aria-live': 'polite' });
  const form = h(
    'form',
    { id: 'enterprise-form', novalidate: true },
    h(
      'div',
      { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'account-id' }, 'Account'), account),
      h('div', { class: 'field' }, h('label', { for: 'account-usage-type' }, 'Usage type'), usageType),
      h('button', { type: 'submit', class: 'button primary' }, 'Show rankings'),
    ),
    h('p', { class: 'hint', id: 'account-id-hint' }, 'The id of an enterprise account, such as acct_example.'),
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const id = account.value.trim();
    if (!id) {
      error.textContent = 'Enter an account id.';
      account.setAttribute('aria-invalid', 'true');
      account.focus();
      return;
    }
    error.textContent = '';
    account.removeAttribute('aria-invalid');
    const type = usageType.value;
    const unit = usageTypes.find((u) => u.id === type)?.unit ?? type;
    const table = (by: 'workspace' | 'group' | 'user', tableId: string, title: string, noun: string) =>
      rankingTable({
        id: tableId,
        title,
        noun,
        unit,
        empty: `No ${noun.toLowerCase()} of ${id} has used this yet this cycle.`,
        load: (cursor) => api.topMembers(id, by, type, ENTERPRISE_PAGE, cursor),
      });
    results.dataset.account = id;
    replace(
      results,
      table('workspace', 'account-workspaces', `Top workspaces of ${id}`, 'Workspace'),
      h('div', { class: 'grid two' }, table('group', 'account-groups', 'Top workspace groups', 'Workspace group'), table('user', 'account-users', 'Top users', 'User')),
    );
  });
  return h(
    'div',
    { class: 'stack', id: 'enterprise' },
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'enterprise-title' },
      h(
        'div',
        { class: 'panel-head' },
        h('h2', { id: 'enterprise-title' }, 'Enterprise accounts'),
        h('p', { class: 'muted' }, "An account's workspaces, workspace groups and users ranked by the credits they drew this cycle."),
      ),
      form,
    ),
    results,
  );
}

function exportForm(api: Api): HTMLElement {
  const today = new Date();
  const isoDate = (d: Date) => d.toISOString().slice(0, 10);
  const monthAgo = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, today.getUTCDate()));
  const field = (id: string, label: string, control: HTMLElement, hint?: string) =>
    h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null);
  const from = h('input', { id: 'export-from', name: 'from', type: 'date', required: true, value: isoDate(monthAgo) });
  const to = h('input', { id: 'export-to', name: 'to', type: 'date', required: true, value: isoDate(new Date(today.getTime() + 86_400_000)) });
  const granularity = h('select', { id: 'export-granularity', name: 'granularity' }, h('option', { value: 'day' }, 'Daily'), h('option', { value: 'hour' }, 'Hourly'));
  const format = h('select', { id: 'export-format', name: 'format' }, h('option', { value: 'json' }, 'JSON document'), h('option', { value: 'jsonl' }, 'JSON Lines'));
  const subjects = h('input', {
    id: 'export-subjects',
    name: 'subjects',
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'All workspaces',
    'aria-describedby': 'export-subjects-hint',
  });
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Start export');
  const result = h('div', { class: 'export-result', role: 'status', 'aria-live': 'polite' });

  const form = h(
    'form',
    { id: 'export-form', novalidate: true },
    h(
      'div',
      { class: 'form-grid' },
      field('export-from', 'From (UTC, inclusive)', from),
      field('export-to', 'To (UTC, exclusive)', to),
      field('export-granularity', 'Buckets', granularity),
      field('export-format', 'Format', format),
    ),
    field('export-subjects', 'Workspaces', subjects, 'Workspace ids separated by commas; leave empty for every workspace.'),
    h('div', { class: 'form-actions' }, submit),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!from.value || !to.value) {
      replace(result, h('p', { class: 'error' }, 'Choose both dates.'));
      return;
    }
    submit.disabled = true;
    replace(result, h('p', {}, 'Starting the export…'));
    try {
      const ids = subjects.value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const { id } = await api.requestExport({ from: from.value, to: to.value, granularity: granularity.value, format: format.value, ...(ids.length ? { subjects: ids } : {}) });
      let view: ExportView | undefined;
      for (let i = 0; i < POLL_LIMIT; i++) {
        view = await api.exportView(id);
        if (view.status === 'ready' || view.status === 'failed') break;
        replace(result, h('p', {}, `Export ${id} is ${view.status}…`));
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      if (view?.status === 'ready' && view.url) {
        replace(
          result,
          h(
            'p',
            { class: 'success' },
            `Export ${id} is ready: ${formatAmount(view.bucketCount ?? 0)} buckets, ${bytes(view.bytes ?? 0)}. `,
            h('a', { href: view.url, 'data-export-id': id, download: '' }, 'Download the file'),
            h('span', { class: 'muted' }, ' (the link works for 5 minutes)'),
          ),
        );
      } else if (view?.status === 'failed') {
        replace(result, h('p', { class: 'error' }, `Export ${id} failed: ${view.error?.message ?? 'no reason given'}`));
      } else {
        replace(result, h('p', {}, `Export ${id} is still running. Check back later.`));
      }
    } catch (error) {
      replace(result, h('p', { class: 'error' }, error instanceof ApiError ? error.message : 'The export could not be started.'));
    } finally {
      submit.disabled = false;
    }
  });
  return h(
    'section',
    { class: 'panel', id: 'exports', 'aria-labelledby': 'exports-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'exports-title' }, 'Export usage'), h('p', { class: 'muted' }, 'Hourly or daily buckets for a date range, as a file to download.')),
    form,
  );
}

function bytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
