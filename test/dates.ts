import { spawnSync } from 'node:child_process';

/**
 * `npm run test:dates [-- INSTANT...]`: the date-sensitive suites with the local clock pinned
 * (TEST_CLOCK_START, read by testkit/clock-start.ts) at instants where calendars bite. Each
 * run starts its stacks at the instant; from there the clock runs at the wall clock's pace and the
 * suites' test clock moves it on, across the month, cycle and year ends they cross.
 */

const PINNED: readonly { instant: string; why: string }[] = [
  { instant: '2027-02-28T23:30:00Z', why: 'the last hour of a month, of a short February (anchor 29–31 clamps to the 28th)' },
  { instant: '2026-12-31T23:30:00Z', why: '23:30 UTC on 31 December: the day, month and year end within the run' },
  { instant: '2028-02-29T12:00:00Z', why: '29 February of a leap year' },
  { instant: '2027-03-14T06:30:00Z', why: 'New York moves to daylight time at 07:00 UTC this day (02:00 EST → 03:00 EDT)' },
  { instant: '2027-01-15T12:00:00Z', why: 'the 15th at noon: a billing anchor day, mid-month' },
];

/** The suites whose outcome could depend on the date: everything that sends timed events or moves the clock. */
const SUITES = [
  'test/integration/pipeline.test.ts',
  'test/integration/quotas.test.ts',
  'test/integration/finance-reports.test.ts',
  'test/integration/threshold-emails.test.ts',
  'test/integration/faults.test.ts',
  'test/integration/api.test.ts',
  'test/integration/replay-cli.test.ts',
  'test/integration/cli.test.ts',
  'test/integration/credits.test.ts',
  'test/integration/activity.test.ts',
  'test/browser/dashboard.test.ts',
  'test/browser/credits-dashboard.test.ts',
];

const requested = process.argv.slice(2);
const runs = requested.length > 0 ? requested.map((instant) => ({ instant, why: 'given on the command line' })) : PINNED;
const results: { instant: string; ok: boolean; seconds: number }[] = [];

for (const { instant, why } of runs) {
  process.stderr.write(`\n=== clock pinned at ${instant}: ${why}\n`);
  const started = Date.now();
  const run = spawnSync('npx', ['jest', '--selectProjects', 'integration', 'browser', '--runTestsByPath', ...SUITES], {
    stdio: 'inherit',
    env: { ...process.env, TEST_CLOCK_START: instant, NODE_OPTIONS: '--experimental-vm-modules --no-warnings=ExperimentalWarning' },
  });
  results.push({ instant, ok: run.status === 0, seconds: Math.round((Date.now() - started) / 1000) });
}

process.stderr.write('\nclock pinned at            result   time\n');
for (const r of results) process.stderr.write(`${r.instant.padEnd(26)} ${(r.ok ? 'passed' : 'FAILED').padEnd(8)} ${r.seconds} s\n`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
