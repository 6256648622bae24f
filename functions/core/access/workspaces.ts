import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { CLIENT_GRANT_KINDS, defaultTopUpExpiry, type Grant, units } from '../billing/balance';
import type { AccountStore } from '../billing/billing-ports';
import { pricedFields } from '../billing/credits';
import { type Config, formatPath, idSchema, subjectSchema } from '../config';
import { ConflictError, InvalidRequestError, NotFoundError } from '../errors';
import { type LosslessNumber, parseExactJson } from '../exact-json';
import { EARLIEST_INSTANT, KEY_RANGE_MESSAGE, LATEST_INSTANT, withinKeyRange } from '../instants';
import { envelopeRules, packEvents, validateEvent } from '../metering/envelope';
import type { UsageQueue } from '../metering/metering-ports';
import type { Clock, Subject, SubjectStore } from '../ports';
import { toDecimalString } from '../quantity';

/** Administration of workspaces and their credits, and usage recorded over HTTP. */

// Stored as UTC ISO strings and compared as strings: within the key range (core/instants.ts), with four-digit years.
const instant = z.iso
  .datetime({ offset: true })
  .refine(withinKeyRange, KEY_RANGE_MESSAGE)
  .transform((s) => new Date(s).toISOString())
  .describe(`RFC 3339 instant, from ${EARLIEST_INSTANT} to ${LATEST_INSTANT}`);

export const workspaceBodySchema = subjectSchema.omit({ id: true });

/** `POST /v1/test-clock` (local runtime only): where to move the clock. */
export const testClockBodySchema = z.strictObject({ advanceTo: instant });

export const grantBodySchema = z.strictObject({
  id: idSchema,
  kind: z.enum(CLIENT_GRANT_KINDS),
  usageType: z.string().min(1).max(128),
  amount: z.number().positive().max(Number.MAX_SAFE_INTEGER),
  expiresAt: instant.optional(),
});

/** Parses a JSON request body against a schema; any problem is a 400 naming the field. */
export function parseBody<S extends z.ZodType>(schema: S, body: string | undefined): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(body ?? '');
  } catch {
    throw new InvalidRequestError('invalid_json', 'the request body must be JSON');
  }
  return parseWith(schema, raw, 'body');
}

/** Parses query-string parameters against a schema; any problem is a 400 naming the parameter. */
export function parseQuery<S extends z.ZodType>(schema: S, params: Record<string, string | undefined> | undefined): z.infer<S> {
  return parseWith(schema, params ?? {}, 'query');
}

/**
 * A workspace id from a request's path (decoded): it must meet the config's id rule, so the API never creates
 * or reads a workspace that the config could not name. A 400 before anything is read.
 */
export function parseWorkspaceId(id: string): string {
  return parseWith(idSchema, id, 'id');
}

function parseWith<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.code === 'unrecognized_keys' ? formatPath([...issue.path, issue.keys[0] ?? '']) : formatPath(issue?.path ?? []);
    const unknown = what === 'query' ? 'unknown parameter' : 'unknown key';
    throw new InvalidRequestError('invalid_parameter', `${field || what}: ${issue?.code === 'unrecognized_keys' ? unknown : (issue?.message ?? 'invalid')}`);
  }
  return result.data;
}

/**
 * Create or change a workspace. A plan change takes effect at once (quotas read the current plan).
 * The billing anchor and time zone of an existing workspace are fixed: its events are already
 * bucketed by them, so changing them would split a cycle's usage between two keys.
 */
export async function putWorkspace(
  id: string,
  body: z.infer<typeof workspaceBodySchema>,
  deps: { config: Config; subjects: SubjectStore; clock: Clock },
): Promise<{ created: boolean; workspace: Subject }> {
  if (!deps.config.plans.some((p) => p.id === body.plan)) throw new InvalidRequestError('unknown_plan', `plan "${body.plan}" is not configured`);
  if (body.account !== undefined) {
    const account = body.kind === 'account' || body.account === id ? undefined : await deps.subjects.get(body.account);
    if (account?.kind !== 'account') throw new InvalidRequestError('invalid_parameter', `account: "${body.account}" is not an account (a workspace of kind "account", and not this one)`);
  }
  if (body.workspaceGroup !== undefined && body.account === undefined) throw new InvalidRequestError('invalid_parameter', 'workspaceGroup: a workspace group belongs to an account: set account');
  const existing = await deps.subjects.get(id);
  if (existing && (existing.billingAnchorDay !== body.billingAnchorDay || existing.timeZone !== body.timeZone)) {
    throw new ConflictError('billing_anchor_fixed', `workspace "${id}" has billing anchor day ${existing.billingAnchorDay} in ${existing.timeZone}; these cannot change once it exists`);
  }
  const workspace: Subject = { id, ...body, createdAt: existing?.createdAt ?? deps.clock.now().toISOString() };
  await deps.subjects.put(workspace);
  return { created: !existing, workspace };
}

