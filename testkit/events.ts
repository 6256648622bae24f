import type { TestEvent } from './ground-truth';

/** What a test says of a usage event; the rest is filled in as every suite fills it. */
export interface EventFields {
  subject: string;
  id: string;
  time: string | Date;
  quantity: number;
  usageType?: string;
  /** Default '//tests'. */
  source?: string;
  /** Default 'com.example.usage'. */
  type?: string;
  userId?: string;
  groupId?: string;
  channel?: string;
  feature?: string;
}

/** A valid CloudEvents 1.0 usage event, the one builder the suites and the benches share. */
export function usageEvent(fields: EventFields): TestEvent {
  const { subject, id, time, quantity, usageType = 'tokens', source = '//tests', type = 'com.example.usage', ...dimensions } = fields;
  const data: TestEvent['data'] = { usageType, quantity };
  for (const name of ['userId', 'groupId', 'channel', 'feature'] as const) if (dimensions[name] !== undefined) data[name] = dimensions[name];
  return { specversion: '1.0', id, source, type, subject, time: typeof time === 'string' ? time : time.toISOString(), data };
}
