import './style.css';
import { Api, ApiError } from './api';
import { h, replace } from './dom';
import { financeView } from './finance-view';
import type { Me } from './types';
import { workspaceView } from './workspace-view';

/** The page: a sign-in form until a key checks out, then the workspace's or finance's view. The key lives in sessionStorage only. */

const STORAGE_KEY = 'usage-dashboard.api-key';
const app = document.getElementById('app') as HTMLElement;
const account = document.getElementById('account') as HTMLElement;

function signInForm(message?: string): void {
  const input = h('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'api-key-hint' });
  const error = h('p', { class: 'error', id: 'sign-in-error', role: 'alert' }, message ?? '');
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'panel sign-in', id: 'sign-in', novalidate: true },
    h('h1', {}, 'Sign in to your usage dashboard'),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'api-key' }, 'API key'),
      input,
      h('p', { class: 'hint', id: 'api-key-hint' }, 'A workspace key shows that workspace; a finance key shows every workspace and exports. The key stays in this tab only.'),
    ),
    error,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = 'Enter your API key.';
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = '';
    try {
      const api = new Api(key);
      const me = await api.me();
      sessionStorage.setItem(STORAGE_KEY, key);
      await show(api, me);
    } catch (caught) {
      error.textContent = signInMessage(caught);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(account);
  replace(app, form);
  input.focus();
}

function signInMessage(error: unknown): string {
  if (!(error instanceof ApiError)) return 'Something went wrong. Try again.';
  if (error.code === 'invalid_api_key') return 'That API key was not recognised. Check that you copied all of it, and that it has not been revoked.';
  return error.message;
}

async function show(api: Api, me: Me): Promise<void> {
  const signOut = h('button', { type: 'button', class: 'button link', 'data-action': 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', () => {
    sessionStorage.removeItem(STORAGE_KEY);
    signInForm();
  });
  const who = me.scope === 'workspace' ? (me.subject ?? '') : me.scope === 'finance' ? 'Finance' : 'Admin';
  replace(account, h('span', { class: 'who', 'data-scope': me.scope }, who), signOut);
  replace(app, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  const { usageTypes } = await api.usageTypes();
  const title = me.scope === 'workspace' ? `Usage · ${me.subject ?? ''}` : 'Usage across workspaces';
  document.title = `${title} — Usage dashboard`;
  const view = me.scope === 'workspace' && me.subject ? await workspaceView(api, me.subject, usageTypes) : financeView(api, usageTypes);
  replace(app, h('h1', { class: 'page-title' }, title), view);
}

async function start(): Promise<void> {
  const key = sessionStorage.getItem(STORAGE_KEY);
  if (!key) return signInForm();
  try {
    const api = new Api(key);
    await show(api, await api.me());
  } catch (error) {
    sessionStorage.removeItem(STORAGE_KEY);
    signInForm(error instanceof ApiError && error.status === 401 ? 'Your key is no longer valid. Sign in again.' : signInMessage(error));
  }
}

void start();
