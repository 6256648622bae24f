/**
 * The cost of one quota check (`GET /v1/workspaces/{id}/quotas`, the call products make before each request),
 * side by side: reading the workspace's grants and cycle snapshots on every check (the design before the
 * balance records were kept in memory) and a warm function that answers them from memory for 30 s
 * (`DynamoAccounts.balanceRecords`). Both run the real quota view and DynamoDB adapters on DynamoDB Local,
 * on a workspace with two usage types, `--months` closed cycles behind it (each with its snapshot and two
 * spillover grants), a bonus and a top-up, and a current cycle of rollups from 2,000 events over 4 channels
 * and 30 features. Requests and read units are DynamoDB's (ReturnConsumedCapacity, eventually consistent
 * reads at half a unit per started 4 KB); latency is DynamoDB Local's on this machine, not AWS's.
 *
 *   npm run bench:quota-check [-- --months 24 --checks 300]
 */
import { parseArgs } from 'node:util';
import { DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { DynamoAccounts } from '../../functions/adapters/account-store';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { DynamoSubjects } from '../../functions/adapters/subject-store';
import { spilloverGrantId, type UsageSnapshot } from '../../functions/core/billing/balance';
import { quotaView } from '../../functions/core/billing/quotas';
import { parseConfig } from '../../functions/core/config';
import { cycleContaining, previousCycle } from '../../functions/core/cycles';
import { aggregateChanges } from '../../functions/core/metering/aggregate';
import { type LedgerChange, rollupSortKey } from '../../functions/core/metering/rollups';
import type { Subject } from '../../functions/core/ports';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, startDynamoDbLocal } from '../../local/stand-ins';
import { Random } from '../../testkit/random';
import { DynamoMeter } from '../pipeline/capacity-meter';
import { itemSize } from './item-size';

const { values: args } = parseArgs({ options: { months: { type: 'string', default: '24' }, checks: { type: 'string', default: '300' } } });
const MONTHS = Number(args.months);
const CHECKS = Number(args.checks);
const USAGE_TYPES = ['tokens', 'images'] as const;
const CHANNELS = ['ui', 'api', 'cli', 'mcp'];
const FEATURES = Array.from({ length: 30 }, (_, i) => `feature-${i}`);
/** Mid-cycle, so that no close is pending: the common check. */
const NOW = new Date('2026-11-18T10:00:00.000Z');
const REGION = 'us-east-1';

const config = parseConfig(
  JSON.stringify({
    usageTypes: USAGE_TYPES.map((id) => ({ id, unit: id })),
    plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1_000_000, spillover: { policy: 'all' } }, images: { monthlyLimit: 500, dailyLimit: 50, spillover: { policy: 'capped', cap: 100 } } } }],
  }),
  'quota-check bench',
);
const subject: Subject = { id: 'ws_quota_bench', plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [], createdAt: '2020-01-01T00:00:00.000Z' };
const clock = { now: () => NOW };

async function seed(documents: ReturnType<typeof createDocumentClient>, tables: Record<string, string>): Promise<void> {
  await new DynamoSubjects(documents, tables.subjects as string).put(subject);
  const accounts = new DynamoAccounts(documents, tables.accounts as string, clock);
  await accounts.putGrant({ subject: subject.id, id: 'bonus-referral', kind: 'bonus', usageType: 'tokens', amount: '50000', grantedAt: '2025-06-01T00:00:00.000Z' });
  await accounts.putGrant({ subject: subject.id, id: 'topup-1', kind: 'topup', usageType: 'images', amount: '200', grantedAt: '2026-09-10T00:00:00.000Z', expiresAt: '2027-09-10T00:00:00.000Z' });
  let cycle = cycleContaining(NOW, subject);
  for (let m = 0; m < MONTHS; m++) {
    const closed = previousCycle(cycle, subject);
    const usage: Record<string, UsageSnapshot> = Object.fromEntries(
      USAGE_TYPES.map((usageType): [string, UsageSnapshot] => [
        usageType,
        {
          limit: '1000000',
          spilloverIn: '1200',
          used: '998800',
          overflow: '0',
          drawn: usageType === 'tokens' ? { 'bonus-referral': '10' } : ({} as Record<string, string>),
          uncovered: '0',
          spilloverOut: '1200',
        },
      ]),
    );
    await accounts.freezeCycle({ subject: subject.id, cycleStart: closed.start, cycleEnd: closed.end, plan: 'pro', status: 'closed', frozenAt: closed.end, usage, expired: {} });
    for (const usageType of USAGE_TYPES) {
      await accounts.putGrant({ subject: subject.id, id: spilloverGrantId(usageType, cycle.start), kind: 'spillover', usageType, amount: '1200', grantedAt: closed.end, cycleStart: cycle.start });
    }
    cycle = closed;
  }
  // The current cycle's rollups, through the real aggregate.
  const random = new Random(7);
  const current = cycleContaining(NOW, subject);
  const changes: LedgerChange[] = Array.from({ length: 2_000 }, (_, i) => {
    const time = new Date(Date.parse(current.start) + random.int(NOW.getTime() - Date.parse(current.start))).toISOString();
    return {
      sequenceNumber: String(1_000_000 + i),
      newImage: {
        eventKey: JSON.stringify(['bench/quota-check', String(i)]),
        subject: subject.id,
        usageType: USAGE_TYPES[i % 2] as string,
        quantity: String(1 + random.int(100)),
        hour: time.slice(0, 13),
        day: time.slice(0, 10),
        cycleStart: current.start,
        channel: CHANNELS[random.int(CHANNELS.length)] as string,
        feature: FEATURES[random.int(FEATURES.length)] as string,
      },
    };
  });
  const rollups = new DynamoRollups(documents, tables.rollups as string, clock);
  const result = await aggregateChanges('shardId-bench', changes, { rollups });
  if (result.failedSequenceNumber !== undefined) throw new Error(`seeding the rollups failed: ${String(result.error)}`);
}

