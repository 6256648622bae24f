/** Where threshold crossings are recorded, and how their emails are sent. */

/** One crossed threshold of one subject, usage type and cycle. */
export interface Alert {
  subject: string;
  usageType: string;
  cycleStart: string;
  cycleEnd: string;
  /** Percent of the cycle allowance. */
  threshold: number;
  /** True for the highest threshold an evaluation crossed; lower ones crossed with it are only recorded as passed. */
  notify: boolean;
  /** Use and allowance (L + S) when the crossing was seen, exact decimal strings. */
  used: string;
  allowance: string;
  recordedAt: string;
}

export interface AlertDelivery {
  alert: Alert;
  /** Contacts SES has accepted a message for. */
  sentTo: string[];
  /** Contacts a send was started for (a start without a `sentTo` entry is a send that may or may not have happened). */
  attempted: string[];
  status: 'pending' | 'sent' | 'no_contacts';
}

export interface AlertStore {
  /** Thresholds already recorded for the subject, usage type and cycle. */
  recorded(subject: string, usageType: string, cycleStart: string): Promise<Set<number>>;
  /** Writes the alert unless one exists for its subject, usage type, cycle and threshold; true if written. */
  record(alert: Alert): Promise<boolean>;
  delivery(alert: Pick<Alert, 'subject' | 'usageType' | 'cycleStart' | 'threshold'>): Promise<AlertDelivery | undefined>;
  markAttempted(alert: Alert, contact: string): Promise<void>;
  markSent(alert: Alert, contact: string): Promise<void>;
  markDone(alert: Alert, status: 'sent' | 'no_contacts'): Promise<void>;
}

export interface Email {
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface EmailSender {
  /** Sends one message; resolves with the provider's message id once it has accepted it. */
  send(email: Email): Promise<string>;
}
