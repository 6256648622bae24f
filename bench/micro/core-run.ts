/**
 * The measured part of bench/micro/core.ts (which bundles this file as the functions are deployed and runs it).
 */
import { parseArgs } from 'node:util';
import { bucketsOf } from '../../functions/core/cycles';
import { MAX_ITEMS_PER_TRANSACTION } from '../../functions/core/metering/aggregate';
import { eventKey, parseMessageBody, type UsageEvent, validateEvent } from '../../functions/core/metering/envelope';
import { type LedgerChange, planChunks } from '../../functions/core/metering/rollups';

const TARGET_PER_SECOND = 200_000;
const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '7' } } });
const count = Number(values.events);
const rounds = Number(values.rounds);

// 1,000 workspaces in four zones, events over the last hour, four channels, a tenth with a user.
const zones = ['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata'];
const subjects = Array.from({ length: 1000 }, (_, i) => ({ id: `ws_${String(i).padStart(4, '0')}`, billingAnchorDay: 1 + (i % 28), timeZone: zones[i % zones.length] ?? 'UTC' }));
const now = Date.now();
const bodies = Array.from({ length: count }, (_, i) =>
  JSON.stringify({
    specversion: '1.0',
    id: `evt-${i}`,
    source: '//bench/core',
    type: 'com.example.usage',
    subject: subjects[i % subjects.length]?.id,
    time: new Date(now - ((i * 37) % 3_600_000)).toISOString(),
    data: { usageType: 'tokens', quantity: 1 + (i % 500), channel: ['ui', 'api', 'cli', 'mcp'][i % 4], ...(i % 10 === 0 ? { userId: `u${i % 50}` } : {}) },
  }),
);
const rules = { usageTypes: new Map([['tokens', { allowFractions: false }]]), now: new Date(now), maxFutureSeconds: 300, retentionDays: 400 };
const subjectOf = new Map(subjects.map((s) => [s.id, s]));

// The same events with 17 significant digits in each quantity, which only the lossless parser reads exactly.
const longBodies = bodies.map((body, i) => body.replace(/"quantity":\d+/, `"quantity":${12_345_678 + i}.123456789`));

function parse(): unknown[] {
  return bodies.map((body) => JSON.parse(body) as unknown);
}

function split(texts: readonly string[]): number {
  let events = 0;
  for (const text of texts) {
    const result = parseMessageBody(text);
    if (!result.ok) throw new Error(`bench message refused: ${result.rejection.detail}`);
    events += result.events.length;
  }
  return events;
}

function validate(raws: readonly unknown[]): UsageEvent[] {
  return raws.map((raw) => {
    const result = validateEvent(raw, rules);
    if (!result.ok) throw new Error(`bench event rejected: ${result.rejection.detail}`);
    return result.event;
  });
}

/** What ingest writes to the ledger and the stream hands the aggregator: the event and its buckets. */
function bucket(events: readonly UsageEvent[]): LedgerChange[] {
  return events.map((event, i) => {
    const subject = subjectOf.get(event.subject);
    if (!subject) throw new Error(`unknown subject ${event.subject}`);
    return {
      sequenceNumber: String(100 + i),
      newImage: { eventKey: eventKey(event), subject: event.subject, usageType: event.usageType, quantity: event.quantity, ...bucketsOf(event.time, subject), ...event.dimensions },
    };
  });
}

function fold(changes: readonly LedgerChange[]): number {
  return planChunks(changes, MAX_ITEMS_PER_TRANSACTION).length;
}

/** The median time of `rounds` runs after one warm-up, in ms. */
function median(run: () => unknown): number {
  run();
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    run();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)] ?? Number.NaN;
}

const raws = parse();
const events = validate(raws);
const changes = bucket(events);
const stages = [
  { stage: 'JSON.parse (floor)', ms: median(parse) },
  { stage: 'parseMessageBody', ms: median(() => split(bodies)) },
  { stage: 'parseMessageBody, 17-digit quantities', ms: median(() => split(longBodies)) },
  { stage: 'validate', ms: median(() => validate(raws)) },
  { stage: 'bucket', ms: median(() => bucket(events)) },
  { stage: 'fold', ms: median(() => fold(changes)) },
];
// As deployed, events flow in batches (the aggregate reads up to 10,000 stream records at a time), never all at once.
const BATCH = 10_000;
const batches = Array.from({ length: Math.ceil(count / BATCH) }, (_, i) => raws.slice(i * BATCH, (i + 1) * BATCH));
const core = median(() => batches.forEach((batch) => fold(bucket(validate(batch)))));
const perSecond = (ms: number) => Math.round((count / ms) * 1000);

console.log(`${count.toLocaleString('en-US')} events, median of ${rounds} rounds, one core (Node ${process.version})\n`);
console.log(`${'stage'.padEnd(48)}${'ms'.padStart(10)}${'events/s'.padStart(14)}${'µs/event'.padStart(10)}`);
for (const { stage, ms } of [...stages, { stage: 'validate + bucket + fold, in batches of 10,000', ms: core }]) {
  console.log(`${stage.padEnd(48)}${ms.toFixed(1).padStart(10)}${perSecond(ms).toLocaleString('en-US').padStart(14)}${((ms * 1000) / count).toFixed(2).padStart(10)}`);
}
const pass = perSecond(core) >= TARGET_PER_SECOND;
console.log(`\ntarget validate + bucket + fold ≥ ${TARGET_PER_SECOND.toLocaleString('en-US')} events/s: ${pass ? 'PASS' : 'FAIL'}`);
process.exitCode = pass ? 0 : 1;
