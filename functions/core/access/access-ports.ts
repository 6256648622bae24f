/** Where API keys are kept (only their hashes). */

/** A stored API key: its hash, never the key. */
export interface ApiKeyRecord {
  id: string;
  /** SHA-256 of the key, hex. */
  hash: string;
  scope: 'workspace' | 'finance' | 'admin';
  subject?: string;
  name?: string;
  createdAt: string;
  revokedAt?: string;
}

export interface ApiKeyStore {
  get(id: string): Promise<ApiKeyRecord | undefined>;
  /** Writes the record unless one with its id exists. */
  put(record: ApiKeyRecord): Promise<void>;
  list(): Promise<ApiKeyRecord[]>;
  revoke(id: string, revokedAt: string): Promise<void>;
}
