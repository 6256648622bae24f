import { describe, expect, test } from '@jest/globals';
import { type Config, configSchema } from '../../../functions/core/config';
import { ingestMessages } from '../../../functions/core/metering/ingest';
import { type LedgerChange, type LedgerImage, meteredImages, planChunks } from '../../../functions/core/metering/rollups';
import type { Subject } from '../../../functions/core/ports';
import { FixedClock, InMemoryLedger, InMemoryQuarantine, InMemorySubjectDirectory } from '../../support/fakes';
import { plain } from './plain-chunks';

/**
 * Pools: a pooled workspace's priced event counts its credits under its account too, in the account's own day
 * and cycle (its time zone and anchor, not the workspace's), with the workspace's group as the group. Days
 * and cycle starts are worked out by hand in the comments.
 */

const NANO = 1_000_000_000n;

const config: Config = configSchema.parse({
  usageTypes: [
    { id: 'images', unit: 'image' },
    { id: 'credits', unit: 'credit', allowFractions: true },
  ],
  plans: [{ id: 'pro', quotas: { credits: { monthlyLimit: 100 } } }],
  credits: { usageType: 'credits', rates: { images: [{ from: '2020-01-01T00:00:00Z', rules: [{ when: {}, credits: 2 }] }] } },
});

const subject = (id: string, fields: Partial<Subject>): Subject => ({ id, plan: 'pro', billingAnchorDay: 1, timeZone: 'UTC', contacts: [], ...fields });
// The account is in New York, anchored on the 15th; its workspace in Tokyo, anchored on the 1st.
const ACCOUNT = subject('acct', { kind: 'account', billingAnchorDay: 15, timeZone: 'America/New_York' });
const POOLED = subject('ws_tokyo', { timeZone: 'Asia/Tokyo', account: 'acct', workspaceGroup: 'design' });
const ALONE = subject('ws_alone', {});

describe('ingest of a pooled workspace', () => {
  test("prices the event once and gives its credits the account's day and cycle", async () => {
    // Arrange: 02:00Z on 22 November is 11:00 on the 22nd in Tokyo and 21:00 on the 21st in New York (UTC−5)
    const ledger = new InMemoryLedger();
    const deps = { config, subjects: new InMemorySubjectDirectory([ACCOUNT, POOLED, ALONE]), ledger, quarantine: new InMemoryQuarantine(), clock: new FixedClock('2026-11-22T03:00:00.000Z') };
    const body = (id: string, subjectId: string) => ({
      specversion: '1.0',
      id,
      source: 'app',
      type: 'usage',
      subject: subjectId,
      time: '2026-11-22T02:00:00Z',
      data: { usageType: 'images', quantity: 3 },
    });

    // Act
    await ingestMessages([{ messageId: 'm1', body: JSON.stringify([body('e1', 'ws_tokyo'), body('e2', 'ws_alone')]), sentAt: '2026-11-22T02:00:01.000Z' }], deps);

    // Assert: the workspace's own buckets are Tokyo's (cycle from 1 November, 00:00 Tokyo = 31 October 15:00Z);
    // the account's are New York's (cycle from 15 November, 00:00 New York = 05:00Z)
    const pooled = [...ledger.items.values()].find((e) => e.id === 'e1');
    expect([pooled?.day, pooled?.cycleStart]).toEqual(['2026-11-22', '2026-10-31T15:00:00.000Z']);
    expect(pooled?.credits).toEqual({ usageType: 'credits', quantity: '6', pool: { subject: 'acct', day: '2026-11-21', cycleStart: '2026-11-15T05:00:00.000Z', group: 'design' } });
    expect([...ledger.items.values()].find((e) => e.id === 'e2')?.credits).toEqual({ usageType: 'credits', quantity: '6' });
  });
});

