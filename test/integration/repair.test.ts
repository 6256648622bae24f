import { execFile } from 'node:child_process';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { DeleteCommand, type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import { DynamoLeases } from '../../functions/adapters/lease-store';
import { DynamoLedger, DynamoLedgerScanner } from '../../functions/adapters/ledger-store';
import { DynamoRollups } from '../../functions/adapters/rollup-store';
import { type RepairDeps, RepairRefusedError, type RepairResult, repairSubject } from '../../functions/core/metering/repair';
import { checkpointLaneOf, type LedgerImage } from '../../functions/core/metering/rollups';
import { runAudit } from '../../functions/core/reporting/audit';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { type TestEvent, utcCycleStart } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';
import { localRepairDeps } from '../support/repair-deps';

/**
 * `usage-pipeline repair` restores a workspace's rollups from the ledger while events keep flowing: damage of
 * every kind (a total and counters off, a day item gone, a user item wrong, a counter that should not be
 * there, parked records) is undone exactly, records still in flight are left to the aggregator (which then
 * counts them once), a closed cycle's change is a late adjustment, and a second repair changes nothing.
 * Every item is compared with counters the test computes itself from the events it sent, and the audit
 * finds no difference.
 */

const CONFIG = 'test/fixtures/config.json';
const ANCHORS: Record<string, number> = { ws_a31: 31, ws_b01: 1, ws_c15: 15, ws_d29: 29 };
const CHANNELS = ['web', 'api', 'batch'];
const USERS = ['ana', 'ben', 'cy'];

/** While held, the aggregate takes no batch: what ingest writes stays in flight on the stream. */
const gate = { held: Promise.resolve(), release: () => undefined as void };
const hold = () => {
  gate.held = new Promise<void>((resolve) => (gate.release = resolve));
};

let stack: LocalStack;
let client: StackClient;
let raw: DynamoDBClient;
let documents: DynamoDBDocumentClient;
let rollups: DynamoRollups;
let streams: DynamoDBStreamsClient;
const sent = new Map<string, TestEvent>();
let sequence = 0;

beforeAll(async () => {
  stack = await startLocal({
    clockStart: suiteClockStart(),
    configPath: CONFIG,
    onError: () => undefined,
    wrapAggregate: (invoke) => async (event) => {
      await gate.held;
      return invoke(event);
    },
  });
  client = new StackClient(stack);
  raw = new DynamoDBClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
  documents = createDocumentClient(raw);
  rollups = new DynamoRollups(documents, stack.tables.rollups, stack.clock, stack.tables.accounts);
  streams = new DynamoDBStreamsClient({ region: stack.ready.region, endpoint: stack.ready.dynamodb.endpoint, credentials: { accessKeyId: 't', secretAccessKey: 't' } });
}, 120_000);

afterAll(async () => {
  gate.release();
  client?.close();
  streams?.destroy();
  raw?.destroy();
  await stack?.stop();
});

function repairDeps(): RepairDeps {
  return localRepairDeps(stack, raw, streams, rollups);
}

/** `count` events of a subject within the last hour of the stack's clock, over three channels and users; one in five is a correction of an earlier one. */
function events(subject: string, count: number): TestEvent[] {
  const now = stack.clock.now().getTime();
  const out: TestEvent[] = [];
  for (let i = 0; i < count; i++) {
    const n = sequence++;
    const earlier = [...sent.values()].filter((e) => e.subject === subject);
    const corrected = n % 5 === 4 && earlier.length > 0 ? earlier[n % earlier.length] : undefined;
    const event = usageEvent({
      id: corrected?.id ?? `repair-${n}`,
      source: '//tests/repair',
      type: 'usage.recorded',
      subject,
      time: corrected?.time ?? new Date(now - (n % 50) * 60_000 - 1_000),
      quantity: 1 + (n % 97),
      channel: CHANNELS[n % CHANNELS.length] as string,
      userId: USERS[n % USERS.length] as string,
    });
    out.push(event);
  }
  return out;
}

async function send(batch: readonly TestEvent[]): Promise<void> {
  // Sent one message at a time, in order, so that a correction is sent after what it corrects.
  for (const event of batch) {
    await client.send([JSON.stringify(event)]);
    sent.set(`${event.source}\u0000${event.id}`, event);
  }
}

type Items = Record<string, { total: string; counters: Record<string, string> }>;

/** What the subject's day, cycle and user items must hold, computed from the events sent (UTC workspaces, integer quantities). */
function expectedItems(subject: string): Items {
  const items: Record<string, { total: bigint; counters: Record<string, bigint> }> = {};
  const add = (sk: string, quantity: bigint, counters: Record<string, bigint>) => {
    const item = (items[sk] ??= { total: 0n, counters: {} });
    item.total += quantity;
    for (const [c, amount] of Object.entries(counters)) item.counters[c] = (item.counters[c] ?? 0n) + amount;
  };
  for (const event of sent.values()) {
    if (event.subject !== subject) continue;
    const quantity = BigInt(event.data.quantity);
    const hour = event.time.slice(0, 13);
    const day = event.time.slice(0, 10);
    const cycle = utcCycleStart(new Date(event.time), ANCHORS[subject] as number).toISOString();
    const channel = event.data.channel;
    // The day item also counts the hour's events (r#): one each, whatever the quantity.
    add(`D#${day}#tokens`, quantity, { [`h#${hour}`]: quantity, [`r#${hour}`]: 1n, ...(channel === undefined ? {} : { [`ch#${hour}#${channel}`]: quantity }) });
    add(`C#${cycle}#tokens`, quantity, { [`d#${day}`]: quantity, ...(channel === undefined ? {} : { [`c#${channel}`]: quantity }) });
    add(`U#${cycle}#tokens#${event.data.userId}`, quantity, {});
  }
  return Object.fromEntries(
    Object.entries(items).map(([sk, item]) => [
      sk,
      {
        total: String(item.total),
        counters: Object.fromEntries(
          Object.entries(item.counters)
            .filter(([, v]) => v !== 0n)
            .map(([c, v]) => [c, String(v)]),
        ),
      },
    ]),
  );
}

/** What the subject's day, cycle and user items hold, leaving out counters (and items) at zero. */
async function storedItems(subject: string): Promise<Items> {
  const rows = await rollups.readSubjectRollups(subject, { fromDay: '0000', toDay: '\uffff', fromCycle: '0000', toCycle: '\uffff' });
  const items: Items = {};
  for (const row of rows) {
    if (row.kind === 'group') continue;
    const counters = Object.fromEntries(Object.entries(row.counters).filter(([, v]) => Number(v) !== 0));
    if (Number(row.total) === 0 && Object.keys(counters).length === 0) continue;
    const sk = `${{ day: 'D', cycle: 'C', user: 'U' }[row.kind as 'day' | 'cycle' | 'user']}#${row.period}#${row.usageType}${row.member === undefined ? '' : `#${row.member}`}`;
    items[sk] = { total: row.total, counters };
  }
  return items;
}

/** Whether the ledger holds the latest version of every event sent for the subject. */
async function ledgerHoldsSent(subject: string): Promise<boolean> {
  const images = new Map<string, { quantity: string; userId?: string }>();
  for await (const { image } of new DynamoLedgerScanner(raw, stack.tables.ledger).versions(subject)) images.set(image.eventKey, image);
  return [...sent.values()]
    .filter((e) => e.subject === subject)
    .every((e) => {
      const image = images.get(JSON.stringify([e.source, e.id]));
      return image?.quantity === String(e.data.quantity) && image.userId === e.data.userId;
    });
}

async function waitFor(probe: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function audit(subject: string) {
  return runAudit(
    { subject },
    { config: stack.config, subjects: appContext.subjects(), ledger: appContext.ledgerScanner(), rollups: appContext.rollups(), accounts: appContext.accounts(), reports: appContext.reports() },
  );
}

/** Damage of every kind to a subject's items: a total and its day counter off, a day item gone, a user item off, a channel counter that should not exist. */
async function damage(subject: string): Promise<void> {
  const stored = await storedItems(subject);
  const [cycleSk] = Object.keys(stored).filter((sk) => sk.startsWith('C#'));
  const [daySk] = Object.keys(stored).filter((sk) => sk.startsWith('D#'));
  const [userSk] = Object.keys(stored).filter((sk) => sk.startsWith('U#'));
  const day = (daySk as string).slice(2, 12);
  await documents.send(
    new UpdateCommand({
      TableName: stack.tables.rollups,
      Key: { pk: subject, sk: cycleSk },
      UpdateExpression: 'ADD #total :five, #day :five, #ghost :three',
      ExpressionAttributeNames: { '#total': 'total', '#day': `d#${day}`, '#ghost': 'c#ghost' },
      ExpressionAttributeValues: { ':five': 5, ':three': 3 },
    }),
  );
  await documents.send(new DeleteCommand({ TableName: stack.tables.rollups, Key: { pk: subject, sk: daySk } }));
  await documents.send(
    new UpdateCommand({
      TableName: stack.tables.rollups,
      Key: { pk: subject, sk: userSk },
      UpdateExpression: 'ADD #total :minus',
      ExpressionAttributeNames: { '#total': 'total' },
      ExpressionAttributeValues: { ':minus': -11 },
    }),
  );
}

describe('repair from the ledger', () => {
  test('records in flight are left to the aggregator: the repair undoes only the damage, and the aggregator then counts them once', async () => {
    // Arrange: counted events, damaged rollups, then more events held in flight.
    await send(events('ws_a31', 30));
    await stack.settle();
    expect(await storedItems('ws_a31')).toEqual(expectedItems('ws_a31'));
    const counted = expectedItems('ws_a31');
    await damage('ws_a31');
    expect(await storedItems('ws_a31')).not.toEqual(counted);
    hold();

    // Act, and assert: the rollups hold exactly what was counted before the hold; nothing in flight was added.
    try {
      await send(events('ws_a31', 12));
      await waitFor(() => ledgerHoldsSent('ws_a31'), 'the held events in the ledger');
      const result = await repairSubject({ subject: 'ws_a31' }, repairDeps());
      expect(result.inFlight).toBeGreaterThan(0);
      expect(result.items.length).toBeGreaterThan(0);
      expect(await storedItems('ws_a31')).toEqual(counted);
    } finally {
      gate.release();
    }
    await stack.settle();
    expect(await storedItems('ws_a31')).toEqual(expectedItems('ws_a31'));
    expect((await audit('ws_a31')).differences).toBe(0);
    const again = await repairSubject({ subject: 'ws_a31' }, repairDeps());
    expect([again.items, again.inFlight, again.parkedRemoved]).toEqual([[], 0, 0]);
  }, 180_000);

  test('while two tenants keep sending, a repair run from the command line restores the damaged one exactly; the other is untouched', async () => {
    // Arrange
    await send([...events('ws_b01', 40), ...events('ws_c15', 20)]);
    await stack.settle();
    await damage('ws_b01');
    let sending = true;
    const traffic = (async () => {
      while (sending) await send([...events('ws_b01', 3), ...events('ws_c15', 2)]);
    })();

    // Act: the command an operator runs, while events flow.
    let cli: { code: number; stdout: string; stderr: string };
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      cli = await runCli(['repair', '--subject', 'ws_b01', '--json']);
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      sending = false;
      await traffic;
    }
    await stack.settle();

    // Assert
    expect([cli.code, cli.code === 0 ? '' : cli.stderr]).toEqual([0, '']);
    const result = JSON.parse(cli.stdout) as RepairResult;
    expect(result.items.map((i) => i.item)).toEqual(expect.arrayContaining([expect.stringMatching(/^C#/), expect.stringMatching(/^D#/), expect.stringMatching(/^U#/)]));
    expect(await storedItems('ws_b01')).toEqual(expectedItems('ws_b01'));
    expect(await storedItems('ws_c15')).toEqual(expectedItems('ws_c15'));
    expect((await audit('ws_b01')).differences).toBe(0);
    const again = JSON.parse((await runCli(['repair', '--subject', 'ws_b01', '--json'])).stdout) as RepairResult;
    expect(again.items).toEqual([]);
  }, 240_000);

  test('a parked record, its ledger item corrected by hand: the repair counts the correction once and removes what was parked', async () => {
    // Arrange: a ledger item written around validation (a user id of 1,500 bytes makes a key DynamoDB refuses).
    await send(events('ws_d29', 10));
    await stack.settle();
    const ledger = new DynamoLedger(raw, stack.tables.ledger);
    const time = new Date(stack.clock.now().getTime() - 120_000).toISOString();
    const cycleStart = utcCycleStart(new Date(time), 29).toISOString();
    const entry = {
      source: '//tests/repair',
      id: 'hand-edit',
      type: 'usage.recorded',
      subject: 'ws_d29',
      time,
      usageType: 'tokens',
      quantity: '7',
      hour: time.slice(0, 13),
      day: time.slice(0, 10),
      cycleStart,
    };
    const expiresAt = Math.floor(Date.parse(time) / 1000) + 400 * 86_400;
    await ledger.putAll([{ ...entry, dimensions: { userId: 'u'.repeat(1_500) }, sentAt: new Date(Date.parse(time) + 1_000).toISOString(), expiresAt }]);
    await stack.settle();
    await waitFor(async () => (await rollups.parked('ws_d29')).length === 1, 'the record parked');
    // The operator corrects the item; its change (taking back the bad image) is refused and parked too.
    await ledger.putAll([{ ...entry, dimensions: { userId: 'ana' }, sentAt: new Date(Date.parse(time) + 2_000).toISOString(), expiresAt }]);
    await stack.settle();
    await waitFor(async () => (await rollups.parked('ws_d29')).length === 2, 'the correction parked');
    sent.set('//tests/repair\u0000hand-edit', usageEvent({ id: 'hand-edit', source: '//tests/repair', type: 'usage.recorded', subject: 'ws_d29', time, quantity: 7, userId: 'ana' }));

    // Act
    const result = await repairSubject({ subject: 'ws_d29' }, repairDeps());

    // Assert
    expect(result.parkedRemoved).toBe(2);
    expect(await rollups.parked('ws_d29')).toEqual([]);
    expect(await storedItems('ws_d29')).toEqual(expectedItems('ws_d29'));
    expect((await audit('ws_d29')).differences).toBe(0);
  }, 180_000);

  test('a parked record whose shard the stream no longer lists (a stream keeps 24 hours) is removed once the repair applies what the ledger holds', async () => {
    // Arrange: ws_d29 is counted; a record of one of its events is parked on a shard that has since rotated away.
    let image: LedgerImage | undefined;
    for await (const item of new DynamoLedgerScanner(raw, stack.tables.ledger).versions('ws_d29')) image ??= item.image;
    const change = { sequenceNumber: '4200', newImage: image as LedgerImage };
    expect(await rollups.park('shardId-rotated-away', { lane: checkpointLaneOf('ws_d29'), firstSequenceNumber: '4200', lastSequenceNumber: '4200' }, change, 'ValidationException: test')).toBe(
      'committed',
    );
    expect(await rollups.parked('ws_d29')).toHaveLength(1);

    // Act
    const result = await repairSubject({ subject: 'ws_d29' }, repairDeps());

    // Assert: nothing was missing (the event counted through its own shard), and nothing is left to replay twice.
    expect([result.parkedRemoved, result.items]).toEqual([1, []]);
    expect(await rollups.parked('ws_d29')).toEqual([]);
    expect(await storedItems('ws_d29')).toEqual(expectedItems('ws_d29'));
  }, 120_000);

  test('damage past what one transaction holds (300 counters on one item, 120 items) is undone in several, each within its bounds', async () => {
    // Arrange: ws_c15 is counted; then a day item gains 300 stray hour × channel counters and 120 stray user items appear.
    await send(events('ws_c15', 5));
    await stack.settle();
    const stored = await storedItems('ws_c15');
    const daySk = Object.keys(stored).find((sk) => sk.startsWith('D#')) as string;
    const cycleSk = Object.keys(stored).find((sk) => sk.startsWith('C#')) as string;
    const hour = Object.keys(stored[daySk]?.counters ?? {})
      .find((c) => c.startsWith('h#'))
      ?.slice(2) as string;
    for (let i = 0; i < 300; i += 50) {
      const names = Object.fromEntries(Array.from({ length: 50 }, (_, j) => [`#c${j}`, `ch#${hour}#stray-${i + j}`]));
      await documents.send(
        new UpdateCommand({
          TableName: stack.tables.rollups,
          Key: { pk: 'ws_c15', sk: daySk },
          UpdateExpression: `ADD ${Object.keys(names)
            .map((n) => `${n} :one`)
            .join(', ')}`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: { ':one': 1 },
        }),
      );
    }
    const cycle = cycleSk.slice(2, cycleSk.lastIndexOf('#'));
    for (let i = 0; i < 120; i++) {
      await documents.send(
        new UpdateCommand({
          TableName: stack.tables.rollups,
          Key: { pk: 'ws_c15', sk: `U#${cycle}#tokens#stray-${i}` },
          UpdateExpression: 'SET usageType = :t, period = :p, #member = :m ADD #total :one',
          ExpressionAttributeNames: { '#member': 'member', '#total': 'total' },
          ExpressionAttributeValues: { ':t': 'tokens', ':p': cycle, ':m': `stray-${i}`, ':one': 1 },
        }),
      );
    }
    expect(Object.keys(await storedItems('ws_c15')).length).toBe(Object.keys(expectedItems('ws_c15')).length + 120);

    // Act
    const result = await repairSubject({ subject: 'ws_c15' }, repairDeps());

    // Assert
    expect(result.items.find((i) => i.item === daySk)?.counters).toEqual(Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`ch#${hour}#stray-${i}`, '-1'])));
    expect(result.items.filter((i) => i.item.startsWith(`U#${cycle}#tokens#stray-`))).toHaveLength(120);
    expect(await storedItems('ws_c15')).toEqual(expectedItems('ws_c15'));
    expect((await audit('ws_c15')).differences).toBe(0);
  }, 180_000);

  test('one repair per workspace at a time: a second one is refused while the first holds its lease, and writes nothing', async () => {
    // Arrange: another repair of ws_c15 holds the lease; ws_c15's cycle item is off by 5.
    const leases = new DynamoLeases(documents, stack.tables.accounts);
    const now = stack.clock.now();
    expect(await leases.acquire('repair#ws_c15', 'another-operator', now, new Date(now.getTime() + 60_000))).toBe(true);
    const cycleSk = Object.keys(await storedItems('ws_c15')).find((sk) => sk.startsWith('C#')) as string;
    await documents.send(
      new UpdateCommand({
        TableName: stack.tables.rollups,
        Key: { pk: 'ws_c15', sk: cycleSk },
        UpdateExpression: 'ADD #total :five',
        ExpressionAttributeNames: { '#total': 'total' },
        ExpressionAttributeValues: { ':five': 5 },
      }),
    );

    // Act
    const refused = await repairSubject({ subject: 'ws_c15' }, repairDeps()).catch((error: unknown) => error);
    await leases.release('repair#ws_c15', 'another-operator');
    const after = await repairSubject({ subject: 'ws_c15' }, repairDeps());

    // Assert
    expect(refused).toBeInstanceOf(RepairRefusedError);
    expect(after.items).toEqual([{ item: cycleSk, total: '-5', counters: {} }]);
    expect(await storedItems('ws_c15')).toEqual(expectedItems('ws_c15'));
  }, 120_000);

  test('in a closed cycle, the repair is a late adjustment the audit reconciles; what the close froze stays as billed', async () => {
    // Arrange: ws_a31's cycle item damaged before its close (the snapshot freezes the damage), then closed.
    const first = [...sent.values()].find((e) => e.subject === 'ws_a31') as TestEvent;
    const cycleStart = utcCycleStart(new Date(first.time), 31);
    const sk = `C#${cycleStart.toISOString()}#tokens`;
    const cycleItem = expectedItems('ws_a31')[sk];
    const day = Object.keys(cycleItem?.counters ?? {}).find((c) => c.startsWith('d#')) as string;
    const addToCycle = (amount: number, counter?: string) =>
      documents.send(
        new UpdateCommand({
          TableName: stack.tables.rollups,
          Key: { pk: 'ws_a31', sk },
          UpdateExpression: counter ? 'ADD #total :n, #counter :n' : 'ADD #total :n',
          ExpressionAttributeNames: { '#total': 'total', ...(counter ? { '#counter': counter } : {}) },
          ExpressionAttributeValues: { ':n': amount },
        }),
      );
    await addToCycle(5, day);
    const next = utcCycleStart(new Date(cycleStart.getTime() + 40 * 86_400_000), 31);
    await stack.advanceClock(new Date(next.getTime() + 2 * 3_600_000));
    const [snapshot] = (await appContext.accounts().listCycleSnapshots('ws_a31')).filter((s) => s.cycleStart === cycleStart.toISOString());
    expect([snapshot?.status, snapshot?.usage.tokens?.used]).toEqual(['closed', String(BigInt(cycleItem?.total ?? '0') + 5n)]);
    expect((await audit('ws_a31')).differences).toBeGreaterThan(0);

    // Act
    const frozenDamage = await repairSubject({ subject: 'ws_a31' }, repairDeps());
    await addToCycle(4); // damage after the close: not part of what was billed
    const laterDamage = await repairSubject({ subject: 'ws_a31' }, repairDeps());

    // Assert: the totals are the ledger's again; only the frozen damage is late, named by the repair.
    expect(frozenDamage.items).toEqual([{ item: sk, total: '-5', counters: { [day]: '-5' } }]);
    expect(laterDamage.items).toEqual([{ item: sk, total: '-4', counters: {} }]);
    expect(await storedItems('ws_a31')).toEqual(expectedItems('ws_a31'));
    const late = await rollups.lateChanges('ws_a31', cycleStart.toISOString(), cycleStart.toISOString());
    expect(late.map((l) => [JSON.parse(l.eventKey)[0], l.delta])).toEqual([['usage-pipeline/repair', '-5']]);
    const cycleRow = (await rollups.query('ws_a31', 'cycle', cycleStart.toISOString(), cycleStart.toISOString())).find((r) => r.usageType === 'tokens');
    expect(cycleRow?.late).toBe('-5');
    expect((await audit('ws_a31')).differences).toBe(0);
  }, 240_000);
});

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = ['bin/usage-pipeline.js', ...args, '--endpoint', stack.ready.dynamodb.endpoint, '--config', CONFIG, '--now', stack.clock.now().toISOString()];
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { env: { ...process.env, NODE_OPTIONS: '' }, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
