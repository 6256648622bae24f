/** The API's answers the dashboard reads (openapi.json describes them in full). */

export type Scope = 'workspace' | 'finance' | 'admin';

export interface Me {
  keyId: string;
  scope: Scope;
  subject?: string;
}

export interface SummaryEntry {
  usageType: string;
  cycleStart: string;
  cycleEnd: string;
  usedAmount: number;
  allowanceAmount: number;
  limitAmount: number;
  spilloverAmount: number;
  bonusAmount: number;
  availableAmount: number;
  usedPercent: number | null;
  daysElapsed: number;
  daysRemaining: number;
  avgPerDay: number;
  runOutInDays: number | null;
  projectedToRunOut: boolean;
}

export interface Summary {
  subject: string;
  plan: string;
  asOf: string;
  summary: SummaryEntry[];
}

export type SeriesWindow = '24h' | '7d' | '30d';

export interface SeriesBucket {
  start: string;
  end: string;
  total: number;
  byChannel: Record<string, number>;
}

export interface Series {
  subject: string;
  asOf: string;
  window: SeriesWindow;
  granularity: 'hour' | 'day' | 'week';
  series: { usageType: string; buckets: SeriesBucket[] }[];
}

export interface RankedEntry {
  rank: number;
  id: string;
  amount: number;
  share: number;
  name?: string;
  cycleStart?: string;
  cycleEnd?: string;
}

export interface RankingPage {
  usageType: string;
  totalAmount: number;
  entries: RankedEntry[];
  nextCursor: string | null;
}

export interface UsageType {
  id: string;
  unit: string;
  allowFractions: boolean;
}

export interface ExportView {
  id: string;
  status: 'queued' | 'running' | 'ready' | 'failed';
  bucketCount: number | null;
  bytes: number | null;
  url: string | null;
  error: { code: string; message: string } | null;
}
