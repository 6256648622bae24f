import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ForbiddenError, InvalidRequestError, NotFoundError, UnauthorizedError } from '../errors';
import type { Clock, SubjectStore } from '../ports';
import type { ApiKeyRecord, ApiKeyStore } from './access-ports';
import { type Access, SCOPES, type Scope } from './scopes';

/**
 * API keys: who may call which route.
 * A key is `upk_<id>_<secret>`; only its SHA-256 is stored, under the public id. A presented key is
 * looked up by its id and its hash compared in constant time. Keys taken from a local config file
 * may have any form: their id is derived from the hash.
 */

/** The caller, once its key checks out. */
export interface Principal {
  keyId: string;
  scope: Scope;
  /** The one workspace a `workspace` key may see. */
  subject?: string;
}

const ALLOWED: Record<Exclude<Access, 'public' | 'any'>, readonly Scope[]> = {
  'workspace-read': ['workspace', 'finance', 'admin'],
  'workspace-write': ['workspace', 'admin'],
  finance: ['finance', 'admin'],
  admin: ['admin'],
};

const GENERATED = /^upk_([a-z0-9]{16})_[A-Za-z0-9_-]{43}$/;
const MIN_KEY_LENGTH = 16;
const MAX_KEY_LENGTH = 256;

export const hashKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** The public id of a key: embedded in a generated key, derived from the hash of any other. */
export function keyIdOf(key: string): string {
  return GENERATED.exec(key)?.[1] ?? `cfg${hashKey(key).slice(0, 13)}`;
}

/** A new random key (32 bytes of secret) and the record that stores it. */
export function generateKey(): { key: string; id: string; hash: string } {
  const id = randomBytes(8).toString('hex');
  const key = `upk_${id}_${randomBytes(32).toString('base64url')}`;
  return { key, id, hash: hashKey(key) };
}

/** Reads `Authorization: Bearer <key>`; 401 when it is missing, malformed, unknown or revoked. */
export async function authenticate(authorization: string | undefined, deps: { keys: ApiKeyStore }): Promise<Principal> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (!match?.[1]) throw new UnauthorizedError('missing_api_key', 'send an API key as "Authorization: Bearer <key>"');
  const key = match[1];
  const invalid = new UnauthorizedError('invalid_api_key', 'the API key is not valid');
  if (key.length < MIN_KEY_LENGTH || key.length > MAX_KEY_LENGTH) throw invalid;
  const record = await deps.keys.get(keyIdOf(key));
  if (!record || record.revokedAt !== undefined || !sameHash(hashKey(key), record.hash)) throw invalid;
  return { keyId: record.id, scope: record.scope, ...(record.subject ? { subject: record.subject } : {}) };
}

/** 403 unless the principal's scope (and, for a workspace key, its workspace) covers the route. */
export function authorize(principal: Principal, access: Exclude<Access, 'public'>, workspace?: string): void {
  if (access === 'any') return;
  if (!ALLOWED[access].includes(principal.scope)) {
    throw new ForbiddenError('forbidden_scope', `a ${principal.scope} key cannot use this route (it needs ${ALLOWED[access].join(' or ')})`);
  }
  if (principal.scope === 'workspace' && workspace !== principal.subject) {
    throw new ForbiddenError('forbidden_workspace', 'this key belongs to another workspace');
  }
}

function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

export const keyBodySchema = z
  .strictObject({
    scope: z.enum(SCOPES),
    subject: z.string().min(1).max(128).optional(),
    name: z.string().min(1).max(200).optional(),
  })
  .refine((b) => (b.scope === 'workspace') === (b.subject !== undefined), { message: 'required for a workspace key, and only for one', path: ['subject'] });

export type KeyBody = z.infer<typeof keyBodySchema>;

/** What a key's owner may see of it: never the hash. */
export type ApiKeyView = Omit<ApiKeyRecord, 'hash'>;

const view = ({ hash: _hash, ...rest }: ApiKeyRecord): ApiKeyView => rest;

/** Creates a key; the key itself is in this answer only. */
export async function createKey(body: KeyBody, deps: { keys: ApiKeyStore; subjects: SubjectStore; clock: Clock }): Promise<ApiKeyView & { key: string }> {
  if (body.subject !== undefined && !(await deps.subjects.get(body.subject))) {
    throw new InvalidRequestError('unknown_workspace', `workspace "${body.subject}" does not exist`);
  }
  const { key, id, hash } = generateKey();
  const record: ApiKeyRecord = {
    id,
    hash,
    scope: body.scope,
    ...(body.subject ? { subject: body.subject } : {}),
    ...(body.name ? { name: body.name } : {}),
    createdAt: deps.clock.now().toISOString(),
  };
  await deps.keys.put(record);
  return { ...view(record), key };
}

export async function listKeys(deps: { keys: ApiKeyStore }): Promise<ApiKeyView[]> {
  return (await deps.keys.list()).map(view).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1));
}

/** Revokes a key; revoking it again changes nothing. */
export async function revokeKey(id: string, deps: { keys: ApiKeyStore; clock: Clock }): Promise<ApiKeyView> {
  const record = await deps.keys.get(id);
  if (!record) throw new NotFoundError('unknown_api_key', `API key "${id}" does not exist`);
  if (record.revokedAt !== undefined) return view(record);
  const revokedAt = deps.clock.now().toISOString();
  await deps.keys.revoke(id, revokedAt);
  return view({ ...record, revokedAt });
}

/** The record of a key given in full (a local config file's keys), stored like any other. */
export function configuredKey(entry: { key: string; scope: Scope; subject?: string; name?: string }, createdAt: string): ApiKeyRecord {
  return { id: keyIdOf(entry.key), hash: hashKey(entry.key), scope: entry.scope, ...(entry.subject ? { subject: entry.subject } : {}), name: entry.name ?? 'from the config file', createdAt };
}
