import { describe, expect, test } from '@jest/globals';
import { type Config, configSchema } from '../../../functions/core/config';
import type { DeadLetter, DeadLetterQueue, OriginalMessage, QuarantineRecord, QuarantineReplaySource, ReplayFilter, ReplayQueue } from '../../../functions/core/metering/metering-ports';
import { type ReplayItem, replayDeadLetters, replayQuarantine } from '../../../functions/core/metering/replay';
import type { Subject } from '../../../functions/core/ports';
import { usageEvent } from '../../../testkit/events';
import { FixedClock, InMemorySubjectDirectory } from '../../support/fakes';

/**
 * Replay from fakes, every expectation worked out by hand: which entries are sent (with the time they were
 * first sent), which stay where they were, and what a second run, a dry run and each filter do.
 */

const NOW = '2026-11-22T12:00:00.000Z';

/** The configuration after the fix: `videos` was not configured when its event was quarantined. */
const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'videos', unit: 'video' },
  ],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1000 } } }],
  ingest: { maxFutureSeconds: 300, retentionDays: 400 },
});

const subject = (id: string): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] });
/** ws_new was created after its events were quarantined; ws_gone never existed. */
const subjects = () => new InMemorySubjectDirectory([subject('ws_utc'), subject('ws_new'), subject('ws_berlin')]);

const event = (id: string, subjectId: string, time: string, usageType = 'tokens', quantity = 5) => JSON.stringify(usageEvent({ id, source: '//test', subject: subjectId, time, usageType, quantity }));

const entry = (messageId: string, reason: QuarantineRecord['reason'], body: string, subjectId?: string, extra: Partial<QuarantineRecord> = {}): QuarantineRecord => ({
  reason,
  detail: 'as quarantined',
  messageId,
  index: 0,
  ...(subjectId ? { subject: subjectId } : {}),
  sentAt: '2026-11-21T08:00:00.000Z',
  receivedAt: '2026-11-21T08:00:01.000Z',
  body,
  ...extra,
});

/**
 * a: unknown_subject, ws_new exists now → replayed       b: unknown_usage_type, videos configured now → replayed
 * c: too_old, still (2025-01-01 is > 400 days back) → skipped    d: not_json → skipped
 * e: unknown_subject, ws_gone still missing → skipped     f: future_time, 11:00 is past now → replayed
 * g: body cut short → skipped                              h: second event of message a's neighbour, ws_utc tokens → replayed
 */
function quarantined(): QuarantineRecord[] {
  return [
    entry('a', 'unknown_subject', event('e-a', 'ws_new', '2026-11-22T09:00:00Z'), 'ws_new', { sentAt: '2026-11-22T09:00:01.000Z' }),
    entry('b', 'unknown_usage_type', event('e-b', 'ws_utc', '2026-11-22T09:10:00Z', 'videos', 2), 'ws_utc', { sentAt: '2026-11-22T09:10:01.000Z' }),
    entry('c', 'too_old', event('e-c', 'ws_utc', '2025-01-01T00:00:00Z'), 'ws_utc'),
    entry('d', 'not_json', '{"oops'),
    entry('e', 'unknown_subject', event('e-e', 'ws_gone', '2026-11-22T09:00:00Z'), 'ws_gone'),
    entry('f', 'future_time', event('e-f', 'ws_berlin', '2026-11-22T11:00:00Z'), 'ws_berlin', { sentAt: '2026-11-22T10:00:00.000Z' }),
    entry('g', 'unknown_subject', event('e-g', 'ws_new', '2026-11-22T09:00:00Z').slice(0, 40), 'ws_new', { bodyTruncated: true }),
    entry('h', 'unknown_subject', event('e-h', 'ws_new', '2026-11-22T09:30:00Z', 'tokens', 7), 'ws_new', { index: 1, sentAt: '2026-11-22T09:30:01.000Z' }),
  ];
}

/** The quarantine table: pages of `pageSize`, removal that can be made to fail for chosen entries. */
class FakeQuarantine implements QuarantineReplaySource {
  failRemoval = new Set<string>();
  constructor(
    public records: QuarantineRecord[],
    private readonly pageSize = 3,
  ) {}

