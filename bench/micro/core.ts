/**
 * Micro-benchmark of the per-event work in core, on one core: validate (envelope, usage type, clock), bucket
 * (UTC hour, local day, cycle) and fold (into chunks of rollup updates), as ingest and aggregate run them.
 * Printed beside JSON.parse of the same messages, the floor any consumer pays. Target: validate + bucket +
 * fold ≥ 200,000 events per second.
 *
 * The measured code (bench/micro/core-run.ts) runs as the functions are deployed: bundled and minified by esbuild
 * (tsx's transform adds per-function overhead of its own), in a child process.
 *
 *   npm run bench:core [-- --events 200000 --rounds 7]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const outfile = join(mkdtempSync(join(tmpdir(), 'bench-core-')), 'core-run.mjs');
await build({
  entryPoints: [fileURLToPath(new URL('core-run.ts', import.meta.url))],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  mainFields: ['module', 'main'],
  logLevel: 'error',
});
const run = spawnSync(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(run.status ?? 1);
