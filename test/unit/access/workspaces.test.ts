import { describe, expect, test } from '@jest/globals';
import {
  addGrant,
  grantBodySchema,
  MAX_EVENTS_PER_REQUEST,
  parseBody,
  parseQuery,
  parseWorkspaceId,
  putWorkspace,
  recordUsages,
  testClockBodySchema,
  workspaceBodySchema,
} from '../../../functions/core/access/workspaces';
import { type Config, configSchema } from '../../../functions/core/config';
import { ConflictError, InvalidRequestError, NotFoundError } from '../../../functions/core/errors';
import { quarantineQuerySchema } from '../../../functions/core/metering/ingest';
import type { UsageQueue } from '../../../functions/core/metering/metering-ports';
import type { Subject } from '../../../functions/core/ports';
import { caught } from '../../support/caught';
import { FixedClock, InMemoryAccounts, InMemorySubjectStore } from '../../support/fakes';

/**
 * Workspace administration and usage over HTTP: request parsing with its machine-readable refusals,
 * putWorkspace, addGrant and recordUsages, against in-memory fakes and a fixed clock.
 */

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [
    { id: 'std', quotas: { tokens: { monthlyLimit: 1000 } } },
    { id: 'pro', quotas: { tokens: { monthlyLimit: 5000 } } },
  ],
});
// 29 February of a leap year: the default top-up expiry has no 29 February to land on.
const NOW = '2028-02-29T09:30:00.000Z';
const WS_A: Subject = { id: 'ws_a', plan: 'std', billingAnchorDay: 15, timeZone: 'Europe/Berlin', contacts: ['ops@a.example'], createdAt: '2027-05-01T08:00:00.000Z' };

/** Message bodies by send, as the queue accepted them. */
class InMemoryUsageQueue implements UsageQueue {
  readonly sends: string[][] = [];
  async sendAll(bodies: readonly string[]): Promise<void> {
    this.sends.push([...bodies]);
  }
}

function setup() {
  const clock = new FixedClock(NOW);
  const subjects = new InMemorySubjectStore([WS_A]);
  const accounts = new InMemoryAccounts();
  const queue = new InMemoryUsageQueue();
  return { clock, subjects, accounts, queue, deps: { config, subjects, accounts, queue, clock } };
}

/** The refusal as { type, code, message } so that one expectation names all three. */
async function refusal(fn: () => unknown) {
  const error = (await caught(fn)) as Error & { code?: string };
  return { type: error.constructor.name, code: error.code, message: error.message };
}

