import { type Config, configSchema } from '../../../functions/core/config';
import { ingestMessages, type QueueMessage } from '../../../functions/core/metering/ingest';
import type { LedgerEntry } from '../../../functions/core/metering/rollups';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryLedger, InMemoryQuarantine, InMemorySubjectDirectory } from '../../support/fakes';

const NOW = '2026-11-22T12:00:00.000Z';
const SENT_AT = '2026-11-22T11:59:58.000Z';
const DAY_SECONDS = 86_400;

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token', allowFractions: false },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1_000_000 }, credits: { monthlyLimit: 5_000 } } }],
  ingest: { maxFutureSeconds: 300, retentionDays: 400 },
});

const subject = (id: string, billingAnchorDay: number, timeZone = 'UTC'): Subject => ({ id, plan: 'pro', billingAnchorDay, timeZone, contacts: [] });
const SUBJECTS = [subject('ws_utc', 15), subject('ws_berlin', 15, 'Europe/Berlin'), subject('ws_berlin29', 29, 'Europe/Berlin'), subject('ws_anchor31', 31), subject('ws_tokyo', 1, 'Asia/Tokyo')];

interface CloudEvent {
  specversion: string;
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: Record<string, unknown>;
}

const event = (overrides: Partial<CloudEvent> = {}, data: Record<string, unknown> = {}): CloudEvent => ({
  specversion: '1.0',
  id: 'evt-1',
  source: 'app/chat',
  type: 'com.example.usage',
  subject: 'ws_utc',
  time: '2026-11-22T10:15:00Z',
  ...overrides,
  data: { usageType: 'tokens', quantity: 5, ...data },
});

const message = (messageId: string, body: unknown): QueueMessage => ({
  messageId,
  body: typeof body === 'string' ? body : JSON.stringify(body),
  sentAt: SENT_AT,
});

function setup(options: { failLedger?: (entry: LedgerEntry) => boolean; failQuarantineFor?: string } = {}) {
  const subjects = new InMemorySubjectDirectory(SUBJECTS);
  const ledger = new InMemoryLedger(options.failLedger);
  const quarantine = new InMemoryQuarantine((r) => r.messageId === options.failQuarantineFor);
  const deps = { config, subjects, ledger, quarantine, clock: new FixedClock(NOW) };
  return { deps, subjects, ledger, quarantine };
}

const epochSeconds = (iso: string) => Date.parse(iso) / 1000;

