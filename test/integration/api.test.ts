import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { DateTime } from 'luxon';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import { checkResponse, openApi, templateOf } from '../support/api-contract';
import { StackClient } from '../support/local-stack';

/**
 * The HTTP API as a client holding keys of every scope sees it, on the local stack: who may call what
 * (every endpoint of /openapi.json), and whether summary, series and rankings equal what the client
 * computes itself from the events it sent. Every response is checked against openapi.json.
 */

const KEYS = {
  admin: 'second-admin-key-00000000000',
  finance: ['finance-key-one-0000000000000', 'finance-key-two-0000000000000'],
  wsOne: ['ws-one-key-a-00000000000000000', 'ws-one-key-b-00000000000000000'],
  wsTwo: 'ws-two-key-000000000000000000',
  wsThree: 'ws-three-key-0000000000000000',
} as const;
const ZONES: Record<string, string> = { ws_one: 'UTC', ws_two: 'America/New_York', ws_three: 'UTC' };
const ANCHORS: Record<string, number> = { ws_one: 1, ws_two: 15, ws_three: 28 };
const LIMITS: Record<string, number> = { tokens: 60000, images: 5000 };
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

interface SentEvent {
  subject: string;
  time: string;
  usageType: string;
  quantity: number;
  channel?: string;
  userId?: string;
  groupId?: string;
}

let stack: LocalStack;
let client: StackClient;
const sent: SentEvent[] = [];
let sequence = 0;

type Body = Record<string, unknown>;

