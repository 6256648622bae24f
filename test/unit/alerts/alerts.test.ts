import { describe, expect, test } from '@jest/globals';
import { crossedThresholds, evaluateThresholds, touchedCycles } from '../../../functions/core/alerts/alerts';
import type { Alert } from '../../../functions/core/alerts/alerts-ports';
import { deliverAlert, formatAmount } from '../../../functions/core/alerts/notify';
import { configSchema } from '../../../functions/core/config';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryAccounts, InMemoryAlerts, InMemoryEmailSender, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * Threshold crossings and their emails, with in-memory fakes. Expected thresholds and numbers are worked
 * out in the comments from the plan (L = 1000 tokens, thresholds 80/100/110; `custom` 50/90).
 */

const N = 1_000_000_000n;
const config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'images', unit: 'image' },
  ],
  plans: [
    { id: 'std', quotas: { tokens: { monthlyLimit: 1000 } } },
    { id: 'custom', quotas: { tokens: { monthlyLimit: 200, thresholds: [50, 90] } } },
  ],
  notifications: { from: 'alerts@usage.example', usageBaseUrl: 'https://app.example/' },
});
const CYCLE = '2026-11-01T00:00:00.000Z';
const subjects: Subject[] = [
  { id: 'ws_a', name: 'Acme <script>alert("x")</script> & Co', plan: 'std', billingAnchorDay: 1, timeZone: 'UTC', contacts: ['a1@acme.example', 'a2@acme.example'] },
  { id: 'ws_b', plan: 'custom', billingAnchorDay: 1, timeZone: 'UTC', contacts: ['b@b.example'] },
  { id: 'ws_none', plan: 'std', billingAnchorDay: 1, timeZone: 'UTC', contacts: [] },
];

function world() {
  const rollups = new InMemoryRollupReader();
  const alerts = new InMemoryAlerts();
  const accounts = new InMemoryAccounts();
  const email = new InMemoryEmailSender();
  const clock = new FixedClock('2026-11-20T12:00:00.000Z');
  const deps = { config, subjects: new InMemorySubjectStore(subjects), rollups, accounts, alerts, email, clock };
  const use = (subject: string, total: number, usageType = 'tokens') => rollups.set(subject, { usageType, kind: 'cycle', period: CYCLE, total: String(total), counters: {} });
  const evaluate = (subject: string, usageType = 'tokens') => evaluateThresholds([{ subject, usageType, cycleStart: CYCLE }], deps);
  return { deps, alerts, accounts, email, use, evaluate };
}

const summary = (alerts: Alert[]) => alerts.map((a) => [a.threshold, a.notify]);

describe('crossedThresholds', () => {
  test('a threshold is reached at exactly its share of the allowance, not a nano-unit before', () => {
    expect(crossedThresholds(800n * N, 1000n * N, [80, 100, 110])).toEqual([80]);
    expect(crossedThresholds(800n * N - 1n, 1000n * N, [80, 100, 110])).toEqual([]);
    expect(crossedThresholds(1100n * N, 1000n * N, [80, 100, 110])).toEqual([80, 100, 110]);
  });

  test('no allowance, no percentage: nothing is crossed', () => {
    expect(crossedThresholds(5n * N, 0n, [80])).toEqual([]);
  });
});

