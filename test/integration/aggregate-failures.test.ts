import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { StackClient } from '../support/local-stack';

/**
 * The aggregate answers a failed threshold evaluation with batchItemFailures rather than an error, so Lambda's
 * Errors metric never counts it: its own metric, `ThresholdEvaluationFailures` (what the
 * AggregateThresholdFailures alarm reads), must. The real handler runs on the local stack; DynamoDB failing
 * the alerts read once is the injected fault. The retried batch then records the alert, and the event is
 * counted once.
 */

const captured: string[] = [];
const restores: (() => void)[] = [];
let stack: LocalStack;
let client: StackClient;
let alertReadFailures = 0;

/** Every metric value the handlers printed (CloudWatch embedded metric format), by metric name. */
function metricValues(name: string): number[] {
  const values: number[] = [];
  for (const entry of captured) {
    for (const line of entry.split('\n')) {
      if (!line.includes('"_aws"') || !line.includes(name)) continue;
      const value = (JSON.parse(line) as Record<string, unknown>)[name];
      values.push(...[value].flat().map(Number));
    }
  }
  return values;
}

beforeAll(async () => {
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      captured.push(format(...args));
    });
    restores.push(() => spy.mockRestore());
  }
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    captured.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  restores.push(() => {
    process.stdout.write = write;
  });
  stack = await startLocal({ clockStart: suiteClockStart(), configPath: 'test/fixtures/alert-config.json', onError: () => undefined });
  client = new StackClient(stack);
  // Reading the alerts already recorded fails as DynamoDB throttling would, after the rollups were applied.
  const alerts = appContext.alerts();
  const recorded = alerts.recorded.bind(alerts);
  alerts.recorded = async (...args: Parameters<typeof recorded>) => {
    if (alertReadFailures > 0) {
      alertReadFailures -= 1;
      throw Object.assign(new Error('Throughput exceeds the current capacity of your table or index.'), { name: 'ProvisionedThroughputExceededException', $metadata: { httpStatusCode: 400 } });
    }
    return recorded(...args);
  };
}, 300_000);

afterAll(async () => {
  client?.close();
  await stack?.stop();
  for (const restore of restores.reverse()) restore();
  delete process.env.POWERTOOLS_METRICS_DISABLED;
});

describe('a threshold evaluation that fails', () => {
  test('is counted in ThresholdEvaluationFailures, and the retried batch records the alert once and counts the event once', async () => {
    // Arrange: 900 of ws_steps' 1,000 tokens cross 80%; the first evaluation fails
    alertReadFailures = 1;
    const time = stack.clock.now().toISOString();
    const event = { specversion: '1.0', id: 'threshold-failure-1', source: '//aggregate-failures', type: 'usage', subject: 'ws_steps', time, data: { usageType: 'tokens', quantity: 900 } };

    // Act
    await client.send([JSON.stringify(event)]);
    await stack.settle();
    const { body: quotas } = await client.get('/v1/workspaces/ws_steps/quotas');

    // Assert
    expect(alertReadFailures).toBe(0);
    const failures = metricValues('ThresholdEvaluationFailures');
    expect(failures.filter((v) => v === 1)).toHaveLength(1);
    expect(failures.filter((v) => v === 0).length).toBeGreaterThanOrEqual(1); // the retry evaluated
    expect(metricValues('ThresholdsCrossed').reduce((a, b) => a + b, 0)).toBe(1);
    const tokens = (quotas as { quotas: { usageType: string; usedAmount: number }[] }).quotas.find((q) => q.usageType === 'tokens');
    expect(tokens?.usedAmount).toBe(900);
  });
});
