import { z } from 'zod';
import { NotFoundError } from '../errors';
import type { Clock, SubjectDirectory } from '../ports';
import { type Amount, toAmount, toNanoUnits } from '../quantity';
import type { ActivityEvent, ActivityLaneItem, ActivityMarker, ActivityReader, ActivityRolled, ActivityRolledEvent, ActivityWriter } from './metering-ports';
import { checkpointLaneOf, type LedgerChange, type LedgerImage, padSequenceNumber } from './rollups';

/**
 * Recent activity: a workspace's last events, as the aggregate saw them. Best effort and informational: it is
 * written beside the rollups (never in their transaction) and counts nothing.
 *
 * Writes are shared by a lane of workspaces (`checkpointLaneOf`, 64 lanes), so a batch pays for one item per lane
 * it touches rather than one per workspace:
 * - lane items: per batch and lane, each workspace's newest `ACTIVITY_EVENTS_PER_ITEM` events of the batch, keyed
 *   by write time (`A#<written at>#<shardId>#<first sequence number of the lane's records>`);
 * - rolling items: per workspace, its newest `ACTIVITY_EVENTS_PER_ITEM` events as of the lane's last roll-up;
 * - a lane marker: the newest lane item rolled (`through`) and when (`rolledAt`).
 * A batch rolls each lane it touched once the lane's roll-up is `ACTIVITY_ROLL_SECONDS` old, so a reader takes the
 * workspace's rolling item and at most that long of lane items (from `through` less `ACTIVITY_ROLL_MARGIN_SECONDS`).
 *
 * Of an event met in several copies (a correction in a later batch, a retried batch that started elsewhere), the copy
 * written from the later records is kept: between lane items, the greater first sequence number (an event's records
 * stay in its partition's shard lineage, whose sequence numbers grow), then the greater key; against a rolling item,
 * a lane item written after its `through` (a shard lineage writes its batches in order).
 */

/** Events a lane item keeps of each workspace (the batch's newest), and a rolling item keeps. */
export const ACTIVITY_EVENTS_PER_ITEM = 20;
/** How long an item is kept (the rollups table's TTL attribute, `expiresAt`). */
export const ACTIVITY_RETENTION_DAYS = 7;
/** The sort-key prefix of activity items (rollups use C, D, U, G, L). */
export const ACTIVITY_PREFIX = 'A#';
/** The sort key of a workspace's rolling item, in the workspace's partition. */
export const ACTIVITY_ROLLED_SK = `${ACTIVITY_PREFIX}rolled`;
/** The sort key of a lane's marker: after every lane item. */
export const ACTIVITY_MARKER_SK = 'R';
/** The partition key of a lane's items and marker. */
export const activityLanePk = (lane: string) => `activity#${lane}`;
/** At most this many lane items are read for one answer, however many duplicates they hold. */
export const ACTIVITY_MAX_ITEMS_READ = 200;
/** A lane is rolled up by the first batch that touches it once its last roll-up is this old. */
export const ACTIVITY_ROLL_SECONDS = 600;
/**
 * Lane items younger than this are left to the next roll-up, and readers read lane items from this long before
 * the marker's `through`: a put that lands a little after a later one (retries, another shard) is still rolled up or
 * read. Copies met twice are deduplicated.
 */
export const ACTIVITY_ROLL_MARGIN_SECONDS = 60;
/** A roll-up reads at most this many lane items (a lane behind by more continues at the next batch). */
export const ACTIVITY_ROLL_MAX_ITEMS = 2_000;
/** A lane item is split into parts before its size passes this (DynamoDB's item limit is 400 KB). */
export const ACTIVITY_ITEM_BYTES = 300_000;

/** Newest first: by time, then by event key (both descending). */
const newestFirst = (a: ActivityEvent, b: ActivityEvent) => (a.t === b.t ? (a.k < b.k ? 1 : a.k > b.k ? -1 : 0) : a.t < b.t ? 1 : -1);

export const activityLaneSortKey = (writtenAt: Date, shardId: string, firstSequenceNumber: string, part?: number) =>
  `${ACTIVITY_PREFIX}${writtenAt.toISOString()}#${shardId}#${padSequenceNumber(firstSequenceNumber)}${part === undefined ? '' : `#p${part}`}`;

