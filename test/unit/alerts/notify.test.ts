import { describe, expect, test } from '@jest/globals';
import type { Alert } from '../../../functions/core/alerts/alerts-ports';
import { deliverAlert, formatAmount, formatInstant } from '../../../functions/core/alerts/notify';
import { configSchema } from '../../../functions/core/config';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryAccounts, InMemoryAlerts, InMemoryEmailSender, InMemoryRollupReader, InMemorySubjectStore } from '../../support/fakes';

/**
 * Delivering one recorded threshold alert by email: what is sent, to whom, once, and what a failing
 * sender leaves behind. Alerts are written out by hand here (not produced by the threshold evaluation),
 * and every email's text is the template filled in by hand.
 */

const N = 1_000_000_000n; // nano-units per unit
const config = configSchema.parse({
  usageTypes: [
    { id: 'tokens', unit: 'token' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'std', quotas: { tokens: { monthlyLimit: 1000 }, credits: { monthlyLimit: 10 } } }],
  // Trailing slashes on the base must not double up in the link
  notifications: { from: 'alerts@usage.example', usageBaseUrl: 'https://app.example/portal//' },
});

// New York, anchor 1: October's cycle runs from 1 Oct 00:00 EDT (04:00Z) to 1 Nov 00:00 EDT (04:00Z),
// the night daylight time ends (at 06:00Z). The id has a colon, which the link must encode.
const ACME: Subject = { id: 'team:acme.eu', name: 'Acme EU', plan: 'std', billingAnchorDay: 1, timeZone: 'America/New_York', contacts: ['a1@acme.example', 'a2@acme.example'] };
const QUIET: Subject = { id: 'ws_quiet', plan: 'std', billingAnchorDay: 1, timeZone: 'America/New_York', contacts: [] };
const OCT = { start: '2026-10-01T04:00:00.000Z', end: '2026-11-01T04:00:00.000Z' };
const SEP = { start: '2026-09-01T04:00:00.000Z', end: OCT.start };

const alertOf = (fields: Partial<Alert> = {}): Alert => ({
  subject: ACME.id,
  usageType: 'tokens',
  cycleStart: OCT.start,
  cycleEnd: OCT.end,
  threshold: 80,
  notify: true,
  used: '850',
  allowance: '1000',
  recordedAt: '2026-10-20T11:59:00.000Z',
  ...fields,
});

function world() {
  const alerts = new InMemoryAlerts();
  const email = new InMemoryEmailSender();
  const accounts = new InMemoryAccounts();
  const rollups = new InMemoryRollupReader();
  const subjects = new InMemorySubjectStore([ACME, QUIET]);
  const clock = new FixedClock('2026-10-20T12:00:00.000Z');
  const deps = { config, subjects, rollups, accounts, alerts, email, clock };
  /** Records the alert, as the threshold evaluation does, and puts its use in the rollups. */
  const recorded = async (alert: Alert) => {
    await alerts.record(alert);
    rollups.set(alert.subject, { usageType: alert.usageType, kind: 'cycle', period: alert.cycleStart, total: alert.used, counters: {} });
    return alert;
  };
  return { alerts, email, accounts, subjects, deps, recorded };
}

const LINK = 'https://app.example/portal/workspaces/team%3Aacme.eu/usage';

