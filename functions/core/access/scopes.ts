/** What an API key may do, and what a route asks of its caller: named in config files, key records and the route table alike. */
export const SCOPES = ['workspace', 'finance', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * What a route asks of its caller:
 * - `public`: nothing;
 * - `any`: any valid key;
 * - `workspace-read`: a key of the path's workspace, or finance, or admin;
 * - `workspace-write`: a key of the path's workspace, or admin;
 * - `finance`: finance or admin;
 * - `admin`: admin.
 */
export type Access = 'public' | 'any' | 'workspace-read' | 'workspace-write' | 'finance' | 'admin';