/** The write time a lane item's key names (epoch ms); NaN for a key that is not a lane item's. */
const writtenAtOf = (sk: string) => Date.parse(sk.slice(ACTIVITY_PREFIX.length).split('#')[0] ?? '');
/** The padded first sequence number a lane item's key names. */
const sequenceOf = (sk: string) => /#(\d{40})(?:#p\d+)?$/.exec(sk)?.[1] ?? '';
/** Which of two lane items holding the same event was written from later records: its first sequence number, then its key. */
const writtenLater = (a: string, b: string) => {
  const [seqA, seqB] = [sequenceOf(a), sequenceOf(b)];
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

const encoder = new TextEncoder();
const utf8 = (text: string) => encoder.encode(text).length;
/** An event's size as DynamoDB counts it in a list: 1 byte as an element, 3 as a map, each field its name and value and 1. */
const eventBytes = (event: ActivityEvent) => 1 + 3 + Object.entries(event).reduce((sum, [name, value]) => sum + 1 + utf8(name) + utf8(String(value)), 0);
/** A workspace's entry in a lane item's `events` map: 1 byte as an element, its name, 3 as a list, its events. */
const entryBytes = (subject: string, events: readonly ActivityEvent[]) => 1 + utf8(subject) + 3 + events.reduce((sum, e) => sum + eventBytes(e), 0);
/** The rest of a lane item: pk, sk, the map's own 3 bytes and name, expiresAt (a number of at most 21 bytes). */
const baseBytes = (lane: string, sk: string) => 2 + utf8(activityLanePk(lane)) + 2 + utf8(sk) + 6 + 3 + 9 + 21;

/** The size of a lane item as DynamoDB bills it (UTF-8 bytes of names and values, per "DynamoDB item sizes"), at most. */
export const activityLaneItemBytes = (item: ActivityLaneItem) => baseBytes(item.lane, item.sk) + Object.entries(item.events).reduce((sum, [subject, events]) => sum + entryBytes(subject, events), 0);

/**
 * The lane items of a batch's applied changes, one per lane of workspaces touched (split into parts past
 * `ACTIVITY_ITEM_BYTES`): for each workspace, the newest `ACTIVITY_EVENTS_PER_ITEM` of its new images (an insert's or
 * a correction's; a later record of the same event replaces an earlier one). Removals, TTL expiries and images
 * without a time are left out. Pure: the same records give the same items but for the write time in their keys.
 */
export function activityLaneItems(shardId: string, changes: readonly LedgerChange[], writtenAt: Date): ActivityLaneItem[] {
  const byLane = new Map<string, { first: string; subjects: Map<string, Map<string, ActivityEvent>> }>();
  for (const change of changes) {
    const image = change.newImage;
    if (change.expired || !image || image.time === undefined) continue;
    // The workspace's own lane, not the pool's that `laneOf` gives a change: a reader looks for it by the workspace.
    const lane = checkpointLaneOf(image.subject);
    let entry = byLane.get(lane);
    if (!entry) {
      entry = { first: change.sequenceNumber, subjects: new Map() };
      byLane.set(lane, entry);
    }
    let events = entry.subjects.get(image.subject);
    if (!events) {
      events = new Map();
      entry.subjects.set(image.subject, events);
    }
    events.set(image.eventKey, compact({ ...image, time: image.time }));
  }
  const expiresAt = Math.floor(writtenAt.getTime() / 1000) + ACTIVITY_RETENTION_DAYS * 86_400;
  return [...byLane].flatMap(([lane, { first, subjects }]) => {
    const parts: [string, ActivityEvent[]][][] = [[]];
    // Sized with the longest part suffix it could take, so a part never passes the bound.
    const base = baseBytes(lane, activityLaneSortKey(writtenAt, shardId, first, 99));
    let bytes = base;
    for (const [subject, events] of subjects) {
      const newest = [...events.values()].sort(newestFirst).slice(0, ACTIVITY_EVENTS_PER_ITEM);
      const entry = entryBytes(subject, newest);
      const current = parts[parts.length - 1] as [string, ActivityEvent[]][];
      // A workspace's entry stays whole (20 events at the field limits are at most ~50 KB), so an event is in one part.
      if (current.length > 0 && bytes + entry > ACTIVITY_ITEM_BYTES) {
        parts.push([[subject, newest]]);
        bytes = base + entry;
      } else {
        current.push([subject, newest]);
        bytes += entry;
      }
    }
    return parts.map((part, i) => ({ lane, sk: activityLaneSortKey(writtenAt, shardId, first, parts.length > 1 ? i : undefined), events: Object.fromEntries(part), expiresAt }));
  });
}

/**
 * The kept copy of each event of one workspace, from its rolling item and lane items (any order): a lane item's copy
 * replaces the rolling item's if written after its `through`, another lane item's if written from later records.
 */
class Copies {
  private readonly kept = new Map<string, { event: ActivityEvent; x: number; sk?: string }>();
  constructor(private readonly rolled?: ActivityRolled) {
    for (const event of rolled?.events ?? []) {
      const { x, ...rest } = event;
      this.kept.set(event.k, { event: rest, x });
    }
  }
  add(item: ActivityLaneItem, events: readonly ActivityEvent[]): void {
    for (const event of events) {
      const known = this.kept.get(event.k);
      const replaces = !known || (known.sk === undefined ? item.sk > (this.rolled?.through ?? '') : writtenLater(item.sk, known.sk));
      if (replaces) this.kept.set(event.k, { event, x: item.expiresAt, sk: item.sk });
    }
  }
  /** The copies not expired at `nowSeconds`, newest first. */
  newest(nowSeconds: number): ActivityRolledEvent[] {
    return [...this.kept.values()]
      .filter((copy) => copy.x > nowSeconds)
      .map(({ event, x }) => ({ ...event, x }))
      .sort(newestFirst);
  }
}

/** The workspaces whose events these lane items hold, for their rolling items. */
export const activitySubjects = (items: readonly ActivityLaneItem[]) => [...new Set(items.flatMap((item) => Object.keys(item.events)))];

/**
 * Rolls lane items (those after a lane's marker) into the rolling items of their workspaces: for each, the newest
 * `ACTIVITY_EVENTS_PER_ITEM` not expired at `now` of its rolling item's events and the lane items', each event once.
 * Idempotent: rolling the same lane items again into the result gives the result (lane items at or before a rolling
 * item's `through` lose to it).
 */
export function rollActivity(items: readonly ActivityLaneItem[], rolled: ReadonlyMap<string, ActivityRolled>, now: Date): ActivityRolled[] {
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const newestSk = items.reduce((max, item) => (item.sk > max ? item.sk : max), '');
  const bySubject = new Map<string, Copies>();
  for (const item of items) {
    for (const [subject, events] of Object.entries(item.events)) {
      let copies = bySubject.get(subject);
      if (!copies) {
        copies = new Copies(rolled.get(subject));
        bySubject.set(subject, copies);
      }
      copies.add(item, events);
    }
  }
  return [...bySubject].map(([subject, copies]) => {
    const events = copies.newest(nowSeconds).slice(0, ACTIVITY_EVENTS_PER_ITEM);
    const through = rolled.get(subject)?.through ?? '';
    return { subject, through: through > newestSk ? through : newestSk, events, expiresAt: events.reduce((max, e) => Math.max(max, e.x), nowSeconds) };
  });
}

export interface ActivityWrite {
  laneItems: number;
  failedLaneItems: number;
  /** Lanes rolled up by this batch, and those whose roll-up failed (it is tried again by a later batch). */
  rolled: string[];
  failedRolls: string[];
  /** The first error met. */
  error?: unknown;
}

/**
 * Records a batch's recent activity: puts its lane items, then rolls up each lane it touched whose last roll-up is
 * `ACTIVITY_ROLL_SECONDS` old (or that has none). Nothing here throws for a failed write: the caller logs what failed.
 */
export async function recordActivity(shardId: string, changes: readonly LedgerChange[], deps: { activity: ActivityWriter; clock: Clock }): Promise<ActivityWrite> {
  const now = deps.clock.now();
  const items = activityLaneItems(shardId, changes, now);
  const result: ActivityWrite = { laneItems: items.length, failedLaneItems: 0, rolled: [], failedRolls: [] };
  if (items.length === 0) return result;
  const { failed, error } = await deps.activity.putLaneItems(items);
  result.failedLaneItems = failed.length;
  if (error !== undefined) result.error = error;
  const lanes = [...new Set(items.map((item) => item.lane))];
  let markers: Map<string, ActivityMarker>;
  try {
    markers = await deps.activity.markers(lanes);
  } catch (caught) {
    result.error ??= caught;
    result.failedRolls = lanes;
    return result;
  }
  const due = lanes.filter((lane) => {
    const marker = markers.get(lane);
    return !marker || now.getTime() - marker.rolledAt >= ACTIVITY_ROLL_SECONDS * 1000;
  });
  // Lanes fall due one by one as batches touch them, so a batch usually rolls few; they run a few at a time.
  for (let i = 0; i < due.length; i += 8) {
    await Promise.all(
      due.slice(i, i + 8).map(async (lane) => {
        try {
          if (await rollLane(lane, markers.get(lane), now, deps.activity)) result.rolled.push(lane);
        } catch (caught) {
          result.failedRolls.push(lane);
          result.error ??= caught;
        }
      }),
    );
  }
  return result;
}

/** One lane's roll-up, if this process wins its claim; throws when a write fails (the marker then stays, so it is redone). */
async function rollLane(lane: string, seen: ActivityMarker | undefined, now: Date, activity: ActivityWriter): Promise<boolean> {
  const claimedAt = now.getTime();
  if (!(await activity.claimRoll(lane, seen, claimedAt))) return false;
  const before = `${ACTIVITY_PREFIX}${new Date(claimedAt - ACTIVITY_ROLL_MARGIN_SECONDS * 1000).toISOString()}`;
  const items = await activity.laneItems(lane, seen?.through, before, ACTIVITY_ROLL_MAX_ITEMS);
  const last = items[items.length - 1];
  if (last) {
    const next = rollActivity(items, await activity.rolledMany(activitySubjects(items)), now);
    const { failed, error } = await activity.putRolled(next);
    if (failed.length > 0) throw error ?? new Error(`${failed.length} rolling activity items of ${lane} were not written`);
  }
  // A lane further behind than one roll-up reads is due again at once.
  const marker = { lane, ...(last ? { through: last.sk } : seen?.through ? { through: seen.through } : {}), rolledAt: items.length >= ACTIVITY_ROLL_MAX_ITEMS ? 0 : claimedAt };
  await activity.finishRoll(marker, claimedAt);
  return true;
}

/** Where a reader starts in a lane's items: the margin before the marker's `through` (every item when there is none). */
export function activityReadFrom(through: string | undefined): string {
  const writtenAt = through === undefined ? Number.NaN : writtenAtOf(through);
  return Number.isNaN(writtenAt) ? ACTIVITY_PREFIX : `${ACTIVITY_PREFIX}${new Date(writtenAt - ACTIVITY_ROLL_MARGIN_SECONDS * 1000).toISOString()}`;
}

export const activityQuerySchema = z.strictObject({ limit: z.coerce.number().int().min(1).max(100).default(20) });
export type ActivityQuery = z.infer<typeof activityQuerySchema>;

export interface ActivityView {
  subject: string;
  events: { time: string; usageType: string; feature?: string; quantity: Amount; credits?: Amount }[];
}

/**
 * GET /v1/workspaces/{id}/activity: the workspace's newest `limit` events, newest first. Reads its rolling item and
 * its lane's items since the last roll-up (from the marker's `through` less the margin; at most
 * `ACTIVITY_MAX_ITEMS_READ`, newest written first), keeping this workspace's events, each once; events past their
 * item's expiry (TTL removes items lazily) are skipped. A lane is rolled up at least every `ACTIVITY_ROLL_SECONDS`
 * while it gets traffic, so the lane items read are those of about that long of batches; a busy neighbour in the lane
 * makes them bigger (reads), never the answer wrong.
 */
export async function recentActivity(subjectId: string, query: ActivityQuery, deps: { subjects: SubjectDirectory; activity: ActivityReader; clock: Clock }): Promise<ActivityView> {
  if (!(await deps.subjects.getMany([subjectId])).has(subjectId)) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  const now = Math.floor(deps.clock.now().getTime() / 1000);
  const lane = checkpointLaneOf(subjectId);
  const [marker, rolled] = await Promise.all([deps.activity.marker(lane), deps.activity.rolled(subjectId)]);
  const copies = new Copies(rolled);
  let read = 0;
  for await (const item of deps.activity.laneItemsSince(lane, activityReadFrom(marker?.through))) {
    const events = Object.hasOwn(item.events, subjectId) ? item.events[subjectId] : undefined;
    if (events && item.expiresAt > now) copies.add(item, events);
    if (++read >= ACTIVITY_MAX_ITEMS_READ) break;
  }
  return { subject: subjectId, events: copies.newest(now).slice(0, query.limit).flatMap(view) };
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
