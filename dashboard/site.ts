import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * How the dashboard is built and served, shared by the local runtime (local/dashboard.ts,
 * local/api-server.ts) and the CDK construct (lib/dashboard-site.ts), so both build it the same way and
 * send the same security headers.
 */

export const DASHBOARD_ROOT = fileURLToPath(new URL('.', import.meta.url));
const VITE_CLI = join(dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin', 'vite.js');

/** `node <these>` builds the dashboard into `outDir` with the project's own Vite. */
export function viteBuildArguments(outDir: string): string[] {
  return [VITE_CLI, 'build', DASHBOARD_ROOT, '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'];
}

/**
 * The page's own paths, which answer with index.html: `/`, the finance view and a workspace's pages
 * (`/workspaces/{id}/usage` is where threshold emails link). The page draws itself from the key it is
 * signed in with. Any other path that is neither the API nor a file of the build is a JSON 404.
 */
export function isPagePath(path: string): boolean {
  return /^\/(?:(?:finance|workspaces)(?:\/[^/]+)*\/?)?$/.test(path);
}

/** The page loads nothing from elsewhere and calls only its own origin's /v1 (the API, behind the same host). */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};
