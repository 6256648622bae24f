import type { Chunk } from '../../../functions/core/metering/rollups';

/** The key of a cycle item as `closedCycles` and the store's closed set hold it, written out by hand. */
export const closedKey = (subject: string, cycleStart: string, usageType: string) => `${subject}\u0000C#${cycleStart}#${usageType}`;

export interface PlainUpdate {
  item: string;
  total: bigint;
  closed?: boolean;
  counters: Record<string, bigint>;
}

/** A chunk's updates as sorted plain objects, so expectations can be written by hand. */
export const plain = (chunk: Chunk | undefined): PlainUpdate[] =>
  (chunk?.updates ?? [])
    .map((u) => ({
      item: `${u.subject} ${u.usageType} ${u.kind} ${u.period}${u.member === undefined ? '' : ` ${u.member}`}`,
      total: u.total,
      ...(u.closed === undefined ? {} : { closed: u.closed }),
      counters: Object.fromEntries(u.counters),
    }))
    .sort((a, b) => (a.item < b.item ? -1 : 1));