describe('deliverAlert', () => {
  test('one message per contact, each addressed to that contact alone, with the numbers filled in', async () => {
    // Arrange: 850 of 1000 tokens → 150 left; the cycle resets at local midnight on 1 November
    const w = world();
    const alert = await w.recorded(alertOf());

    // Act
    const result = await deliverAlert(alert, w.deps);

    // Assert
    expect(result).toEqual({ sent: 2, alreadySent: 0, possibleDuplicates: 0, noContacts: false });
    expect(w.email.sent.map((e) => [e.from, e.to, e.subject])).toEqual([
      ['alerts@usage.example', 'a1@acme.example', 'You have used 80% of your monthly tokens'],
      ['alerts@usage.example', 'a2@acme.example', 'You have used 80% of your monthly tokens'],
    ]);
    expect(w.email.sent[0]?.text).toBe(
      [
        'Hello,',
        '',
        'Acme EU has used 80% of its monthly tokens allowance: 850 of 1,000 tokens this billing cycle.',
        '',
        'What remains: 150 tokens.',
        'The cycle resets on 1 November 2026 at 00:00 (America/New_York).',
        '',
        `See where your usage goes: ${LINK}`,
        '',
      ].join('\n'),
    );
    expect(w.email.sent[1]?.text).toBe(w.email.sent[0]?.text);
    expect(w.email.sent[0]?.html).toContain(`<a href="${LINK}"`);
    expect(w.email.sent[0]?.html).toContain('<td>1 November 2026 at 00:00 (America/New_York)</td>');
    expect(await w.alerts.delivery(alert)).toMatchObject({ status: 'sent', sentTo: ACME.contacts, attempted: ACME.contacts });
  });

  test('bonus credits held now count in what remains, exactly', async () => {
    // credits: 10.5 used of 10 → overflow 0.5 drawn from the bonus of 2.25 → 1.75 left, all of it bonus
    const w = world();
    await w.accounts.putGrant({ subject: ACME.id, id: 'b1', kind: 'bonus', usageType: 'credits', amount: '2.25', grantedAt: '2026-10-02T00:00:00.000Z' });
    const alert = await w.recorded(alertOf({ usageType: 'credits', threshold: 100, used: '10.5', allowance: '10' }));

    await deliverAlert(alert, w.deps);

    const text = w.email.sent[0]?.text ?? '';
    expect(text).toContain('Acme EU has used 100% of its monthly credits allowance: 10.5 of 10 credits this billing cycle.');
    expect(text).toContain('What remains: 1.75 credits, including 1.75 bonus and top-up credits.');
    expect(w.email.sent[0]?.html).toContain('1.75 credits (including 1.75 bonus and top-up credits)');
  });

  test('an alert of a cycle that has ended counts no credits held now', async () => {
    // September's alert: 850 of 1000 → 150; the bonus held in October is not September's
    const w = world();
    await w.accounts.putGrant({ subject: ACME.id, id: 'b1', kind: 'bonus', usageType: 'tokens', amount: '40', grantedAt: '2026-10-02T00:00:00.000Z' });
    const alert = await w.recorded(alertOf({ cycleStart: SEP.start, cycleEnd: SEP.end }));

    await deliverAlert(alert, w.deps);

    expect(w.email.sent[0]?.text).toContain('What remains: 150 tokens.\nThe cycle resets on 1 October 2026 at 00:00 (America/New_York).');
  });

  test('use past the allowance leaves nothing, not a negative remainder', async () => {
    // 1100 of 1000 and no credits: max(0, 1000 − 1100) = 0
    const w = world();
    const alert = await w.recorded(alertOf({ threshold: 110, used: '1100' }));

    await deliverAlert(alert, w.deps);

    expect(w.email.sent[0]?.text).toContain('1,100 of 1,000 tokens');
    expect(w.email.sent[0]?.text).toContain('What remains: 0 tokens.');
  });

  test('delivered a second time, it sends nothing more', async () => {
    const w = world();
    const alert = await w.recorded(alertOf());
    await deliverAlert(alert, w.deps);

    const again = await deliverAlert(alert, w.deps);

    expect(again).toEqual({ sent: 0, alreadySent: 2, possibleDuplicates: 0, noContacts: false });
    expect(w.email.sent).toHaveLength(2);
  });

  test('an alert that was never recorded is refused, and nobody is emailed', async () => {
    const w = world();

    await expect(deliverAlert(alertOf(), w.deps)).rejects.toThrow(`alert ${ACME.id} tokens ${OCT.start} 80% is not recorded`);
    expect(w.email.sent).toEqual([]);
  });

  test('a workspace without contacts: done as no_contacts, and contacts added later are not emailed for it', async () => {
    const w = world();
    const alert = await w.recorded(alertOf({ subject: QUIET.id }));

    const first = await deliverAlert(alert, w.deps);
    await w.subjects.put({ ...QUIET, contacts: ['late@quiet.example'] });
    const retry = await deliverAlert(alert, w.deps);

    expect(first).toEqual({ sent: 0, alreadySent: 0, possibleDuplicates: 0, noContacts: true });
    expect(retry).toEqual({ sent: 0, alreadySent: 0, possibleDuplicates: 0, noContacts: true });
    expect(w.email.sent).toEqual([]);
    expect((await w.alerts.delivery(alert))?.status).toBe('no_contacts');
  });

  test('a workspace deleted since the alert was recorded: done as no_contacts', async () => {
    const w = world();
    const alert = await w.recorded(alertOf());
    w.subjects.all.delete(ACME.id);

    const result = await deliverAlert(alert, w.deps);

    expect(result.noContacts).toBe(true);
    expect(w.email.sent).toEqual([]);
  });

  test('the sender failing on the first contact stops the delivery before the second is tried', async () => {
    const w = world();
    const alert = await w.recorded(alertOf());
    w.email.failures = [new Error('Daily message quota exceeded')];

    await expect(deliverAlert(alert, w.deps)).rejects.toThrow('Daily message quota exceeded');

    expect(w.email.sent).toEqual([]);
    expect(await w.alerts.delivery(alert)).toMatchObject({ status: 'pending', sentTo: [], attempted: ['a1@acme.example'] });
  });

  test('the sender failing on the second contact: the retry sends to that contact only and counts the attempt as a possible duplicate', async () => {
    // Arrange: the first send goes through, the second throws
    const w = world();
    const alert = await w.recorded(alertOf());
    const send = w.email.send.bind(w.email);
    let calls = 0;
    w.email.send = async (email) => {
      if (++calls === 2) throw new Error('Throttling: maximum sending rate exceeded');
      return send(email);
    };

    // Act
    const failure = await deliverAlert(alert, w.deps).catch((error: unknown) => error);
    const afterFailure = await w.alerts.delivery(alert);
    const retry = await deliverAlert(alert, w.deps);

    // Assert: a2's send was started and refused; the store cannot tell that from a crash after SES accepted it
    expect(failure).toEqual(new Error('Throttling: maximum sending rate exceeded'));
    expect(afterFailure).toMatchObject({ status: 'pending', sentTo: ['a1@acme.example'], attempted: ['a1@acme.example', 'a2@acme.example'] });
    expect(retry).toEqual({ sent: 1, alreadySent: 1, possibleDuplicates: 1, noContacts: false });
    expect(w.email.sent.map((e) => e.to)).toEqual(['a1@acme.example', 'a2@acme.example']);
    expect((await w.alerts.delivery(alert))?.status).toBe('sent');
  });
});