describe('ingestMessages', () => {
  test('writes a valid event to the ledger with its buckets and expiry', async () => {
    // Arrange: 00:30 local time in Berlin (UTC+1) on the anchor day is still the 14th in UTC.
    const { deps, ledger } = setup();
    const body = event({ subject: 'ws_berlin', time: '2026-11-15T00:30:00+01:00' }, { quantity: 5, userId: 'u-7', channel: 'api' });

    // Act
    const result = await ingestMessages([message('m1', body)], deps);

    // Assert
    expect(result).toEqual({ failedMessageIds: [], accepted: 1, duplicatesInBatch: 0, knownDuplicates: 0, quarantined: [] });
    expect([...ledger.items.values()]).toEqual([
      {
        source: 'app/chat',
        id: 'evt-1',
        type: 'com.example.usage',
        subject: 'ws_berlin',
        time: '2026-11-14T23:30:00.000Z',
        usageType: 'tokens',
        quantity: '5',
        dimensions: { userId: 'u-7', channel: 'api' },
        hour: '2026-11-14T23',
        day: '2026-11-15',
        cycleStart: '2026-11-14T23:00:00.000Z',
        sentAt: SENT_AT,
        expiresAt: epochSeconds('2026-11-14T23:30:00Z') + 400 * DAY_SECONDS,
      },
    ]);
  });

  test.each([
    // [subject, event time, hour (UTC), day (local), cycle start]
    ['ws_utc', '2026-11-15T00:00:00Z', '2026-11-15T00', '2026-11-15', '2026-11-15T00:00:00.000Z'],
    ['ws_utc', '2026-11-14T23:59:59.999Z', '2026-11-14T23', '2026-11-14', '2026-10-15T00:00:00.000Z'],
    ['ws_anchor31', '2026-02-27T10:00:00Z', '2026-02-27T10', '2026-02-27', '2026-01-31T00:00:00.000Z'],
    ['ws_anchor31', '2026-03-10T08:15:00Z', '2026-03-10T08', '2026-03-10', '2026-02-28T00:00:00.000Z'],
    ['ws_anchor31', '2026-03-31T00:00:00Z', '2026-03-31T00', '2026-03-31', '2026-03-31T00:00:00.000Z'],
    ['ws_tokyo', '2026-10-31T15:00:00Z', '2026-10-31T15', '2026-11-01', '2026-10-31T15:00:00.000Z'],
    ['ws_tokyo', '2026-10-31T14:59:59.999Z', '2026-10-31T14', '2026-10-31', '2026-09-30T15:00:00.000Z'],
    // Berlin springs forward on 2026-03-29 at 01:00 UTC; that day still starts at 23:00 UTC the day before (CET).
    ['ws_berlin29', '2026-03-29T01:30:00Z', '2026-03-29T01', '2026-03-29', '2026-03-28T23:00:00.000Z'],
    ['ws_berlin', '2026-07-15T00:30:00+02:00', '2026-07-14T22', '2026-07-15', '2026-07-14T22:00:00.000Z'],
  ])('%s at %s: hour %s, day %s, cycle from %s', async (subjectId, time, hour, day, cycleStart) => {
    // Arrange
    const { deps, ledger } = setup();

    // Act
    await ingestMessages([message('m1', event({ subject: subjectId, time }))], deps);

    // Assert
    const entry = [...ledger.items.values()][0];
    expect(entry).toMatchObject({ subject: subjectId, hour, day, cycleStart, expiresAt: Math.floor(epochSeconds(time)) + 400 * DAY_SECONDS });
  });

  test('a malformed message does not block the rest of the batch', async () => {
    // Arrange
    const { deps, ledger, quarantine } = setup();
    const badQuantity = event({ id: 'evt-bad' }, { quantity: -3 });
    const messages = [message('m1', '{"specversion": "1.0", '), message('m2', event({ id: 'evt-2' })), message('m3', [event({ id: 'evt-3' }), badQuantity, event({ id: 'evt-4' })])];

    // Act
    const result = await ingestMessages(messages, deps);

    // Assert
    expect(result.failedMessageIds).toEqual([]);
    expect(result.accepted).toBe(3);
    expect([...ledger.items.values()].map((e) => e.id).sort()).toEqual(['evt-2', 'evt-3', 'evt-4']);
    expect(quarantine.records).toEqual([
      expect.objectContaining({ messageId: 'm1', index: 0, reason: 'not_json', body: '{"specversion": "1.0", ', sentAt: SENT_AT, receivedAt: NOW }),
      expect.objectContaining({ messageId: 'm3', index: 1, reason: 'invalid_quantity', subject: 'ws_utc', body: JSON.stringify(badQuantity) }),
    ]);
    expect(quarantine.records[0]).not.toHaveProperty('subject');
    expect(result.quarantined).toEqual(quarantine.records);
  });

  test('an event for an unknown subject is quarantined with that subject', async () => {
    // Arrange
    const { deps, ledger, quarantine } = setup();
    const ghost = event({ id: 'evt-ghost', subject: 'ws_ghost' });

    // Act
    const result = await ingestMessages([message('m1', [event({ id: 'evt-ok' }), ghost])], deps);

    // Assert
    expect(quarantine.records).toEqual([
      {
        reason: 'unknown_subject',
        detail: expect.stringContaining('ws_ghost'),
        messageId: 'm1',
        index: 1,
        subject: 'ws_ghost',
        sentAt: SENT_AT,
        receivedAt: NOW,
        body: JSON.stringify(ghost),
      },
    ]);
    expect([...ledger.items.values()].map((e) => e.id)).toEqual(['evt-ok']);
    expect(result).toMatchObject({ failedMessageIds: [], accepted: 1 });
  });

  test('duplicates within a batch collapse to one ledger entry and are counted', async () => {
    // Arrange: the same event twice in one message and once more in another
    const { deps, ledger } = setup();
    const same = event({ id: 'evt-dup' });

    // Act
    const result = await ingestMessages([message('m1', [same, same]), message('m2', same)], deps);

    // Assert
    expect(ledger.calls).toHaveLength(1);
    expect(ledger.calls[0]).toHaveLength(1);
    expect(ledger.items.size).toBe(1);
    expect(result).toMatchObject({ failedMessageIds: [], accepted: 1, duplicatesInBatch: 2 });
  });

  test('the same id from two sources is two events', async () => {
    // Arrange
    const { deps, ledger } = setup();

    // Act
    const result = await ingestMessages([message('m1', [event({ source: 'app/a' }), event({ source: 'app/b' })])], deps);

    // Assert
    expect(ledger.items.size).toBe(2);
    expect(result).toMatchObject({ accepted: 2, duplicatesInBatch: 0 });
  });

  test('a later message with the same identity and a different payload wins', async () => {
    // Arrange
    const { deps, ledger } = setup();
    const original = event({ id: 'evt-9', time: '2026-11-22T10:15:00Z' }, { quantity: 5 });
    const correction = event({ id: 'evt-9', time: '2026-11-22T11:45:00Z' }, { quantity: 7 });

    // Act
    const result = await ingestMessages([message('m1', original), message('m2', correction)], deps);

    // Assert
    expect([...ledger.items.values()]).toEqual([expect.objectContaining({ id: 'evt-9', quantity: '7', time: '2026-11-22T11:45:00.000Z', hour: '2026-11-22T11' })]);
    expect(result).toMatchObject({ accepted: 1, duplicatesInBatch: 1 });
  });

  test('within a batch, the message sent last wins even when it comes first', async () => {
    // Arrange: the correction was sent a second after the original but is listed before it.
    const { deps, ledger } = setup();
    const original = { ...message('m1', event({ id: 'evt-10' }, { quantity: 5 })), sentAt: '2026-11-22T11:00:00.000Z' };
    const correction = { ...message('m2', event({ id: 'evt-10' }, { quantity: 8 })), sentAt: '2026-11-22T11:00:01.000Z' };

    // Act
    const result = await ingestMessages([correction, original], deps);

    // Assert
    expect([...ledger.items.values()]).toEqual([expect.objectContaining({ id: 'evt-10', quantity: '8', sentAt: '2026-11-22T11:00:01.000Z' })]);
    expect(result).toMatchObject({ accepted: 1, duplicatesInBatch: 1, failedMessageIds: [] });
  });

  test('a failed ledger put reports exactly the messages that carried that event', async () => {
    // Arrange: evt-bad is carried by m1 and m3; the ledger keeps failing it.
    const { deps, ledger } = setup({ failLedger: (entry) => entry.id === 'evt-bad' });
    const messages = [
      message('m1', event({ id: 'evt-bad' })),
      message('m2', event({ id: 'evt-good' })),
      message('m3', [event({ id: 'evt-other' }), event({ id: 'evt-bad' })]),
      message('m4', 'not json'),
    ];

    // Act
    const result = await ingestMessages(messages, deps);

    // Assert
    expect(result.failedMessageIds).toEqual(['m1', 'm3']);
    expect(result.accepted).toBe(2);
    expect([...ledger.items.values()].map((e) => e.id).sort()).toEqual(['evt-good', 'evt-other']);
  });

  test('a failed quarantine put reports that message for redelivery', async () => {
    // Arrange
    const { deps, ledger } = setup({ failQuarantineFor: 'm2' });

    // Act
    const result = await ingestMessages([message('m1', event({ id: 'evt-1' })), message('m2', event({ id: 'evt-2' }, { quantity: 0 })), message('m3', '[]')], deps);

    // Assert
    expect(result.failedMessageIds).toEqual(['m2']);
    expect(ledger.items.size).toBe(1);
  });

  test('looks up each subject once per batch', async () => {
    // Arrange
    const { deps, subjects } = setup();

    // Act
    await ingestMessages([message('m1', [event({ id: 'a' }), event({ id: 'b' })]), message('m2', event({ id: 'c', subject: 'ws_tokyo' }))], deps);

    // Assert
    expect(subjects.requests).toEqual([['ws_utc', 'ws_tokyo']]);
  });
});