describe('evaluateThresholds', () => {
  test('one crossing at a time notifies each; a jump notifies only the highest and records the lower as passed', async () => {
    const { use, evaluate, alerts } = world();

    use('ws_a', 850); // 85%: 80
    const first = await evaluate('ws_a');
    use('ws_a', 1150); // 115%: 100 and 110 at once
    const jump = await evaluate('ws_a');
    const again = await evaluate('ws_a');

    expect(summary(first)).toEqual([[80, true]]);
    expect(summary(jump)).toEqual([
      [110, true],
      [100, false],
    ]);
    expect(again).toEqual([]);
    expect(alerts.items.size).toBe(3);
  });

  test('spillover carried in raises the allowance: 1250 of 1000 + 500 is 83%', async () => {
    const { use, evaluate, accounts } = world();
    await accounts.putGrant({
      subject: 'ws_a',
      id: `spillover:tokens:${CYCLE}`,
      kind: 'spillover',
      usageType: 'tokens',
      amount: '500',
      grantedAt: CYCLE,
      cycleStart: CYCLE,
      expiresAt: '2026-12-01T00:00:00.000Z',
    });

    use('ws_a', 1250);
    const crossed = await evaluate('ws_a');

    expect(crossed.map((a) => [a.threshold, a.notify, a.used, a.allowance])).toEqual([[80, true, '1250', '1500']]);
  });

  test("a plan's own thresholds: 50 and 90 of 200", async () => {
    const { use, evaluate } = world();

    use('ws_b', 99); // 49.5%
    const below = await evaluate('ws_b');
    use('ws_b', 100); // 50%
    const half = await evaluate('ws_b');
    use('ws_b', 250); // 125%: only 90 is left to cross
    const over = await evaluate('ws_b');

    expect([below, summary(half), summary(over)]).toEqual([[], [[50, true]], [[90, true]]]);
  });

  test('concurrent evaluations of the same crossing record it once', async () => {
    const { use, evaluate, alerts } = world();
    use('ws_a', 1000);

    const results = await Promise.all([evaluate('ws_a'), evaluate('ws_a'), evaluate('ws_a')]);

    expect(
      results
        .flat()
        .filter((a) => a.notify)
        .map((a) => a.threshold),
    ).toEqual([100]);
    expect([...alerts.items.values()].map((i) => [i.alert.threshold, i.notify]).sort()).toEqual(
      [
        [100, true],
        [80, false],
      ].sort(),
    );
  });

  test('a usage type the plan does not meter, and an unknown subject, cross nothing', async () => {
    const { use, evaluate } = world();
    use('ws_a', 5000, 'images');

    expect(await evaluate('ws_a', 'images')).toEqual([]);
    expect(await evaluate('ws_nope')).toEqual([]);
  });

  test('touchedCycles lists each subject, usage type and cycle once', () => {
    const image = (subject: string, usageType: string, cycleStart: string) => ({ eventKey: '["test","e1"]', subject, usageType, cycleStart, hour: '', day: '', quantity: '1' });
    expect(touchedCycles([image('a', 't', 'c1'), image('a', 't', 'c1'), image('a', 't', 'c2'), image('b', 't', 'c1')])).toEqual([
      { subject: 'a', usageType: 't', cycleStart: 'c1' },
      { subject: 'a', usageType: 't', cycleStart: 'c2' },
      { subject: 'b', usageType: 't', cycleStart: 'c1' },
    ]);
  });
});