/** Grant bonus or top-up credits, idempotent by the client's id: the same id again changes nothing. */
export async function addGrant(
  subjectId: string,
  body: z.infer<typeof grantBodySchema>,
  deps: { config: Config; subjects: SubjectStore; accounts: AccountStore; clock: Clock },
): Promise<{ created: boolean; grant: Grant }> {
  if (!(await deps.subjects.get(subjectId))) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);
  const usageType = deps.config.usageTypes.find((u) => u.id === body.usageType);
  if (!usageType) throw new InvalidRequestError('unknown_usage_type', `usage type "${body.usageType}" is not configured`);
  let amount: string;
  try {
    amount = toDecimalString(units(body.amount));
  } catch {
    throw new InvalidRequestError('invalid_parameter', 'amount: at most 9 decimal places');
  }
  if (!usageType.allowFractions && !Number.isInteger(body.amount)) throw new InvalidRequestError('invalid_parameter', `amount: must be an integer for usage type "${usageType.id}"`);
  const grantedAt = deps.clock.now().toISOString();
  const expiresAt = body.expiresAt ?? (body.kind === 'topup' ? defaultTopUpExpiry(grantedAt) : undefined);
  if (expiresAt !== undefined && expiresAt <= grantedAt) throw new InvalidRequestError('invalid_parameter', 'expiresAt: must be in the future');
  const grant: Grant = { subject: subjectId, id: body.id, kind: body.kind, usageType: body.usageType, amount, grantedAt, ...(expiresAt ? { expiresAt } : {}) };
  if ((await deps.accounts.putGrant(grant)) === 'created') return { created: true, grant };
  const stored = (await deps.accounts.listGrants(subjectId)).find((g) => g.id === body.id);
  return { created: false, grant: stored ?? grant };
}

export const MAX_EVENTS_PER_REQUEST = 500;

/**
 * Usage recorded over HTTP: one event or an array, in the queue's envelope. `source` and `id` may be
 * left out (filled in), `subject` must be the path's workspace. Every event is validated first, so a bad
 * one rejects the request before anything is queued; ingest validates again, as for any producer.
 */
export async function recordUsages(
  subjectId: string,
  body: string | undefined,
  deps: { config: Config; subjects: SubjectStore; queue: UsageQueue; clock: Clock },
): Promise<{ events: { source: string; id: string }[] }> {
  let raw: unknown;
  try {
    raw = parseExactJson(body ?? '');
  } catch {
    throw new InvalidRequestError('not_json', 'the request body must be a JSON event or array of events');
  }
  const items = Array.isArray(raw) ? raw : [raw];
  if (items.length === 0) throw new InvalidRequestError('invalid_envelope', 'empty array of events');
  if (items.length > MAX_EVENTS_PER_REQUEST) throw new InvalidRequestError('too_many_events', `at most ${MAX_EVENTS_PER_REQUEST} events per request, got ${items.length}`);
  if (!(await deps.subjects.get(subjectId))) throw new NotFoundError('unknown_workspace', `workspace "${subjectId}" does not exist`);

  const rules = envelopeRules(deps.config, deps.clock.now());
  const events = items.map((item, index) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new InvalidRequestError('invalid_envelope', `events[${index}]: must be an object`);
    const filled: Record<string, unknown> = { source: '//api', id: randomUUID(), ...item };
    filled.subject ??= subjectId;
    if (filled.subject !== subjectId) throw new InvalidRequestError('subject_mismatch', `events[${index}].subject: must be "${subjectId}", the workspace in the path`);
    const result = validateEvent(filled, rules);
    if (!result.ok) throw new InvalidRequestError(result.rejection.reason, `events[${index}]: ${result.rejection.detail}`);
    const { event } = result;
    // Only the fields ingest reads, each within its byte limit, so that every event fits a message.
    const data = filled.data as { quantity: number | LosslessNumber } & Record<string, unknown>;
    const body = {
      specversion: '1.0',
      id: event.id,
      source: event.source,
      type: event.type,
      subject: event.subject,
      time: filled.time,
      // The fields the credit rules read come along, so that ingest prices the event as it was checked here.
      data: { ...pricedFields(deps.config.credits, event.usageType, data), usageType: event.usageType, quantity: data.quantity, ...event.dimensions },
    };
    return { body, event };
  });
  // Split by bytes, never over the queue's limit: whatever a 202 lists, ingest can read.
  await deps.queue.sendAll(packEvents(events.map((e) => e.body)));
  return { events: events.map(({ event }) => ({ source: event.source, id: event.id })) };
}
