/**
 * Write cost at a low rate in steady state: what `npm run bench`'s low-rate row (20 s at 75 events/s) cannot show,
 * since deltas wait in their lane items up to 5 minutes (core/metering/pending.ts) and their folds come later.
 *
 *   npm run bench:low-rate [-- --minutes 20 --rate 75 --workspaces 1000]
 *
 * The real aggregate (core aggregateChanges with the DynamoDB adapter) and the real activity writes (recordActivity)
 * on DynamoDB Local, fed one 10 s batch after another of ledger records as the stream brings them (rate × 10 s events,
 * each of a workspace drawn at random and naming one of 4 channels, as the pipeline benchmark's do), on a simulated clock, so
 * that 20 minutes (both designs) take about two. The first 10 minutes are left out (every workspace's first events admit its
 * channels, and lanes fill). Beside it the same batches with every commit folded at once: the design before
 * pending deltas. Write units per unique event, transactions priced at 2 per started KB of each item (updates at their
 * final size, puts as sent), plain writes as DynamoDB Local reports them; the ledger adds its 1 per unique event.
 */

import { parseArgs } from 'node:util';
import { DynamoActivity } from '../../functions/adapters/activity-store';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { recordActivity } from '../../functions/core/metering/activity';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { FOLD_AT_ONCE, PENDING_LIMITS } from '../../functions/core/metering/pending';
import type { LedgerChange } from '../../functions/core/metering/rollups';
import { Random } from '../../testkit/random';
import { withMeteredTables } from './metered-tables';

const BATCH_SECONDS = 10;
const WARMUP_MINUTES = 10;
const CHANNELS = ['ui', 'api', 'cli', 'mcp'];
/** A Tuesday at 09:00 UTC, inside one day and one cycle for the whole run. */
const START = Date.UTC(2026, 2, 10, 9);
const CYCLE = '2026-03-01T00:00:00.000Z';

export interface LowRateCost {
  design: 'pending deltas' | 'folded at once';
  events: number;
  /** Per unique event, the measured window only. */
  rollups: number;
  activity: number;
  /** Ledger (1) + rollups + activity. */
  total: number;
  transactions: number;
  plainWrites: number;
}

export async function lowRateCost(
  options: { minutes: number; rate: number; workspaces: number; pending: boolean; seed?: number },
  log: (line: string) => void = () => undefined,
): Promise<LowRateCost> {
  return withMeteredTables(async ({ client, names, meter }) => {
    let now = START;
    const clock = { now: () => new Date(now) };
    const rollups = new DynamoRollups(createDocumentClient(client), names.rollups, clock, undefined, options.pending ? PENDING_LIMITS : FOLD_AT_ONCE, clock);
    const activity = new DynamoActivity(createDocumentClient(client), names.rollups);
    const random = new Random(options.seed ?? 1);
    const perBatch = options.rate * BATCH_SECONDS;
    let sequence = 1_000_000;
    let measured = 0;
    for (let batch = 0; batch < (options.minutes * 60) / BATCH_SECONDS; batch++) {
      const inWindow = batch >= (WARMUP_MINUTES * 60) / BATCH_SECONDS;
      meter.startPhase(inWindow ? 'measured' : 'warmup');
      const changes: LedgerChange[] = [];
      for (let i = 0; i < perBatch; i++) {
        const time = new Date(now - random.int(BATCH_SECONDS * 1000)).toISOString();
        const subject = `ws_${random.int(options.workspaces)}`;
        changes.push({
          sequenceNumber: String(sequence++),
          newImage: {
            eventKey: JSON.stringify(['bench/low-rate', String(sequence)]),
            subject,
            usageType: 'tokens',
            quantity: String(1 + random.int(1000)),
            hour: time.slice(0, 13),
            day: time.slice(0, 10),
            cycleStart: CYCLE,
            time,
            channel: CHANNELS[random.int(CHANNELS.length)] as string,
          },
        });
      }
      const result = await aggregateChanges('shard-low-rate', changes, { rollups });
      if (result.failedSequenceNumber) throw new Error(`batch ${batch} failed: ${String(result.error)}`);
      meter.startPhase(inWindow ? 'measured activity' : 'warmup activity');
      const written = await recordActivity('shard-low-rate', changes, { activity, clock });
      if (written.error !== undefined) throw new Error(`batch ${batch}: activity failed: ${String(written.error)}`);
      if (inWindow) measured += changes.length;
      now += BATCH_SECONDS * 1000;
      if (batch % 60 === 59) log(`  ${options.pending ? 'pending' : 'at once'}: ${((batch + 1) * BATCH_SECONDS) / 60} simulated minutes`);
    }
    const transactions = (await meter.transactionUnits(client)).get('measured') ?? { transactions: 0, sizedUnits: 0 };
    const plain = (phase: string) =>
      Object.values(meter.tables(phase)).reduce((sum, use) => ({ units: sum.units + use.writeUnits, requests: sum.requests + use.writeRequests }), { units: 0, requests: 0 });
    const rollupPlain = plain('measured');
    const activityPlain = plain('measured activity');
    const rollupUnits = (transactions.sizedUnits + rollupPlain.units) / measured;
    const activityUnits = activityPlain.units / measured;
    return {
      design: options.pending ? 'pending deltas' : 'folded at once',
      events: measured,
      rollups: rollupUnits,
      activity: activityUnits,
      total: 1 + rollupUnits + activityUnits,
      transactions: transactions.transactions,
      plainWrites: rollupPlain.requests,
    };
  });
}

export function lowRateTable(rows: readonly LowRateCost[]): string {
  return [
    '| design | events measured | transactions | plain rollup writes | rollups WU / event | activity WU / event | with the ledger |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.design} | ${r.events.toLocaleString('en-US')} | ${r.transactions.toLocaleString('en-US')} | ${r.plainWrites.toLocaleString('en-US')} | ${r.rollups.toFixed(3)} | ${r.activity.toFixed(3)} | ${r.total.toFixed(2)} |`,
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '20' }, rate: { type: 'string', default: '75' }, workspaces: { type: 'string', default: '1000' } } });
  const options = { minutes: Number(values.minutes), rate: Number(values.rate), workspaces: Number(values.workspaces) };
  if (!(options.minutes > WARMUP_MINUTES) || !(options.rate > 0) || !(options.workspaces > 0)) throw new Error(`--minutes must be over ${WARMUP_MINUTES}, --rate and --workspaces positive`);
  console.log(
    `${options.rate} events/s over ${options.workspaces.toLocaleString('en-US')} workspaces, ${BATCH_SECONDS} s batches, ${options.minutes} simulated minutes (the first ${WARMUP_MINUTES} left out):`,
  );
  const rows = [await lowRateCost({ ...options, pending: true }, console.log), await lowRateCost({ ...options, pending: false }, console.log)];
  console.log(lowRateTable(rows));
}
