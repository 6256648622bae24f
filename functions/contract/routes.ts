import type { Access } from '../core/access/scopes';

/**
 * Every route of the HTTP API and who may call it (core/access/scopes.ts). The CDK stack adds exactly the
 * deployed ones to the HTTP API, the OpenAPI document describes them, and the api handler serves each with
 * its own function (functions/api.handler.ts), which must name one for every route here.
 */
export const ROUTES = [
  { method: 'GET', path: '/v1/workspaces/{id}/usage', access: 'workspace-read' },
  { method: 'GET', path: '/v1/workspaces/{id}/quotas', access: 'workspace-read' },
  { method: 'GET', path: '/v1/workspaces/{id}/usage/summary', access: 'workspace-read' },
  { method: 'GET', path: '/v1/workspaces/{id}/usage/series', access: 'workspace-read' },
  { method: 'GET', path: '/v1/workspaces/{id}/usage/top', access: 'workspace-read' },
  { method: 'GET', path: '/v1/usage/top', access: 'finance' },
  { method: 'GET', path: '/v1/workspaces/{id}/report', access: 'workspace-read' },
  { method: 'POST', path: '/v1/exports', access: 'any' },
  { method: 'GET', path: '/v1/exports/{exportId}', access: 'any' },
  { method: 'POST', path: '/v1/workspaces/{id}/usages', access: 'workspace-write' },
  { method: 'PUT', path: '/v1/workspaces/{id}', access: 'admin' },
  { method: 'GET', path: '/v1/workspaces/{id}/grants', access: 'workspace-read' },
  { method: 'POST', path: '/v1/workspaces/{id}/grants', access: 'admin' },
  { method: 'GET', path: '/v1/workspaces/{id}/closes', access: 'workspace-read' },
  { method: 'GET', path: '/v1/workspaces/{id}/activity', access: 'workspace-read' },
  { method: 'GET', path: '/v1/usage-types', access: 'any' },
  { method: 'GET', path: '/v1/me', access: 'any' },
  { method: 'GET', path: '/v1/usage', access: 'any' },
  { method: 'GET', path: '/v1/quarantine', access: 'admin' },
  { method: 'POST', path: '/v1/keys', access: 'admin' },
  { method: 'GET', path: '/v1/keys', access: 'admin' },
  { method: 'DELETE', path: '/v1/keys/{keyId}', access: 'admin' },
  { method: 'POST', path: '/v1/test-clock', access: 'admin' },
  { method: 'GET', path: '/v1/test-clock/moves/{moveId}', access: 'admin' },
  { method: 'GET', path: '/openapi.json', access: 'public' },
] as const satisfies readonly { method: string; path: string; access: Access }[];

/** A route's name: its method and path, as API Gateway names route keys. */
export type RouteKey = (typeof ROUTES)[number] extends infer R ? (R extends { method: infer M extends string; path: infer P extends string } ? `${M} ${P}` : never) : never;

/** Routes the api serves only in the local runtime (in AWS it answers 404 by itself): never on the HTTP API. */
export const LOCAL_ONLY_PATHS: readonly string[] = ['/v1/test-clock', '/v1/test-clock/moves/{moveId}'];
/** The routes the HTTP API exposes and the OpenAPI document describes. */
export const DEPLOYED_ROUTES = ROUTES.filter((route) => !LOCAL_ONLY_PATHS.includes(route.path));