  async count(filter: ReplayFilter): Promise<number> {
    return this.select(filter).length;
  }

  async *entries(filter: ReplayFilter): AsyncIterable<QuarantineRecord[]> {
    const selected = this.select(filter);
    for (let i = 0; i < selected.length; i += this.pageSize) yield selected.slice(i, i + this.pageSize);
  }

  async remove(records: readonly QuarantineRecord[]): Promise<{ failed: QuarantineRecord[] }> {
    const failed = records.filter((r) => this.failRemoval.has(r.messageId));
    this.records = this.records.filter((r) => !records.includes(r) || failed.includes(r));
    return { failed };
  }

  ids(): string[] {
    return this.records.map((r) => r.messageId);
  }

  private select(filter: ReplayFilter): QuarantineRecord[] {
    return this.records.filter((r) => (filter.subject === undefined || r.subject === filter.subject) && (filter.reason === undefined || r.reason === filter.reason));
  }
}

/** The usage queue: what it accepted, in order; `refuse` makes it refuse bodies containing a marker. */
class FakeQueue implements ReplayQueue {
  readonly sent: OriginalMessage[] = [];
  refuse?: string;

  async resend<M extends OriginalMessage>(messages: readonly M[]): Promise<{ failed: M[] }> {
    const failed = messages.filter((m) => this.refuse !== undefined && m.body.includes(this.refuse));
    this.sent.push(...messages.filter((m) => !failed.includes(m)).map(({ body, sentAt }) => ({ body, sentAt })));
    return { failed };
  }
}

function quarantineDeps(records = quarantined()) {
  const quarantine = new FakeQuarantine(records);
  const queue = new FakeQueue();
  return { quarantine, queue, config, subjects: subjects(), clock: new FixedClock(NOW) };
}

const byOutcome = (items: readonly ReplayItem[], outcome: ReplayItem['outcome']) => items.filter((i) => i.outcome === outcome).map((i) => i.id);

