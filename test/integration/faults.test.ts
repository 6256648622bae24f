import { afterAll, describe, expect, test } from '@jest/globals';
import { DEFAULT_RATES, quietEmptyMetricsWarnings, type RunResult, runFaultScenario } from '../../testkit/faults/run';

/**
 * Seeded fault injection through the real handlers on DynamoDB Local and the S3 and SES stand-ins: SDK
 * errors before and after each write, crashes, throttling (ProvisionedThroughputExceeded, TransactionConflict,
 * SES Throttling), duplicated, reordered, overlapping and replayed deliveries (testkit/faults). After the
 * run, every invariant is checked against the scenario's own expectations: nothing lost, nothing counted
 * twice, every invalid event quarantined with its reason, closes and spillover once, threshold emails once
 * beyond the window docs/billing.md states ("Threshold emails"), the audit without a difference. `npm run soak` runs the same longer.
 */

const SEEDS = [7];
const results: RunResult[] = [];
quietEmptyMetricsWarnings();

afterAll(() => {
  const total = results.reduce((sum, r) => sum + r.faults.total, 0);
  const byStep = new Map<string, number>();
  for (const r of results) for (const [step, kinds] of Object.entries(r.faults.byStep)) byStep.set(step, (byStep.get(step) ?? 0) + Object.values(kinds).reduce((a, b) => a + b, 0));
  process.stderr.write(`faults injected and survived: ${total} over seeds ${SEEDS.join(', ')}\n${[...byStep].map(([step, n]) => `  ${String(n).padStart(5)}  ${step}`).join('\n')}\n`);
});

describe.each(SEEDS)('seed %i', (seed) => {
  test('every invariant holds after the faults', async () => {
    // Arrange + Act
    const result = await runFaultScenario({ seed, events: 2500, rates: DEFAULT_RATES });
    results.push(result);

    // Assert
    expect(result.checks.violations).toEqual([]);
    expect(result.checks.checks).toBeGreaterThan(1000);
    expect(result.rerunsChangedNothing).toBe(true);
    expect(result.reruns).toEqual([
      { dispatched: 0, summaries: 0, failed: 0 },
      { dispatched: 0, summaries: 0, failed: 0 },
    ]);
    for (const kind of ['error-before', 'error-after', 'throttle', 'crash-before', 'crash-after']) expect(result.faults.byKind[kind]).toBeGreaterThan(0);
    for (const phase of ['ingest', 'aggregate', 'notify', 'scheduler', 'closes']) expect(Object.keys(result.faults.byStep).some((step) => step.startsWith(phase))).toBe(true);
  }, 300_000);
});

test('the runs together injected at least 1,000 faults', () => {
  expect(results.reduce((sum, r) => sum + r.faults.total, 0)).toBeGreaterThanOrEqual(1000);
});
