import type { CreditUsage, ExportView, Me, MemberKind, QuotaView, RankingPage, Series, SeriesWindow, Summary, UsageType } from './types';

/** An answer other than 2xx: the API's own `{"error":{"code","message"}}`, or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The HTTP API on this page's own origin (the local runtime and CloudFront both serve it under /v1). */
export class Api {
  constructor(private readonly key: string) {}

  me = () => this.get<Me>('/v1/me');
  usageTypes = () => this.get<{ usageTypes: UsageType[] }>('/v1/usage-types');
  summary = (workspace: string) => this.get<Summary>(`${ws(workspace)}/usage/summary`);
  series = (workspace: string, window: SeriesWindow, usageType: string) => this.get<Series>(`${ws(workspace)}/usage/series?${query({ window, usageType })}`);
  /** The calling workspace key's credit balance (403 forbidden_scope for finance and admin keys). */
  creditUsage = () => this.get<CreditUsage>('/v1/usage');
  quotas = (workspace: string) => this.get<QuotaView>(`${ws(workspace)}/quotas`);
  /** Users or groups of a workspace; of an enterprise account, also its workspaces. */
  topMembers = (workspace: string, by: MemberKind, usageType: string, limit: number, cursor?: string) =>
    this.get<RankingPage>(`${ws(workspace)}/usage/top?${query({ by, usageType, limit: String(limit), cursor })}`);
  topWorkspaces = (usageType: string, limit: number, cursor?: string) => this.get<RankingPage>(`/v1/usage/top?${query({ by: 'workspace', usageType, limit: String(limit), cursor })}`);
  /** The cycle report exactly as the API sent it, for saving as a file. */
  reportText = async (workspace: string) => (await this.request('GET', `${ws(workspace)}/report?cycle=current`)).text();
  requestExport = (body: { from: string; to: string; granularity: string; format: string; subjects?: string[] }) => this.send<{ id: string }>('POST', '/v1/exports', body);
  exportView = (id: string) => this.get<ExportView>(`/v1/exports/${encodeURIComponent(id)}`);

  private get<T>(path: string): Promise<T> {
    return this.send<T>('GET', path);
  }

  private async send<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T;
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch {
      throw new ApiError(0, 'network_error', 'The usage API could not be reached. Check your connection and try again.');
    }
    if (response.ok) return response;
    const answer = (await response.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    throw new ApiError(response.status, answer.error?.code ?? 'http_error', answer.error?.message ?? `The API answered ${response.status}.`);
  }
}

const ws = (id: string) => `/v1/workspaces/${encodeURIComponent(id)}`;

function query(params: Record<string, string | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, value);
  return search.toString();
}
