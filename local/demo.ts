import { SendMessageBatchCommand, SQSClient } from '@aws-sdk/client-sqs';
import { writeMeter } from '../functions/adapters/dynamodb';
import { cycleContaining, localDate } from '../functions/core/cycles';
import { moveTestClock } from './clock';
import { progressBar } from './progress';
import type { LocalStack } from './runtime';
import { LOCAL_CREDENTIALS } from './stand-ins';

/**
 * The demo: a realistic stream for the example workspaces (tokens and images over UI, API and
 * CLI; duplicates, arrays, a correction, malformed events), then the cycle totals read back from
 * the API beside what was sent, the quarantine, and the write units spent per event.
 */

interface DemoEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  data: { usageType: string; quantity: number; userId?: string; groupId?: string; channel?: string; feature?: string };
}

const CHANNELS = ['ui', 'api', 'cli', 'mcp'];

/** A small deterministic generator, so every demo run sends the same stream. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Calls the local API with a key of the config, by default its admin key (the demo plays operator, producer and reader). */
function adminKey(stack: LocalStack): string {
  const key = stack.config.apiKeys.find((k) => k.scope === 'admin')?.key;
  if (!key) throw new Error('the demo calls the API with an admin key: add one to the config\'s "apiKeys"');
  return key;
}

function apiOf(stack: LocalStack, key = adminKey(stack)) {
  return async <T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${stack.ready.api}${path}`, { method, headers: { authorization: `Bearer ${key}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return (await response.json()) as T;
  };
}

