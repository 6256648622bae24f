/**
 * Write units per event against density: how many events each subject has in one aggregate batch.
 * For 1, 10, 100 and 1,000 events per subject, batches of 10,000 ledger records (the deployed batch
 * size) go through the real aggregate (core and DynamoDB adapter) on DynamoDB Local. Each transaction
 * is priced from its items' sizes after the batch (bench/pipeline/capacity-meter.ts); the ledger write is one unit
 * per event (its items stay under 1 KB; `npm run bench` measures it end to end).
 *
 * Run on its own, it also measures the same batches with every event priced in credits (the credit rate
 * card: each event counts its credits under the credits usage type too), side by side with the unpriced ones.
 *
 *   npm run bench:density            (the unpriced curve is also printed at the end of `npm run bench`)
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import type { LedgerChange } from '../../functions/core/metering/rollups';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, startDynamoDbLocal } from '../../local/stand-ins';
import { Random } from '../../testkit/random';
import { DynamoMeter } from '../pipeline/capacity-meter';

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
}

/** One batch of `BATCH` records: `density` events for each of `BATCH / density` subjects, shuffled, in the last hour. */
function batchOf(density: number, now: number, seed: number, priced: boolean): LedgerChange[] {
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
        subject: `ws_d${density}${priced ? 'p' : ''}_${subjectIndex}`,
        usageType: 'tokens',
        quantity: String(1 + random.int(100)),
        hour: time.slice(0, 13),
        day,
        cycleStart,
        channel: CHANNELS[random.int(CHANNELS.length)] as string,
        ...(priced ? { credits: { usageType: 'credits', quantity: String(1 + random.int(9)) } } : {}),
      },
    };
  });
}

export async function densityCurve(log: (line: string) => void = console.log, options: { priced?: boolean } = {}): Promise<DensityPoint[]> {
  const withCredits = options.priced ?? false;
  const dynamo = await startDynamoDbLocal({ region: 'us-east-1' });
  const client = new DynamoDBClient({ region: 'us-east-1', endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS });
  try {
    const { names } = await createTables(client);
    const meter = new DynamoMeter();
    meter.attach(client.middlewareStack);
    const rollups = new DynamoRollups(createDocumentClient(client), names.rollups);
    const now = Date.now();
    for (const density of DENSITIES) {
      meter.startPhase(String(density));
      const result = await aggregateChanges(`shard-density-${density}`, batchOf(density, now, density, withCredits), { rollups });
      if (result.failedSequenceNumber) throw new Error(`density ${density}: the batch failed at ${result.failedSequenceNumber}: ${String(result.error)}`);
      log(`  density ${density}: ${result.chunks} transactions`);
    }
    const priced = await meter.transactionUnits(client);
    return DENSITIES.map((density) => {
      const units = priced.get(String(density)) ?? { transactions: 0, items: 0, sizedUnits: 0 };
      return {
        eventsPerSubject: density,
        subjects: BATCH / density,
        events: BATCH,
        transactions: units.transactions,
        rollupItems: units.items,
        rollupUnits: units.sizedUnits,
        writeUnitsPerEvent: (BATCH + units.sizedUnits) / BATCH,
      };
    });
  } finally {
    client.destroy();
    await dynamo.stop();
  }
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

/** The unpriced and the priced curve side by side. */
export function pricedTable(unpriced: readonly DensityPoint[], priced: readonly DensityPoint[]): string {
  return [
    '| events per subject per batch | items written, unpriced | items written, priced in credits | write units per event, unpriced | write units per event, priced in credits |',
    '|---:|---:|---:|---:|---:|',
    ...unpriced.map((u, i) => {
      const p = priced[i] as DensityPoint;
      return `| ${u.eventsPerSubject.toLocaleString('en-US')} | ${u.rollupItems.toLocaleString('en-US')} | ${p.rollupItems.toLocaleString('en-US')} | ${u.writeUnitsPerEvent.toFixed(2)} | ${p.writeUnitsPerEvent.toFixed(2)} |`;
    }),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(`Write units per event against events per subject in one batch of ${BATCH.toLocaleString('en-US')} records (ledger 1 + rollups and checkpoints, sized):`);
  const points = await densityCurve();
  console.log(densityTable(points));
  console.log('\nThe same batches, every event priced in credits:');
  const priced = await densityCurve(console.log, { priced: true });
  console.log(pricedTable(points, priced));
}
