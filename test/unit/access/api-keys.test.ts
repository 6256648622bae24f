import { createHash } from 'node:crypto';
import { describe, expect, test } from '@jest/globals';
import type { ApiKeyRecord, ApiKeyStore } from '../../../functions/core/access/access-ports';
import { authenticate, authorize, configuredKey, createKey, keyBodySchema, keyIdOf, listKeys, type Principal, revokeKey } from '../../../functions/core/access/api-keys';
import type { Access } from '../../../functions/core/access/scopes';
import { parseBody } from '../../../functions/core/access/workspaces';
import { ForbiddenError, InvalidRequestError, NotFoundError, UnauthorizedError } from '../../../functions/core/errors';
import type { Subject } from '../../../functions/core/ports';
import { caught } from '../../support/caught';
import { FixedClock, InMemorySubjectStore } from '../../support/fakes';

/**
 * API keys: authentication from the Authorization header, the access matrix, and key administration.
 * Hashes are recomputed here with node:crypto, independently of the code under test.
 */

/** Records by id, written only if absent, like the table's conditional put. */
class InMemoryApiKeys implements ApiKeyStore {
  readonly items = new Map<string, ApiKeyRecord>();

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const record = this.items.get(id);
    return record && structuredClone(record);
  }

  async put(record: ApiKeyRecord): Promise<void> {
    if (!this.items.has(record.id)) this.items.set(record.id, structuredClone(record));
  }

  async list(): Promise<ApiKeyRecord[]> {
    return [...this.items.values()].map((r) => structuredClone(r));
  }

  async revoke(id: string, revokedAt: string): Promise<void> {
    const record = this.items.get(id);
    if (record) this.items.set(id, { ...record, revokedAt });
  }
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const subject = (id: string): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] });
const NOW = '2026-11-24T10:00:00.000Z';

function setup() {
  const keys = new InMemoryApiKeys();
  const clock = new FixedClock(NOW);
  return { keys, clock, deps: { keys, clock, subjects: new InMemorySubjectStore([subject('ws_a'), subject('ws_b')]) } };
}