describe('the fold of a pooled event', () => {
  const image = (overrides: Partial<LedgerImage> = {}): LedgerImage => ({
    eventKey: '["app","e1"]',
    subject: 'ws_tokyo',
    usageType: 'images',
    quantity: '3',
    hour: '2026-11-22T02',
    day: '2026-11-22',
    cycleStart: '2026-10-31T15:00:00.000Z',
    userId: 'u1',
    groupId: 'team-red',
    credits: { usageType: 'credits', quantity: '6', pool: { subject: 'acct', day: '2026-11-21', cycleStart: '2026-11-15T05:00:00.000Z', group: 'design' } },
    ...overrides,
  });

  test("counts three times: the event's own usage type, its workspace's credits, and its account's credits", () => {
    // Act
    const images = meteredImages(image());

    // Assert: the account's image has the workspace's group, not the event's
    expect(images.map((i) => [i.subject, i.usageType, i.quantity, i.day, i.cycleStart, i.userId, i.groupId])).toEqual([
      ['ws_tokyo', 'images', '3', '2026-11-22', '2026-10-31T15:00:00.000Z', 'u1', 'team-red'],
      ['ws_tokyo', 'credits', '6', '2026-11-22', '2026-10-31T15:00:00.000Z', 'u1', 'team-red'],
      ['acct', 'credits', '6', '2026-11-21', '2026-11-15T05:00:00.000Z', 'u1', 'design'],
    ]);
  });

  test("one chunk writes the account's day, cycle, user and workspace-group items, each counting one request", () => {
    // Act
    const [chunk] = planChunks([{ sequenceNumber: '1', newImage: image() }], 100);

    // Assert
    const account = plain(chunk).filter((u) => u.item.startsWith('acct '));
    expect(account.map((u) => [u.item, u.total])).toEqual([
      ['acct credits cycle 2026-11-15T05:00:00.000Z', 6n * NANO],
      ['acct credits day 2026-11-21', 6n * NANO],
      ['acct credits group 2026-11-15T05:00:00.000Z design', 6n * NANO],
      ['acct credits user 2026-11-15T05:00:00.000Z u1', 6n * NANO],
    ]);
    expect(chunk?.updates.filter((u) => u.subject === 'acct').map((u) => u.requests)).toEqual([1n, 1n, 1n, 1n]);
  });

  test('a correction moves the account by the difference, and its requests not at all', () => {
    // Arrange: 3 images (6 credits) corrected to 5 images (10 credits)
    const change: LedgerChange = {
      sequenceNumber: '2',
      oldImage: image(),
      newImage: image({ quantity: '5', credits: { usageType: 'credits', quantity: '10', pool: { subject: 'acct', day: '2026-11-21', cycleStart: '2026-11-15T05:00:00.000Z', group: 'design' } } }),
    };

    // Act
    const [chunk] = planChunks([change], 100);

    // Assert
    const cycle = chunk?.updates.find((u) => u.subject === 'acct' && u.kind === 'cycle');
    expect([cycle?.total, cycle?.requests]).toEqual([4n * NANO, 0n]);
  });
});

describe('config of accounts', () => {
  const withSubjects = (subjects: unknown[]) => configSchema.safeParse({ usageTypes: [{ id: 'images', unit: 'image' }], plans: [{ id: 'pro', quotas: {} }], subjects });
  const paths = (result: ReturnType<typeof withSubjects>) => (result.success ? [] : result.error.issues.map((i) => i.path));
  const base = { plan: 'pro', billingAnchorDay: 1 };

  test('a workspace names an account of the file; a workspace group needs an account; an account draws on no other', () => {
    expect(
      paths(
        withSubjects([
          { id: 'acct', kind: 'account', ...base },
          { id: 'ws', account: 'acct', workspaceGroup: 'g', ...base },
        ]),
      ),
    ).toEqual([]);
    expect(
      paths(
        withSubjects([
          { id: 'plain', ...base },
          { id: 'ws', account: 'plain', ...base },
        ]),
      ),
    ).toEqual([['subjects', 1, 'account']]);
    expect(paths(withSubjects([{ id: 'ws', workspaceGroup: 'g', ...base }]))).toEqual([['subjects', 0, 'workspaceGroup']]);
    expect(
      paths(
        withSubjects([
          { id: 'a1', kind: 'account', ...base },
          { id: 'a2', kind: 'account', account: 'a1', ...base },
        ]),
      ),
    ).toEqual([['subjects', 1, 'account']]);
  });
});