describe('formatAmount', () => {
  test.each([
    [0n, '0'],
    [1n, '0.000000001'],
    [999n * N, '999'],
    [1000n * N, '1,000'],
    [1_234_567n * N + N / 2n, '1,234,567.5'],
    [9_007_199_254_740_993n * N, '9,007,199,254,740,993'], // 2^53 + 1, past what a double holds
  ])('%p nano-units → %p', (amount, expected) => {
    expect(formatAmount(amount)).toBe(expected);
  });
});

describe('formatInstant', () => {
  test.each([
    ['2026-12-01T00:00:00.000Z', 'UTC', '1 December 2026 at 00:00 UTC'],
    ['2028-02-29T00:00:00.000Z', 'UTC', '29 February 2028 at 00:00 UTC'],
    // 1 Nov 2026 04:00Z is local midnight still in daylight time (EDT, UTC−4); 05:00Z would be 01:00 EDT
    ['2026-11-01T04:00:00.000Z', 'America/New_York', '1 November 2026 at 00:00 (America/New_York)'],
    ['2026-12-01T05:00:00.000Z', 'America/New_York', '1 December 2026 at 00:00 (America/New_York)'],
    // A half-hour zone: 00:00Z is 05:30 in India
    ['2026-12-01T00:00:00.000Z', 'Asia/Kolkata', '1 December 2026 at 05:30 (Asia/Kolkata)'],
  ])('%s in %s → %p', (instant, timeZone, expected) => {
    expect(formatInstant(instant, timeZone)).toBe(expected);
  });
});