describe('authenticate', () => {
  test.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['"Bearer" without a key', 'Bearer'],
    ['"Bearer" and blanks', 'Bearer    '],
    // A header with another scheme is reported like a missing one (the message says how to send a key);
    // test/integration/api.test.ts expects the same code for "Basic …".
    ['another scheme ("Basic x")', 'Basic x'],
    ['two words after Bearer (not one key)', 'Bearer upk_0123456789abcdef_ x'],
    ['another scheme with a well-formed key after it', 'Token upk_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
  ])('%s → UnauthorizedError missing_api_key', async (_label, header) => {
    // Arrange
    const { keys } = setup();

    // Act
    const error = await caught(() => authenticate(header, { keys }));

    // Assert
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error).toMatchObject({ code: 'missing_api_key' });
  });

  test.each([
    ['too short (15 characters, the minimum is 16)', 'Bearer 123456789012345'],
    ['too long (257 characters, the maximum is 256)', `Bearer ${'k'.repeat(257)}`],
    ['unknown generated-looking key', 'Bearer upk_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
    ['unknown free-form key', 'Bearer some-long-enough-free-form-key'],
  ])('%s → UnauthorizedError invalid_api_key', async (_label, header) => {
    // Arrange: the store holds one valid key, which none of these is.
    const { keys, deps } = setup();
    await createKey({ scope: 'admin' }, deps);

    // Act
    const error = await caught(() => authenticate(header, { keys }));

    // Assert
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error).toMatchObject({ code: 'invalid_api_key' });
  });

  test.each([
    ['15 characters, one under the minimum', '123456789012345', false],
    ['16 characters, the minimum', '1234567890123456', true],
    ['256 characters, the maximum', 'k'.repeat(256), true],
    ['257 characters, one over the maximum', 'k'.repeat(257), false],
  ])('length limits apply even to a stored key: %s', async (_label, key, accepted) => {
    // Arrange: the key is in the store (as a config-file key), so only its length can reject it.
    const { keys } = setup();
    await keys.put(configuredKey({ key, scope: 'admin' }, NOW));

    // Act
    const outcome = await authenticate(`Bearer ${key}`, { keys }).then(
      (principal) => principal.scope,
      (error: unknown) => (error as UnauthorizedError).code,
    );

    // Assert
    expect(outcome).toBe(accepted ? 'admin' : 'invalid_api_key');
  });

  test('a created key authenticates to its scope and workspace (scheme case-insensitive, trailing blanks allowed)', async () => {
    // Arrange
    const { keys, deps } = setup();
    const created = await createKey({ scope: 'workspace', subject: 'ws_a', name: 'ci' }, deps);

    // Act
    const principal = await authenticate(`Bearer ${created.key}`, { keys });
    const lowerCase = await authenticate(`bearer ${created.key}  `, { keys });

    // Assert
    expect(principal).toEqual({ keyId: created.id, scope: 'workspace', subject: 'ws_a' });
    expect(lowerCase).toEqual(principal);
  });

  test('a finance or admin key has no subject in its principal', async () => {
    // Arrange
    const { keys, deps } = setup();
    const created = await createKey({ scope: 'finance' }, deps);

    // Act
    const principal = await authenticate(`Bearer ${created.key}`, { keys });

    // Assert
    expect(principal).toEqual({ keyId: created.id, scope: 'finance' });
    expect(principal).not.toHaveProperty('subject');
  });

  test('a revoked key → invalid_api_key', async () => {
    // Arrange
    const { keys, deps } = setup();
    const created = await createKey({ scope: 'admin' }, deps);
    await revokeKey(created.id, deps);

    // Act
    const error = await caught(() => authenticate(`Bearer ${created.key}`, { keys }));

    // Assert
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error).toMatchObject({ code: 'invalid_api_key' });
  });

  test('the key itself is never stored: only its SHA-256 (hex), under the id embedded in the key', async () => {
    // Arrange
    const { keys, deps } = setup();

    // Act
    const created = await createKey({ scope: 'workspace', subject: 'ws_a', name: 'ci' }, deps);

    // Assert: upk_<16 of [a-z0-9]>_<43 of base64url> (32 random bytes).
    expect(created.key).toMatch(/^upk_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    expect(created.key.slice(4, 20)).toBe(created.id);
    expect(keyIdOf(created.key)).toBe(created.id);
    expect(created).toEqual({ id: created.id, key: created.key, scope: 'workspace', subject: 'ws_a', name: 'ci', createdAt: NOW });
    expect(created).not.toHaveProperty('hash');
    expect([...keys.items.keys()]).toEqual([created.id]);
    const stored = keys.items.get(created.id);
    expect(stored).toEqual({ id: created.id, hash: sha256(created.key), scope: 'workspace', subject: 'ws_a', name: 'ci', createdAt: NOW });
    const secret = created.key.slice(21);
    for (const value of Object.values(stored ?? {})) {
      expect(value).not.toContain(created.key);
      expect(value).not.toContain(secret);
    }
  });

  test('a stored hash differing by one character rejects the key', async () => {
    // Arrange: flip the last hex digit of the stored hash.
    const { keys, deps } = setup();
    const created = await createKey({ scope: 'admin' }, deps);
    const stored = keys.items.get(created.id) as ApiKeyRecord;
    const last = stored.hash.at(-1) === '0' ? '1' : '0';
    keys.items.set(created.id, { ...stored, hash: `${stored.hash.slice(0, -1)}${last}` });

    // Act
    const error = await caught(() => authenticate(`Bearer ${created.key}`, { keys }));

    // Assert
    expect(error).toMatchObject({ code: 'invalid_api_key' });
  });

  test('a key with the right id but one character of its secret changed is rejected', async () => {
    // Arrange: same id (so the record is found), different secret, hence a different hash.
    const { keys, deps } = setup();
    const created = await createKey({ scope: 'admin' }, deps);
    const forged = `${created.key.slice(0, -1)}${created.key.endsWith('A') ? 'B' : 'A'}`;

    // Act
    const error = await caught(() => authenticate(`Bearer ${forged}`, { keys }));

    // Assert
    expect(keyIdOf(forged)).toBe(created.id);
    expect(error).toMatchObject({ code: 'invalid_api_key' });
  });

  test('configuredKey: a free-form key from a config file is stored by hash and authenticates with the original string', async () => {
    // Arrange: its id is "cfg" + the first 13 hex digits of its SHA-256.
    const { keys } = setup();
    const key = 'local-dev-admin-key-0001';
    const record = configuredKey({ key, scope: 'admin' }, NOW);
    const workspaceKey = 'local-dev-ws-a-key-0002';
    await keys.put(record);
    await keys.put(configuredKey({ key: workspaceKey, scope: 'workspace', subject: 'ws_a', name: 'dev' }, NOW));

    // Act
    const admin = await authenticate(`Bearer ${key}`, { keys });
    const workspace = await authenticate(`Bearer ${workspaceKey}`, { keys });

    // Assert
    expect(record).toEqual({ id: `cfg${sha256(key).slice(0, 13)}`, hash: sha256(key), scope: 'admin', name: 'from the config file', createdAt: NOW });
    expect(admin).toEqual({ keyId: `cfg${sha256(key).slice(0, 13)}`, scope: 'admin' });
    expect(workspace).toEqual({ keyId: `cfg${sha256(workspaceKey).slice(0, 13)}`, scope: 'workspace', subject: 'ws_a' });
  });
});

