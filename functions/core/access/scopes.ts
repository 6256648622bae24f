/** What an API key may do: its scope, named in config files and key records alike. */
export const SCOPES = ['workspace', 'finance', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];
