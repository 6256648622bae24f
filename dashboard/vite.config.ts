import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The dashboard: one page, built to dashboard/dist. The local runtime serves the build at / (and builds it
 * when it is missing or stale); the DashboardSite construct uploads it to S3 behind CloudFront. For work on
 * the page itself, `npx vite dashboard` serves it with reloads and sends /v1 to USAGE_API (a running
 * `usage-pipeline local`).
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  logLevel: 'warn',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', assetsDir: 'assets' },
  server: { proxy: { '/v1': process.env.USAGE_API ?? 'http://127.0.0.1:3000' } },
});
