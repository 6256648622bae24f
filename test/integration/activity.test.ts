import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { LocalStack } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { ADMIN_KEY, StackClient, startLocalWithConfig } from '../support/local-stack';

/**
 * Recent activity end to end: events sent over SQS (a duplicate among them, one priced in credits, one corrected
 * later) reach GET /v1/workspaces/{id}/activity through ingest, the ledger stream and the aggregate on the local
 * stack. Every expected event is worked out here from what the test sent, never read from the code.
 */

const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

/** Noon UTC of the suite's date; every event is sent within the hour before it. */
const START = (() => {
  const day = suiteClockStart();
  return Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 12);
})();

/** The rate card's price of generating an image, in credits. */
const GENERATE_CREDITS = 2;
const OTHER_KEY = 'other-workspace-key-000000000000';

const CONFIG = {
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'images', unit: 'image' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'pro', quotas: { tokens: { monthlyLimit: 1_000_000, overage: 'allow' }, credits: { monthlyLimit: 500, overage: 'allow' } } }],
  subjects: ['ws_feed', 'ws_burst', 'ws_wide', 'ws_other'].map((id) => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC' })),
  credits: { usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: { feature: 'generate' }, credits: GENERATE_CREDITS }] }] } },
  apiKeys: [
    { key: ADMIN_KEY, scope: 'admin', name: 'tests' },
    { key: OTHER_KEY, scope: 'workspace', subject: 'ws_other' },
  ],
};

interface Sent {
  id: string;
  source?: string;
  subject: string;
  time: string;
  usageType: string;
  quantity: number;
  feature?: string;
}
interface Shown {
  time: string;
  usageType: string;
  feature?: string;
  quantity: number;
  credits?: number;
}

let stack: LocalStack;
let client: StackClient;

const body = (e: Sent) =>
  JSON.stringify({
    specversion: '1.0',
    id: e.id,
    source: e.source ?? '//activity-test',
    type: 'com.example.usage',
    subject: e.subject,
    time: e.time,
    data: { usageType: e.usageType, quantity: e.quantity, ...(e.feature ? { feature: e.feature } : {}) },
  });

/** What the route shows of a sent event: its credits where the rate card prices it. */
const shown = (e: Sent): Shown => ({
  time: e.time,
  usageType: e.usageType,
  ...(e.feature ? { feature: e.feature } : {}),
  quantity: e.quantity,
  ...(e.usageType === 'images' && e.feature === 'generate' ? { credits: e.quantity * GENERATE_CREDITS } : {}),
});
/** Newest first: by time, then by the identity the route orders ties by (the greater first). */
const newestFirst = (events: readonly Sent[]) => [...events].sort((a, b) => (a.time === b.time ? (a.id < b.id ? 1 : -1) : a.time < b.time ? 1 : -1));

async function activity(subject: string, query = '', key = ADMIN_KEY): Promise<{ status: number; body: { subject?: string; events?: Shown[]; error?: { code: string } } }> {
  const { status, body } = await client.get(`/v1/workspaces/${subject}/activity${query}`, key);
  return { status, body: body as { subject?: string; events?: Shown[]; error?: { code: string } } };
}

beforeAll(async () => {
  stack = await startLocalWithConfig(CONFIG, new Date(START));
  client = new StackClient(stack);
}, 180_000);

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

