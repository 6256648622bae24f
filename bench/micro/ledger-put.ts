/**
 * The ledger put alone: what one conditional PutItem per event costs on this machine, the floor of any
 * design that keeps one ledger item per event (docs/performance.md, "What limits it"). Side by side, in alternating
 * rounds on one DynamoDB Local with the real ledger table (its stream on), 32 puts in flight:
 * - ledger: `DynamoLedger.putAll` on the ledger's own client (`createLedgerClient`: raw, cached middleware,
 *   no SDK logger), as ingest writes;
 * - ledger, SDK logger on: the same with the SDK's logger middleware left in, to isolate what removing it saves;
 * - baseline: the same items and condition through a document client as the SDK builds it.
 * Each round writes new identities, so every put lands. A warm-up first lets DynamoDB Local's JIT settle.
 *
 *   npm run bench:ledger-put
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, NumberValue, PutCommand } from '@aws-sdk/lib-dynamodb';
import { mapConcurrently } from '../../functions/adapters/dynamodb';
import { createLedgerClient, DynamoLedger } from '../../functions/adapters/ledger-store';
import { eventKey } from '../../functions/core/metering/envelope';
import type { LedgerEntry } from '../../functions/core/metering/rollups';
import { createTables } from '../../local/bootstrap';
import { LOCAL_CREDENTIALS, startDynamoDbLocal } from '../../local/stand-ins';
import { emulatorCpu } from '../pipeline/harness';

const REGION = 'us-east-1';
const WARMUP = 30_000;
const ROUND = 10_000;
const ROUNDS = 3;
const IN_FLIGHT = 32;
const CONTENDERS_IN_TURN = ['ledger', 'logging', 'baseline'] as const;

interface Round {
  putsPerSecond: number;
  nodeMsPerPut: number;
  emulatorMsPerPut: number;
}

let next = 0;
function entries(count: number): LedgerEntry[] {
  const now = Date.now();
  return Array.from({ length: count }, () => {
    const n = next++;
    const time = new Date(now - (n % 60_000)).toISOString();
    return {
      source: 'bench/ledger-put',
      id: `e-${n}`,
      type: 'com.example.usage',
      subject: `ws_${String(n % 1000).padStart(4, '0')}`,
      time,
      usageType: 'tokens',
      quantity: String(1 + (n % 100)),
      dimensions: { channel: 'api' },
      sentAt: new Date(now).toISOString(),
      hour: time.slice(0, 13),
      day: time.slice(0, 10),
      cycleStart: `${time.slice(0, 8)}01T00:00:00.000Z`,
      expiresAt: Math.floor(now / 1000) + 35 * 86_400,
    };
  });
}

async function main(): Promise<void> {
  const dynamo = await startDynamoDbLocal({ region: REGION });
  const config = { region: REGION, endpoint: dynamo.endpoint, credentials: LOCAL_CREDENTIALS, maxAttempts: 8 };
  const admin = new DynamoDBClient(config);
  const ledgerClient = createLedgerClient(config);
  const loggingClient = new DynamoDBClient({ ...config, cacheMiddleware: true });
  const documents = DynamoDBDocumentClient.from(new DynamoDBClient(config), { marshallOptions: { removeUndefinedValues: true } });
  try {
    const { names } = await createTables(admin);
    const emulator = emulatorCpu(dynamo.endpoint);
    const ledger = new DynamoLedger(ledgerClient, names.ledger);
    const logging = new DynamoLedger(loggingClient, names.ledger);
    const contenders = {
      ledger: async (batch: LedgerEntry[]) => (await ledger.putAll(batch)).failed.length,
      logging: async (batch: LedgerEntry[]) => (await logging.putAll(batch)).failed.length,
      baseline: async (batch: LedgerEntry[]) =>
        (
          await mapConcurrently(batch, IN_FLIGHT, async (entry) => {
            const { dimensions, ...event } = entry;
            await documents.send(
              new PutCommand({
                TableName: names.ledger,
                Item: { pk: eventKey(entry), ...event, ...dimensions, quantity: NumberValue.from(entry.quantity), digest: `${entry.id}-digest` },
                ConditionExpression: 'attribute_not_exists(pk) OR (sentAt <= :sentAt AND digest <> :digest)',
                ExpressionAttributeValues: { ':sentAt': entry.sentAt, ':digest': `${entry.id}-digest` },
                ReturnConsumedCapacity: 'TOTAL',
              }),
            );
            return true;
          })
        ).length,
    };
    const run = async (write: (batch: LedgerEntry[]) => Promise<number>, count: number): Promise<Round> => {
      const batch = entries(count);
      const emulatorBefore = emulator?.() ?? 0;
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      const failed = await write(batch);
      if (failed > 0) throw new Error(`${failed} puts failed`);
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      return { putsPerSecond: count / seconds, nodeMsPerPut: (cpu.user + cpu.system) / 1000 / count, emulatorMsPerPut: ((emulator?.() ?? 0) - emulatorBefore) / count };
    };

    console.log(`ledger puts on DynamoDB Local: warming up with ${WARMUP.toLocaleString('en-US')} puts, then ${ROUNDS} rounds of ${ROUND.toLocaleString('en-US')} per client, alternating`);
    for (const name of CONTENDERS_IN_TURN) await run(contenders[name], WARMUP / CONTENDERS_IN_TURN.length);
    const rounds: Record<keyof typeof contenders, Round[]> = { ledger: [], logging: [], baseline: [] };
    for (let i = 0; i < ROUNDS; i++) for (const name of CONTENDERS_IN_TURN) rounds[name].push(await run(contenders[name], ROUND));

    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    console.log('\n| client | puts/s | Node CPU ms / put | DynamoDB Local CPU ms / put |');
    console.log('|---|---:|---:|---:|');
    for (const [name, label] of [
      ['ledger', "ledger (DynamoLedger on the ledger's client)"],
      ['logging', 'ledger, SDK logger middleware left in'],
      ['baseline', 'baseline (document client, SDK defaults)'],
    ] as const) {
      const of = rounds[name];
      console.log(
        `| ${label} | ${Math.round(median(of.map((r) => r.putsPerSecond))).toLocaleString('en-US')} | ${median(of.map((r) => r.nodeMsPerPut)).toFixed(3)} | ${emulator ? median(of.map((r) => r.emulatorMsPerPut)).toFixed(3) : 'n/a'} |`,
      );
    }
    console.log(`\nMedians of ${ROUNDS} rounds. Node CPU includes the ledger's digest and marshalling; DynamoDB Local's is read from /proc.`);
  } finally {
    for (const client of [admin, ledgerClient, loggingClient, documents]) client.destroy();
    await dynamo.stop();
  }
}

await main();
