import { z } from 'zod';
import { NotFoundError } from '../errors';
import type { Clock, SubjectDirectory } from '../ports';
import { type Amount, toAmount, toNanoUnits } from '../quantity';
import type { ActivityEvent, ActivityItem, ActivityReader } from './metering-ports';
import { type LedgerChange, type LedgerImage, padSequenceNumber } from './rollups';

/**
 * Recent activity: a workspace's last events, as the aggregate saw them. Best effort and informational: it is
 * written beside the rollups (never in their transaction) and counts nothing.
 *
 * Per aggregate batch and workspace one item holds up to `ACTIVITY_EVENTS_PER_ITEM` of the batch's newest
 * events of that workspace (inserts and corrections; removals are not shown). Its key names the newest event
 * time it holds, the shard and the first sequence number of the workspace's records in the batch, so a retried
 * batch rewrites the same item. A reader takes items newest key first and keeps, of an event met in several
 * items (a correction in a later batch, a retried batch that started elsewhere), the copy of the item written from
 * the later records: the greater first sequence number (an event's records stay in its partition's shard lineage,
 * whose sequence numbers grow), then the greater key.
 */

/** Events an item keeps: the batch's newest of the workspace. */
export const ACTIVITY_EVENTS_PER_ITEM = 20;
/** How long an item is kept (the rollups table's TTL attribute, `expiresAt`). */
export const ACTIVITY_RETENTION_DAYS = 7;
/** The sort-key prefix of activity items in the rollups table (rollups use C, D, U, G, L). */
export const ACTIVITY_PREFIX = 'A#';
/** At most this many items are read for one answer, however many duplicates they hold. */
export const ACTIVITY_MAX_ITEMS_READ = 200;

/** Newest first: by time, then by event key (both descending). */
const newestFirst = (a: ActivityEvent, b: ActivityEvent) => (a.t === b.t ? (a.k < b.k ? 1 : a.k > b.k ? -1 : 0) : a.t < b.t ? 1 : -1);

export const activitySortKey = (newestTime: string, shardId: string, firstSequenceNumber: string) => `${ACTIVITY_PREFIX}${newestTime}#${shardId}#${padSequenceNumber(firstSequenceNumber)}`;
/** Which of two items holding the same event was written from later records: its padded first sequence number, then its key. */
const writtenLater = (a: string, b: string) => {
  const [seqA, seqB] = [a.slice(a.lastIndexOf('#') + 1), b.slice(b.lastIndexOf('#') + 1)];
  return seqA === seqB ? a > b : seqA > seqB;
};

function compact(image: LedgerImage & { time: string }): ActivityEvent {
  return {
    t: image.time,
    u: image.usageType,
    ...(image.feature !== undefined ? { f: image.feature } : {}),
    q: image.quantity,
    ...(image.credits ? { c: image.credits.quantity } : {}),
    k: image.eventKey,
  };
}

/**
 * The activity items of a batch's applied changes, one per workspace: the newest `ACTIVITY_EVENTS_PER_ITEM` of its
 * new images (an insert's or a correction's; a later record of the same event replaces an earlier one). Removals,
 * TTL expiries and images without a time are left out. Pure: the same records give the same items.
 */
export function activityItems(shardId: string, changes: readonly LedgerChange[], writtenAt: Date): ActivityItem[] {
  const bySubject = new Map<string, { first: string; events: Map<string, ActivityEvent> }>();
  for (const change of changes) {
    const image = change.newImage;
    if (change.expired || !image || image.time === undefined) continue;
    let entry = bySubject.get(image.subject);
    if (!entry) {
      entry = { first: change.sequenceNumber, events: new Map() };
      bySubject.set(image.subject, entry);
    }
    entry.events.set(image.eventKey, compact({ ...image, time: image.time }));
  }
  const expiresAt = Math.floor(writtenAt.getTime() / 1000) + ACTIVITY_RETENTION_DAYS * 86_400;
  return [...bySubject].map(([subject, { first, events }]) => {
    const newest = [...events.values()].sort(newestFirst).slice(0, ACTIVITY_EVENTS_PER_ITEM);
    return { subject, sk: activitySortKey(newest[0]?.t ?? '', shardId, first), events: newest, expiresAt };
  });
}

export const activityQuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(20) });
export type ActivityQuery = z.infer<typeof activityQuerySchema>;

export interface ActivityView {
  subject: string;
  events: { time: string; usageType: string; feature?: string; quantity: Amount; credits?: Amount }[];
}

/**
 * GET /v1/workspaces/{id}/activity: the workspace's newest `limit` events, newest first. Reads items newest key
 * first until the `limit`-th newest event kept is newer than anything the next item holds (its key's time), so the
 * answer is the newest `limit` events the items hold; items past their expiry (TTL removes them lazily) are skipped.
 * A correction that moved an event to an earlier time may leave the earlier copy shown at its old time when the
 * corrected copy's item is not read (it is older than the answer).
 */
export async function recentActivity(subjectId: string, query: ActivityQuery, deps: { subjects: SubjectDirectory; activity: ActivityReader; clock: Clock }): Promise<ActivityView> {
  if (!(await deps.subjects.getMany([subjectId])).has(subjectId)) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  const now = Math.floor(deps.clock.now().getTime() / 1000);
  const kept = new Map<string, { event: ActivityEvent; sk: string }>();
  const newestKept = () => [...kept.values()].map((k) => k.event).sort(newestFirst);
  let read = 0;
  for await (const item of deps.activity.newest(subjectId)) {
    if (item.expiresAt <= now) continue;
    const itemNewest = item.events.reduce((max, e) => (e.t > max ? e.t : max), '');
    if (kept.size >= query.limit) {
      const last = newestKept()[query.limit - 1];
      if (last && last.t > itemNewest) break;
    }
    for (const event of item.events) {
      const known = kept.get(event.k);
      if (!known || writtenLater(item.sk, known.sk)) kept.set(event.k, { event, sk: item.sk });
    }
    if (++read >= ACTIVITY_MAX_ITEMS_READ) break;
  }
  const events = newestKept().slice(0, query.limit);
  return { subject: subjectId, events: events.flatMap(view) };
}

function view(event: ActivityEvent): ActivityView['events'] {
  const quantity = toNanoUnits(event.q);
  const credits = event.c === undefined ? undefined : toNanoUnits(event.c);
  if (quantity === undefined) return [];
  return [
    {
      time: event.t,
      usageType: event.u,
      ...(event.f !== undefined ? { feature: event.f } : {}),
      quantity: toAmount(quantity),
      ...(credits !== undefined ? { credits: toAmount(credits) } : {}),
    },
  ];
}