describe('GET /v1/workspaces/{id}/activity', () => {
  const chat: Sent = { id: 'chat-1', subject: 'ws_feed', time: iso(START - 50 * MINUTE), usageType: 'tokens', quantity: 500, feature: 'chat' };
  const generate: Sent = { id: 'generate-1', subject: 'ws_feed', time: iso(START - 40 * MINUTE), usageType: 'images', quantity: 4, feature: 'generate' };
  const summarize: Sent = { id: 'summarize-1', subject: 'ws_feed', time: iso(START - 30 * MINUTE), usageType: 'tokens', quantity: 70 };
  const latest: Sent = { id: 'latest-1', subject: 'ws_feed', time: iso(START - 20 * MINUTE), usageType: 'tokens', quantity: 3, feature: 'chat' };

  test('shows each event once, newest first, with its feature and the credits it was priced at; a correction replaces what it corrects', async () => {
    // Act: four events and a duplicate of the first; then a correction of the second oldest, which is not the
    // newest of its batch (the summarize run used 90 tokens, not 70)
    await client.send([chat, generate, summarize, latest, chat].map(body));
    await stack.settle();
    const before = await activity('ws_feed');
    const corrected: Sent = { ...summarize, quantity: 90 };
    await client.send([body(corrected)]);
    await stack.settle();
    const after = await activity('ws_feed');
    const firstTwo = await activity('ws_feed', '?limit=2');

    // Assert
    expect(before).toEqual({ status: 200, body: { subject: 'ws_feed', events: newestFirst([chat, generate, summarize, latest]).map(shown) } });
    expect(after).toEqual({ status: 200, body: { subject: 'ws_feed', events: newestFirst([chat, generate, corrected, latest]).map(shown) } });
    expect(after.body.events?.find((e) => e.usageType === 'images')).toEqual({ time: generate.time, usageType: 'images', feature: 'generate', quantity: 4, credits: 8 });
    expect(firstTwo.body.events).toEqual(newestFirst([chat, generate, corrected, latest]).slice(0, 2).map(shown));
  });

  test('of 25 events sent at once, the newest `limit` (up to the 20 a batch keeps) are exact, and every event shown was sent once', async () => {
    // Arrange: one event a minute, sent in shuffled order
    const burst: Sent[] = Array.from({ length: 25 }, (_, i) => ({
      id: `burst-${String(i).padStart(2, '0')}`,
      subject: 'ws_burst',
      time: iso(START - (30 - i) * MINUTE),
      usageType: 'tokens',
      quantity: i + 1,
    }));
    const order = [3, 17, 0, 24, 9, 12, 21, 5, 14, 1, 19, 7, 23, 10, 2, 16, 8, 22, 4, 13, 18, 6, 11, 20, 15];

    // Act
    await client.send(order.map((i) => body(burst[i] as Sent)));
    await stack.settle();
    const all = await activity('ws_burst', '?limit=100');
    const five = await activity('ws_burst', '?limit=5');
    const twenty = await activity('ws_burst', '?limit=20');

    // Assert: a batch keeps its newest 20 of a workspace, so the newest 20 overall are always there; the oldest 5
    // are shown only when they landed in another batch than the 20 newer events
    const expected = newestFirst(burst).map(shown);
    expect(five.body.events).toEqual(expected.slice(0, 5));
    expect(twenty.body.events).toEqual(expected.slice(0, 20));
    const events = all.body.events ?? [];
    expect(events.length).toBeGreaterThanOrEqual(20);
    expect(events.slice(0, 20)).toEqual(expected.slice(0, 20));
    expect(expected).toEqual(expect.arrayContaining(events));
    expect(new Set(events.map((e) => e.time)).size).toBe(events.length);
  });

  test('at the field limits, 21 events of one batch fit its item: the newest 20 are shown byte for byte', async () => {
    // Arrange: every field an item keeps at its limit (FIELD_BYTE_LIMITS: source 1,024 bytes, id 256, feature 256),
    // in two- and three-byte characters, and quantities of 16 digits; one event more than an item keeps
    const wide: Sent[] = Array.from({ length: 21 }, (_, i) => ({
      source: `//${'ş'.repeat(511)}`,
      id: `${String(i).padStart(2, '0')}${'€'.repeat(84)}`,
      subject: 'ws_wide',
      time: iso(START - (30 - i) * MINUTE),
      usageType: 'tokens',
      quantity: 1_000_000_000_000_000 + i,
      feature: 'ü'.repeat(128),
    }));
    expect(wide.map((e) => [Buffer.byteLength(e.source ?? '', 'utf8'), Buffer.byteLength(e.id, 'utf8'), Buffer.byteLength(e.feature ?? '', 'utf8')])).toEqual(wide.map(() => [1024, 254, 256]));

    // Act
    await client.send(wide.map(body));
    await stack.settle();
    const all = await activity('ws_wide', '?limit=100');

    // Assert: the batch's item keeps the newest 20 (the oldest may show only if it landed in a batch of its own)
    const expected = newestFirst(wide).map(shown);
    expect(all.status).toBe(200);
    expect(all.body.events?.slice(0, 20)).toEqual(expected.slice(0, 20));
    expect(expected).toEqual(expect.arrayContaining(all.body.events ?? []));
  });

  test("another workspace's key is refused (403), an unknown workspace is 404, a workspace with no events has none, and the limit is 1 to 100", async () => {
    // Act
    const otherKey = await activity('ws_feed', '', OTHER_KEY);
    const own = await activity('ws_other', '', OTHER_KEY);
    const unknown = await activity('ws_nobody');
    const zero = await activity('ws_feed', '?limit=0');
    const tooMany = await activity('ws_feed', '?limit=101');
    const unknownParameter = await activity('ws_feed', '?since=2026-01-01');

    // Assert
    expect([otherKey.status, otherKey.body.error?.code]).toEqual([403, 'forbidden_workspace']);
    expect(own).toEqual({ status: 200, body: { subject: 'ws_other', events: [] } });
    expect([unknown.status, unknown.body.error?.code]).toEqual([404, 'unknown_workspace']);
    for (const refused of [zero, tooMany, unknownParameter]) expect([refused.status, refused.body.error?.code]).toEqual([400, 'invalid_parameter']);
  });
});
