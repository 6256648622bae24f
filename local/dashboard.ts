import { spawn } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARD_ROOT, viteBuildArguments } from '../dashboard/site';

/**
 * The dashboard's build for the local runtime. The build output (dashboard/dist) is not committed: at
 * start-up the runtime builds it with Vite when it is missing or older than any of its sources, which
 * takes a few seconds once and nothing after. Vite runs in a child process (its native bundler does not
 * load inside a test runner's module sandbox, and the runtime's event loop stays free), into a scratch
 * folder renamed into place, so two runtimes starting at once never serve a half-written build.
 */

export const DASHBOARD_DIST = join(DASHBOARD_ROOT, 'dist');
const BUILT_MARKER = join(DASHBOARD_DIST, 'index.html');

/** The newest modification time among the sources of the build (the page, its code and styles, Vite's config). */
function newestSource(path = DASHBOARD_ROOT): number {
  let newest = 0;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name === 'dist' || entry.name.startsWith('dist.') || entry.name === 'node_modules') continue;
    const child = join(path, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(child) : statSync(child).mtimeMs);
  }
  return newest;
}

export function dashboardIsStale(): boolean {
  return !existsSync(BUILT_MARKER) || statSync(BUILT_MARKER).mtimeMs < newestSource();
}

/** `vite build` of the dashboard into `outDir`, in a child process; rejects with Vite's own output when it fails. */
export function buildDashboard(outDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, viteBuildArguments(outDir), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`vite build exited with ${code}: ${output.trim()}`))));
  });
}

/** Builds the dashboard if it is missing or stale; answers the folder to serve. */
export async function ensureDashboardBuilt(log: (line: string) => void = () => undefined): Promise<string> {
  if (!dashboardIsStale()) return DASHBOARD_DIST;
  log('building the dashboard (dashboard/ → dashboard/dist) with Vite');
  const scratch = `${DASHBOARD_DIST}.${process.pid}.${Date.now()}`;
  try {
    await buildDashboard(scratch);
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    throw error;
  }
  try {
    rmSync(DASHBOARD_DIST, { recursive: true, force: true });
    renameSync(scratch, DASHBOARD_DIST);
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    // Another runtime put its build in place between our removal and rename: that one serves as well.
    if (!existsSync(BUILT_MARKER)) throw error;
  }
  return DASHBOARD_DIST;
}
