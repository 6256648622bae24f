import type { Config } from '../config';
import type { Clock, SubjectDirectory } from '../ports';
import { type EnvelopeRules, envelopeRules, identityOfKey, parseMessageBody, type Rejection, type RejectionReason, type UsageEvent, validateEvent } from './envelope';
import type { DeadLetter, DeadLetterQueue, ParkedRecords, QuarantineRecord, QuarantineReplaySource, ReplayFilter, ReplayQueue, RollupWriter } from './metering-ports';
import { type BreakdownPolicy, ChunkRefusedError, CycleItemsChangedError, cycleItemKey, type ParkedRecord, parseCycleItemKey, planChunks } from './rollups';

/**
 * Replay: send messages back to the usage queue once what made them fail is fixed.
 * 1. Read the source (the dead-letter queue or the quarantine) and keep what the filters select.
 * 2. A quarantined entry is replayed only if its event passes validation now; the others stay, with their current reason.
 * 3. Send each with the time it was first sent, then remove it from its source, so a second replay finds nothing.
 * The ledger keeps one item per event identity, so an event sent twice (a replay that crashed before the
 * removal, a message also redelivered) still counts once.
 */

export type ReplaySource = 'dlq' | 'quarantine' | 'parked';

export interface ReplayOptions {
  dryRun: boolean;
  /** Called as entries are handled; `total` is what the source said it held at the start (a DLQ count is approximate). */
  onProgress?: (done: number, total: number) => void;
}

export type ReplayOutcome = 'replayed' | 'would-replay' | 'skipped' | 'failed';

export interface ReplayItem {
  /** The dead-letter message's id, or the quarantined message's id and the event's index in it (`id#index`). */
  id: string;
  outcome: ReplayOutcome;
  /** The subject the entry names, when it names one. */
  subject?: string;
  /** Of a quarantine entry: the reason it was quarantined with. */
  reason?: RejectionReason;
  /** Of a quarantine entry of one event: the identity it names. */
  event?: { source: string; id: string };
  /** Why it was skipped or failed, or what to know about it. */
  detail?: string;
}

export interface ReplayResult {
  from: ReplaySource;
  dryRun: boolean;
  /** Sent back to the usage queue (in a dry run: 0). */
  replayed: number;
  /** What a dry run would send. */
  wouldReplay: number;
  /** Selected but not replayable (a quarantined event that is still invalid, or whose body was cut short). */
  skipped: number;
  /** The queue refused the send; the entry stays where it was. */
  failed: number;
  items: ReplayItem[];
}

export interface DeadLetterReplayDeps {
  dlq: DeadLetterQueue;
  queue: ReplayQueue;
}

/**
 * Replays the dead-letter queue: every message (of one subject, when asked) goes back whole; a message is
 * deleted from the DLQ only after the usage queue accepted it. Messages not selected, and those whose send
 * failed, are made visible again when the replay ends.
 */
export async function replayDeadLetters(filter: Pick<ReplayFilter, 'subject'>, options: ReplayOptions, deps: DeadLetterReplayDeps): Promise<ReplayResult> {
  const result = emptyResult('dlq', options.dryRun);
  const total = await deps.dlq.approximateCount();
  const seen = new Set<string>();
  // Every message received and not deleted is made visible again at the end, whatever happens.
  const held = new Set<DeadLetter>();
  try {
    for (let batch = await deps.dlq.receive(); batch.length > 0; batch = await deps.dlq.receive()) {
      batch.forEach((message) => held.add(message));
      // A message seen already came back because its hiding time ran out: it was handled once, and is left.
      const fresh = batch.filter((message) => !seen.has(message.messageId));
      fresh.forEach((message) => seen.add(message.messageId));

      const selected = fresh.filter((message) => filter.subject === undefined || subjectsOf(message.body).includes(filter.subject));
      if (options.dryRun) {
        selected.forEach((message) => record(result, { ...deadLetterItem(message), outcome: 'would-replay' }));
      } else if (selected.length > 0) {
        const refused = new Set((await deps.queue.resend(selected)).failed);
        const sent = selected.filter((message) => !refused.has(message));
        const undeleted = new Set((await deps.dlq.delete(sent)).failed);
        sent.filter((message) => !undeleted.has(message)).forEach((message) => held.delete(message));
        for (const message of selected) {
          if (refused.has(message)) record(result, { ...deadLetterItem(message), outcome: 'failed', detail: 'the usage queue refused the message; it stays in the dead-letter queue' });
          else if (undeleted.has(message))
            record(result, { ...deadLetterItem(message), outcome: 'replayed', detail: 'sent, but not deleted from the dead-letter queue; replaying it again counts it once' });
          else record(result, { ...deadLetterItem(message), outcome: 'replayed' });
        }
      }
      options.onProgress?.(seen.size, Math.max(total, seen.size));
    }
  } finally {
    await deps.dlq.release([...held]);
  }
  return result;
}