describe('authorize', () => {
  const wsKey: Principal = { keyId: 'k_ws', scope: 'workspace', subject: 'ws_a' };
  const principals = {
    'workspace (own)': { principal: wsKey, workspace: 'ws_a' },
    'workspace (other)': { principal: wsKey, workspace: 'ws_b' },
    finance: { principal: { keyId: 'k_fin', scope: 'finance' } as Principal, workspace: 'ws_a' },
    admin: { principal: { keyId: 'k_adm', scope: 'admin' } as Principal, workspace: 'ws_a' },
  };
  type Caller = keyof typeof principals;
  type Outcome = 'allow' | 'forbidden_scope' | 'forbidden_workspace';

  // The access matrix, written out: rows are what a route asks, columns who calls it (on which workspace).
  const MATRIX: Record<Exclude<Access, 'public'>, Record<Caller, Outcome>> = {
    //                  workspace (own)         workspace (other)              finance                      admin
    any: /*          */ { 'workspace (own)': 'allow', 'workspace (other)': 'allow', finance: 'allow', admin: 'allow' },
    'workspace-read': { 'workspace (own)': 'allow', 'workspace (other)': 'forbidden_workspace', finance: 'allow', admin: 'allow' },
    'workspace-write': { 'workspace (own)': 'allow', 'workspace (other)': 'forbidden_workspace', finance: 'forbidden_scope', admin: 'allow' },
    finance: /*      */ { 'workspace (own)': 'forbidden_scope', 'workspace (other)': 'forbidden_scope', finance: 'allow', admin: 'allow' },
    admin: /*        */ { 'workspace (own)': 'forbidden_scope', 'workspace (other)': 'forbidden_scope', finance: 'forbidden_scope', admin: 'allow' },
  };
  const cases = Object.entries(MATRIX).flatMap(([access, row]) => Object.entries(row).map(([caller, outcome]) => ({ access: access as Exclude<Access, 'public'>, caller: caller as Caller, outcome })));

  test('the matrix covers every access level and caller', () => {
    expect(cases).toHaveLength(5 * 4);
  });

  test.each(cases)('$access called by $caller → $outcome', ({ access, caller, outcome }) => {
    // Arrange
    const { principal, workspace } = principals[caller];

    // Act
    let error: unknown;
    try {
      authorize(principal, access, workspace);
    } catch (thrown) {
      error = thrown;
    }

    // Assert
    if (outcome === 'allow') {
      expect(error).toBeUndefined();
    } else {
      expect(error).toBeInstanceOf(ForbiddenError);
      expect(error).toMatchObject({ code: outcome });
    }
  });

  test('a workspace key on a workspace route without a workspace is forbidden_workspace', () => {
    // Act / Assert
    expect(() => authorize(wsKey, 'workspace-read')).toThrow(expect.objectContaining({ code: 'forbidden_workspace' }));
  });
});