describe('parseBody', () => {
  test.each([
    ['no body', undefined],
    ['an empty body', ''],
    ['text that is not JSON', '{"plan": "std",'],
  ])('%s → invalid_json', async (_label, body) => {
    expect(await refusal(() => parseBody(workspaceBodySchema, body))).toEqual({ type: 'InvalidRequestError', code: 'invalid_json', message: 'the request body must be JSON' });
  });

  test.each([
    ['an unknown key, named', '{"plan":"std","billingAnchorDay":1,"colour":"red"}', 'colour: unknown key'],
    ['a missing key, named', '{"billingAnchorDay":1}', 'plan: '],
    ['an anchor day past 31', '{"plan":"std","billingAnchorDay":32}', 'billingAnchorDay: '],
    ['a fractional anchor day', '{"plan":"std","billingAnchorDay":1.5}', 'billingAnchorDay: '],
    ['an unknown time zone', '{"plan":"std","billingAnchorDay":1,"timeZone":"Mars/Olympus"}', 'timeZone: must be an IANA time zone'],
    ['the second contact, by its index', '{"plan":"std","billingAnchorDay":1,"contacts":["a@b.example","not-an-email"]}', 'contacts[1]: '],
    ['an array instead of an object: the body itself', '[]', 'body: '],
    ['null: the body itself', 'null', 'body: '],
  ])('%s → invalid_parameter', async (_label, body, messageStart) => {
    const { type, code, message } = await refusal(() => parseBody(workspaceBodySchema, body));

    expect([type, code]).toEqual(['InvalidRequestError', 'invalid_parameter']);
    expect(message.startsWith(messageStart)).toBe(true);
  });

  test('a valid workspace body gets its defaults (UTC, no contacts)', () => {
    expect(parseBody(workspaceBodySchema, '{"plan":"pro","billingAnchorDay":31}')).toEqual({ plan: 'pro', billingAnchorDay: 31, timeZone: 'UTC', contacts: [] });
  });

  test.each([
    ['kind spillover (only a close writes it)', { kind: 'spillover' }, 'kind: '],
    ['amount 0', { amount: 0 }, 'amount: '],
    ['a negative amount', { amount: -5 }, 'amount: '],
    ['an amount past 2^53 − 1', { amount: 9007199254740992 }, 'amount: '],
    ['an amount as a string', { amount: '10' }, 'amount: '],
    ['an expiry that is no instant', { expiresAt: '2028-02-30T00:00:00Z' }, 'expiresAt: '],
    ['an expiry without an offset', { expiresAt: '2028-03-01T00:00:00' }, 'expiresAt: '],
    ['an expiry past the key range', { expiresAt: '9999-06-01T00:00:00Z' }, 'expiresAt: must be between 0001-01-01T00:00:00Z and 9999-01-01T00:00:00Z'],
    ['an id against the id rule', { id: '-starts-with-a-dash' }, 'id: '],
  ])('a grant body with %s → invalid_parameter', async (_label, change, messageStart) => {
    const body = JSON.stringify({ id: 'g1', kind: 'bonus', usageType: 'tokens', amount: 10, ...change });

    const { type, code, message } = await refusal(() => parseBody(grantBodySchema, body));

    expect([type, code]).toEqual(['InvalidRequestError', 'invalid_parameter']);
    expect(message.startsWith(messageStart)).toBe(true);
  });

  test('instants with an offset are stored as UTC with milliseconds', () => {
    // 01:00 at +01:00 is midnight UTC
    expect(parseBody(grantBodySchema, '{"id":"g1","kind":"topup","usageType":"tokens","amount":5,"expiresAt":"2028-03-01T01:00:00+01:00"}').expiresAt).toBe('2028-03-01T00:00:00.000Z');
    expect(parseBody(testClockBodySchema, '{"advanceTo":"2028-02-29T23:59:59.5-05:00"}')).toEqual({ advanceTo: '2028-03-01T04:59:59.500Z' });
  });
});

describe('parseQuery and parseWorkspaceId', () => {
  test('query parameters are coerced and defaulted; absent parameters are an empty query', () => {
    expect(parseQuery(quarantineQuerySchema, { limit: '5', subject: 'ws_a' })).toEqual({ limit: 5, subject: 'ws_a' });
    expect(parseQuery(quarantineQuerySchema, undefined)).toEqual({ limit: 100 });
  });

  test.each([
    ['an unknown parameter, named', { cursor: 'abc' }, 'cursor: unknown parameter'],
    ['a limit of 0', { limit: '0' }, 'limit: '],
    ['a limit that is no number', { limit: 'ten' }, 'limit: '],
  ])('%s → invalid_parameter', async (_label, params, messageStart) => {
    const { type, code, message } = await refusal(() => parseQuery(quarantineQuerySchema, params));

    expect([type, code]).toEqual(['InvalidRequestError', 'invalid_parameter']);
    expect(message.startsWith(messageStart)).toBe(true);
  });

  test.each([[''], ['has space'], ['_leading-underscore'], ['a'.repeat(129)], ['ws/a']])('workspace id %p → invalid_parameter naming the id', async (id) => {
    const { code, message } = await refusal(() => parseWorkspaceId(id));

    expect(code).toBe('invalid_parameter');
    expect(message.startsWith('id: ')).toBe(true);
  });

  test('a workspace id within the rule is returned as it is (128 characters, colons and dots)', () => {
    const longest = `w${'x'.repeat(127)}`;
    expect([parseWorkspaceId('team:acme.eu-1'), parseWorkspaceId(longest)]).toEqual(['team:acme.eu-1', longest]);
  });
});