describe('replay from the quarantine', () => {
  test('sends exactly the entries that pass validation now, with their first send time, and removes them', async () => {
    // Arrange
    const deps = quarantineDeps();
    const original = quarantined();
    const body = (id: string) => original.find((r) => r.messageId === id)?.body;

    // Act
    const result = await replayQuarantine({}, { dryRun: false }, deps);

    // Assert
    expect(deps.queue.sent).toEqual([
      { body: body('a'), sentAt: '2026-11-22T09:00:01.000Z' },
      { body: body('b'), sentAt: '2026-11-22T09:10:01.000Z' },
      { body: body('f'), sentAt: '2026-11-22T10:00:00.000Z' },
      { body: body('h'), sentAt: '2026-11-22T09:30:01.000Z' },
    ]);
    expect(deps.quarantine.ids()).toEqual(['c', 'd', 'e', 'g']);
    expect({ replayed: result.replayed, skipped: result.skipped, failed: result.failed, wouldReplay: result.wouldReplay }).toEqual({ replayed: 4, skipped: 4, failed: 0, wouldReplay: 0 });
    expect(byOutcome(result.items, 'replayed').sort()).toEqual(['a#0', 'b#0', 'f#0', 'h#1']);
    // Each skipped entry says why it fails now
    const skipped = Object.fromEntries(result.items.filter((i) => i.outcome === 'skipped').map((i) => [i.id, i.detail?.split(':')[0]]));
    expect(skipped).toEqual({ 'c#0': 'too_old', 'd#0': 'not_json', 'e#0': 'unknown_subject', 'g#0': 'unknown_subject' });
    expect(result.items.find((i) => i.id === 'g#0')?.detail).toContain('cut short');
    expect(result.items.find((i) => i.id === 'a#0')).toEqual({ id: 'a#0', outcome: 'replayed', subject: 'ws_new', reason: 'unknown_subject', event: { source: '//test', id: 'e-a' } });
  });

  test('a second replay sends nothing and changes nothing', async () => {
    // Arrange
    const deps = quarantineDeps();
    await replayQuarantine({}, { dryRun: false }, deps);
    const sentBefore = deps.queue.sent.length;

    // Act
    const again = await replayQuarantine({}, { dryRun: false }, deps);

    // Assert
    expect(deps.queue.sent.length).toBe(sentBefore);
    expect(deps.quarantine.ids()).toEqual(['c', 'd', 'e', 'g']);
    expect({ replayed: again.replayed, skipped: again.skipped, failed: again.failed }).toEqual({ replayed: 0, skipped: 4, failed: 0 });
  });

  test('a dry run lists what would be sent and changes nothing', async () => {
    // Arrange
    const deps = quarantineDeps();

    // Act
    const result = await replayQuarantine({}, { dryRun: true }, deps);

    // Assert
    expect(deps.queue.sent).toEqual([]);
    expect(deps.quarantine.ids()).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
    expect(byOutcome(result.items, 'would-replay').sort()).toEqual(['a#0', 'b#0', 'f#0', 'h#1']);
    expect({ replayed: result.replayed, wouldReplay: result.wouldReplay, skipped: result.skipped }).toEqual({ replayed: 0, wouldReplay: 4, skipped: 4 });
  });

  test.each([
    [{ reason: 'unknown_subject' as const }, ['a#0', 'h#1'], ['e#0', 'g#0'], ['b', 'c', 'd', 'e', 'f', 'g']],
    [{ subject: 'ws_utc' }, ['b#0'], ['c#0'], ['a', 'c', 'd', 'e', 'f', 'g', 'h']],
    [{ subject: 'ws_new', reason: 'unknown_subject' as const }, ['a#0', 'h#1'], ['g#0'], ['b', 'c', 'd', 'e', 'f', 'g']],
    [{ reason: 'invalid_quantity' as const }, [], [], ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']],
  ])('the filter %j selects exactly its entries', async (filter, replayed, skipped, left) => {
    // Arrange
    const deps = quarantineDeps();

    // Act
    const result = await replayQuarantine(filter, { dryRun: false }, deps);

    // Assert
    expect(byOutcome(result.items, 'replayed').sort()).toEqual(replayed);
    expect(byOutcome(result.items, 'skipped').sort()).toEqual(skipped);
    expect(result.items).toHaveLength(replayed.length + skipped.length);
    expect(deps.quarantine.ids()).toEqual(left);
  });

  test('an entry the queue refuses stays and is counted failed; the next replay sends it', async () => {
    // Arrange
    const deps = quarantineDeps();
    deps.queue.refuse = '"e-b"';

    // Act
    const first = await replayQuarantine({}, { dryRun: false }, deps);
    deps.queue.refuse = undefined;
    const second = await replayQuarantine({}, { dryRun: false }, deps);

    // Assert
    expect({ replayed: first.replayed, failed: first.failed }).toEqual({ replayed: 3, failed: 1 });
    expect(byOutcome(first.items, 'failed')).toEqual(['b#0']);
    expect({ replayed: second.replayed, failed: second.failed }).toEqual({ replayed: 1, failed: 0 });
    expect(deps.queue.sent.filter((m) => m.body.includes('"e-b"'))).toHaveLength(1);
    expect(deps.quarantine.ids()).toEqual(['c', 'd', 'e', 'g']);
  });

  test('an entry sent but not removed is sent again, unchanged, by the next replay', async () => {
    // Arrange
    const deps = quarantineDeps();
    deps.quarantine.failRemoval.add('a');

    // Act
    const first = await replayQuarantine({}, { dryRun: false }, deps);
    deps.quarantine.failRemoval.clear();
    const second = await replayQuarantine({}, { dryRun: false }, deps);

    // Assert: the same body and send time twice, which the ledger stores once (same identity, same content)
    expect(first.items.find((i) => i.id === 'a#0')).toMatchObject({ outcome: 'replayed', detail: expect.stringContaining('not removed') });
    const sentA = deps.queue.sent.filter((m) => m.body.includes('"e-a"'));
    expect(sentA).toHaveLength(2);
    expect(sentA[0]).toEqual(sentA[1]);
    expect(second.replayed).toBe(1);
    expect(deps.quarantine.ids()).toEqual(['c', 'd', 'e', 'g']);
  });

  test('progress counts entries page by page against the count taken at the start', async () => {
    // Arrange
    const deps = quarantineDeps();
    const calls: [number, number][] = [];

    // Act
    await replayQuarantine({}, { dryRun: true, onProgress: (done, total) => calls.push([done, total]) }, deps);

    // Assert: 8 entries in pages of 3
    expect(calls).toEqual([
      [3, 8],
      [6, 8],
      [8, 8],
    ]);
  });

  test('validation uses the clock: an event still too far ahead stays quarantined', async () => {
    // Arrange: 12:06 is 6 minutes after NOW, over the 300 s allowed
    const deps = quarantineDeps([entry('z', 'future_time', event('e-z', 'ws_utc', '2026-11-22T12:06:00Z'), 'ws_utc')]);

    // Act
    const result = await replayQuarantine({}, { dryRun: false }, deps);

    // Assert
    expect(result.items).toEqual([
      { id: 'z#0', outcome: 'skipped', subject: 'ws_utc', reason: 'future_time', event: { source: '//test', id: 'e-z' }, detail: expect.stringMatching(/^future_time: /) },
    ]);
    expect(deps.queue.sent).toEqual([]);
  });
});

/** The dead-letter queue: receives hide messages until deleted or released; receipts change per receive. */
class FakeDlq implements DeadLetterQueue {
  private receipts = 0;
  readonly messages: { message: Omit<DeadLetter, 'receipt'>; hidden: boolean; receipt?: string }[];
  failDeletion = new Set<string>();
  /** Message ids that come back once more after being received (their hiding time ran out). */
  reappear = new Set<string>();
  released: string[] = [];

  constructor(
    messages: Omit<DeadLetter, 'receipt'>[],
    private readonly batchSize = 2,
  ) {
    this.messages = messages.map((message) => ({ message, hidden: false }));
  }

  async approximateCount(): Promise<number> {
    return this.messages.filter((m) => !m.hidden).length;
  }

  async receive(): Promise<DeadLetter[]> {
    const visible = this.messages.filter((m) => !m.hidden).slice(0, this.batchSize);
    return visible.map((m) => {
      m.receipt = `r${++this.receipts}`;
      m.hidden = !this.reappear.delete(m.message.messageId);
      return { ...m.message, receipt: m.receipt };
    });
  }

  async delete(messages: readonly DeadLetter[]): Promise<{ failed: DeadLetter[] }> {
    const failed = messages.filter((m) => this.failDeletion.has(m.messageId));
    for (const m of messages) {
      if (failed.includes(m)) continue;
      const index = this.messages.findIndex((s) => s.receipt === m.receipt);
      if (index >= 0) this.messages.splice(index, 1);
    }
    return { failed };
  }

  async release(messages: readonly DeadLetter[]): Promise<void> {
    for (const m of messages) {
      const stored = this.messages.find((s) => s.receipt === m.receipt);
      if (stored) stored.hidden = false;
      this.released.push(m.messageId);
    }
  }

  ids(): string[] {
    return this.messages.map((m) => m.message.messageId);
  }

  allVisible(): boolean {
    return this.messages.every((m) => !m.hidden);
  }
}

const DEAD = [
  { messageId: 'm1', body: event('d-1', 'ws_a', '2026-11-22T09:00:00Z'), sentAt: '2026-11-22T09:00:00.100Z' },
  { messageId: 'm2', body: event('d-2', 'ws_b', '2026-11-22T09:00:00Z'), sentAt: '2026-11-22T09:00:00.200Z' },
  { messageId: 'm3', body: `[${event('d-3', 'ws_a', '2026-11-22T09:00:00Z')},${event('d-4', 'ws_b', '2026-11-22T09:00:00Z')}]`, sentAt: '2026-11-22T09:00:00.300Z' },
  { messageId: 'm4', body: 'not json at all', sentAt: '2026-11-22T09:00:00.400Z' },
  { messageId: 'm5', body: event('d-5', 'ws_c', '2026-11-22T09:00:00Z'), sentAt: '2026-11-22T09:00:00.500Z' },
];

function dlqDeps() {
  return { dlq: new FakeDlq(DEAD), queue: new FakeQueue() };
}

describe('replay from the dead-letter queue', () => {
  test('sends every message whole with its first send time, deleting each after its send', async () => {
    // Arrange
    const deps = dlqDeps();

    // Act
    const result = await replayDeadLetters({}, { dryRun: false }, deps);

    // Assert
    expect(deps.queue.sent).toEqual(DEAD.map(({ body, sentAt }) => ({ body, sentAt })));
    expect(deps.dlq.ids()).toEqual([]);
    expect({ replayed: result.replayed, skipped: result.skipped, failed: result.failed }).toEqual({ replayed: 5, skipped: 0, failed: 0 });
    expect(result.items.find((i) => i.id === 'm3')).toEqual({ id: 'm3', outcome: 'replayed', subject: 'ws_a,ws_b' });
  });

  test('--subject takes the messages with an event of that subject; the others stay, visible again', async () => {
    // Arrange
    const deps = dlqDeps();

    // Act
    const result = await replayDeadLetters({ subject: 'ws_a' }, { dryRun: false }, deps);

    // Assert: m1 and m3 (its first event is ws_a's); m2, m4 (not JSON) and m5 stay
    expect(deps.queue.sent.map((m) => m.sentAt)).toEqual(['2026-11-22T09:00:00.100Z', '2026-11-22T09:00:00.300Z']);
    expect(byOutcome(result.items, 'replayed')).toEqual(['m1', 'm3']);
    expect(result.items).toHaveLength(2);
    expect(deps.dlq.ids()).toEqual(['m2', 'm4', 'm5']);
    expect(deps.dlq.allVisible()).toBe(true);
  });

  test('a dry run lists every message and leaves the queue as it was, every message visible', async () => {
    // Arrange
    const deps = dlqDeps();

    // Act
    const result = await replayDeadLetters({}, { dryRun: true }, deps);

    // Assert
    expect(deps.queue.sent).toEqual([]);
    expect(deps.dlq.ids()).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(deps.dlq.allVisible()).toBe(true);
    expect(byOutcome(result.items, 'would-replay')).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(result.wouldReplay).toBe(5);
  });

  test('a message the queue refuses stays in the DLQ, visible, counted failed', async () => {
    // Arrange
    const deps = dlqDeps();
    deps.queue.refuse = '"d-2"';

    // Act
    const result = await replayDeadLetters({}, { dryRun: false }, deps);

    // Assert
    expect({ replayed: result.replayed, failed: result.failed }).toEqual({ replayed: 4, failed: 1 });
    expect(byOutcome(result.items, 'failed')).toEqual(['m2']);
    expect(deps.dlq.ids()).toEqual(['m2']);
    expect(deps.dlq.allVisible()).toBe(true);
  });

  test('a message sent but not deleted is reported, and left for a later replay', async () => {
    // Arrange
    const deps = dlqDeps();
    deps.dlq.failDeletion.add('m1');

    // Act
    const result = await replayDeadLetters({}, { dryRun: false }, deps);

    // Assert
    expect(result.items.find((i) => i.id === 'm1')).toMatchObject({ outcome: 'replayed', detail: expect.stringContaining('not deleted') });
    expect(deps.dlq.ids()).toEqual(['m1']);
  });

  test('a message received again within the run (its hiding time ran out) is handled once', async () => {
    // Arrange: m2 is not selected, and comes back once after its first receive
    const deps = dlqDeps();
    deps.dlq.reappear.add('m2');

    // Act
    const result = await replayDeadLetters({ subject: 'ws_a' }, { dryRun: false }, deps);

    // Assert
    expect(result.items.map((i) => i.id)).toEqual(['m1', 'm3']);
    expect(deps.dlq.ids()).toEqual(['m2', 'm4', 'm5']);
    expect(deps.dlq.allVisible()).toBe(true);
  });

  test('a failure of the queue mid-run still makes every received message visible again', async () => {
    // Arrange
    const deps = dlqDeps();
    deps.queue.resend = async () => {
      throw new Error('queue unreachable');
    };

    // Act
    const run = replayDeadLetters({}, { dryRun: false }, deps);

    // Assert
    await expect(run).rejects.toThrow('queue unreachable');
    expect(deps.dlq.ids()).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(deps.dlq.allVisible()).toBe(true);
  });
});
