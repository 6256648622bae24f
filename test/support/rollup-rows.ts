import type { RollupRow } from '../../functions/core/metering/metering-ports';

/**
 * A day item as the rollups store reads it back. `requests` is its event count (absent on items written before it
 * was kept); its 'r#' counters are its events per UTC hour, beside the 'h#' use.
 */
export const dayRow = (period: string, usageType: string, total: string, counters: Record<string, string> = {}, requests?: string): RollupRow => ({
  usageType,
  kind: 'day',
  period,
  total,
  ...(requests === undefined ? {} : { requests }),
  counters,
});
