import type { ResponseOf } from '../../functions/contract/openapi';

/**
 * The API's answers the dashboard reads: the very schemas openapi.json is written from (functions/contract/openapi.ts),
 * so a change to a response is a type error here rather than a surprise in the browser.
 */

export type Me = ResponseOf<'GET /v1/me', 200>;
export type Scope = Me['scope'];

export type Summary = ResponseOf<'GET /v1/workspaces/{id}/usage/summary', 200>;
export type SummaryEntry = Summary['summary'][number];

export type Series = ResponseOf<'GET /v1/workspaces/{id}/usage/series', 200>;
export type SeriesWindow = Series['window'];
export type SeriesBucket = Series['series'][number]['buckets'][number];

type MemberRanking = ResponseOf<'GET /v1/workspaces/{id}/usage/top', 200>;
type WorkspaceRanking = ResponseOf<'GET /v1/usage/top', 200>;
/** One page of either ranking: users or groups of a workspace, or workspaces. */
export type RankingPage = MemberRanking | WorkspaceRanking;
/** An entry of either ranking; a workspace's also has its name and its own cycle. */
export type RankedEntry = MemberRanking['entries'][number] & Partial<Pick<WorkspaceRanking['entries'][number], 'name' | 'cycleStart' | 'cycleEnd'>>;

export type UsageType = ResponseOf<'GET /v1/usage-types', 200>['usageTypes'][number];

export type ExportView = ResponseOf<'GET /v1/exports/{exportId}', 200>;

/** A workspace key's credit balance this period (`credits` is null without a credit rate card). */
export type CreditUsage = ResponseOf<'GET /v1/usage', 200>;
export type CreditBalance = NonNullable<CreditUsage['credits']>;

export type QuotaView = ResponseOf<'GET /v1/workspaces/{id}/quotas', 200>;

/** What a workspace's ranking ranks: its users or groups; an enterprise account's also its workspaces. */
export type MemberKind = ResponseOf<'GET /v1/workspaces/{id}/usage/top', 200>['by'];