describe('putWorkspace', () => {
  test('creates a workspace stamped with the clock', async () => {
    const { subjects, deps } = setup();

    const result = await putWorkspace('ws_new', { plan: 'std', billingAnchorDay: 31, timeZone: 'UTC', contacts: [] }, deps);

    const expected = { id: 'ws_new', plan: 'std', billingAnchorDay: 31, timeZone: 'UTC', contacts: [], createdAt: NOW };
    expect(result).toEqual({ created: true, workspace: expected });
    expect(await subjects.get('ws_new')).toEqual(expected);
  });

  test('updates plan, contacts and name of an existing workspace and keeps its creation instant', async () => {
    const { subjects, deps } = setup();

    const result = await putWorkspace('ws_a', { plan: 'pro', billingAnchorDay: 15, timeZone: 'Europe/Berlin', contacts: [], name: 'Acme' }, deps);

    const expected = { id: 'ws_a', plan: 'pro', billingAnchorDay: 15, timeZone: 'Europe/Berlin', contacts: [], name: 'Acme', createdAt: '2027-05-01T08:00:00.000Z' };
    expect(result).toEqual({ created: false, workspace: expected });
    expect(await subjects.get('ws_a')).toEqual(expected);
  });

  test('an unknown plan → unknown_plan, and nothing is stored', async () => {
    const { subjects, deps } = setup();

    const error = await caught(() => putWorkspace('ws_new', { plan: 'gold', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] }, deps));

    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'unknown_plan' });
    expect(await subjects.get('ws_new')).toBeUndefined();
  });

  test.each([
    ['billing anchor day', { billingAnchorDay: 16, timeZone: 'Europe/Berlin' }],
    ['time zone', { billingAnchorDay: 15, timeZone: 'Europe/London' }],
  ])('changing the %s of an existing workspace → billing_anchor_fixed, and nothing changes', async (_label, anchor) => {
    const { subjects, deps } = setup();

    const error = await caught(() => putWorkspace('ws_a', { plan: 'pro', contacts: [], ...anchor }, deps));

    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ code: 'billing_anchor_fixed' });
    expect(await subjects.get('ws_a')).toEqual(WS_A);
  });
});

describe('addGrant', () => {
  test('a bonus is stored as given, granted now, and never expires', async () => {
    const { accounts, deps } = setup();

    const result = await addGrant('ws_a', { id: 'welcome', kind: 'bonus', usageType: 'tokens', amount: 250 }, deps);

    const expected = { subject: 'ws_a', id: 'welcome', kind: 'bonus', usageType: 'tokens', amount: '250', grantedAt: NOW };
    expect(result).toEqual({ created: true, grant: expected });
    expect(await accounts.listGrants('ws_a')).toEqual([expected]);
  });

  test('a top-up without an expiry bought on 29 February expires on 28 February a year later, same time', async () => {
    const { deps } = setup();

    const { grant } = await addGrant('ws_a', { id: 't1', kind: 'topup', usageType: 'tokens', amount: 100 }, deps);

    expect(grant.expiresAt).toBe('2029-02-28T09:30:00.000Z');
  });

  test('an expiry given is kept; it must lie after now, by a millisecond at least', async () => {
    const { deps } = setup();

    const atNow = await refusal(() => addGrant('ws_a', { id: 't1', kind: 'topup', usageType: 'tokens', amount: 1, expiresAt: NOW }, deps));
    const { grant } = await addGrant('ws_a', { id: 't2', kind: 'topup', usageType: 'tokens', amount: 1, expiresAt: '2028-02-29T09:30:00.001Z' }, deps);

    expect(atNow).toEqual({ type: 'InvalidRequestError', code: 'invalid_parameter', message: 'expiresAt: must be in the future' });
    expect(grant.expiresAt).toBe('2028-02-29T09:30:00.001Z');
  });

  test.each([
    ['0.1 of a fractional usage type', 'credits', 0.1, '0.1'],
    ['9 decimal places', 'credits', 0.000000001, '0.000000001'],
    ['the largest safe integer', 'tokens', 9007199254740991, '9007199254740991'],
  ])('the amount is stored as an exact decimal: %s', async (_label, usageType, amount, expected) => {
    const { deps } = setup();

    const { grant } = await addGrant('ws_a', { id: 'g', kind: 'bonus', usageType, amount }, deps);

    expect(grant.amount).toBe(expected);
  });

  test.each([
    ['10 decimal places', 'credits', 0.0000000001, 'amount: at most 9 decimal places'],
    ['0.1 + 0.2 as a double (0.30000000000000004)', 'credits', 0.1 + 0.2, 'amount: at most 9 decimal places'],
    ['a fraction of a whole-unit usage type', 'tokens', 2.5, 'amount: must be an integer for usage type "tokens"'],
  ])('%s → invalid_parameter, nothing stored', async (_label, usageType, amount, message) => {
    const { accounts, deps } = setup();

    const refused = await refusal(() => addGrant('ws_a', { id: 'g', kind: 'bonus', usageType, amount }, deps));

    expect(refused).toEqual({ type: 'InvalidRequestError', code: 'invalid_parameter', message });
    expect(await accounts.listGrants('ws_a')).toEqual([]);
  });

  test('an unknown workspace → unknown_workspace; an unknown usage type → unknown_usage_type', async () => {
    const { deps } = setup();

    const noWorkspace = await caught(() => addGrant('ws_missing', { id: 'g', kind: 'bonus', usageType: 'tokens', amount: 1 }, deps));
    const noUsageType = await caught(() => addGrant('ws_a', { id: 'g', kind: 'bonus', usageType: 'minutes', amount: 1 }, deps));

    expect(noWorkspace).toBeInstanceOf(NotFoundError);
    expect(noWorkspace).toMatchObject({ code: 'unknown_workspace' });
    expect(noUsageType).toBeInstanceOf(InvalidRequestError);
    expect(noUsageType).toMatchObject({ code: 'unknown_usage_type' });
  });

  test('the same id again changes nothing and answers with the grant first stored', async () => {
    const { clock, accounts, deps } = setup();
    await addGrant('ws_a', { id: 'promo', kind: 'bonus', usageType: 'tokens', amount: 50 }, deps);
    clock.set('2028-03-01T00:00:00.000Z');

    const again = await addGrant('ws_a', { id: 'promo', kind: 'bonus', usageType: 'tokens', amount: 999 }, deps);

    const first = { subject: 'ws_a', id: 'promo', kind: 'bonus', usageType: 'tokens', amount: '50', grantedAt: NOW };
    expect(again).toEqual({ created: false, grant: first });
    expect(await accounts.listGrants('ws_a')).toEqual([first]);
  });
});