export async function runDemo(stack: LocalStack, out: (line: string) => void, eventCount = 3000): Promise<boolean> {
  const api = apiOf(stack);
  const rand = random(42);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;
  const now = stack.clock.now().getTime();
  const subjects = stack.config.subjects;
  const events: DemoEvent[] = [];
  for (let i = 0; i < eventCount; i++) {
    const subject = pick(subjects);
    const image = rand() < 0.2;
    events.push({
      specversion: '1.0',
      id: `evt-${i.toString().padStart(6, '0')}`,
      source: image ? '//demo/image-studio' : '//demo/chat',
      type: 'com.example.usage.recorded',
      subject: subject.id,
      // Spread over the last 40 days, so the stream crosses days and billing cycles.
      time: new Date(now - Math.floor(rand() * 40 * 86_400_000)).toISOString(),
      data: image
        ? { usageType: 'images', quantity: 1 + Math.floor(rand() * 4), userId: `user-${1 + Math.floor(rand() * 6)}`, channel: pick(CHANNELS), feature: pick(['generate', 'remove-background']) }
        : { usageType: 'tokens', quantity: 50 + Math.floor(rand() * 2000), userId: `user-${1 + Math.floor(rand() * 6)}`, channel: pick(CHANNELS) },
    });
  }
  const duplicates = events.filter(() => rand() < 0.1);
  const malformed = [
    'this is not json',
    JSON.stringify({ ...events[0], id: 'bad-1', data: { usageType: 'tokens', quantity: -5 } }),
    JSON.stringify({ ...events[0], id: 'bad-2', data: { usageType: 'video-minutes', quantity: 3 } }),
    JSON.stringify({ ...events[0], id: 'bad-3', subject: 'ws_unknown' }),
    JSON.stringify({ ...events[0], id: undefined }),
    JSON.stringify({ ...events[0], id: 'bad-5', time: new Date(now + 3_600_000).toISOString() }),
  ];

  // Bodies: mostly one event per message, some arrays of up to five; duplicates mixed in.
  const bodies: string[] = [];
  const queue = [...events, ...duplicates];
  while (queue.length > 0) {
    const take = rand() < 0.2 ? 1 + Math.floor(rand() * 5) : 1;
    const group = queue.splice(Math.floor(rand() * queue.length), 1).concat(queue.splice(0, take - 1));
    bodies.push(JSON.stringify(group.length === 1 ? group[0] : group));
  }
  bodies.splice(Math.floor(bodies.length / 2), 0, ...malformed);

  const sqs = new SQSClient({ region: stack.ready.region, endpoint: stack.ready.sqs.endpoint, credentials: LOCAL_CREDENTIALS });
  writeMeter.reset();
  const bar = progressBar('sending', events.length + duplicates.length);
  let sent = 0;
  for (let i = 0; i < bodies.length; i += 10) {
    const entries = bodies.slice(i, i + 10);
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: stack.ready.sqs.queueUrl, Entries: entries.map((MessageBody, j) => ({ Id: String(j), MessageBody })) }));
    sent += entries.reduce((n, body) => n + (body.startsWith('[') ? (JSON.parse(body) as unknown[]).length : 1), 0);
    bar.tick(Math.min(sent, events.length + duplicates.length));
  }
  bar.end();

  // A correction after the fact: the first event's quantity was wrong.
  const corrected = events[1];
  if (corrected) {
    await stack.settle();
    corrected.data = { ...corrected.data, quantity: corrected.data.quantity + 1000 };
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: stack.ready.sqs.queueUrl, Entries: [{ Id: '0', MessageBody: JSON.stringify(corrected) }] }));
  }
  await stack.settle();
  sqs.destroy();

  // What the API says, beside what was sent.
  const expected = new Map<string, number>();
  for (const event of events) {
    const subject = subjects.find((s) => s.id === event.subject);
    if (!subject) continue;
    const cycle = cycleContaining(event.time, subject).start;
    const key = `${event.subject}|${event.data.usageType}|${cycle}`;
    expected.set(key, (expected.get(key) ?? 0) + event.data.quantity);
  }
  const from = new Date(now - 80 * 86_400_000).toISOString();
  const to = new Date(now + 86_400_000).toISOString();
  const rows: string[][] = [];
  let allMatch = true;
  for (const subject of subjects) {
    const body = await api<{ buckets: { start: string; usageType: string; quantity: number }[] }>('GET', `/v1/workspaces/${subject.id}/usage?granularity=cycle&from=${from}&to=${to}`);
    for (const bucket of body.buckets) {
      const want = expected.get(`${subject.id}|${bucket.usageType}|${bucket.start}`) ?? 0;
      allMatch &&= want === bucket.quantity;
      rows.push([subject.id, bucket.usageType, bucket.start.slice(0, 10), String(bucket.quantity), want === bucket.quantity ? 'yes' : `NO (sent ${want})`]);
    }
    const seen = body.buckets.length;
    const wanted = [...expected.keys()].filter((k) => k.startsWith(`${subject.id}|`)).length;
    allMatch &&= seen === wanted;
  }
  const quarantine = await api<{ items: { reason: string }[] }>('GET', '/v1/quarantine?limit=1000');
  const reasons = new Map<string, number>();
  for (const item of quarantine.items) reasons.set(item.reason, (reasons.get(item.reason) ?? 0) + 1);

  out('');
  out(table(['workspace', 'usage type', 'cycle start', 'total', 'matches what was sent'], rows));
  out('');
  out(`events sent: ${events.length} unique + ${duplicates.length} duplicates + 1 correction + ${malformed.length} malformed`);
  out(`quarantined: ${quarantine.items.length} (${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')})`);
  const unique = events.length;
  for (const [name, table] of writeMeter.tables) {
    out(`  ${name.padEnd(28)} ${String(table.units).padStart(6)} write units in ${table.requests} requests${table.transactional ? ' (transactions: 2 per item)' : ''}`);
  }
  const billed = writeMeter.totalUnits();
  out(`DynamoDB write units: ${billed} for ${unique} unique events = ${(billed / unique).toFixed(3)} per unique event (floor 1.000; duplicates, the correction and the quarantine cost one each)`);
  out(allMatch ? 'every cycle total matches what was sent' : 'MISMATCH between the rollups and what was sent');
  await showWorkspaceView(stack, out);
  const closes = await closeTheCycle(stack, out);
  const emailsMatch = await crossThresholds(stack, out);
  const reportsMatch = await showReports(stack, out, closes.closed);
  await showDashboard(stack, out);
  if (process.stdin.isTTY) {
    out('serving the API and the dashboard until Ctrl-C');
    await new Promise(() => undefined); // the CLI stops the stack on SIGINT
  }
  return allMatch && closes.consistent && emailsMatch && reportsMatch;
}

/** The dashboard's own data: lively use in every workspace's current cycle, then where to open it and a key to sign in with. */
async function showDashboard(stack: LocalStack, out: (line: string) => void): Promise<void> {
  const sent = await loadDashboardUsage(stack);
  const keys = stack.config.apiKeys.filter((k) => k.scope !== 'admin');
  out('');
  out(`${sent.length} more events with users, groups and channels in each workspace's current cycle, for the dashboard:`);
  out(`  dashboard: ${stack.ready.api}/`);
  for (const key of keys) out(`  sign in with ${key.key}  (${key.scope === 'workspace' ? `workspace ${key.subject ?? ''}` : key.scope})`);
}

