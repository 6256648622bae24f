import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { appContext } from '../../functions/adapters/app-context';
import { createDocumentClient } from '../../functions/adapters/dynamodb';
import type { SesEmailSender } from '../../functions/adapters/ses-sender';
import { type LocalStack, startLocal } from '../../local/runtime';
import { suiteClockStart } from '../../testkit/clock-start';
import { usageEvent } from '../../testkit/events';
import type { TestEvent } from '../../testkit/ground-truth';
import { utcCycleStart } from '../../testkit/ground-truth';
import { StackClient } from '../support/local-stack';

/**
 * Threshold emails end to end: events over SQS (duplicated, redelivered, in arrays), the aggregator,
 * the alert records, the notify function and the SES stand-in, with faults injected: SES throttling,
 * a crash in notify before a send is marked, an aggregate batch retried after its commits. The SES store
 * must hold exactly the emails this file expects, with the numbers it computes itself.
 */

const MINUTE = 60_000;
const DAY = 86_400_000;

interface StoredEmail {
  destination: { to: string[] };
  from: string;
  subject: string;
  body: { text?: string; html?: string };
}

/** Faults the wrappers and patches inject; each counter is consumed as faults fire. */
const faults = { sesThrottles: 0, crashBeforeSend: 0, aggregateCrashAfterCommit: 0, alertWriteFailures: 0, injected: 0 };

let stack: LocalStack;
let client: StackClient;
let sequence = 0;

beforeAll(async () => {
  stack = await startLocal({
    clockStart: suiteClockStart(),
    configPath: 'test/fixtures/alert-config.json',
    visibilityTimeoutSeconds: 8,
    onError: () => undefined,
    wrapAggregate: (invoke) => async (event) => {
      const response = await invoke(event);
      if (faults.aggregateCrashAfterCommit > 0 && event.Records.length > 0) {
        faults.aggregateCrashAfterCommit -= 1;
        faults.injected += 1;
        throw new Error('injected: aggregate crash after its commits and alert records, before the response');
      }
      return response;
    },
  });
  client = new StackClient(stack);

  // SES refusing with throttling, as SES itself answers: ahead of the SDK's own retries, so the sender's backoff handles it.
  const sender = appContext.email() as SesEmailSender;
  sender.client.middlewareStack.add(
    (next) => async (args) => {
      if (faults.sesThrottles > 0) {
        faults.sesThrottles -= 1;
        faults.injected += 1;
        throw Object.assign(new Error('Maximum sending rate exceeded.'), { name: 'Throttling', $metadata: { httpStatusCode: 400 } });
      }
      return next(args);
    },
    { step: 'initialize', name: 'injectThrottling' },
  );
  // An alert write that fails after the batch's rollups committed: the aggregator must retry the batch and
  // record the alert from a batch whose commits are now all skipped.
  const alerts = appContext.alerts();
  const record = alerts.record.bind(alerts);
  alerts.record = async (alert) => {
    if (faults.alertWriteFailures > 0) {
      faults.alertWriteFailures -= 1;
      faults.injected += 1;
      throw Object.assign(new Error('injected: alert write throttled'), { name: 'ProvisionedThroughputExceededException' });
    }
    return record(alert);
  };
  // A crash after the attempt is marked and before SES is called: the retry must send exactly once.
  const send = sender.send.bind(sender);
  sender.send = async (email) => {
    if (faults.crashBeforeSend > 0) {
      faults.crashBeforeSend -= 1;
      faults.injected += 1;
      throw new Error('injected: notify crash before the send');
    }
    return send(email);
  };
});

afterAll(async () => {
  client?.close();
  await stack?.stop();
});

function event(subject: string, quantity: number, time: Date): TestEvent {
  sequence += 1;
  return usageEvent({ id: `alert-${sequence}`, source: '//test/alerts', subject, time, quantity });
}

/** `total` split into `parts` events; every body sent twice (a producer retry), a few as arrays. */
async function use(subject: string, total: number, parts: number): Promise<void> {
  const now = stack.clock.now().getTime();
  const events = Array.from({ length: parts }, (_, i) =>
    event(subject, i < parts - 1 ? Math.floor(total / parts) : total - Math.floor(total / parts) * (parts - 1), new Date(now - MINUTE - i * 1000)),
  );
  const bodies = events.map((e) => JSON.stringify(e));
  const arrays = events.length > 3 ? [JSON.stringify(events.slice(0, 3))] : [];
  await client.send([...bodies, ...bodies.reverse(), ...arrays]);
}

async function emails(): Promise<StoredEmail[]> {
  const response = await fetch(stack.ready.ses.store);
  return ((await response.json()) as { emails: StoredEmail[] }).emails;
}

/** The store, reduced to what each message is: recipient, subject line, and the reset date in its text. */
async function outbox(): Promise<string[]> {
  return (await emails()).map((e) => `${e.destination.to.join(',')} | ${e.subject} | ${/resets on (.*)\./.exec(e.body.text ?? '')?.[1] ?? '?'}`).sort();
}

const resetDate = (anchor: number, at: Date) => {
  const next = utcCycleStart(new Date(utcCycleStart(at, anchor).getTime() + 32 * DAY), anchor);
  return `${next.getUTCDate()} ${next.toLocaleString('en-GB', { month: 'long', timeZone: 'UTC' })} ${next.getUTCFullYear()} at 00:00 UTC`;
};
const line = (to: string, threshold: number, resets: string) => `${to} | You have used ${threshold}% of your monthly tokens | ${resets}`;

/** used, allowance and remaining as the email's text states them. */
function numbersIn(text: string): { used: number; allowance: number; remaining: number } {
  const usage = /allowance: ([\d,]+) of ([\d,]+) tokens/.exec(text);
  const remaining = /What remains: ([\d,]+) tokens/.exec(text);
  const n = (s: string | undefined) => Number((s ?? 'NaN').replaceAll(',', ''));
  return { used: n(usage?.[1]), allowance: n(usage?.[2]), remaining: n(remaining?.[1]) };
}

