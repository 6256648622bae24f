/**
 * An independent model of what the rollups must say: the latest version of every accepted event,
 * bucketed with plain UTC arithmetic (no code from functions/).
 */

export interface TestEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: { usageType: string; quantity: number; channel?: string; userId?: string; groupId?: string; feature?: string };
}

export interface Bucket {
  start: string;
  usageType: string;
  quantity: number;
  /** Events in the bucket: a copy or a correction is the same event, counted where its latest version falls. */
  requests: number;
}

export type Granularity = 'hour' | 'day' | 'cycle';

export class GroundTruth {
  private readonly events = new Map<string, TestEvent>();

  constructor(private readonly anchors: Record<string, number>) {}

  /** Records an accepted event; a later one with the same source and id replaces it. */
  accept(event: TestEvent): void {
    this.events.set(`${event.source}\u0000${event.id}`, event);
  }

  buckets(subject: string, granularity: Granularity): Bucket[] {
    const sums = new Map<string, { thousandths: number; requests: number }>();
    for (const event of this.events.values()) {
      if (event.subject !== subject) continue;
      const start = this.bucketStart(subject, event.time, granularity);
      const key = `${start}|${event.data.usageType}`;
      const sum = sums.get(key) ?? { thousandths: 0, requests: 0 };
      // Quantities in tests have at most three decimals: integer thousandths add exactly.
      sum.thousandths += Math.round(event.data.quantity * 1000);
      sum.requests += 1;
      sums.set(key, sum);
    }
    return [...sums]
      .map(([key, { thousandths, requests }]) => {
        const [start = '', usageType = ''] = key.split('|');
        // Keys in the API's order (start, usageType, quantity, requests): some suites compare JSON text.
        return { start, usageType, quantity: thousandths / 1000, requests };
      })
      .sort((a, b) => (a.start === b.start ? a.usageType.localeCompare(b.usageType) : a.start < b.start ? -1 : 1));
  }

  subjects(): string[] {
    return Object.keys(this.anchors);
  }

  private bucketStart(subject: string, time: string, granularity: Granularity): string {
    const iso = new Date(time).toISOString();
    if (granularity === 'hour') return `${iso.slice(0, 13)}:00:00.000Z`;
    if (granularity === 'day') return `${iso.slice(0, 10)}T00:00:00.000Z`;
    const anchor = this.anchors[subject];
    if (anchor === undefined) throw new Error(`no anchor for ${subject}`);
    return utcCycleStart(new Date(time), anchor).toISOString();
  }
}

/** The cycle start for a UTC anchor day: the anchor in this month (clamped), else in the previous month. */
export function utcCycleStart(instant: Date, anchor: number): Date {
  const startIn = (year: number, month: number) => {
    const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    return new Date(Date.UTC(year, month, Math.min(anchor, lastDay)));
  };
  const here = startIn(instant.getUTCFullYear(), instant.getUTCMonth());
  return instant >= here ? here : startIn(instant.getUTCFullYear(), instant.getUTCMonth() - 1);
}