interface Row {
  design: string;
  requests: number;
  readUnits: number;
  p50: number;
  p99: number;
}

async function measure(design: string, meter: DynamoMeter, check: () => Promise<unknown>): Promise<Row> {
  await check(); // the first check of a function fills what it keeps; the rows are of the checks after it
  meter.startPhase(design);
  const times: number[] = [];
  for (let i = 0; i < CHECKS; i++) {
    const started = performance.now();
    await check();
    times.push(performance.now() - started);
  }
  const use = Object.values(meter.tables(design));
  times.sort((a, b) => a - b);
  return {
    design,
    requests: use.reduce((sum, t) => sum + t.readRequests, 0) / CHECKS,
    readUnits: use.reduce((sum, t) => sum + t.readUnits, 0) / CHECKS,
    p50: times[Math.floor(CHECKS * 0.5)] as number,
    p99: times[Math.min(CHECKS - 1, Math.floor(CHECKS * 0.99))] as number,
  };
}

async function main(): Promise<void> {
  const dynamodb = await startDynamoDbLocal({ region: REGION });
  const client = new DynamoDBClient({ region: REGION, endpoint: dynamodb.endpoint, credentials: LOCAL_CREDENTIALS });
  try {
    const meter = new DynamoMeter();
    meter.attach(client.middlewareStack);
    const documents = createDocumentClient(client);
    const { names: tables } = await createTables(client);
    await seed(documents, tables);
    const subjects = new DynamoSubjects(documents, tables.subjects);
    const rollups = new DynamoRollups(documents, tables.rollups, clock);
    const warm = new DynamoAccounts(documents, tables.accounts, clock);
    const expected = JSON.stringify(await quotaView(subject.id, { config, subjects, rollups, accounts: new DynamoAccounts(documents, tables.accounts, clock), clock }));

    const rows = [
      // A new store per check keeps nothing: every check reads the grants and snapshots again.
      await measure('read every check (before)', meter, () => quotaView(subject.id, { config, subjects, rollups, accounts: new DynamoAccounts(documents, tables.accounts, clock), clock })),
      await measure('warm function (after)', meter, () => quotaView(subject.id, { config, subjects, rollups, accounts: warm, clock })),
    ];
    // Both designs must give the same answer.
    const warmAnswer = JSON.stringify(await quotaView(subject.id, { config, subjects, rollups, accounts: warm, clock }));
    if (warmAnswer !== expected) throw new Error(`the warm answer differs:\n${warmAnswer}\n${expected}`);

    const { Items: cycleItems = [] } = await client.send(
      new QueryCommand({
        TableName: tables.rollups,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :cycle)',
        ExpressionAttributeValues: { ':pk': { S: subject.id }, ':cycle': { S: rollupSortKey('cycle', cycleContaining(NOW, subject).start, '') } },
      }),
    );
    const cycleBytes = cycleItems.map(itemSize);
    console.log(`quota check: 1 workspace, 2 usage types, ${MONTHS} closed cycles (${MONTHS * 2 + 2} grants), ${CHECKS} checks per design; its cycle items: ${cycleBytes.join(' + ')} bytes`);
    console.log('| design | requests per check | read units per check | p50 ms | p99 ms |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.design} | ${r.requests.toFixed(2)} | ${r.readUnits.toFixed(2)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`);
    console.log('Target: at most 2 read units in 1–2 round trips for the common check; a grant or close made elsewhere shows within 30 s.');
  } finally {
    client.destroy();
    await dynamodb.stop();
  }
}

await main();
