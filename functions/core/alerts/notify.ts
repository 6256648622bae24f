import Handlebars from 'handlebars';
import { units } from '../billing/balance';
import { type QuotaDeps, quotaView } from '../billing/quotas';
import type { Config } from '../config';
import type { Subject, SubjectDirectory } from '../ports';
import { toDecimalString } from '../quantity';
import type { Alert, AlertStore, Email, EmailSender } from './alerts-ports';
import { HTML, SUBJECT, TEXT } from './templates/threshold-email';

/**
 * Deliver one threshold alert by email, once per contact.
 * 1. Skip what is already delivered: the alert's record says which contacts SES accepted a message for.
 * 2. For each other contact (one message each, so contacts never see each other): mark the attempt,
 *    send, mark it sent. Only a crash between SES accepting and the mark can send twice; a retry that
 *    finds an attempt without its mark counts it as a possible duplicate.
 * 3. Mark the alert done (`no_contacts` when the workspace has none: recorded, nobody emailed).
 */

export interface NotifyDeps extends QuotaDeps {
  config: Config;
  subjects: SubjectDirectory;
  alerts: AlertStore;
  email: EmailSender;
}

export interface DeliveryResult {
  sent: number;
  alreadySent: number;
  possibleDuplicates: number;
  noContacts: boolean;
}

const render = {
  subject: Handlebars.compile(SUBJECT, { noEscape: true, strict: true }),
  text: Handlebars.compile(TEXT, { noEscape: true, strict: true }),
  html: Handlebars.compile(HTML, { strict: true }),
};

export async function deliverAlert(alert: Alert, deps: NotifyDeps): Promise<DeliveryResult> {
  const result: DeliveryResult = { sent: 0, alreadySent: 0, possibleDuplicates: 0, noContacts: false };
  const delivery = await deps.alerts.delivery(alert);
  if (!delivery) throw new Error(`alert ${alert.subject} ${alert.usageType} ${alert.cycleStart} ${alert.threshold}% is not recorded`);
  if (delivery.status !== 'pending') return { ...result, alreadySent: delivery.sentTo.length, noContacts: delivery.status === 'no_contacts' };
  const subject = (await deps.subjects.getMany([alert.subject])).get(alert.subject);
  if (!subject || subject.contacts.length === 0) {
    await deps.alerts.markDone(alert, 'no_contacts');
    return { ...result, noContacts: true };
  }
  const content = await thresholdEmail(alert, subject, deps);
  for (const to of subject.contacts) {
    if (delivery.sentTo.includes(to)) {
      result.alreadySent += 1;
      continue;
    }
    if (delivery.attempted.includes(to)) result.possibleDuplicates += 1;
    await deps.alerts.markAttempted(alert, to);
    await deps.email.send({ from: deps.config.notifications.from, to, ...content });
    await deps.alerts.markSent(alert, to);
    result.sent += 1;
  }
  await deps.alerts.markDone(alert, 'sent');
  return result;
}

/** Subject line, text and HTML of the email for an alert. Use and allowance are those at the crossing. */
export async function thresholdEmail(alert: Alert, subject: Subject, deps: QuotaDeps & { config: Config }): Promise<Omit<Email, 'from' | 'to'>> {
  const used = units(alert.used);
  const allowance = units(alert.allowance);
  // Bonus and top-up credits held now, if the alert is for the current cycle.
  const quota = (await quotaView(alert.subject, deps)).quotas.find((q) => q.usageType === alert.usageType && q.cycleStart === alert.cycleStart);
  const bonus = units(quota?.bonusAmount ?? 0);
  const left = allowance > used ? allowance - used : 0n;
  const values = {
    workspace: subject.name ?? subject.id,
    usageType: alert.usageType,
    threshold: alert.threshold,
    used: formatAmount(used),
    allowance: formatAmount(allowance),
    remaining: formatAmount(left + bonus),
    bonus: bonus > 0n ? formatAmount(bonus) : '',
    resetsAt: formatInstant(alert.cycleEnd, subject.timeZone),
    usageUrl: `${deps.config.notifications.usageBaseUrl.replace(/\/+$/, '')}/workspaces/${encodeURIComponent(subject.id)}/usage`,
  };
  return { subject: render.subject(values), text: render.text(values), html: render.html(values) };
}

/** 1234567.5 → "1,234,567.5", exactly (no float): the integer part grouped, the decimals as they are. */
export function formatAmount(amount: bigint): string {
  const [whole = '0', fraction] = toDecimalString(amount).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction ? `${grouped}.${fraction}` : grouped;
}

/** '2026-12-15T00:00:00.000Z' in UTC → "15 December 2026 at 00:00 UTC". */
export function formatInstant(instant: string, timeZone: string): string {
  const format = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'short', timeZone });
  return `${format.format(new Date(instant))} ${timeZone === 'UTC' ? 'UTC' : `(${timeZone})`}`;
}
