/**
 * An independent model of rollup totals for unit tests: a plain Map of flat counter keys
 * (see flatKey in test/support/fakes.ts), built straight from ledger changes without rollups.ts.
 */
import { type Chunk, checkpointLaneOf, type LedgerChange, type LedgerImage } from '../../../functions/core/metering/rollups';
import { addTo, flatKey } from '../../support/fakes';

/** Decimal string → integer nano-units, by string arithmetic only. */
export function nano(quantity: string): bigint {
  const negative = quantity.startsWith('-');
  const [whole = '0', fraction = ''] = (negative ? quantity.slice(1) : quantity).split('.');
  const units = BigInt(whole) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0'));
  return negative ? -units : units;
}

function applyImage(totals: Map<string, bigint>, image: LedgerImage, sign: bigint): void {
  const delta = sign * nano(image.quantity);
  addTo(totals, flatKey(image.subject, image.usageType, 'day', image.day), delta);
  addTo(totals, flatKey(image.subject, image.usageType, 'day', image.day, `h#${image.hour}`), delta);
  // The hour's events: one per image counted, stored as 1 in the nano-units of a quantity.
  addTo(totals, flatKey(image.subject, image.usageType, 'day', image.day, `r#${image.hour}`), sign * 1_000_000_000n);
  addTo(totals, flatKey(image.subject, image.usageType, 'cycle', image.cycleStart), delta);
  addTo(totals, flatKey(image.subject, image.usageType, 'cycle', image.cycleStart, `d#${image.day}`), delta);
  if (image.channel !== undefined) {
    addTo(totals, flatKey(image.subject, image.usageType, 'day', image.day, `ch#${image.hour}#${image.channel}`), delta);
    addTo(totals, flatKey(image.subject, image.usageType, 'cycle', image.cycleStart, `c#${image.channel}`), delta);
  }
  if (image.feature !== undefined) addTo(totals, flatKey(image.subject, image.usageType, 'cycle', image.cycleStart, `f#${image.feature}`), delta);
  if (image.userId !== undefined) addTo(totals, flatKey(image.subject, image.usageType, 'user', `${image.cycleStart}#${image.userId}`), delta);
  if (image.groupId !== undefined) addTo(totals, flatKey(image.subject, image.usageType, 'group', `${image.cycleStart}#${image.groupId}`), delta);
}

/** What the rollups must hold after `changes`: INSERT adds, MODIFY subtracts old and adds new, REMOVE subtracts, TTL does nothing. */
export function modelTotals(changes: readonly LedgerChange[]): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const change of changes) {
    if (change.expired) continue;
    if (change.oldImage) applyImage(totals, change.oldImage, -1n);
    if (change.newImage) applyImage(totals, change.newImage, 1n);
  }
  return totals;
}

/** The sum of every chunk's updates, in the same flat form as the model. */
export function chunkTotals(chunks: readonly Chunk[]): Map<string, bigint> {
  const totals = new Map<string, bigint>();
  for (const chunk of chunks) {
    for (const u of chunk.updates) {
      const period = u.member === undefined ? u.period : `${u.period}#${u.member}`;
      addTo(totals, flatKey(u.subject, u.usageType, u.kind, period), u.total);
      for (const [counter, delta] of u.counters) addTo(totals, flatKey(u.subject, u.usageType, u.kind, period, counter), delta);
    }
  }
  return totals;
}

/** Sorted entries, for readable toEqual diffs. */
export const sorted = (totals: Map<string, bigint>): [string, bigint][] => [...totals].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** A deterministic pseudo-random generator (mulberry32). */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const SUBJECTS = ['ws_a', 'ws_b', 'ws_c'];
const USAGE_TYPES = ['tokens', 'credits'];
const DAYS = ['2026-11-13', '2026-11-14', '2026-11-15', '2026-11-16'];
const QUANTITIES = ['1', '2', '3', '7', '10', '250', '0.25', '1.000000001'];

