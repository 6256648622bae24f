import type { TestEvent } from '../../testkit/ground-truth';
import { Random } from '../../testkit/random';

/**
 * The benchmark's traffic, generated the same way in the parent (for the ground truth) and in each
 * contender's process (to send it), so that the events never sit in a file or in a measured process's
 * memory all at once. Same plan, same messages: identities, subjects, quantities, channels and times.
 */

export interface EventPlan {
  /** Unique events; duplicates come on top. */
  count: number;
  /** Duplicates per unique event (0.1: one resend for every ten events). */
  duplicateRate: number;
  /** A duplicate follows its original by 1 to this many messages. */
  duplicateSpread: number;
  subjects: readonly string[];
  /** Event times fall in the minute before this instant (epoch ms): live traffic. */
  now: number;
  /** Keeps identities of different phases apart. */
  idPrefix: string;
  /** Whether events name a user (50 per workspace) and a group (5 per workspace). */
  usersAndGroups: boolean;
  seed: number;
}

export type BenchEvent = TestEvent & { data: { groupId?: string } };

export interface Message {
  event: BenchEvent;
  body: string;
  /** A resend of an earlier message: same source, id and body. */
  duplicate: boolean;
}

const SOURCE = 'bench/producer';
export const USAGE_TYPE = 'tokens';
const CHANNELS = ['ui', 'api', 'cli', 'mcp'];

/** Every message of the plan, in sending order: each unique event once, and each chosen one again a little later. */
export function* messages(plan: EventPlan): Generator<Message> {
  const random = new Random(plan.seed);
  const pending = new Map<number, Message[]>(); // message position → resends due there
  let position = 0;
  const emit = function* (message: Message): Generator<Message> {
    yield message;
    const at = ++position;
    const due = pending.get(at) ?? [];
    pending.delete(at);
    for (const resend of due) yield* emit(resend);
  };
  for (let i = 0; i < plan.count; i++) {
    const event = makeEvent(plan, i, random);
    const body = JSON.stringify(event);
    // Exactly floor(count × rate) resends, spread evenly over the originals.
    if (Math.floor((i + 1) * plan.duplicateRate) > Math.floor(i * plan.duplicateRate)) {
      const due = position + 1 + random.int(plan.duplicateSpread);
      pending.set(due, [...(pending.get(due) ?? []), { event, body, duplicate: true }]);
    }
    yield* emit({ event, body, duplicate: false });
  }
  for (const due of [...pending.keys()].sort((a, b) => a - b)) yield* pending.get(due) ?? [];
}

function makeEvent(plan: EventPlan, i: number, random: Random): BenchEvent {
  const subject = plan.subjects[random.int(plan.subjects.length)] ?? '';
  const data: BenchEvent['data'] = { usageType: USAGE_TYPE, quantity: 1 + random.int(100), channel: CHANNELS[random.int(CHANNELS.length)] ?? 'api' };
  if (plan.usersAndGroups) Object.assign(data, { userId: `user_${random.int(50)}`, groupId: `group_${random.int(5)}` });
  return {
    specversion: '1.0',
    id: `${plan.idPrefix}-${i}`,
    source: SOURCE,
    type: 'com.example.usage',
    subject,
    time: new Date(plan.now - random.int(60_000)).toISOString(),
    data,
  };
}
