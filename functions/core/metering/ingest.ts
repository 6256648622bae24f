import { z } from 'zod';
import { type Config } from '../config';
import { bucketsOf } from '../cycles';
import { stringifyExactJson } from '../exact-json';
import type { Clock, Subject, SubjectDirectory } from '../ports';
import { envelopeRules, eventKey, parseMessageBody, type Rejection, type UsageEvent, validateEvent } from './envelope';
import type { Ledger, Quarantine, QuarantineRecord } from './metering-ports';
import type { LedgerEntry } from './rollups';

/**
 * Ingest a batch of queue messages.
 * 1. Split each message into events and validate them; invalid ones go to the quarantine with their reason.
 * 2. Write valid events to the ledger, one item per identity (a duplicate rewrites the same item).
 * 3. Report only messages whose writes failed, so just those are redelivered.
 */

export interface QueueMessage {
  messageId: string;
  body: string;
  /** When the queue first received the message (stable across redeliveries). */
  sentAt: string;
}

export interface IngestDeps {
  config: Config;
  subjects: SubjectDirectory;
  ledger: Ledger;
  quarantine: Quarantine;
  clock: Clock;
}

export interface IngestResult {
  failedMessageIds: string[];
  accepted: number;
  duplicatesInBatch: number;
  /** Duplicates of earlier batches the ledger knew without a write. */
  knownDuplicates: number;
  quarantined: QuarantineRecord[];
}

export async function ingestMessages(messages: readonly QueueMessage[], deps: IngestDeps): Promise<IngestResult> {
  const now = deps.clock.now();
  const rules = envelopeRules(deps.config, now);
  const receivedAt = now.toISOString();
  const quarantined: QuarantineRecord[] = [];
  const candidates: { message: QueueMessage; index: number; event: UsageEvent; raw: unknown }[] = [];
  const rejectFor = (message: QueueMessage, index: number, rejection: Rejection, body: string, subject?: string) =>
    quarantined.push({ ...rejection, messageId: message.messageId, index, sentAt: message.sentAt, receivedAt, body, ...(subject ? { subject } : {}) });

  for (const message of messages) {
    const split = parseMessageBody(message.body);
    if (!split.ok) {
      rejectFor(message, 0, split.rejection, message.body);
      continue;
    }
    split.events.forEach((raw, index) => {
      const result = validateEvent(raw, rules);
      if (result.ok) candidates.push({ message, index, event: result.event, raw });
      else rejectFor(message, index, result.rejection, stringifyExactJson(raw), subjectOf(raw));
    });
  }

  const subjects = await deps.subjects.getMany([...new Set(candidates.map((c) => c.event.subject))]);
  // Pooled workspaces' credits count under their account too, in the account's day and cycle.
  const accountIds = [...new Set([...subjects.values()].flatMap((s) => (s.account === undefined ? [] : [s.account])))];
  const accounts = accountIds.length > 0 ? await deps.subjects.getMany(accountIds) : new Map<string, Subject>();
  const entriesByKey = new Map<string, { entry: LedgerEntry; messageIds: Set<string> }>();
  let duplicatesInBatch = 0;
  for (const { message, index, event, raw } of candidates) {
    const subject = subjects.get(event.subject);
    if (!subject) {
      rejectFor(message, index, { reason: 'unknown_subject', detail: `subject "${event.subject}" does not exist` }, stringifyExactJson(raw), event.subject);
      continue;
    }
    const key = eventKey(event);
    const existing = entriesByKey.get(key);
    if (existing) duplicatesInBatch += 1;
    const { sentAt } = message;
    const messageIds = existing?.messageIds ?? new Set<string>();
    messageIds.add(message.messageId);
    // The message sent last wins: a correction replaces the original, whatever order they arrive in.
    if (existing && existing.entry.sentAt > sentAt) {
      entriesByKey.set(key, { entry: existing.entry, messageIds });
      continue;
    }
    const entry: LedgerEntry = {
      ...event,
      sentAt,
      ...bucketsOf(event.time, subject),
      expiresAt: Math.floor(Date.parse(event.time) / 1000) + deps.config.ingest.retentionDays * 86_400,
    };
    const account = subject.account === undefined ? undefined : accounts.get(subject.account);
    if (entry.credits && account) {
      const { day, cycleStart } = bucketsOf(event.time, account);
      entry.credits = { ...entry.credits, pool: { subject: account.id, day, cycleStart, ...(subject.workspaceGroup ? { group: subject.workspaceGroup } : {}) } };
    }
    entriesByKey.set(key, { entry, messageIds });
  }

  const [ledgerResult, quarantineResult] = await Promise.all([deps.ledger.putAll([...entriesByKey.values()].map((e) => e.entry)), deps.quarantine.putAll(quarantined)]);

  const failed = new Set<string>();
  const failedKeys = new Set(ledgerResult.failed.map(eventKey));
  for (const [key, { messageIds }] of entriesByKey) if (failedKeys.has(key)) messageIds.forEach((id) => failed.add(id));
  for (const record of quarantineResult.failed) failed.add(record.messageId);

  return {
    failedMessageIds: messages.map((m) => m.messageId).filter((id) => failed.has(id)),
    accepted: entriesByKey.size - failedKeys.size,
    duplicatesInBatch,
    knownDuplicates: ledgerResult.knownDuplicates,
    quarantined,
  };
}

function subjectOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const subject = (raw as { subject?: unknown }).subject;
  return typeof subject === 'string' && subject.length > 0 && subject.length <= 128 ? subject : undefined;
}

/** Query of GET /v1/quarantine. */
export const quarantineQuerySchema = z.strictObject({
  subject: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