export interface QuarantineReplayDeps {
  quarantine: QuarantineReplaySource;
  queue: ReplayQueue;
  config: Config;
  subjects: SubjectDirectory;
  clock: Clock;
}

/**
 * Replays the quarantine: an entry whose event passes validation now (its usage type configured, its subject
 * existing, its time within the window) is sent back and removed; any other stays, reported with the reason
 * it fails for now. Ingest validates again, as for any message.
 */
export async function replayQuarantine(filter: ReplayFilter, options: ReplayOptions, deps: QuarantineReplayDeps): Promise<ReplayResult> {
  const result = emptyResult('quarantine', options.dryRun);
  const total = await deps.quarantine.count(filter);
  const rules = envelopeRules(deps.config, deps.clock.now());
  let done = 0;
  for await (const page of deps.quarantine.entries(filter)) {
    const selected = page.filter((entry) => matches(entry, filter));
    const judged = await judge(selected, rules, deps.subjects);
    const replayable = judged.filter((j) => j.rejection === undefined);
    for (const { entry, rejection } of judged) {
      if (rejection) record(result, { ...quarantineItem(entry), outcome: 'skipped', detail: `${rejection.reason}: ${rejection.detail}` });
    }
    if (options.dryRun) {
      replayable.forEach(({ entry }) => record(result, { ...quarantineItem(entry), outcome: 'would-replay' }));
    } else if (replayable.length > 0) {
      const { failed } = await deps.queue.resend(replayable.map(({ entry }) => entry));
      const refused = new Set<QuarantineRecord>(failed);
      const sent = replayable.filter(({ entry }) => !refused.has(entry));
      const unremoved = new Set((await deps.quarantine.remove(sent.map(({ entry }) => entry))).failed);
      for (const { entry } of replayable) {
        const item = quarantineItem(entry);
        if (refused.has(entry)) record(result, { ...item, outcome: 'failed', detail: 'the usage queue refused the message; the entry stays in the quarantine' });
        else if (unremoved.has(entry)) record(result, { ...item, outcome: 'replayed', detail: 'sent, but not removed from the quarantine; replaying it again counts it once' });
        else record(result, { ...item, outcome: 'replayed' });
      }
    }
    done += selected.length;
    options.onProgress?.(done, Math.max(total, done));
  }
  return result;
}

export interface ParkedReplayDeps {
  parked: ParkedRecords;
  rollups: Pick<RollupWriter, 'readCycleStates'>;
  breakdowns: BreakdownPolicy;
}

/** A parked record is planned afresh this many times when other writers keep changing its cycle items. */
const MAX_PARKED_ATTEMPTS = 5;

/**
 * Replays parked ledger records (`ParkedRecord`): each record's change is planned as the aggregator plans it,
 * from its cycle items as they are now, and applied together with the record's removal in one transaction,
 * so a record is applied once however often replay runs. One that DynamoDB still refuses stays parked.
 */
export async function replayParked(filter: Pick<ReplayFilter, 'subject'>, options: ReplayOptions, deps: ParkedReplayDeps): Promise<ReplayResult> {
  const result = emptyResult('parked', options.dryRun);
  const records = await deps.parked.parked(filter.subject);
  for (const [done, parked] of records.entries()) {
    const item = parkedItem(parked);
    if (options.dryRun) record(result, { ...item, outcome: 'would-replay', detail: parked.reason });
    else record(result, await applyParked(parked, item, deps));
    options.onProgress?.(done + 1, records.length);
  }
  return result;
}

async function applyParked(record: ParkedRecord, item: Omit<ReplayItem, 'outcome'>, deps: ParkedReplayDeps): Promise<ReplayItem> {
  const images = [record.change.oldImage, record.change.newImage].flatMap((image) => (image ? [image] : []));
  const keys = [...new Set(images.map((image) => cycleItemKey(image.subject, image.cycleStart, image.usageType)))];
  for (let attempt = 1; ; attempt++) {
    const states = await deps.rollups.readCycleStates(keys.map(parseCycleItemKey));
    const closed = new Set([...states].filter(([, state]) => state.closed).map(([key]) => key));
    const [chunk] = planChunks([record.change], Number.MAX_SAFE_INTEGER, closed, states, deps.breakdowns);
    try {
      const outcome = await deps.parked.applyParked(record, chunk ?? { updates: [], runs: [], sequenceNumbers: [] });
      return outcome === 'applied' ? { ...item, outcome: 'replayed' } : { ...item, outcome: 'skipped', detail: 'replayed already' };
    } catch (error) {
      if (error instanceof CycleItemsChangedError && attempt < MAX_PARKED_ATTEMPTS) continue;
      if (error instanceof ChunkRefusedError) return { ...item, outcome: 'skipped', detail: `still refused, stays parked: ${error.message}` };
      return { ...item, outcome: 'failed', detail: `stays parked: ${error instanceof Error ? error.message : String(error)}` };
    }
  }
}

