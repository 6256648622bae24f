/**
 * Write units per event against density: how many events each subject has in one aggregate batch.
 * For 1, 10, 100 and 1,000 events per subject, batches of 10,000 ledger records (the deployed batch
 * size) go through the real aggregate (core and DynamoDB adapter) on DynamoDB Local. Each transaction
 * is priced from its items' sizes after the batch (bench/pipeline/capacity-meter.ts); the ledger write is one unit
 * per event (its items stay under 1 KB; `npm run bench` measures it end to end).
 *
 * Run on its own, it also measures the same batches with every event priced in credits (the credit rate
 * card: each event counts its credits under the credits usage type too), and pooled by enterprise accounts of 10
 * workspaces in 2 groups (the credits count under the account too), side by side with the unpriced ones,
 * and what the aggregate's recent-activity items cost beside them (one plain PutItem per workspace and batch,
 * one write unit per started KB: core/metering/activity.ts).
 *
 *   npm run bench:density            (the unpriced curve is also printed at the end of `npm run bench`)
 */
import { marshall } from '@aws-sdk/util-dynamodb';
import { DynamoActivity } from '../../functions/adapters/activity-store';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import type { EventCredits } from '../../functions/core/billing/credits';
import { activityLaneItems, activityLanePk } from '../../functions/core/metering/activity';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { FOLD_AT_ONCE, PENDING_LIMITS } from '../../functions/core/metering/pending';
import type { LedgerChange } from '../../functions/core/metering/rollups';
import { Random } from '../../testkit/random';
import { itemSize } from './item-size';
import { withMeteredTables } from './metered-tables';

export const DENSITIES = [1, 10, 100, 1000] as const;
const BATCH = 10_000;
const CHANNELS = ['ui', 'api', 'cli', 'mcp'];

export interface DensityPoint {
  eventsPerSubject: number;
  subjects: number;
  events: number;
  transactions: number;
  rollupItems: number;
  /** Rollup (and checkpoint) write units, each item priced at its size after the batch. */
  rollupUnits: number;
  /** Ledger (1 per event) + rollups, per event. */
  writeUnitsPerEvent: number;
  /** The batch's recent-activity items, when measured (`activity` option). */
  activity?: ActivityCost;
}

export interface ActivityCost {
  items: number;
  /** Average size of an item as DynamoDB bills it (bench/micro/item-size.ts). */
  averageBytes: number;
  /** One unit per started KB of each item (PutItem). */
  sizedUnits: number;
  /** What DynamoDB Local's ConsumedCapacity reported for the puts. */
  reportedUnits: number;
  /** sizedUnits per event. */
  unitsPerEvent: number;
}

const FEATURES = ['chat', 'summarize', 'translate', 'generate_image', 'remove_background'];

/**
 * The batch as recent activity sees it: each event also names a feature and has the identity a producer gives it
 * (a source and a UUID), which the activity item stores; the rollups' figures are measured without them.
 */
function asProduced(batch: readonly LedgerChange[], seed: number): LedgerChange[] {
  const random = new Random(seed);
  const hex = (n: number) => Array.from({ length: n }, () => random.int(16).toString(16)).join('');
  return batch.map((change) =>
    change.newImage
      ? {
          ...change,
          newImage: {
            ...change.newImage,
            eventKey: JSON.stringify(['//api.example.com/v1', `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`]),
            feature: FEATURES[random.int(FEATURES.length)] as string,
          },
        }
      : change,
  );
}

/** How the batch's events are priced: not at all, in credits, or in credits pooled by accounts of 10 workspaces in 2 groups. */
type Pricing = 'unpriced' | 'priced' | 'pooled';
/** Workspaces per account in the pooled batches. */
const WORKSPACES_PER_ACCOUNT = 10;
/** Each pricing's workspaces have ids of their own, so that one curve's items never meet another's. */
const SUBJECT_SUFFIX: Record<Pricing, string> = { unpriced: '', priced: 'r', pooled: 'o' };