describe('key administration', () => {
  test('createKey for an unknown workspace → InvalidRequestError unknown_workspace, nothing stored', async () => {
    // Arrange
    const { keys, deps } = setup();

    // Act
    const error = await caught(() => createKey({ scope: 'workspace', subject: 'ws_ghost' }, deps));

    // Assert
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'unknown_workspace' });
    expect(keys.items.size).toBe(0);
  });

  test.each([
    ['a workspace key without a subject', { scope: 'workspace' }, 'subject'],
    ['an admin key with a subject', { scope: 'admin', subject: 'ws_a' }, 'subject'],
    ['a finance key with a subject', { scope: 'finance', subject: 'ws_a' }, 'subject'],
    ['an unknown scope', { scope: 'owner' }, 'scope'],
    ['an unknown field', { scope: 'admin', expiresAt: '2027-01-01T00:00:00Z' }, 'expiresAt'],
  ])('keyBodySchema rejects %s', (_label, body, field) => {
    // Act
    const result = keyBodySchema.safeParse(body);
    let error: unknown;
    try {
      parseBody(keyBodySchema, JSON.stringify(body));
    } catch (thrown) {
      error = thrown;
    }

    // Assert
    expect(result.success).toBe(false);
    expect(error).toBeInstanceOf(InvalidRequestError);
    expect(error).toMatchObject({ code: 'invalid_parameter' });
    expect((error as Error).message.startsWith(`${field}: `)).toBe(true);
  });

  test.each([[{ scope: 'workspace', subject: 'ws_a' }], [{ scope: 'finance', name: 'books' }], [{ scope: 'admin' }]])('keyBodySchema accepts %j', (body) => {
    expect(keyBodySchema.safeParse(body).success).toBe(true);
  });

  test('revoking twice keeps the first revokedAt', async () => {
    // Arrange
    const { keys, clock, deps } = setup();
    const created = await createKey({ scope: 'finance' }, deps);
    clock.set('2026-11-25T08:00:00.000Z');

    // Act
    const first = await revokeKey(created.id, deps);
    clock.set('2026-11-26T09:00:00.000Z');
    const second = await revokeKey(created.id, deps);

    // Assert
    expect(first).toEqual({ id: created.id, scope: 'finance', createdAt: NOW, revokedAt: '2026-11-25T08:00:00.000Z' });
    expect(second).toEqual(first);
    expect(second).not.toHaveProperty('hash');
    expect(keys.items.get(created.id)?.revokedAt).toBe('2026-11-25T08:00:00.000Z');
  });

  test('revoking an unknown id → NotFoundError unknown_api_key', async () => {
    // Arrange
    const { deps } = setup();

    // Act
    const error = await caught(() => revokeKey('0123456789abcdef', deps));

    // Assert
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: 'unknown_api_key' });
  });

  test('listKeys shows every key oldest first, without hashes', async () => {
    // Arrange
    const { clock, deps } = setup();
    clock.set('2026-11-24T12:00:00.000Z');
    const later = await createKey({ scope: 'admin', name: 'later' }, deps);
    clock.set('2026-11-24T11:00:00.000Z');
    const earlier = await createKey({ scope: 'finance', name: 'earlier' }, deps);

    // Act
    const listed = await listKeys(deps);

    // Assert
    expect(listed.map((k) => k.id)).toEqual([earlier.id, later.id]);
    for (const k of listed) expect(k).not.toHaveProperty('hash');
  });
});