/**
 * A realistic stream of ledger changes: inserts, corrections that may move an event to another hour,
 * day, cycle, subject or quantity, user deletes and TTL expiries, with sequence numbers of growing
 * length (e.g. "96" … "104"), so that string order and numeric order differ.
 */
export function generateChanges(count: number, seed: number, firstSequenceNumber = 95): LedgerChange[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const image = (eventKey: string): LedgerImage => {
    const day = pick(DAYS);
    const hour = `${day}T${String(Math.floor(next() * 3) + 9).padStart(2, '0')}`;
    // Cycles anchored on the 15th, in UTC.
    const cycleStart = day >= '2026-11-15' ? '2026-11-15T00:00:00.000Z' : '2026-10-15T00:00:00.000Z';
    const dimensions: Partial<LedgerImage> = {};
    const userId = pick(['u1', 'u2', 'u3', undefined]);
    const groupId = pick(['g1', 'g2', undefined]);
    const channel = pick(['ui', 'api', 'mcp', undefined]);
    const feature = pick(['generate', undefined]);
    if (userId !== undefined) dimensions.userId = userId;
    if (groupId !== undefined) dimensions.groupId = groupId;
    if (channel !== undefined) dimensions.channel = channel;
    if (feature !== undefined) dimensions.feature = feature;
    return { eventKey, subject: pick(SUBJECTS), usageType: pick(USAGE_TYPES), quantity: pick(QUANTITIES), hour, day, cycleStart, ...dimensions };
  };
  const live = new Map<number, LedgerImage>();
  const changes: LedgerChange[] = [];
  let sequence = firstSequenceNumber;
  let nextEvent = 0;
  for (let i = 0; i < count; i++) {
    sequence += 1 + Math.floor(next() * 5);
    const sequenceNumber = String(sequence);
    const roll = next();
    const liveIds = [...live.keys()];
    if (liveIds.length === 0 || roll < 0.45) {
      const newImage = image(`event-${nextEvent}`);
      live.set(nextEvent++, newImage);
      changes.push({ sequenceNumber, newImage });
      continue;
    }
    const id = pick(liveIds);
    const oldImage = live.get(id) as LedgerImage;
    if (roll < 0.75) {
      const newImage = next() < 0.5 ? { ...oldImage, quantity: pick(QUANTITIES) } : image(oldImage.eventKey);
      live.set(id, newImage);
      changes.push({ sequenceNumber, oldImage, newImage });
    } else if (roll < 0.9) {
      live.delete(id);
      changes.push({ sequenceNumber, oldImage });
    } else {
      live.delete(id);
      changes.push({ sequenceNumber, oldImage, expired: true });
    }
  }
  return changes;
}

/** The checkpoint a record counts under: the lane of the new image's subject, else of the old image's. */
export const laneOfChange = (change: LedgerChange): string => checkpointLaneOf((change.newImage ?? change.oldImage)?.subject ?? '');

/**
 * Whether a planner that closed `chunk` before `next` had to, each lane having chunks of its own: `next` belongs
 * to another lane than the chunk's, or it would not have fitted (its items and the chunk's, plus the lane's
 * checkpoint, over `maxItems`). `itemsOf` names the rollup items a record touches; `all` is the batch.
 */
export function hadToClose(chunk: Chunk, next: LedgerChange, all: readonly LedgerChange[], itemsOf: (change: LedgerChange) => string[], maxItems: number): boolean {
  const lane = laneOfChange(next);
  if (chunk.runs.some((r) => r.lane !== lane)) return true;
  const bySequence = new Map(all.map((c) => [c.sequenceNumber, c]));
  const touched = new Set(chunk.sequenceNumbers.flatMap((n) => itemsOf(bySequence.get(n) as LedgerChange)));
  return new Set([...touched, ...itemsOf(next)]).size + 1 > maxItems;
}