describe('deliverAlert', () => {
  async function crossed80(w: ReturnType<typeof world>, subject = 'ws_a') {
    w.use(subject, 850);
    const [alert] = await w.evaluate(subject);
    if (!alert) throw new Error('expected an alert');
    return alert;
  }

  test('one message per contact, with the numbers, the reset date and escaped customer values', async () => {
    const w = world();
    const alert = await crossed80(w);

    const result = await deliverAlert(alert, w.deps);

    expect(result).toMatchObject({ sent: 2, possibleDuplicates: 0 });
    expect(w.email.sent.map((e) => [e.to, e.from, e.subject])).toEqual([
      ['a1@acme.example', 'alerts@usage.example', 'You have used 80% of your monthly tokens'],
      ['a2@acme.example', 'alerts@usage.example', 'You have used 80% of your monthly tokens'],
    ]);
    const [first] = w.email.sent;
    // 850 of 1000 used, 150 left; the cycle of anchor 1 resets on Dec 1
    expect(first?.text).toContain('850 of 1,000 tokens');
    expect(first?.text).toContain('What remains: 150 tokens.');
    expect(first?.text).toContain('1 December 2026 at 00:00 UTC');
    expect(first?.text).toContain('https://app.example/workspaces/ws_a/usage');
    expect(first?.html).toContain('Acme &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co');
    expect(first?.html).not.toContain('<script>');
    expect(first?.text).toContain('Acme <script>alert("x")</script> & Co'); // plain text is not HTML
    expect((await w.alerts.delivery(alert))?.status).toBe('sent');
  });

  test('bonus credits count in what remains', async () => {
    const w = world();
    await w.accounts.putGrant({ subject: 'ws_a', id: 'b1', kind: 'bonus', usageType: 'tokens', amount: '2500', grantedAt: '2026-11-02T00:00:00.000Z' });
    w.use('ws_a', 1100);
    const [alert] = await w.evaluate('ws_a'); // 110%, 100 overflow from the bonus: 2400 held

    await deliverAlert(alert as Alert, w.deps);

    expect(w.email.sent[0]?.text).toContain('What remains: 2,400 tokens, including 2,400 bonus and top-up credits.');
  });

  test('delivered again (a retried stream batch), it sends nothing more', async () => {
    const w = world();
    const alert = await crossed80(w);

    await deliverAlert(alert, w.deps);
    const again = await deliverAlert(alert, w.deps);

    expect(again).toMatchObject({ sent: 0, alreadySent: 2 });
    expect(w.email.sent).toHaveLength(2);
  });

  test('a crash after one contact, then the retry, emails each contact once', async () => {
    const w = world();
    const alert = await crossed80(w);
    let marks = 0;
    w.alerts.beforeMark = (what) => {
      if (what === 'attempted' && ++marks === 2) throw new Error('injected crash before the second contact');
    };

    await expect(deliverAlert(alert, w.deps)).rejects.toThrow('injected');
    w.alerts.beforeMark = undefined;
    const retry = await deliverAlert(alert, w.deps);

    expect(retry).toMatchObject({ sent: 1, alreadySent: 1, possibleDuplicates: 0 });
    expect(w.email.sent.map((e) => e.to)).toEqual(['a1@acme.example', 'a2@acme.example']);
  });

  test('SES throttling that outlasts the sender fails the delivery; the retry sends once', async () => {
    const w = world();
    const alert = await crossed80(w);
    w.email.failures = [Object.assign(new Error('Maximum sending rate exceeded'), { name: 'Throttling' })];

    await expect(deliverAlert(alert, w.deps)).rejects.toThrow('Maximum sending rate');
    const retry = await deliverAlert(alert, w.deps);

    // The first contact's send was attempted and refused: it goes now, counted as a possible duplicate.
    expect(retry).toMatchObject({ sent: 2, possibleDuplicates: 1 });
    expect(w.email.sent.map((e) => e.to)).toEqual(['a1@acme.example', 'a2@acme.example']);
  });

  test('the one window left: SES accepted, the mark did not land, so the retry sends again and says so', async () => {
    const w = world();
    const alert = await crossed80(w);
    w.alerts.beforeMark = (what, contact) => {
      if (what === 'sent' && contact === 'a1@acme.example') throw new Error('injected crash after SES accepted');
    };

    await expect(deliverAlert(alert, w.deps)).rejects.toThrow('injected');
    w.alerts.beforeMark = undefined;
    const retry = await deliverAlert(alert, w.deps);

    expect(retry.possibleDuplicates).toBe(1);
    expect(w.email.sent.map((e) => e.to)).toEqual(['a1@acme.example', 'a1@acme.example', 'a2@acme.example']);
  });

  test('a workspace without contacts: the alert is recorded and closed, nobody is emailed', async () => {
    const w = world();
    const alert = await crossed80(w, 'ws_none');

    const result = await deliverAlert(alert, w.deps);

    expect(result.noContacts).toBe(true);
    expect(w.email.sent).toEqual([]);
    expect((await w.alerts.delivery(alert))?.status).toBe('no_contacts');
  });
});

test('formatAmount groups thousands exactly', () => {
  expect([formatAmount(0n), formatAmount(999n * N), formatAmount(1_234_567n * N + N / 2n)]).toEqual(['0', '999', '1,234,567.5']);
});