function parkedItem(record: ParkedRecord): Omit<ReplayItem, 'outcome'> {
  const image = record.change.newImage ?? record.change.oldImage;
  const event = image ? identityOfKey(image.eventKey) : undefined;
  return {
    id: `${record.shardId}#${record.sequenceNumber}`,
    ...(image ? { subject: image.subject } : {}),
    ...(event ? { event } : {}),
  };
}

/** Validates each entry's body as ingest would now: the message must split into events that all pass, for subjects that exist. */
async function judge(entries: readonly QuarantineRecord[], rules: EnvelopeRules, subjects: SubjectDirectory): Promise<{ entry: QuarantineRecord; rejection?: Rejection }[]> {
  const validated = entries.map((entry) => {
    if (entry.bodyTruncated) return { entry, rejection: { reason: entry.reason, detail: 'the stored body was cut short, so it cannot be sent again' } };
    const split = parseMessageBody(entry.body);
    if (!split.ok) return { entry, rejection: split.rejection };
    const events: UsageEvent[] = [];
    for (const raw of split.events) {
      const checked = validateEvent(raw, rules);
      if (!checked.ok) return { entry, rejection: checked.rejection };
      events.push(checked.event);
    }
    return { entry, events };
  });
  const known = await subjects.getMany([...new Set(validated.flatMap((v) => (v.events ?? []).map((e) => e.subject)))]);
  return validated.map((v) => {
    const unknown = v.events?.find((e) => !known.has(e.subject));
    if (unknown) return { entry: v.entry, rejection: { reason: 'unknown_subject' as const, detail: `subject "${unknown.subject}" does not exist` } };
    return v.rejection ? { entry: v.entry, rejection: v.rejection } : { entry: v.entry };
  });
}

function matches(entry: QuarantineRecord, filter: ReplayFilter): boolean {
  return (filter.subject === undefined || entry.subject === filter.subject) && (filter.reason === undefined || entry.reason === filter.reason);
}

/** The subjects a message body names (any event of it); none when it is not JSON. */
function subjectsOf(body: string): string[] {
  const split = parseMessageBody(body);
  if (!split.ok) return [];
  return split.events.flatMap((raw) => {
    const subject = typeof raw === 'object' && raw !== null ? (raw as { subject?: unknown }).subject : undefined;
    return typeof subject === 'string' ? [subject] : [];
  });
}

function deadLetterItem(message: DeadLetter): Omit<ReplayItem, 'outcome'> {
  const subjects = [...new Set(subjectsOf(message.body))];
  return { id: message.messageId, ...(subjects.length > 0 ? { subject: subjects.join(',') } : {}) };
}

function quarantineItem(entry: QuarantineRecord): Omit<ReplayItem, 'outcome'> {
  const event = identityOf(entry.body);
  return {
    id: `${entry.messageId}#${entry.index}`,
    ...(entry.subject !== undefined ? { subject: entry.subject } : {}),
    reason: entry.reason,
    ...(event ? { event } : {}),
  };
}

/** The identity a body of one event names, valid or not, so that an operator can tell entries apart. */
function identityOf(body: string): { source: string; id: string } | undefined {
  const split = parseMessageBody(body);
  const raw = split.ok && split.events.length === 1 ? split.events[0] : undefined;
  const { source, id } = typeof raw === 'object' && raw !== null ? (raw as { source?: unknown; id?: unknown }) : {};
  return typeof source === 'string' && typeof id === 'string' ? { source, id } : undefined;
}

function emptyResult(from: ReplaySource, dryRun: boolean): ReplayResult {
  return { from, dryRun, replayed: 0, wouldReplay: 0, skipped: 0, failed: 0, items: [] };
}

function record(result: ReplayResult, item: ReplayItem): void {
  result.items.push(item);
  if (item.outcome === 'replayed') result.replayed += 1;
  else if (item.outcome === 'would-replay') result.wouldReplay += 1;
  else if (item.outcome === 'skipped') result.skipped += 1;
  else result.failed += 1;
}

/** The result as an operator reads it: the counts, then one line per entry. */
export function replayTable(result: ReplayResult): string {
  const counts = result.dryRun
    ? `${result.wouldReplay} would be replayed, ${result.skipped} skipped (dry run: nothing changed)`
    : `${result.replayed} replayed, ${result.skipped} skipped, ${result.failed} failed`;
  const lines = result.items.map((item) =>
    [
      item.outcome.padEnd(12),
      (item.subject ?? '-').padEnd(16),
      (item.reason ?? '-').padEnd(18),
      item.id,
      ...(item.event ? [`${item.event.source} ${item.event.id}`] : []),
      ...(item.detail ? [item.detail] : []),
    ].join('  '),
  );
  return [`replay from ${result.from}: ${counts}`, ...lines].join('\n');
}