describe('threshold emails through the local stack', () => {
  test('exactly one email per contact per crossed threshold, with faults injected; none below a threshold', async () => {
    const cycle1 = resetDate(1, stack.clock.now());

    // Phase 1: steps to 85% and custom to 60% in many small events; jump 0 → 120% in one event; quiet
    // stays at 70%; nobody (no contacts) reaches 90%; the script-named workspace 80%. SES throttles three
    // sends, one notify crashes before sending, one aggregate batch crashes after committing, two alert
    // writes fail after their batch committed.
    Object.assign(faults, { sesThrottles: 3, crashBeforeSend: 1, aggregateCrashAfterCommit: 1, alertWriteFailures: 2 });
    await use('ws_steps', 850, 17);
    await use('ws_custom', 120, 12);
    await use('ws_jump', 1200, 1);
    await use('ws_quiet', 700, 7);
    await use('ws_nobody', 900, 3);
    await use('ws_script', 800, 4);
    await stack.settle();
    expect(await outbox()).toEqual(
      [
        line('s1@steps.example', 80, cycle1),
        line('s2@steps.example', 80, cycle1),
        line('c@custom.example', 50, cycle1),
        line('j@jump.example', 110, cycle1),
        line('x@script.example', 80, cycle1),
      ].sort(),
    );

    // Phase 2: steps jumps from 85% to 115% in one event (100 passed, 110 sent); custom goes to 95%.
    Object.assign(faults, { sesThrottles: 2, aggregateCrashAfterCommit: 1 });
    await use('ws_steps', 300, 1);
    await use('ws_custom', 70, 5);
    await stack.settle();
    expect(await outbox()).toEqual(
      [
        line('s1@steps.example', 80, cycle1),
        line('s2@steps.example', 80, cycle1),
        line('s1@steps.example', 110, cycle1),
        line('s2@steps.example', 110, cycle1),
        line('c@custom.example', 50, cycle1),
        line('c@custom.example', 90, cycle1),
        line('j@jump.example', 110, cycle1),
        line('x@script.example', 80, cycle1),
      ].sort(),
    );
    expect(faults.injected).toBe(10); // 3 + 2 throttles, 1 notify crash, 2 aggregate crashes, 2 alert write failures

    // The numbers: a single-event crossing states exactly the use after that event; a crossing over many
    // events states a use between the threshold and the phase's total. Remaining = allowance − used (no bonus).
    const all = await emails();
    const textOf = (to: string, threshold: number) => all.find((e) => e.destination.to[0] === to && e.subject.includes(`${threshold}%`))?.body.text ?? '';
    expect(numbersIn(textOf('j@jump.example', 110))).toEqual({ used: 1200, allowance: 1000, remaining: 0 });
    expect(numbersIn(textOf('s1@steps.example', 110))).toEqual({ used: 1150, allowance: 1000, remaining: 0 });
    const steps80 = numbersIn(textOf('s1@steps.example', 80));
    expect(steps80.used).toBeGreaterThanOrEqual(800);
    expect(steps80.used).toBeLessThanOrEqual(850);
    expect([steps80.allowance, steps80.remaining]).toEqual([1000, 1000 - steps80.used]);
    const custom90 = numbersIn(textOf('c@custom.example', 90));
    expect(custom90.used).toBeGreaterThanOrEqual(180);
    expect(custom90.used).toBeLessThanOrEqual(190);

    // Customer values are escaped in HTML; the alert of the workspace without contacts is recorded, not sent.
    const script = all.find((e) => e.destination.to[0] === 'x@script.example');
    expect(script?.body.html).toContain('&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Sons');
    expect(script?.body.html).not.toContain('<script>');
    expect(all.every((e) => e.from === 'alerts@usage.example' && e.destination.to.length === 1)).toBe(true);
    expect(await alertsOf('ws_nobody')).toEqual([[80, true, 'no_contacts']]);
  });

  test('a new cycle re-arms the thresholds', async () => {
    // Arrange: into the next cycle (anchor 1), an hour after it starts
    const before = (await emails()).length;
    const next = utcCycleStart(new Date(utcCycleStart(stack.clock.now(), 1).getTime() + 32 * DAY), 1);
    await stack.advanceClock(new Date(next.getTime() + 61 * MINUTE));
    const cycle2 = resetDate(1, stack.clock.now());

    // Act: steps uses 90% of the new cycle's allowance in one event
    await use('ws_steps', 900, 1);
    await stack.settle();

    // Assert
    const added = (await outbox()).length - before;
    expect(added).toBe(2);
    expect(await outbox()).toEqual(expect.arrayContaining([line('s1@steps.example', 80, cycle2), line('s2@steps.example', 80, cycle2)]));
    const latest = (await emails()).slice(-2);
    expect(latest.map((e) => numbersIn(e.body.text ?? ''))).toEqual([
      { used: 900, allowance: 1000, remaining: 100 },
      { used: 900, allowance: 1000, remaining: 100 },
    ]);
  });
});

/** [threshold, notify, status] of every alert record of a subject, in threshold order. */
async function alertsOf(subject: string): Promise<[number, boolean, string][]> {
  const documents = createDocumentClient();
  try {
    const { Items = [] } = await documents.send(new QueryCommand({ TableName: stack.tables.alerts, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': subject } }));
    return Items.map((i) => [Number(String(i.sk).split('#').at(-1)), Boolean(i.notify), String(i.status)] as [number, boolean, string]).sort((a, b) => a[0] - b[0]);
  } finally {
    documents.destroy();
  }
}