/** One batch of `BATCH` records: `density` events for each of `BATCH / density` subjects, shuffled, in the last hour. */
function batchOf(density: number, now: number, seed: number, pricing: Pricing): LedgerChange[] {
  const random = new Random(seed);
  const subjects = BATCH / density;
  const subjectOfRecord = Array.from({ length: BATCH }, (_, i) => i % subjects);
  for (let i = subjectOfRecord.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [subjectOfRecord[i], subjectOfRecord[j]] = [subjectOfRecord[j] as number, subjectOfRecord[i] as number];
  }
  const day = new Date(now).toISOString().slice(0, 10);
  const cycleStart = `${day.slice(0, 8)}01T00:00:00.000Z`;
  return subjectOfRecord.map((subjectIndex, i) => {
    const time = new Date(now - random.int(3_600_000)).toISOString();
    return {
      sequenceNumber: String(1_000_000 + i),
      newImage: {
        eventKey: JSON.stringify(['bench/density', `${density}-${i}`]),
        subject: `ws_d${density}${SUBJECT_SUFFIX[pricing]}_${subjectIndex}`,
        usageType: 'tokens',
        quantity: String(1 + random.int(100)),
        hour: time.slice(0, 13),
        day,
        time,
        cycleStart,
        channel: CHANNELS[random.int(CHANNELS.length)] as string,
        ...(pricing === 'unpriced' ? {} : { credits: creditsOf(pricing, density, subjectIndex, day, cycleStart, String(1 + random.int(9))) }),
      },
    };
  });
}

function creditsOf(pricing: Exclude<Pricing, 'unpriced'>, density: number, subjectIndex: number, day: string, cycleStart: string, quantity: string): EventCredits {
  if (pricing === 'priced') return { usageType: 'credits', quantity };
  const account = `acct_d${density}_${Math.floor(subjectIndex / WORKSPACES_PER_ACCOUNT)}`;
  return { usageType: 'credits', quantity, pool: { subject: account, day, cycleStart, group: `group_${subjectIndex % 2}` } };
}

export async function densityCurve(log: (line: string) => void = console.log, options: { pricing?: Pricing; activity?: boolean; pending?: boolean } = {}): Promise<DensityPoint[]> {
  const pricing = options.pricing ?? 'unpriced';
  const points: DensityPoint[] = [];
  const now = Date.now();
  // Each density on a DynamoDB Local of its own: deltas one batch leaves waiting in its lanes must not meet the next's.
  for (const density of DENSITIES) {
    const point = await withMeteredTables(async ({ client, names, meter }) => {
      // Without pending deltas every commit folds at once: what a batch costs when nothing waits for a later one.
      const rollups = new DynamoRollups(createDocumentClient(client), names.rollups, undefined, undefined, options.pending ? PENDING_LIMITS : FOLD_AT_ONCE);
      meter.startPhase('batch');
      const batch = batchOf(density, now, density, pricing);
      const result = await aggregateChanges(`shard-density-${density}`, batch, { rollups });
      if (result.failedSequenceNumber) throw new Error(`density ${density}: the batch failed at ${result.failedSequenceNumber}: ${String(result.error)}`);
      log(`  density ${density}: ${result.chunks} commits`);
      let cost: ActivityCost | undefined;
      if (options.activity) {
        // What the aggregate handler writes after the batch: one activity item per lane of workspaces (roll-ups, every
        // 10 minutes per lane, are left out: one put per workspace of the lane per 10 minutes).
        meter.startPhase('activity');
        const items = activityLaneItems(`shard-density-${density}`, asProduced(batch, density), new Date(now));
        const { failed, error } = await new DynamoActivity(createDocumentClient(client), names.rollups).putLaneItems(items);
        if (failed.length > 0) throw new Error(`density ${density}: ${failed.length} activity items failed: ${String(error)}`);
        const sizes = items.map((item) => itemSize(marshall({ pk: activityLanePk(item.lane), sk: item.sk, events: item.events, expiresAt: item.expiresAt }, { removeUndefinedValues: true })));
        const sizedUnits = sizes.reduce((sum, bytes) => sum + Math.max(1, Math.ceil(bytes / 1024)), 0);
        cost = {
          items: items.length,
          averageBytes: sizes.reduce((a, b) => a + b, 0) / sizes.length,
          sizedUnits,
          reportedUnits: meter.plainWrites('activity').units,
          unitsPerEvent: sizedUnits / BATCH,
        };
        log(`  density ${density}: ${items.length} activity items`);
      }
      const transactions = (await meter.transactionUnits(client)).get('batch') ?? { transactions: 0, items: 0, sizedUnits: 0 };
      // A lane whose commit only adds pending deltas writes its lane item with a plain put, metered as reported; so
      // are the admissions of breakdown values written apart.
      const plain = meter.plainWrites('batch');
      return {
        eventsPerSubject: density,
        subjects: BATCH / density,
        events: BATCH,
        transactions: transactions.transactions,
        rollupItems: transactions.items + plain.requests,
        rollupUnits: transactions.sizedUnits + plain.units,
        writeUnitsPerEvent: (BATCH + transactions.sizedUnits + plain.units) / BATCH,
        ...(cost ? { activity: cost } : {}),
      };
    });
    points.push(point);
  }
  return points;
}