const DASHBOARD_USERS = ['ana', 'ben', 'chen', 'dara', 'eli', 'fatima', 'gus', 'hana', 'ivan', 'jo', 'kai', 'lena'];
const DASHBOARD_GROUPS = ['research', 'support', 'growth', 'platform', 'design', 'data', 'sales'];
/** How fast each workspace spends its monthly allowance, as a share of the pace that uses it up exactly at cycle end. */
const DASHBOARD_PACE: Record<string, number> = { ws_acme: 1.3, ws_globex: 0.55, ws_initech: 0.8 };

/** The dashboard's events name a user and a group, so that its rankings have something to rank. */
export type DashboardEvent = DemoEvent & { data: { userId: string; groupId: string } };

/**
 * Use for the dashboard to show: in each workspace's current cycle so far (as of the local clock), tokens and
 * images from twelve users in seven groups (a few heavy users, a long tail), over every channel and some
 * with none, a share of it in the last 24 hours, at DASHBOARD_PACE of the plan's monthly limit (never all
 * of it). Sends it through SQS, waits until it is counted, and returns what it sent (the tests' ground truth).
 */
export async function loadDashboardUsage(stack: LocalStack, eventsPerUsageType = 160): Promise<DashboardEvent[]> {
  const rand = random(7);
  const now = stack.clock.now().getTime();
  const events: DashboardEvent[] = [];
  const weights = DASHBOARD_USERS.map((_, i) => 1 / (i + 1));
  const pickUser = () => {
    let r = rand() * weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < weights.length; i++) if ((r -= weights[i] ?? 0) <= 0) return i;
    return weights.length - 1;
  };
  const pickChannel = () => {
    const r = rand();
    return r < 0.4 ? 'ui' : r < 0.72 ? 'api' : r < 0.86 ? 'cli' : r < 0.96 ? 'mcp' : undefined;
  };
  for (const subject of stack.config.subjects) {
    const plan = stack.config.plans.find((p) => p.id === subject.plan);
    const cycle = cycleContaining(new Date(now), subject);
    const start = Date.parse(cycle.start);
    const elapsed = now - 60_000 - start;
    if (!plan || elapsed <= 0) continue;
    for (const usageType of ['tokens', 'images']) {
      const limit = plan.quotas[usageType]?.monthlyLimit;
      if (limit === undefined) continue;
      // The even pace as the summary projects it: its average counts today as a whole day. A fast pace is held
      // under the allowance (halfway from the even pace to the limit), so that on any day of the cycle the
      // workspace is projected to run out rather than already out.
      const daysElapsed = (Date.parse(localDate(new Date(now), subject.timeZone)) - Date.parse(localDate(new Date(start), subject.timeZone))) / 86_400_000 + 1;
      const evenShare = (daysElapsed * 86_400_000) / (daysElapsed * 86_400_000 + Date.parse(cycle.end) - now);
      const target = Math.round(limit * Math.min((DASHBOARD_PACE[subject.id] ?? 0.5) * evenShare, (1 + evenShare) / 2));
      const count = Math.min(eventsPerUsageType, target);
      const shares = Array.from({ length: count }, () => 0.2 + rand());
      const sum = shares.reduce((a, b) => a + b, 0);
      const quantities = shares.map((share) => Math.max(1, Math.floor((share / sum) * target)));
      // What flooring left over goes to the last event: the workspace uses exactly its target.
      if (count > 0) quantities[count - 1] = Math.max(1, (quantities[count - 1] ?? 0) + target - quantities.reduce((a, b) => a + b, 0));
      for (let i = 0; i < count; i++) {
        // A sixth of the events in the last 24 hours (within the cycle), the rest over the cycle so far.
        const span = i % 6 === 0 ? Math.min(elapsed, 86_400_000) : elapsed;
        const user = pickUser();
        const channel = pickChannel();
        events.push({
          specversion: '1.0',
          id: `dash-${subject.id}-${usageType}-${i}`,
          source: '//demo/dashboard',
          type: 'com.example.usage.recorded',
          subject: subject.id,
          time: new Date(now - 60_000 - Math.floor(rand() * span)).toISOString(),
          data: {
            usageType,
            quantity: quantities[i] ?? 1,
            userId: DASHBOARD_USERS[user] ?? 'ana',
            groupId: DASHBOARD_GROUPS[user % DASHBOARD_GROUPS.length] ?? 'research',
            ...(channel ? { channel } : {}),
          },
        });
      }
    }
  }
  const sqs = new SQSClient({ region: stack.ready.region, endpoint: stack.ready.sqs.endpoint, credentials: LOCAL_CREDENTIALS });
  try {
    for (let i = 0; i < events.length; i += 10) {
      const entries = events.slice(i, i + 10).map((event, j) => ({ Id: String(j), MessageBody: JSON.stringify(event) }));
      await sqs.send(new SendMessageBatchCommand({ QueueUrl: stack.ready.sqs.queueUrl, Entries: entries }));
    }
  } finally {
    sqs.destroy();
  }
  await stack.settle();
  return events;
}