/** Calls the API and checks the response against openapi.json. */
async function call(method: string, path: string, options: { key?: string; authorization?: string; body?: unknown } = {}): Promise<{ status: number; body: Body }> {
  const authorization = options.authorization ?? (options.key ? `Bearer ${options.key}` : undefined);
  const response = await fetch(`${stack.ready.api}${path}`, {
    method,
    headers: authorization ? { authorization } : {},
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const body = (await response.json()) as Body;
  checkResponse(method, path, response.status, body);
  return { status: response.status, body };
}

/** Sends events through SQS and remembers them as the ground truth. */
async function send(events: SentEvent[]): Promise<void> {
  const bodies = events.map((e) =>
    JSON.stringify(
      usageEvent({
        id: `evt-${++sequence}`,
        source: '//tests/api',
        subject: e.subject,
        time: e.time,
        usageType: e.usageType,
        quantity: e.quantity,
        channel: e.channel,
        userId: e.userId,
        groupId: e.groupId,
      }),
    ),
  );
  // Every tenth message twice: duplicates must not count.
  await client.send([...bodies, ...bodies.filter((_, i) => i % 10 === 0)]);
  sent.push(...events);
  await stack.settle();
}

/** The billing cycle containing `instant`, computed with luxon (anchors 1, 15 and 28 never clamp). */
function cycleOf(subject: string, instant: Date): { start: number; end: number } {
  const local = DateTime.fromJSDate(instant, { zone: ZONES[subject] });
  const anchor = ANCHORS[subject] as number;
  const start = (local.day >= anchor ? local : local.minus({ months: 1 })).set({ day: anchor }).startOf('day');
  return { start: start.toMillis(), end: start.plus({ months: 1 }).toMillis() };
}

const within = (e: SentEvent, start: number, end: number) => Date.parse(e.time) >= start && Date.parse(e.time) < end;
const sum = (events: SentEvent[]) => events.reduce((total, e) => total + e.quantity, 0);
/** a ÷ b rounded half up to `decimals` places, in integers. */
const round = (a: number, b: number, decimals: number) => Math.floor((2 * a * 10 ** decimals + b) / (2 * b)) / 10 ** decimals;

function generate(subject: string, count: number, seed: number, now: number): SentEvent[] {
  let state = seed;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] as T;
  const cycleStart = cycleOf(subject, new Date(now)).start;
  return Array.from({ length: count }, (_, i) => {
    const usageType = next() < 0.7 ? 'tokens' : 'images';
    const channel = pick(['ui', 'api', 'cli', undefined]);
    const userId = pick(['ana', 'bo', 'cy', 'dee', 'eli', 'fay', 'gus', undefined]);
    const groupId = pick(['red', 'green', 'blue', undefined]);
    // Every third event in the current cycle, however young it is (its rankings need several users on any
    // date); the rest over the last 40 days. Never in the future.
    const time = i % 3 === 0 ? cycleStart + Math.floor(next() * Math.max(0, now - 60_000 - cycleStart)) : now - 60_000 - Math.floor(next() * 40 * DAY_MS);
    return {
      subject,
      time: new Date(time).toISOString(),
      usageType,
      quantity: usageType === 'tokens' ? 10 + Math.floor(next() * 200) : 1 + Math.floor(next() * 4),
      ...(channel ? { channel } : {}),
      ...(userId ? { userId } : {}),
      ...(groupId ? { groupId } : {}),
    };
  });
}

beforeAll(async () => {
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/api-config.json', onError: () => undefined });
  client = new StackClient(stack);
  const now = stack.clock.now().getTime();
  await send([...generate('ws_one', 500, 7, now), ...generate('ws_two', 300, 11, now)]);
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

describe('usage summary', () => {
  test.each(['ws_one', 'ws_two'])("%s: cycle progress and projection equal the client's own computation", async (subject) => {
    // Act
    const { status, body } = await call('GET', `/v1/workspaces/${subject}/usage/summary`, { key: KEYS.admin });

    // Assert
    expect(status).toBe(200);
    const asOf = new Date(body.asOf as string);
    expect(Math.abs(asOf.getTime() - stack.clock.now().getTime())).toBeLessThan(60_000);
    const cycle = cycleOf(subject, asOf);
    const zone = ZONES[subject] as string;
    const localDay = (ms: number) => DateTime.fromMillis(ms, { zone }).startOf('day');
    const daysElapsed = localDay(asOf.getTime()).diff(localDay(cycle.start), 'days').days + 1;
    const daysRemaining = localDay(cycle.end - 1).diff(localDay(asOf.getTime()), 'days').days;
    const expected = ['images', 'tokens'].map((usageType) => {
      const inCycle = sent.filter((e) => e.subject === subject && e.usageType === usageType && within(e, cycle.start, asOf.getTime() + 1));
      const used = sum(inCycle);
      const limit = LIMITS[usageType] as number;
      const available = Math.max(0, limit - used);
      return {
        usageType,
        cycleStart: new Date(cycle.start).toISOString(),
        cycleEnd: new Date(cycle.end).toISOString(),
        usedAmount: used,
        allowanceAmount: limit,
        limitAmount: limit,
        spilloverAmount: 0,
        bonusAmount: 0,
        availableAmount: available,
        requests: inCycle.length,
        usedPercent: round(used * 100, limit, 2),
        daysElapsed,
        daysRemaining,
        avgPerDay: round(used, daysElapsed, 2),
        runOutInDays: used === 0 ? null : round(available * daysElapsed, used, 2),
        projectedToRunOut: used > 0 && available * daysElapsed * DAY_MS < used * (cycle.end - asOf.getTime()),
      };
    });
    expect(body.summary).toEqual(expected);
  });
});

describe('usage series', () => {
  /** The bucket bounds the client expects for a window, from asOf alone. */
  function expectedBounds(window: string, asOf: Date, zone: string): { start: number; end: number }[] {
    if (window === '24h') {
      const end = Math.floor(asOf.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
      return Array.from({ length: 24 }, (_, i) => ({ start: end - (24 - i) * HOUR_MS, end: end - (23 - i) * HOUR_MS }));
    }
    const today = DateTime.fromJSDate(asOf, { zone }).startOf('day');
    const midnight = (daysBack: number) => today.minus({ days: daysBack }).toMillis();
    if (window === '7d') return Array.from({ length: 7 }, (_, i) => ({ start: midnight(6 - i), end: midnight(5 - i) }));
    // 30 days in weeks counted back from today; the oldest bucket has the 2 days left over.
    return [
      { start: midnight(29), end: midnight(27) },
      { start: midnight(27), end: midnight(20) },
      { start: midnight(20), end: midnight(13) },
      { start: midnight(13), end: midnight(6) },
      { start: midnight(6), end: midnight(-1) },
    ];
  }

  const cases = ['ws_one', 'ws_two'].flatMap((subject) => ['24h', '7d', '30d'].map((window) => ({ subject, window })));

  test.each(cases)("$subject $window: buckets and channel splits equal the client's own sums", async ({ subject, window }) => {
    // Act
    const { status, body } = await call('GET', `/v1/workspaces/${subject}/usage/series?window=${window}`, { key: subject === 'ws_one' ? KEYS.wsOne[1] : KEYS.wsTwo });

    // Assert
    expect(status).toBe(200);
    const bounds = expectedBounds(window, new Date(body.asOf as string), ZONES[subject] as string);
    const expected = ['tokens', 'images'].map((usageType) => ({
      usageType,
      buckets: bounds.map(({ start, end }) => {
        const inBucket = sent.filter((e) => e.subject === subject && e.usageType === usageType && within(e, start, end));
        const byChannel: Record<string, number> = {};
        for (const e of inBucket) if (e.channel) byChannel[e.channel] = (byChannel[e.channel] ?? 0) + e.quantity;
        // requests: the events in the bucket, each once however many copies of it were sent.
        return { start: new Date(start).toISOString(), end: new Date(end).toISOString(), total: sum(inBucket), requests: inBucket.length, byChannel };
      }),
    }));
    expect(body.series).toEqual(expected);
    // The window is not empty: the comparison above is not between two sets of zeros.
    expect(expected.flatMap((s) => s.buckets).some((b) => b.total > 0)).toBe(true);
  });
});

describe('usage buckets', () => {
  /** Where an event's bucket starts: its UTC hour, its local day (luxon), or its billing cycle. */
  function bucketStart(subject: string, time: string, granularity: 'hour' | 'day' | 'cycle'): string {
    if (granularity === 'hour') return `${new Date(time).toISOString().slice(0, 13)}:00:00.000Z`;
    if (granularity === 'day') return new Date(DateTime.fromISO(time, { zone: ZONES[subject] }).startOf('day').toMillis()).toISOString();
    return new Date(cycleOf(subject, new Date(time)).start).toISOString();
  }

  /** The client's buckets: use and events per (start, usage type) whose start is in [from, to), by start then usage type. */
  function expectedUsage(subject: string, granularity: 'hour' | 'day' | 'cycle', from: number, to: number, usageType?: string) {
    const buckets = new Map<string, { start: string; usageType: string; quantity: number; requests: number }>();
    for (const e of sent) {
      if (e.subject !== subject || (usageType !== undefined && e.usageType !== usageType)) continue;
      const start = bucketStart(subject, e.time, granularity);
      if (Date.parse(start) < from || Date.parse(start) >= to) continue;
      const bucket = buckets.get(`${start}|${e.usageType}`) ?? { start, usageType: e.usageType, quantity: 0, requests: 0 };
      bucket.quantity += e.quantity;
      bucket.requests += 1;
      buckets.set(`${start}|${e.usageType}`, bucket);
    }
    return [...buckets.values()].sort((a, b) => (a.start === b.start ? (a.usageType < b.usageType ? -1 : 1) : a.start < b.start ? -1 : 1));
  }

  const cases = ['ws_one', 'ws_two'].flatMap((subject) => (['hour', 'day', 'cycle'] as const).map((granularity) => ({ subject, granularity })));

  test.each(cases)("$subject by $granularity: each bucket's quantity and requests equal the client's own counts of the events it sent", async ({ subject, granularity }) => {
    // Arrange: 92 days back (every event sent, and the start of every cycle they fall in) to an hour ahead
    const now = stack.clock.now().getTime();
    const from = Math.floor((now - 92 * DAY_MS) / HOUR_MS) * HOUR_MS;
    const to = Math.floor(now / HOUR_MS) * HOUR_MS + HOUR_MS;

    // Act
    const path = `/v1/workspaces/${subject}/usage?granularity=${granularity}&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
    const { status, body } = await call('GET', path, { key: subject === 'ws_one' ? KEYS.wsOne[0] : KEYS.wsTwo });

    // Assert
    expect(status).toBe(200);
    const expected = expectedUsage(subject, granularity, from, to);
    expect(body).toEqual({ subject, granularity, buckets: expected });
    // Copies of every tenth message were sent: a bucket counting them would show more requests than events.
    expect(expected.reduce((n, b) => n + b.requests, 0)).toBe(sent.filter((e) => e.subject === subject).length);
    expect(expected.some((b) => b.requests > 1)).toBe(true);
  });

  test("ws_two by day for one usage type, cut mid-range: only that usage type's buckets starting in the range, with the client's counts", async () => {
    // Arrange: from the middle of a New York day 20 days back, to the middle of one 3 days back
    const now = stack.clock.now().getTime();
    const from = now - 20 * DAY_MS;
    const to = now - 3 * DAY_MS;

    // Act
    const path = `/v1/workspaces/ws_two/usage?granularity=day&usageType=images&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
    const { status, body } = await call('GET', path, { key: KEYS.admin });

    // Assert
    expect(status).toBe(200);
    const expected = expectedUsage('ws_two', 'day', from, to, 'images');
    expect(body).toEqual({ subject: 'ws_two', granularity: 'day', buckets: expected });
    expect(expected.length).toBeGreaterThan(5);
  });
});

describe('rankings', () => {
  /** Every page of a ranking, following nextCursor. */
  async function allPages(path: string, key: string): Promise<{ pages: Body[]; entries: { rank: number; id: string; amount: number; share: number; requests: number }[] }> {
    const pages: Body[] = [];
    let cursor: string | null = null;
    do {
      const { status, body }: { status: number; body: Body } = await call('GET', `${path}${cursor ? `&cursor=${cursor}` : ''}`, { key });
      expect(status).toBe(200);
      pages.push(body);
      cursor = body.nextCursor as string | null;
    } while (cursor);
    return { pages, entries: pages.flatMap((p) => p.entries as { rank: number; id: string; amount: number; share: number; requests: number }[]) };
  }

  /** The client's ranking: amounts, their shares of the total, and how many events each entry counts. */
  function expectedRanking(amounts: Map<string, number>, total: number, counts: Map<string, number>) {
    return [...amounts]
      .filter(([, amount]) => amount > 0)
      .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
      .map(([id, amount], i) => ({ rank: i + 1, id, amount, share: round(amount, total, 4), requests: counts.get(id) ?? 0 }));
  }

  test.each([
    { by: 'user', cycle: 'current', field: 'userId' },
    { by: 'group', cycle: 'current', field: 'groupId' },
    { by: 'user', cycle: 'previous', field: 'userId' },
  ] as const)("ws_one top $by of the $cycle cycle, 2 per page, equals the client's ranking", async ({ by, cycle, field }) => {
    // Act
    const { pages, entries } = await allPages(`/v1/workspaces/ws_one/usage/top?by=${by}&cycle=${cycle}&usageType=tokens&limit=2`, KEYS.wsOne[0]);

    // Assert
    const now = stack.clock.now();
    const current = cycleOf('ws_one', now);
    const bounds = cycle === 'current' ? current : cycleOf('ws_one', new Date(current.start - 1));
    const inCycle = sent.filter((e) => e.subject === 'ws_one' && e.usageType === 'tokens' && within(e, bounds.start, bounds.end));
    const amounts = new Map<string, number>();
    const counts = new Map<string, number>();
    for (const e of inCycle) {
      const id = e[field];
      if (!id) continue;
      amounts.set(id, (amounts.get(id) ?? 0) + e.quantity);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(entries).toEqual(expectedRanking(amounts, sum(inCycle), counts));
    expect(entries.length).toBeGreaterThan(2);
    expect(pages.every((p) => p.totalAmount === sum(inCycle) && p.cycleStart === new Date(bounds.start).toISOString())).toBe(true);
  });

  test('finance ranks workspaces by use in their own current cycle', async () => {
    // Act
    const { entries } = await allPages('/v1/usage/top?by=workspace&usageType=tokens&limit=1', KEYS.finance[1]);

    // Assert
    const now = stack.clock.now();
    const amounts = new Map<string, number>();
    const counts = new Map<string, number>();
    for (const subject of ['ws_one', 'ws_two', 'ws_three']) {
      const cycle = cycleOf(subject, now);
      const inCycle = sent.filter((e) => e.subject === subject && e.usageType === 'tokens' && within(e, cycle.start, cycle.end));
      amounts.set(subject, sum(inCycle));
      counts.set(subject, inCycle.length);
    }
    const total = [...amounts.values()].reduce((a, b) => a + b, 0);
    expect(entries.map(({ rank, id, amount, share, requests }) => ({ rank, id, amount, share, requests }))).toEqual(expectedRanking(amounts, total, counts));
  });

  test('paging while usage is being written: no entry twice, every unchanged entry exactly once', async () => {
    // Arrange: the first page of ws_two's users.
    const path = '/v1/workspaces/ws_two/usage/top?by=user&usageType=tokens&limit=2';
    const first = await call('GET', path, { key: KEYS.wsTwo });
    const before = (await allPages(path.replace('limit=2', 'limit=100'), KEYS.wsTwo)).entries;
    const seen = first.body.entries as { id: string; amount: number }[];
    const lowest = before.at(-1) as { id: string };
    const now = stack.clock.now().getTime();
    const at = new Date(Math.max(now - 60_000, cycleOf('ws_two', new Date(now)).start)).toISOString();

    // Act: a seen user grows past everyone, the lowest user grows by 1, a newcomer appears; then the next pages.
    await send([
      { subject: 'ws_two', time: at, usageType: 'tokens', quantity: 50_000, userId: seen[1]?.id as string },
      { subject: 'ws_two', time: at, usageType: 'tokens', quantity: 1, userId: lowest.id },
      { subject: 'ws_two', time: at, usageType: 'tokens', quantity: 1, userId: 'newcomer' },
    ]);
    const rest: { id: string; rank: number }[] = [];
    let cursor = first.body.nextCursor as string | null;
    while (cursor) {
      const page = await call('GET', `${path}&cursor=${cursor}`, { key: KEYS.wsTwo });
      rest.push(...(page.body.entries as { id: string; rank: number }[]));
      cursor = page.body.nextCursor as string | null;
    }

    // Assert
    const ids = [...seen.map((e) => e.id), ...rest.map((e) => e.id)];
    expect(new Set(ids).size).toBe(ids.length);
    const changed = new Set([seen[1]?.id, lowest.id, 'newcomer']);
    for (const entry of before.filter((e) => !changed.has(e.id))) expect(ids.filter((id) => id === entry.id)).toHaveLength(1);
    expect(ids).toContain('newcomer');
    expect(ids).toContain(lowest.id);
  });
});

describe('tenant isolation', () => {
  const W = 'ws_three';
  type Who = 'own' | 'other' | 'finance' | 'admin';
  const ALL: Who[] = ['own', 'other', 'finance', 'admin'];
  const READERS: Who[] = ['own', 'finance', 'admin'];

  /** One request per endpoint of /openapi.json, and who may make it: written out here, not read from the code. */
  /** `refused` overrides the 403 a caller outside `allowed` gets (another workspace's export does not exist for it). */
  function endpoints(sacrificialKeyId: string, exportId = 'exp_x'): { method: string; path: string; body?: unknown; allowed: readonly Who[] | 'public'; refused?: { status: number; code: string } }[] {
    const from = new Date(stack.clock.now().getTime() - 2 * DAY_MS).toISOString();
    const to = new Date(stack.clock.now().getTime() + DAY_MS).toISOString();
    const event = { specversion: '1.0', type: 'com.example.usage', time: new Date(stack.clock.now().getTime() - 60_000).toISOString(), data: { usageType: 'images', quantity: 1 } };
    return [
      { method: 'GET', path: `/v1/workspaces/${W}/usage?granularity=day&from=${from}&to=${to}`, allowed: READERS },
      { method: 'GET', path: `/v1/workspaces/${W}/quotas`, allowed: READERS },
      { method: 'GET', path: `/v1/workspaces/${W}/usage/summary`, allowed: READERS },
      { method: 'GET', path: `/v1/workspaces/${W}/usage/series?window=7d`, allowed: READERS },
      { method: 'GET', path: `/v1/workspaces/${W}/usage/top?by=group`, allowed: READERS },
      { method: 'GET', path: '/v1/usage/top?by=workspace', allowed: ['finance', 'admin'] },
      { method: 'GET', path: `/v1/workspaces/${W}/report?cycle=previous`, allowed: READERS },
      { method: 'POST', path: '/v1/exports', body: { from, to, granularity: 'day', subjects: [W] }, allowed: ['own', 'finance', 'admin'] },
      { method: 'GET', path: `/v1/exports/${exportId}`, allowed: ['own', 'finance', 'admin'], refused: { status: 404, code: 'unknown_export' } },
      { method: 'POST', path: `/v1/workspaces/${W}/usages`, body: event, allowed: ['own', 'admin'] },
      { method: 'PUT', path: `/v1/workspaces/${W}`, body: { plan: 'pro', billingAnchorDay: 28, timeZone: 'UTC' }, allowed: ['admin'] },
      { method: 'GET', path: `/v1/workspaces/${W}/grants`, allowed: READERS },
      { method: 'POST', path: `/v1/workspaces/${W}/grants`, body: { id: 'isolation-bonus', kind: 'bonus', usageType: 'tokens', amount: 10 }, allowed: ['admin'] },
      { method: 'GET', path: `/v1/workspaces/${W}/closes`, allowed: READERS },
      { method: 'GET', path: `/v1/workspaces/${W}/activity`, allowed: READERS },
      { method: 'GET', path: '/v1/usage-types', allowed: ALL },
      { method: 'GET', path: '/v1/me', allowed: ALL },
      // A workspace key's own balance: every workspace key has one, finance and admin keys none.
      { method: 'GET', path: '/v1/usage', allowed: ['own', 'other'] },
      { method: 'GET', path: '/v1/quarantine', allowed: ['admin'] },
      { method: 'POST', path: '/v1/keys', body: { scope: 'workspace', subject: W, name: 'isolation' }, allowed: ['admin'] },
      { method: 'GET', path: '/v1/keys', allowed: ['admin'] },
      { method: 'DELETE', path: `/v1/keys/${sacrificialKeyId}`, allowed: ['admin'] },
      { method: 'GET', path: '/openapi.json', allowed: 'public' as const },
    ];
  }

  test('the endpoints below are exactly those /openapi.json lists, and it is the committed document', async () => {
    const { status, body } = await call('GET', '/openapi.json');
    expect(status).toBe(200);
    expect(body).toEqual(openApi);
    const listed = Object.entries(openApi.paths).flatMap(([path, operations]) => Object.keys(operations).map((m) => `${m.toUpperCase()} ${path}`));
    const covered = endpoints('x').map((e) => `${e.method} ${templateOf(e.path)}`);
    expect(covered.sort()).toEqual(listed.sort());
  });

  test("no key, a bad key, a revoked key, another workspace's key and the wrong scope get 401/403; the right scopes get the data", async () => {
    // Arrange: a key created and revoked through the admin API, and one to revoke in the matrix.
    const revoked = await call('POST', '/v1/keys', { key: KEYS.admin, body: { scope: 'workspace', subject: W } });
    expect(revoked.status).toBe(201);
    expect((await call('DELETE', `/v1/keys/${revoked.body.id as string}`, { key: KEYS.admin })).status).toBe(200);
    const sacrificial = await call('POST', '/v1/keys', { key: KEYS.admin, body: { scope: 'finance' } });
    const ownExport = await call('POST', '/v1/exports', { key: KEYS.wsThree, body: { from: '2026-01-01', to: '2026-01-02', granularity: 'day' } });
    expect(ownExport.status).toBe(202);
    const keyOf: Record<Who, string> = { own: KEYS.wsThree, other: KEYS.wsOne[0], finance: KEYS.finance[0], admin: KEYS.admin };
    const denied: { authorization?: string; code: string }[] = [
      { code: 'missing_api_key' },
      { authorization: 'Basic dXNlcjpwYXNz', code: 'missing_api_key' },
      { authorization: 'Bearer not-a-key-of-this-system-000', code: 'invalid_api_key' },
      { authorization: `Bearer ${KEYS.admin.slice(0, -1)}1`, code: 'invalid_api_key' },
      { authorization: `Bearer ${revoked.body.key as string}`, code: 'invalid_api_key' },
    ];
    let checked = 0;

    for (const endpoint of endpoints(sacrificial.body.id as string, ownExport.body.id as string)) {
      const request = (options: { key?: string; authorization?: string }) => call(endpoint.method, endpoint.path, { ...options, ...(endpoint.body ? { body: endpoint.body } : {}) });
      if (endpoint.allowed === 'public') {
        for (const d of denied) expect((await request(d.authorization ? { authorization: d.authorization } : {})).status).toBe(200);
        continue;
      }
      // Act + Assert: 401 for every request without a valid key, with the API's error body and nothing else.
      for (const d of denied) {
        const { status, body } = await request(d.authorization ? { authorization: d.authorization } : {});
        expect({ endpoint: `${endpoint.method} ${endpoint.path}`, status, body }).toEqual({
          endpoint: `${endpoint.method} ${endpoint.path}`,
          status: 401,
          body: { error: { code: d.code, message: expect.any(String) } },
        });
        expect(JSON.stringify(body)).not.toContain(KEYS.admin.slice(0, 12));
        checked++;
      }
      // 403 for valid keys outside the route's scope or workspace; 2xx for the others.
      for (const who of ALL) {
        const { status, body } = await request({ key: keyOf[who] });
        const label = `${endpoint.method} ${endpoint.path} as ${who}`;
        if (endpoint.allowed.includes(who)) {
          expect({ label, ok: status >= 200 && status < 300 }).toEqual({ label, ok: true });
        } else {
          const refused = endpoint.refused ?? { status: 403, code: who === 'other' && endpoint.allowed.includes('own') ? 'forbidden_workspace' : 'forbidden_scope' };
          expect({ label, status, body }).toEqual({ label, status: refused.status, body: { error: { code: refused.code, message: expect.any(String) } } });
        }
        checked++;
      }
    }
    expect(checked).toBe(22 * (denied.length + ALL.length));
  });

  test("a workspace key reads its own workspace's numbers, which match what admin reads", async () => {
    for (const key of KEYS.wsOne) {
      const own = await call('GET', '/v1/workspaces/ws_one/quotas', { key });
      const admin = await call('GET', '/v1/workspaces/ws_one/quotas', { key: KEYS.admin });
      expect(own.status).toBe(200);
      expect(own.body).toEqual(admin.body);
      expect((await call('GET', '/v1/workspaces/ws_two/quotas', { key })).status).toBe(403);
    }
  });
});
