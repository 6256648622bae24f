import type { _Record } from '@aws-sdk/client-dynamodb-streams';
import { describe, expect, test } from '@jest/globals';
import { MAX_PAYLOAD_BYTES } from '../../../local/lambda-context';
import { fittingPayload, toLambdaRecord } from '../../../local/stream-poller';

/**
 * The local stream poller ends a batch where Lambda would: before the invocation's JSON passes 6 MB,
 * however many records the batch size allows. The sizes are checked against the event itself,
 * stringified here as the invocation would carry it.
 */

const STREAM_ARN = 'arn:aws:dynamodb:us-east-1:000000000000:table/usage-pipeline-ledger/stream/2026-11-24T00:00:00.000';

function ledgerRecord(n: number, padding = 0): _Record {
  const s = (S: string) => ({ S });
  return {
    eventID: `event-${n}`,
    eventName: 'INSERT',
    dynamodb: {
      Keys: { pk: s(`["billing","evt_${n}"]`) },
      NewImage: {
        pk: s(`["billing","evt_${n}"]`),
        subject: s(`ws_${n % 1000}`),
        usageType: s('tokens'),
        quantity: { N: String(n) },
        hour: s('2026-11-24T10'),
        day: s('2026-11-24'),
        cycleStart: s('2026-11-01T00:00:00.000Z'),
        note: s('x'.repeat(padding)),
      },
      SequenceNumber: String(100_000_000 + n),
      SizeBytes: 400 + padding,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}

/** The invocation's payload as Lambda would send it, window fields included. */
function eventBytes(records: _Record[]): number {
  const event = {
    Records: records.map((r) => toLambdaRecord(r, STREAM_ARN)),
    shardId: 'shardId-00000001700000000000-00000000',
    state: {},
    window: { start: '2026-11-24T10:00:00.000Z', end: '2026-11-24T10:01:00.000Z' },
    isFinalInvokeForWindow: false,
    isWindowTerminatedEarly: false,
  };
  return Buffer.byteLength(JSON.stringify(event));
}

describe('fittingPayload', () => {
  test('a batch of ledger records that would pass 6 MB ends at the last record that fits', () => {
    // Arrange: 10,000 records of ~1 KB, about 10 MB in all
    const records = Array.from({ length: 10_000 }, (_, n) => ledgerRecord(n, 400));

    // Act
    const fitting = fittingPayload(records, STREAM_ARN);

    // Assert
    expect(eventBytes(records)).toBeGreaterThan(MAX_PAYLOAD_BYTES);
    expect(fitting).toBeLessThan(records.length);
    expect(eventBytes(records.slice(0, fitting))).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    // Not much short of the limit either: one more record, and a few more, would pass it.
    expect(eventBytes(records.slice(0, fitting + 3))).toBeGreaterThan(MAX_PAYLOAD_BYTES);
  });

  test('records that fit are all delivered', () => {
    // Arrange
    const records = Array.from({ length: 1_000 }, (_, n) => ledgerRecord(n));

    // Act + Assert
    expect(eventBytes(records)).toBeLessThan(MAX_PAYLOAD_BYTES);
    expect(fittingPayload(records, STREAM_ARN)).toBe(records.length);
  });

  test('a batch always carries at least its first record', () => {
    // Arrange: one record larger than the limit on its own
    const records = [ledgerRecord(1, MAX_PAYLOAD_BYTES), ledgerRecord(2)];

    // Act + Assert
    expect(fittingPayload(records, STREAM_ARN)).toBe(1);
  });
});