export function densityTable(points: readonly DensityPoint[]): string {
  const lines = [
    '| events per subject per batch | subjects | transactions | items written | write units per event |',
    '|---:|---:|---:|---:|---:|',
    ...points.map(
      (p) =>
        `| ${p.eventsPerSubject.toLocaleString('en-US')} | ${p.subjects.toLocaleString('en-US')} | ${p.transactions} | ${p.rollupItems.toLocaleString('en-US')} | ${p.writeUnitsPerEvent.toFixed(2)} |`,
    ),
  ];
  return lines.join('\n');
}

/** The unpriced, priced and pooled curves side by side. */
export function pricedTable(unpriced: readonly DensityPoint[], priced: readonly DensityPoint[], pooled: readonly DensityPoint[]): string {
  return [
    '| events per subject per batch | items written: unpriced / priced / pooled | write units per event, unpriced | priced in credits | priced, pooled by accounts of 10 |',
    '|---:|---:|---:|---:|---:|',
    ...unpriced.map((u, i) => {
      const p = priced[i] as DensityPoint;
      const o = pooled[i] as DensityPoint;
      const items = [u, p, o].map((x) => x.rollupItems.toLocaleString('en-US')).join(' / ');
      return `| ${u.eventsPerSubject.toLocaleString('en-US')} | ${items} | ${u.writeUnitsPerEvent.toFixed(2)} | ${p.writeUnitsPerEvent.toFixed(2)} | ${o.writeUnitsPerEvent.toFixed(2)} |`;
    }),
  ].join('\n');
}

/** Recent activity's write units per event beside the ledger's and the rollups'. */
export function activityTable(points: readonly DensityPoint[]): string {
  return [
    '| events per workspace per batch | activity items | bytes per item | activity write units per event | (DynamoDB Local reported) | ledger + rollups per event | with activity |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...points.map((p) => {
      const a = p.activity;
      if (!a) return `| ${p.eventsPerSubject.toLocaleString('en-US')} | – | – | – | – | ${p.writeUnitsPerEvent.toFixed(2)} | – |`;
      return `| ${p.eventsPerSubject.toLocaleString('en-US')} | ${a.items.toLocaleString('en-US')} | ${Math.round(a.averageBytes).toLocaleString('en-US')} | ${a.unitsPerEvent.toFixed(3)} | ${(a.reportedUnits / p.events).toFixed(3)} | ${p.writeUnitsPerEvent.toFixed(2)} | ${(p.writeUnitsPerEvent + a.unitsPerEvent).toFixed(2)} |`;
    }),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`Write units per event against events per subject in one batch of ${BATCH.toLocaleString('en-US')} records, every commit folded at once (ledger 1 + rollups and lane items, sized):`);
  const points = await densityCurve(console.log, { activity: true });
  console.log(densityTable(points));
  console.log(
    '\nThe same batches with deltas waiting in their lane items (core/metering/pending.ts): what the batch itself writes; folding what waits comes later, once per lane and 5 minutes (npm run bench measures it, "low rate"):',
  );
  console.log(densityTable(await densityCurve(console.log, { pending: true })));
  console.log(
    '\nRecent activity (one item per lane of workspaces and batch, the newest 20 events of each workspace; PutItem, 1 unit per started KB; the roll-ups every 10 minutes left out), beside the ledger and rollups:',
  );
  console.log(activityTable(points));
  console.log('\nThe same batches, every event priced in credits, then also pooled by accounts of 10 workspaces in 2 groups:');
  const priced = await densityCurve(console.log, { pricing: 'priced' });
  const pooled = await densityCurve(console.log, { pricing: 'pooled' });
  console.log(pricedTable(points, priced, pooled));
}