describe('recordUsages', () => {
  /** An event as a client sends it over the API: source, id and subject may be left out. */
  const event = (fields: Record<string, unknown> = {}, data: Record<string, unknown> = {}) => ({
    specversion: '1.0',
    type: 'usage.recorded',
    time: '2028-02-29T09:29:00Z',
    ...fields,
    data: { usageType: 'tokens', quantity: 5, ...data },
  });
  const body = (value: unknown) => JSON.stringify(value);
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  test('one event: source, id and subject are filled in, and only what ingest reads is queued', async () => {
    const { queue, deps } = setup();
    const sent = event({ extension: 'dropped' }, { userId: 'u1', channel: 'web', note: 'dropped too' });

    const result = await recordUsages('ws_a', body(sent), deps);

    expect(result.events).toHaveLength(1);
    const [{ source, id } = { source: '', id: '' }] = result.events;
    expect(source).toBe('//api');
    expect(id).toMatch(UUID);
    expect(queue.sends).toHaveLength(1);
    expect(queue.sends[0]?.map((b) => JSON.parse(b))).toEqual([
      [
        {
          specversion: '1.0',
          id,
          source: '//api',
          type: 'usage.recorded',
          subject: 'ws_a',
          time: '2028-02-29T09:29:00Z',
          data: { usageType: 'tokens', quantity: 5, userId: 'u1', channel: 'web' },
        },
      ],
    ]);
  });

  test("an array keeps each event's own identity and order", async () => {
    const { deps } = setup();

    const result = await recordUsages('ws_a', body([event({ source: 'billing', id: 'e1', subject: 'ws_a' }), event({ source: 'billing', id: 'e2' })]), deps);

    expect(result.events).toEqual([
      { source: 'billing', id: 'e1' },
      { source: 'billing', id: 'e2' },
    ]);
  });

  test('a quantity of 17 significant digits reaches the queue exactly as sent', async () => {
    const { queue, deps } = setup();
    const text = (quantity: string) => `{"specversion":"1.0","source":"s","id":"q","type":"usage.recorded","time":"2028-02-29T09:29:00Z","data":{"usageType":"credits","quantity":${quantity}}}`;

    await recordUsages('ws_a', text('12345678.123456789'), deps);

    // As a double it would have been rounded to 12345678.12345679
    expect(queue.sends[0]?.[0]).toContain('"quantity":12345678.123456789');
  });

  test('quantities go up to 2^53 − 1; 2^53 is invalid_quantity', async () => {
    const { queue, deps } = setup();

    await recordUsages('ws_a', body(event({}, { quantity: 9007199254740991 })), deps);
    const refused = await refusal(() => recordUsages('ws_a', '{"specversion":"1.0","type":"t","time":"2028-02-29T09:29:00Z","data":{"usageType":"tokens","quantity":9007199254740992}}', deps));

    expect(queue.sends[0]?.[0]).toContain('"quantity":9007199254740991');
    expect(refused).toEqual({ type: 'InvalidRequestError', code: 'invalid_quantity', message: 'events[0]: quantity must be at most 9007199254740991' });
  });

  test(`${MAX_EVENTS_PER_REQUEST} events are accepted; one more is too_many_events`, async () => {
    const { queue, deps } = setup();
    const events = (n: number) => body(Array.from({ length: n }, (_, i) => event({ source: 's', id: `e${i}` })));

    const accepted = await recordUsages('ws_a', events(500), deps);
    const refused = await refusal(() => recordUsages('ws_a', events(501), deps));

    expect(accepted.events).toHaveLength(500);
    expect(refused).toEqual({ type: 'InvalidRequestError', code: 'too_many_events', message: 'at most 500 events per request, got 501' });
    expect(queue.sends.flat().flatMap((b) => JSON.parse(b) as unknown[])).toHaveLength(500); // only the accepted request's
  });

  test('the time may be up to maxFutureSeconds (300 s) ahead of the clock, not a millisecond more', async () => {
    const { deps } = setup();

    const atLimit = await recordUsages('ws_a', body(event({ time: '2028-02-29T09:35:00.000Z' })), deps);
    const past = await refusal(() => recordUsages('ws_a', body(event({ time: '2028-02-29T09:35:00.001Z' })), deps));

    expect(atLimit.events).toHaveLength(1);
    expect([past.type, past.code]).toEqual(['InvalidRequestError', 'future_time']);
  });

  test.each([
    ['not JSON', '{"specversion":', 'not_json', 'the request body must be a JSON event or array of events'],
    ['no body', undefined, 'not_json', 'the request body must be a JSON event or array of events'],
    ['an empty array', '[]', 'invalid_envelope', 'empty array of events'],
    ['a string among the events', body([event(), 'tokens']), 'invalid_envelope', 'events[1]: must be an object'],
    ['an array among the events', body([[event()]]), 'invalid_envelope', 'events[0]: must be an object'],
    ['another workspace as subject', body(event({ subject: 'ws_b' })), 'subject_mismatch', 'events[0].subject: must be "ws_a", the workspace in the path'],
  ])('%s → %s, nothing queued', async (_label, text, code, message) => {
    const { queue, deps } = setup();

    const refused = await refusal(() => recordUsages('ws_a', text, deps));

    expect(refused).toEqual({ type: 'InvalidRequestError', code, message });
    expect(queue.sends).toEqual([]);
  });

  test.each([
    ['an unknown usage type', event({}, { usageType: 'minutes' }), 'unknown_usage_type'],
    ['a fractional quantity of a whole-unit type', event({}, { quantity: 1.5 }), 'invalid_quantity'],
    ['a quantity as a string', event({}, { quantity: '5' }), 'invalid_quantity'],
    ['a date that does not exist (30 February)', event({ time: '2028-02-30T10:00:00Z' }), 'invalid_time'],
    ['a time older than the retention window', event({ time: '2026-01-01T00:00:00Z' }), 'too_old'],
    ['a blank id', event({ id: ' ' }), 'missing_id'],
  ])('a bad second event (%s) → its rejection reason, and the good first one is not queued either', async (_label, bad, code) => {
    const { queue, deps } = setup();

    const refused = await refusal(() => recordUsages('ws_a', body([event(), bad]), deps));

    expect([refused.type, refused.code]).toEqual(['InvalidRequestError', code]);
    expect(refused.message.startsWith('events[1]: ')).toBe(true);
    expect(queue.sends).toEqual([]);
  });

  test('an unknown workspace → unknown_workspace, nothing queued', async () => {
    const { queue, deps } = setup();

    const error = await caught(() => recordUsages('ws_missing', body(event()), deps));

    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: 'unknown_workspace' });
    expect(queue.sends).toEqual([]);
  });
});