interface ClosedCycle {
  subject: string;
  cycleStart: string;
  report: string;
}

/**
 * Finance's side: the cycle reports the close wrote to S3, a late event that lands in Acme's closed cycle and
 * shows in its report as an adjustment with the event's identity, and an hourly export of that cycle downloaded through
 * its presigned URL with a plain fetch.
 */
async function showReports(stack: LocalStack, out: (line: string) => void, closed: readonly ClosedCycle[]): Promise<boolean> {
  const admin = apiOf(stack);
  const financeKey = stack.config.apiKeys.find((k) => k.scope === 'finance')?.key;
  const finance = financeKey ? apiOf(stack, financeKey) : admin;
  const acme = closed.find((c) => c.subject === 'ws_acme') ?? closed[0];
  if (!acme) return false;

  // A late event: its time is in the closed cycle, an hour before it ended.
  const cycleEnd = cycleContaining(new Date(Date.parse(acme.cycleStart) + 86_400_000), stack.config.subjects.find((s) => s.id === acme.subject) ?? { billingAnchorDay: 1, timeZone: 'UTC' }).end;
  const late = {
    specversion: '1.0',
    id: 'demo-late-1',
    source: '//demo/billing-backfill',
    type: 'com.example.usage.recorded',
    time: new Date(Date.parse(cycleEnd) - 3_600_000).toISOString(),
    data: { usageType: 'tokens', quantity: 1234, channel: 'api' },
  };
  await admin('POST', `/v1/workspaces/${acme.subject}/usages`, late);
  await stack.settle();
  const report = await finance<{
    usage: { usageType: string; total: string; closedTotal: string; adjustments: { total: string; events: { source: string; id: string; delta: string }[] }; money: { amount: number } | null }[];
    amount: number | null;
    currency: string | null;
  }>('GET', `/v1/workspaces/${acme.subject}/report?cycle=${acme.cycleStart.slice(0, 10)}`);
  const tokens = report.usage.find((u) => u.usageType === 'tokens');
  const adjusted = tokens?.adjustments.events.some((e) => e.id === late.id && e.delta === '1234') === true && Number(tokens.total) - Number(tokens.closedTotal) === 1234;

  out('');
  out(`cycle reports written at close (S3 stand-in ${stack.ready.s3.endpoint}, bucket ${stack.ready.s3.bucket}):`);
  for (const c of closed) out(`  s3://${stack.ready.s3.bucket}/${c.report}`);
  for (const start of new Set(closed.map((c) => c.cycleStart))) out(`  s3://${stack.ready.s3.bucket}/reports/${start}/_summary.json`);
  out(
    `${acme.subject}'s closed cycle ${acme.cycleStart.slice(0, 10)}, read again after a late event: tokens ${tokens?.closedTotal} at close + ${tokens?.adjustments.total} adjusted = ${tokens?.total}; ${money(report.amount, report.currency)}`,
  );
  out(adjusted ? `  the late event ${late.source} ${late.id} is listed as an adjustment of +1234` : '  MISMATCH: the late event is not listed as an adjustment');

  // An hourly export of Acme's closed cycle, every workspace, downloaded through its presigned URL.
  const job = await finance<{ id: string }>('POST', '/v1/exports', { from: acme.cycleStart, to: cycleEnd, granularity: 'hour', format: 'jsonl' });
  let view: { status: string; url: string | null; bucketCount: number | null } = { status: 'queued', url: null, bucketCount: null };
  for (let i = 0; i < 100 && (view.status === 'queued' || view.status === 'running'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    view = await finance('GET', `/v1/exports/${job.id}`);
  }
  const lines = view.url ? (await (await fetch(view.url)).text()).trim().split('\n') : [];
  const downloaded = view.status === 'ready' && lines.length - 1 === view.bucketCount;
  out(`export ${job.id}: ${view.status}, ${view.bucketCount ?? 0} hourly buckets; presigned URL (valid 5 minutes):`);
  out(`  ${view.url ?? '-'}`);
  out(downloaded ? '  downloaded with a plain fetch: header line + every bucket' : '  MISMATCH: the export did not download as described');
  return adjusted && downloaded;
}

/**
 * In the new cycle, Acme uses 90% of its images allowance (plan + spillover) over many events and Globex
 * jumps past 110% of its tokens in one: the SES stand-in ends up with one email per contact for the highest
 * threshold each crossed (Acme's plan sets 50/80/100, so 80; Globex's default 80/100/110, so 110).
 */
async function crossThresholds(stack: LocalStack, out: (line: string) => void): Promise<boolean> {
  const api = apiOf(stack);
  const quotaOf = async (subject: string, usageType: string) => {
    const body = await api<{ quotas: QuotaRow[] }>('GET', `/v1/workspaces/${subject}/quotas`);
    const quota = body.quotas.find((q) => q.usageType === usageType);
    return (quota?.limitAmount ?? 0) + (quota?.spilloverAmount ?? 0);
  };
  const now = stack.clock.now().getTime();
  const images = Math.ceil((await quotaOf('ws_acme', 'images')) * 0.9);
  const tokens = Math.ceil((await quotaOf('ws_globex', 'tokens')) * 1.12);
  const usage = (subject: string, id: string, usageType: string, quantity: number, secondsAgo: number) =>
    JSON.stringify({
      specversion: '1.0',
      id,
      source: '//demo/alerts',
      type: 'com.example.usage.recorded',
      subject,
      time: new Date(now - secondsAgo * 1000).toISOString(),
      data: { usageType, quantity },
    });
  const bodies = [
    ...Array.from({ length: 9 }, (_, i) => usage('ws_acme', `img-${i}`, 'images', i < 8 ? Math.floor(images / 9) : images - 8 * Math.floor(images / 9), 60 + i)),
    usage('ws_globex', 'big-batch-job', 'tokens', tokens, 30),
  ];
  const sqs = new SQSClient({ region: stack.ready.region, endpoint: stack.ready.sqs.endpoint, credentials: LOCAL_CREDENTIALS });
  await sqs.send(new SendMessageBatchCommand({ QueueUrl: stack.ready.sqs.queueUrl, Entries: bodies.map((MessageBody, i) => ({ Id: String(i), MessageBody })) }));
  sqs.destroy();
  await stack.settle();

  const store = (await (await fetch(stack.ready.ses.store)).json()) as { emails: { destination: { to: string[] }; subject: string; body: { text?: string } }[] };
  out('');
  out(`emails sent (SES stand-in, ${stack.ready.ses.store}):`);
  for (const email of store.emails) out(`  to ${email.destination.to.join(', ')}: ${email.subject}`);
  const first = store.emails[0]?.body.text;
  if (first) out(`\n${first.trim().replace(/^/gm, '  | ')}`);
  const subjects = store.emails.map((e) => `${e.destination.to.join(',')}|${e.subject}`).sort();
  const expected = ['billing@acme.example|You have used 80% of your monthly images', 'finance@globex.example|You have used 110% of your monthly tokens'];
  const ok = JSON.stringify(subjects) === JSON.stringify(expected);
  out(ok ? 'one email per contact for the highest threshold each workspace crossed' : `MISMATCH: expected ${expected.join('; ')}`);
  return ok;
}

interface QuotaRow {
  usageType: string;
  limitAmount: number;
  usedAmount: number;
  availableAmount: number;
  bonusAmount: number;
  spilloverAmount: number;
  canUse: boolean;
  cycleStart: string;
  cycleEnd: string;
}

/** What a workspace's own API key shows it: its cycle's progress and projection, its top users; another workspace is 403. */
async function showWorkspaceView(stack: LocalStack, out: (line: string) => void): Promise<void> {
  const own = stack.config.apiKeys.find((k) => k.scope === 'workspace');
  const other = stack.config.subjects.find((s) => s.id !== own?.subject);
  if (!own?.subject || !other) return;
  const api = apiOf(stack, own.key);
  const get = <T>(path: string) => api<T>('GET', path);
  const { summary } = await get<{
    summary: { usageType: string; usedAmount: number; allowanceAmount: number; avgPerDay: number; runOutInDays: number | null; projectedToRunOut: boolean; daysRemaining: number }[];
  }>(`/v1/workspaces/${own.subject}/usage/summary`);
  const top = await get<{ entries: { id: string; amount: number; share: number }[] }>(`/v1/workspaces/${own.subject}/usage/top?by=user&usageType=tokens&limit=3`);
  const denied = await get<{ error: { code: string } }>(`/v1/workspaces/${other.id}/quotas`);
  out('');
  out(`${own.subject} with its own API key ("${own.name ?? own.subject}"):`);
  for (const s of summary) {
    const runOut = s.runOutInDays === null ? 'no use yet' : `runs out in ${s.runOutInDays} days${s.projectedToRunOut ? `, before the cycle ends (${s.daysRemaining} days left)` : ''}`;
    out(`  ${s.usageType.padEnd(8)} ${s.usedAmount} of ${s.allowanceAmount} used, ${s.avgPerDay}/day, ${runOut}`);
  }
  out(`  top users (tokens): ${top.entries.map((e) => `${e.id} ${e.amount} (${(e.share * 100).toFixed(1)}%)`).join(', ')}`);
  out(`  the same key on ${other.id}: ${denied.error.code}`);
}

/**
 * The rest of the cycle: a bonus grant, then the test clock moves past every workspace's cycle end (plus
 * the grace period), which closes the cycles. Prints each workspace's quota view in its new cycle beside
 * the spillover its closed cycle carried over.
 */
async function closeTheCycle(stack: LocalStack, out: (line: string) => void): Promise<{ consistent: boolean; closed: ClosedCycle[] }> {
  const send = apiOf(stack);
  const quotas = async (subject: string) => ((await send('GET', `/v1/workspaces/${subject}/quotas`)) as { quotas: QuotaRow[] }).quotas;

  await send('POST', '/v1/workspaces/ws_acme/grants', { id: 'demo-welcome-bonus', kind: 'bonus', usageType: 'tokens', amount: 20_000 });
  const subjects = stack.config.subjects.map((s) => s.id);
  const before = new Map<string, QuotaRow[]>();
  for (const subject of subjects) before.set(subject, await quotas(subject));
  const lastEnd = Math.max(...[...before.values()].flat().map((q) => Date.parse(q.cycleEnd)));
  const advanceTo = new Date(lastEnd + (stack.config.closes.graceMinutes + 1) * 60_000).toISOString();
  const advanced = (await moveTestClock(stack.ready.api, adminKey(stack), advanceTo)) as { closes: { cyclesClosed: ClosedCycle[]; daysClosed: number } };

  out('');
  out(`test clock moved to ${advanceTo}: ${advanced.closes.cyclesClosed.length} cycles and ${advanced.closes.daysClosed} days closed`);
  const rows: string[][] = [];
  let consistent = true;
  for (const subject of subjects) {
    const closes = (await send('GET', `/v1/workspaces/${subject}/closes`)) as { cycles: { cycleStart: string; usage: Record<string, { used: string; limit: string; spilloverOut: string }> }[] };
    const closed = closes.cycles.at(-1);
    for (const quota of await quotas(subject)) {
      const frozen = closed?.usage[quota.usageType];
      // What the close carried out is what the new cycle shows carried in.
      consistent &&= Number(frozen?.spilloverOut ?? 0) === quota.spilloverAmount;
      rows.push([
        subject,
        quota.usageType,
        closed ? `${closed.cycleStart.slice(0, 10)}: ${frozen?.used ?? 0} of ${frozen?.limit ?? 0}` : '-',
        String(quota.spilloverAmount),
        `${quota.cycleStart.slice(0, 10)} → ${quota.cycleEnd.slice(0, 10)}`,
        String(quota.limitAmount),
        String(quota.bonusAmount),
        String(quota.availableAmount),
        quota.canUse ? 'yes' : 'no',
      ]);
    }
  }
  out(table(['workspace', 'usage type', 'closed cycle: used of limit', 'spillover in', 'new cycle', 'limit', 'bonus', 'available', 'can use'], rows));
  out(consistent ? 'every spillover carried out of a closed cycle shows in the new cycle' : 'MISMATCH between the closed cycles and the new quota view');
  return { consistent, closed: advanced.closes.cyclesClosed };
}

/** Integer minor units as the currency writes them (cents for USD, whole yen for JPY). */
function money(amount: number | null, currency: string | null): string {
  if (amount === null || currency === null) return 'no rate card';
  const format = new Intl.NumberFormat('en-US', { style: 'currency', currency });
  return format.format(amount / 10 ** (format.resolvedOptions().maximumFractionDigits ?? 2));
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
